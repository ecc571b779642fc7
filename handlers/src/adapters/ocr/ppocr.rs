//! PaddleOCR's PP-OCR text detection and recognition models (ONNX), run in process with ONNX
//! Runtime (docs/decisions/0020-pp-ocr-recognizer.md).
//!
//! The pipeline, written here from the models' published contract:
//! 1. the image is decoded (JPEG/PNG, EXIF orientation applied), brought to at most
//!    [`MAX_SIDE`] pixels on its longer side and at least [`DET_MIN_SIDE`] on its shorter, rounded
//!    to multiples of 32, normalised to [-1, 1] and given to the detector;
//! 2. the detector's probability map is thresholded ([`DET_THRESH`]), dilated by one pixel, and
//!    split into connected regions; each region's orientation comes from its second moments, its
//!    box from its extent along that orientation, grown by the DB "unclip" distance
//!    (area × [`UNCLIP_RATIO`] / perimeter); regions whose mean probability is under
//!    [`BOX_THRESH`] are dropped;
//! 3. each box is sampled (bilinear, rectified) straight into a 48-pixel-high strip, strips of
//!    similar width are batched for the recogniser, and its output is decoded greedily (CTC:
//!    repeated symbols collapsed, blanks dropped) with the character set stored in the model's
//!    metadata;
//! 4. the CTC columns say where each character was: a word's box spans its first to last
//!    character's column, mapped back into the image, so words (not whole detected lines) become
//!    the cells the extraction reads; boxes on one visual line are joined into one line.
//!
//! Runs happen on a bounded pool of model instances (up to two ONNX Runtime threads each, at the
//! reading thread's lower priority), sized from the cores so readings never crowd out the HTTP
//! server. The models are loaded on
//! the first image, kept while images come, and released after [`KEEP_LOADED`] without one, so a
//! service at rest holds none of their memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use image::{DynamicImage, ImageDecoder, RgbImage};
use ort::session::Session;
use ort::value::Tensor;

use crate::domain::extraction::TextLine;
use crate::ports::ReadError;

/// Longer side of the image given to the detector, at most (larger images are scaled down).
pub const MAX_SIDE: u32 = 2000;
/// Shorter side of the image given to the detector, at least (smaller images are scaled up).
pub const DET_MIN_SIDE: u32 = 736;
/// Pixels whose text probability is above this belong to a text region.
pub const DET_THRESH: f32 = 0.3;
/// Regions whose mean probability is below this are not text.
pub const BOX_THRESH: f32 = 0.5;
/// How far a region's box is grown (the detector predicts shrunk text kernels).
pub const UNCLIP_RATIO: f32 = 1.6;
/// Pixels the detector reads a page at, at most (unless that would take the shorter side under
/// DET_MIN_SIDE).
const DET_MAX_PIXELS: usize = 1_300_000;
/// Pixels per detector run, at most: taller pages are read in overlapping bands.
const DET_BAND_PIXELS: usize = 600_000;
/// Rows two neighbouring bands share (a multiple of 32).
const DET_OVERLAP: usize = 96;
/// Height of the strips given to the recogniser.
const REC_HEIGHT: usize = 48;
/// Strips per recogniser run.
const REC_BATCH: usize = 8;
/// Widest strip, in recogniser pixels (longer lines are cut into pieces of at most this).
const REC_MAX_WIDTH: usize = 1600;

/// Where the model files and the ONNX Runtime library are.
#[derive(Debug, Clone)]
pub struct PpOcrConfig {
    /// `libonnxruntime.so` (from the pinned onnxruntime wheel).
    pub runtime: PathBuf,
    /// Detection model (`PP-OCRv6_det_small.onnx`).
    pub detector: PathBuf,
    /// Recognition model (`PP-OCRv6_rec_small.onnx`); its metadata holds the character set.
    pub recognizer: PathBuf,
    /// Model instances, each reading one image at a time on one thread.
    pub instances: usize,
    /// How long the models stay loaded after the last reading: a service that reads no photo
    /// holds none of their memory (about 70 MiB per instance), and a busy one loads them once.
    pub keep_loaded: Duration,
    /// Development only (`warranty ocr-eval --cache`): each image's lines kept here, keyed by the
    /// SHA-256 of the image, so an evaluation after a change to the extraction does not read the
    /// corpus again. Never set by the service.
    pub cache: Option<PathBuf>,
}

/// How long the models stay loaded after the last reading, unless configured otherwise.
pub const KEEP_LOADED: Duration = Duration::from_secs(120);

impl PpOcrConfig {
    /// The files in `dir` under the names `tools/models/fetch` gives them.
    pub fn in_dir(dir: &Path, instances: usize) -> Self {
        Self {
            runtime: dir.join("libonnxruntime.so"),
            detector: dir.join("det.onnx"),
            recognizer: dir.join("rec.onnx"),
            instances: instances.max(1),
            keep_loaded: KEEP_LOADED,
            cache: None,
        }
    }

    /// One instance per two cores, at least one: a reading leaves a core to the HTTP server.
    pub fn default_instances() -> usize {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        (cores / 2).max(1)
    }
}

struct Models {
    det: Session,
    rec: Session,
}

/// The recogniser: a pool of model pairs, loaded on the first reading and released when no
/// reading has come for [`PpOcrConfig::keep_loaded`].
pub struct PpOcr {
    pool: Arc<Pool>,
}

/// What the reading threads and the release timer share.
struct Pool {
    cfg: PpOcrConfig,
    /// One per model instance: a reading holds one while it loads or uses a pair.
    permits: tokio::sync::Semaphore,
    /// Idle model pairs; a reading takes one (or loads a new one, up to `instances`).
    idle: Mutex<Vec<Models>>,
    /// Model pairs loaded now (at most `instances`).
    loaded: AtomicUsize,
    /// Readings finished so far: a release scheduled after one reading is void if another came.
    finished: AtomicU64,
    /// The recognition model's character set, read from its metadata on the first load.
    charset: OnceLock<Arc<Vec<String>>>,
    /// Why the models could not be loaded, for health (cleared by a load that works).
    failure: Mutex<Option<String>>,
}

impl Pool {
    /// No reading holds a model instance (none is loading or reading).
    fn idle_now(&self) -> bool {
        self.permits.available_permits() == self.cfg.instances
    }

    /// Drops every idle model pair and hands their memory back to the system.
    fn release(&self) {
        let dropped = self.idle.lock().map(|mut idle| std::mem::take(&mut *idle)).unwrap_or_default();
        if dropped.is_empty() {
            return;
        }
        self.loaded.fetch_sub(dropped.len(), Ordering::Relaxed);
        drop(dropped);
        trim_heap();
    }
}

/// Hands the free pages of glibc's heap back to the system, so the process does not sit at a
/// reading's peak (a decoded photo, the detector's bands, released models) until the next one.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's heap; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// ONNX Runtime allows one environment per process, and the library is loaded once: the first
/// load's outcome is kept for the process (the runtime path is fixed by the settings).
static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment(runtime: &Path) -> Result<&'static ort::environment::Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(runtime)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", runtime.display()))?
                .with_name("warranty-ppocr")
                .build()
                .map_err(|e| format!("ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// ONNX Runtime threads per model: two where there are two cores or more. A photo is read by
/// PP-OCR and Tesseract at once; Tesseract is done in a fraction of the time, and with one thread
/// PP-OCR left the other core idle for the rest (a receipt photo: 2.5 s with one thread, 1.75 s
/// with two, the same CPU and memory; docs/benchmarks.md, issue 29). The session is created on
/// the reading thread, which runs at nice +10, and the runtime's own threads are started from
/// it and inherit that priority: requests still come first.
fn intra_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(2)
}

fn session(env: &ort::environment::Environment, path: &Path) -> Result<Session, String> {
    let fail = |e: ort::Error<_>| e.to_string();
    Session::builder(env)
        .map_err(|e| e.to_string())?
        // No arena: the detector's buffers scale with the page, and an arena would keep the
        // largest page's for the life of the process.
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(fail)?
        .with_intra_threads(intra_threads())
        .map_err(fail)?
        .with_inter_threads(1)
        .map_err(fail)?
        .with_intra_op_spinning(false)
        .map_err(fail)?
        .with_memory_pattern(false)
        .map_err(fail)?
        .commit_from_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl PpOcr {
    /// A recogniser for the files in `cfg`. Nothing is loaded yet (the first reading loads the
    /// runtime and a model pair); `Err` says which file is missing (reported by health).
    pub fn new(cfg: PpOcrConfig) -> Result<Self, String> {
        for (what, path) in
            [("ONNX Runtime", &cfg.runtime), ("detection model", &cfg.detector), ("recognition model", &cfg.recognizer)]
        {
            if !path.is_file() {
                return Err(format!("{what} not found at {} (tools/models/fetch installs it)", path.display()));
            }
        }
        let permits = tokio::sync::Semaphore::new(cfg.instances);
        let pool = Pool {
            cfg,
            permits,
            idle: Mutex::default(),
            loaded: AtomicUsize::default(),
            finished: AtomicU64::default(),
            charset: OnceLock::new(),
            failure: Mutex::default(),
        };
        Ok(Self { pool: Arc::new(pool) })
    }

    /// Loads a model pair (and, the first time, the runtime and the character set).
    fn load_models(pool: &Pool) -> Result<(Models, Arc<Vec<String>>), String> {
        let cfg = &pool.cfg;
        let env = environment(&cfg.runtime)?;
        let models = Models { det: session(env, &cfg.detector)?, rec: session(env, &cfg.recognizer)? };
        let charset = match pool.charset.get() {
            Some(c) => c.clone(),
            None => {
                let charset: Vec<String> = models
                    .rec
                    .metadata()
                    .ok()
                    .and_then(|m| m.custom("character"))
                    .ok_or("the recognition model carries no character set in its metadata")?
                    .lines()
                    .map(str::to_owned)
                    .collect();
                if charset.is_empty() {
                    return Err("the recognition model's character set is empty".into());
                }
                pool.charset.get_or_init(|| Arc::new(charset)).clone()
            }
        };
        Ok((models, charset))
    }

    /// What health reports: the character set's size once loaded, or why loading failed.
    pub fn status(&self) -> Result<String, String> {
        if let Some(e) = self.pool.failure.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        Ok(match self.pool.charset.get() {
            Some(c) => format!("PP-OCR ({} symbols, {} instance(s) loaded)", c.len(), self.instances_loaded()),
            None => "PP-OCR (models load on the first image)".into(),
        })
    }

    /// Model pairs loaded now: never more than the configured instances, none at rest.
    pub fn instances_loaded(&self) -> usize {
        self.pool.loaded.load(Ordering::Relaxed)
    }

    /// Reads one image (JPEG or PNG bytes) on the pool; lines in image pixels, on `page`.
    pub async fn image(&self, bytes: bytes::Bytes, page: u32) -> Result<Vec<TextLine>, ReadError> {
        use sha2::Digest;
        let cached = self.pool.cfg.cache.as_ref().map(|dir| {
            let key = sha2::Sha256::new().chain_update(&bytes).chain_update(page.to_le_bytes()).finalize();
            dir.join(format!("ppocr-{}.json", hex::encode(key)))
        });
        if let Some(lines) =
            cached.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok())
        {
            return Ok(lines);
        }
        let lines = self.read(bytes, page).await?;
        if let Some(p) = &cached
            && let Ok(json) = serde_json::to_vec(&lines)
        {
            let _ = std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).and_then(|_| std::fs::write(p, json));
        }
        Ok(lines)
    }

    async fn read(&self, bytes: bytes::Bytes, page: u32) -> Result<Vec<TextLine>, ReadError> {
        let pool = self.pool.clone();
        let permit =
            pool.permits.acquire().await.map_err(|_| ReadError::Transient("the recogniser is shutting down".into()))?;
        // A thread of its own at a lower scheduling priority (nice +10): a reading (and a load)
        // uses what the HTTP server leaves, never the other way round. (A priority once lowered
        // cannot be raised again without privilege, so the thread is not one of the runtime's.)
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("ppocr".into()).spawn({
            let pool = pool.clone();
            move || {
                lower_priority();
                let _ = tx.send(Self::read_on_pool(&pool, &bytes, page));
            }
        });
        let result = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err(ReadError::Transient("the recogniser's thread ended without a result".into()))),
            Err(e) => Err(ReadError::Transient(format!("cannot start the recogniser's thread: {e}"))),
        };
        drop(permit);
        trim_heap();
        self.release_later();
        result
    }

    /// Runs on the reading's thread: takes (or loads) a model pair, reads, puts the pair back.
    fn read_on_pool(pool: &Pool, bytes: &[u8], page: u32) -> Result<Vec<TextLine>, ReadError> {
        let taken = pool.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let (mut models, charset) = match taken {
            Some(m) => (m, pool.charset.get().cloned().unwrap_or_default()),
            None => match Self::load_models(pool) {
                Ok(loaded) => {
                    pool.loaded.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = pool.failure.lock() {
                        *f = None;
                    }
                    loaded
                }
                Err(e) => {
                    tracing::warn!(reason = %e, "PP-OCR models cannot be loaded: Tesseract reads alone");
                    if let Ok(mut f) = pool.failure.lock() {
                        *f = Some(e.clone());
                    }
                    return Err(ReadError::EngineUnavailable(e));
                }
            },
        };
        let result = read_image(&mut models, &charset, bytes, page);
        if let Ok(mut idle) = pool.idle.lock() {
            idle.push(models);
        }
        result
    }

    /// Releases the models once `keep_loaded` has passed with no reading started or finished.
    fn release_later(&self) {
        let pool = self.pool.clone();
        let keep = pool.cfg.keep_loaded;
        let finished = pool.finished.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(async move {
            tokio::time::sleep(keep).await;
            if pool.idle_now() && pool.finished.load(Ordering::SeqCst) == finished {
                pool.release();
                tracing::debug!("PP-OCR models released after {keep:?} without a reading");
            }
        });
    }
}

/// Lowers the calling thread's scheduling priority by
/// [`OCR_NICENESS`](super::tesseract::OCR_NICENESS) (Linux: per thread).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's id has no memory-safety preconditions; a
    // failure only leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, super::tesseract::OCR_NICENESS);
    }
}

/// Decodes an image with its EXIF orientation applied.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ReadError> {
    let unreadable =
        |e: image::ImageError| ReadError::permanent("invoice_unreadable", format!("the image cannot be decoded: {e}"));
    let mut decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ReadError::permanent("invoice_unreadable", e.to_string()))?
        .into_decoder()
        .map_err(unreadable)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.to_rgb8())
}

fn read_image(models: &mut Models, charset: &[String], bytes: &[u8], page: u32) -> Result<Vec<TextLine>, ReadError> {
    let img = decode(bytes)?;
    let (w, h) = img.dimensions();
    if w < 8 || h < 8 {
        return Ok(Vec::new());
    }
    // The working image: the longer side at most MAX_SIDE. Boxes are reported in the original
    // image's pixels.
    let down = (MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
    let work = if down < 1.0 {
        image::imageops::resize(
            &img,
            ((w as f32 * down).round() as u32).max(1),
            ((h as f32 * down).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        img
    };
    let regions = detect(&mut models.det, &work)?;
    let words = recognise(&mut models.rec, charset, &work, &regions)?;
    Ok(lines(words, page, 1.0 / down))
}

/// A detected text region in working-image pixels: centre, unit direction along the text, half
/// length along it and half thickness across it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    cx: f32,
    cy: f32,
    dx: f32,
    dy: f32,
    half_len: f32,
    half_thick: f32,
}

fn run_err(e: ort::Error) -> ReadError {
    ReadError::Transient(format!("the recogniser failed: {e}"))
}

fn detect(det: &mut Session, img: &RgbImage) -> Result<Vec<Region>, ReadError> {
    let (w, h) = img.dimensions();
    // Small images are scaled up to DET_MIN_SIDE on their shorter side; large ones down to
    // DET_MAX_PIXELS (the detector's time grows with its input, and a page's lines stay tens of
    // pixels high). Recognition reads from the working image at its own resolution.
    let up = (DET_MIN_SIDE as f32 / w.min(h) as f32).max(1.0);
    let up = up.min((DET_MAX_PIXELS as f32 / (w as f32 * h as f32)).sqrt().max(DET_MIN_SIDE as f32 / w.min(h) as f32));
    let round32 = |v: f32| (((v / 32.0).round() as u32) * 32).max(32);
    let (dw, dh) = (round32(w as f32 * up), round32(h as f32 * up));
    let resized = image::imageops::resize(img, dw, dh, image::imageops::FilterType::Triangle);
    let (dw, dh) = (dw as usize, dh as usize);
    // The detector's memory grows with its input (about 230 MiB per million pixels), so a tall
    // page is read in horizontal bands of at most DET_BAND_PIXELS that overlap by DET_OVERLAP
    // rows; each band contributes the rows nearer its middle than its neighbour's.
    let band = ((DET_BAND_PIXELS / dw) / 32 * 32).max(2 * DET_OVERLAP).min(dh);
    let mut prob = vec![0f32; dw * dh];
    let mut y0 = 0usize;
    loop {
        let y1 = (y0 + band).min(dh);
        let rows = y1 - y0;
        let plane = rows * dw;
        let mut input = vec![0f32; 3 * plane];
        for y in 0..rows {
            for x in 0..dw {
                let p = resized.get_pixel(x as u32, (y0 + y) as u32).0;
                // The models were trained on OpenCV's BGR order.
                for c in 0..3 {
                    input[c * plane + y * dw + x] = f32::from(p[2 - c]) / 127.5 - 1.0;
                }
            }
        }
        let tensor = Tensor::from_array(([1usize, 3, rows, dw], input)).map_err(run_err)?;
        let outputs = det.run(ort::inputs![tensor]).map_err(run_err)?;
        let (shape, out) = outputs[0].try_extract_tensor::<f32>().map_err(run_err)?;
        let (mh, mw) = (shape[shape.len() - 2] as usize, shape[shape.len() - 1] as usize);
        if mh != rows || mw != dw || out.len() < plane {
            return Err(ReadError::Transient("the detector returned a map of another size".into()));
        }
        let keep_from = if y0 == 0 { 0 } else { DET_OVERLAP / 2 };
        let keep_to = if y1 == dh { rows } else { rows - DET_OVERLAP / 2 };
        prob[(y0 + keep_from) * dw..(y0 + keep_to) * dw].copy_from_slice(&out[keep_from * dw..keep_to * dw]);
        if y1 == dh {
            break;
        }
        y0 = y1 - DET_OVERLAP;
    }
    let (sx, sy) = (w as f32 / dw as f32, h as f32 / dh as f32);
    Ok(regions(&prob, dw, dh)
        .into_iter()
        .map(|r| Region {
            cx: r.cx * sx,
            cy: r.cy * sy,
            dx: r.dx,
            dy: r.dy,
            half_len: r.half_len * sx,
            half_thick: r.half_thick * sy,
        })
        .collect())
}

/// Text regions of a probability map (`w` × `h`, row-major), in map pixels.
pub(crate) fn regions(prob: &[f32], w: usize, h: usize) -> Vec<Region> {
    // Threshold, then a 2×2 dilation (a pixel is set if it or its left, upper or upper-left
    // neighbour is), which joins characters the threshold split.
    let raw: Vec<bool> = prob.iter().map(|&p| p > DET_THRESH).collect();
    let mut mask = raw.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            mask[i] = raw[i] || (x > 0 && raw[i - 1]) || (y > 0 && raw[i - w]) || (x > 0 && y > 0 && raw[i - w - 1]);
        }
    }
    let mut label = vec![0u32; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let mut next = 0u32;
    for start in 0..w * h {
        if !mask[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        // Moments of the region's pixels, and its mean probability.
        let (mut n, mut sx, mut sy, mut sxx, mut syy, mut sxy, mut sp) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
        let mut pixels = Vec::new();
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            syy += y * y;
            sxy += x * y;
            sp += f64::from(prob[i]);
            pixels.push(i);
            let (xi, yi) = (i % w, i / w);
            let mut visit = |j: usize| {
                if mask[j] && label[j] == 0 {
                    label[j] = next;
                    stack.push(j);
                }
            };
            if xi > 0 {
                visit(i - 1);
            }
            if xi + 1 < w {
                visit(i + 1);
            }
            if yi > 0 {
                visit(i - w);
            }
            if yi + 1 < h {
                visit(i + w);
            }
        }
        if n < 9.0 || sp / n < f64::from(BOX_THRESH) {
            continue;
        }
        let (mx, my) = (sx / n, sy / n);
        let (cxx, cyy, cxy) = (sxx / n - mx * mx, syy / n - my * my, sxy / n - mx * my);
        // The principal axis; text is near horizontal, so a steep axis (a short region such as
        // one digit, whose moments say little) is taken as horizontal.
        let mut angle = 0.5 * (2.0 * cxy).atan2(cxx - cyy);
        if angle.abs() > 0.35 {
            angle = 0.0;
        }
        let (dx, dy) = (angle.cos(), angle.sin());
        let (mut lo, mut hi, mut tlo, mut thi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &i in &pixels {
            let (x, y) = ((i % w) as f64 + 0.5 - mx - 0.5, (i / w) as f64 + 0.5 - my - 0.5);
            let along = x * dx + y * dy;
            let across = -x * dy + y * dx;
            lo = lo.min(along - 0.5);
            hi = hi.max(along + 0.5);
            tlo = tlo.min(across - 0.5);
            thi = thi.max(across + 0.5);
        }
        let (len, thick) = (hi - lo, thi - tlo);
        if thick.min(len) < 3.0 {
            continue;
        }
        let grow = len * thick * f64::from(UNCLIP_RATIO) / (2.0 * (len + thick));
        let (mid_along, mid_across) = ((lo + hi) / 2.0, (tlo + thi) / 2.0);
        out.push(Region {
            cx: (mx + 0.5 + mid_along * dx - mid_across * dy) as f32,
            cy: (my + 0.5 + mid_along * dy + mid_across * dx) as f32,
            dx: dx as f32,
            dy: dy as f32,
            half_len: (len / 2.0 + grow) as f32,
            half_thick: (thick / 2.0 + grow) as f32,
        });
    }
    out
}

/// A recognised word in original-image pixels.
#[derive(Debug, Clone)]
pub(crate) struct Word {
    pub text: String,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
    pub confidence: f32,
    /// The region it came from (words of one region stay on one line).
    pub region: usize,
}

/// One strip for the recogniser: a region (or a piece of a long one) sampled into 48 rows.
struct Strip {
    region: usize,
    /// Where along the region the strip starts and how long it is, in working pixels.
    start: f32,
    len: f32,
    width: usize,
    pixels: Vec<[f32; 3]>,
}

fn sample(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = img.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut out = [0f32; 3];
    for (c, o) in out.iter_mut().enumerate() {
        let p = |xx: u32, yy: u32| f32::from(img.get_pixel(xx, yy).0[c]);
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        *o = top * (1.0 - fy) + bottom * fy;
    }
    out
}

fn strips(img: &RgbImage, regions: &[Region]) -> Vec<Strip> {
    let mut out = Vec::new();
    for (ri, r) in regions.iter().enumerate() {
        let thick = 2.0 * r.half_thick;
        let total = 2.0 * r.half_len;
        let scale = REC_HEIGHT as f32 / thick;
        // Pieces of at most REC_MAX_WIDTH recogniser pixels, overlapping by nothing: a word cut
        // in two is rare on a receipt line and is joined back by the line builder's gap rule.
        let piece = REC_MAX_WIDTH as f32 / scale;
        let mut start = 0.0;
        while start < total {
            let len = (total - start).min(piece);
            let width = ((len * scale).ceil() as usize).max(8);
            let mut pixels = Vec::with_capacity(width * REC_HEIGHT);
            for row in 0..REC_HEIGHT {
                let across = (row as f32 + 0.5) / scale - r.half_thick;
                for col in 0..width {
                    let along = start + (col as f32 + 0.5) / scale - r.half_len;
                    let x = r.cx + along * r.dx - across * r.dy;
                    let y = r.cy + along * r.dy + across * r.dx;
                    pixels.push(sample(img, x, y));
                }
            }
            out.push(Strip { region: ri, start, len, width, pixels });
            start += len;
        }
    }
    out
}

fn recognise(
    rec: &mut Session,
    charset: &[String],
    img: &RgbImage,
    regions: &[Region],
) -> Result<Vec<Word>, ReadError> {
    let mut strips = strips(img, regions);
    strips.sort_by_key(|s| s.width);
    let mut words = Vec::new();
    for batch in strips.chunks(REC_BATCH) {
        let width = batch.iter().map(|s| s.width).max().unwrap_or(8);
        let plane = REC_HEIGHT * width;
        let mut input = vec![0f32; batch.len() * 3 * plane];
        for (b, s) in batch.iter().enumerate() {
            for row in 0..REC_HEIGHT {
                for col in 0..s.width {
                    let p = s.pixels[row * s.width + col];
                    for c in 0..3 {
                        input[b * 3 * plane + c * plane + row * width + col] = p[2 - c] / 127.5 - 1.0;
                    }
                }
            }
        }
        let tensor = Tensor::from_array(([batch.len(), 3, REC_HEIGHT, width], input)).map_err(run_err)?;
        let outputs = rec.run(ort::inputs![tensor]).map_err(run_err)?;
        let (shape, probs) = outputs[0].try_extract_tensor::<f32>().map_err(run_err)?;
        let (steps, classes) = (shape[1] as usize, shape[2] as usize);
        for (b, s) in batch.iter().enumerate() {
            let columns = &probs[b * steps * classes..(b + 1) * steps * classes];
            // Only the columns that cover the strip (the rest is padding).
            let used = ((steps * s.width).div_ceil(width)).min(steps);
            let per_column = width as f32 / steps as f32;
            let region = &regions[s.region];
            let scale = s.len / s.width as f32;
            for (text, first, last, confidence) in decode_ctc(columns, classes, used, charset) {
                // Column centres in strip pixels, then along the region in working pixels.
                let a = s.start + (first as f32 * per_column) * scale - region.half_len;
                let z = s.start + ((last + 1) as f32 * per_column) * scale - region.half_len;
                let xs = [a, z].map(|t| region.cx + t * region.dx);
                let ys = [a, z].map(|t| region.cy + t * region.dy);
                let (left, right) = (xs[0].min(xs[1]), xs[0].max(xs[1]));
                let mid = (ys[0] + ys[1]) / 2.0;
                words.push(Word {
                    text,
                    left,
                    right,
                    top: mid - region.half_thick,
                    bottom: mid + region.half_thick,
                    confidence,
                    region: s.region,
                });
            }
        }
    }
    Ok(words)
}

/// Greedy CTC decoding of `used` columns: the words (split at spaces), each with its first and
/// last column and its confidence (the mean of its characters' probabilities).
pub(crate) fn decode_ctc(
    columns: &[f32],
    classes: usize,
    used: usize,
    charset: &[String],
) -> Vec<(String, usize, usize, f32)> {
    let mut words = Vec::new();
    let mut current: Option<(String, usize, usize, f32, usize)> = None;
    let mut previous = 0usize;
    let flush = |current: &mut Option<(String, usize, usize, f32, usize)>, words: &mut Vec<_>| {
        if let Some((text, first, last, sum, n)) = current.take()
            && !text.trim().is_empty()
        {
            words.push((text, first, last, sum / n as f32));
        }
    };
    for t in 0..used {
        let col = &columns[t * classes..(t + 1) * classes];
        let (best, p) = col.iter().enumerate().fold((0, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
        if best == 0 || best == previous {
            if best == previous
                && best != 0
                && let Some(w) = current.as_mut()
            {
                w.2 = t;
            }
            previous = best;
            continue;
        }
        previous = best;
        // Index 0 is the blank, then the character set, then the space.
        let symbol = charset.get(best - 1).map(String::as_str).unwrap_or(" ");
        if symbol.trim().is_empty() {
            flush(&mut current, &mut words);
            continue;
        }
        match current.as_mut() {
            Some(w) => {
                w.0.push_str(symbol);
                w.2 = t;
                w.3 += p;
                w.4 += 1;
            }
            None => current = Some((symbol.to_owned(), t, t, p, 1)),
        }
    }
    flush(&mut current, &mut words);
    words
}

/// Words joined into visual lines (vertical centres within half a line height), left to right,
/// in original-image pixels (`scale` from working pixels); a gap wider than the line's height
/// starts a new cell, as for Tesseract's output.
pub(crate) fn lines(words: Vec<Word>, page: u32, scale: f32) -> Vec<TextLine> {
    let mut words = words;
    let centre = |w: &Word| (w.top + w.bottom) / 2.0;
    words.sort_by(|a, b| centre(a).total_cmp(&centre(b)).then(a.left.total_cmp(&b.left)));
    let mut grouped: Vec<Vec<Word>> = Vec::new();
    for w in words {
        match grouped.last_mut() {
            Some(line)
                if line.iter().any(|x| x.region == w.region) || {
                    let h = (line[0].bottom - line[0].top).min(w.bottom - w.top);
                    (centre(&w) - centre(&line[0])).abs() <= h / 2.0
                } =>
            {
                line.push(w)
            }
            _ => grouped.push(vec![w]),
        }
    }
    grouped
        .into_iter()
        .map(|mut words| {
            words.sort_by(|a, b| a.left.total_cmp(&b.left));
            // A detected box is thicker than its text (it was grown); its text is about 60 % of it.
            let height = words.iter().map(|w| (w.bottom - w.top) * 0.6).fold(0.0, f32::max) * scale;
            let top = words.iter().map(|w| w.top).fold(f32::MAX, f32::min) * scale;
            let confidence = words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32;
            let cells = super::tesseract::cells(
                words.into_iter().map(|w| (w.text, w.left * scale, (w.right - w.left) * scale, w.confidence)),
                height,
            );
            TextLine::positioned(cells, page, top, height, confidence)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charset() -> Vec<String> {
        "0123456789.TOALabc".chars().map(|c| c.to_string()).collect()
    }

    /// Columns where `seq` names the winning class per time step (0 blank, n+1 space).
    fn columns(seq: &[usize], classes: usize) -> Vec<f32> {
        let mut out = vec![0.0; seq.len() * classes];
        for (t, &c) in seq.iter().enumerate() {
            out[t * classes + c] = 0.9;
        }
        out
    }

    #[test]
    fn ctc_collapses_repeats_drops_blanks_and_splits_words_at_spaces() {
        let cs = charset();
        let classes = cs.len() + 2;
        let space = cs.len() + 1;
        let idx = |ch: char| cs.iter().position(|c| c == &ch.to_string()).unwrap() + 1;
        // "TOTAL 12.50": T T O blank T A L space 1 2 2 blank . 5 0 0
        let seq = [
            idx('T'),
            idx('T'),
            idx('O'),
            0,
            idx('T'),
            idx('A'),
            idx('L'),
            space,
            idx('1'),
            idx('2'),
            idx('2'),
            0,
            idx('.'),
            idx('5'),
            idx('0'),
            idx('0'),
        ];
        let words = decode_ctc(&columns(&seq, classes), classes, seq.len(), &cs);
        let texts: Vec<&str> = words.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(texts, ["TOTAL", "12.50"]);
        assert_eq!((words[0].1, words[0].2), (0, 6), "the first word spans columns 0–6");
        assert_eq!((words[1].1, words[1].2), (8, 15), "the second word starts after the space");
        assert!((words[0].3 - 0.9).abs() < 1e-6);
        // A repeat separated by a blank is two characters.
        let seq = [idx('0'), 0, idx('0')];
        assert_eq!(decode_ctc(&columns(&seq, classes), classes, 3, &cs)[0].0, "00");
        // Columns past `used` (padding) are ignored.
        let seq = [idx('1'), idx('2'), idx('3')];
        assert_eq!(decode_ctc(&columns(&seq, classes), classes, 2, &cs)[0].0, "12");
    }

    #[test]
    fn a_tilted_bar_becomes_one_region_along_its_direction() {
        let (w, h) = (200usize, 80usize);
        let mut prob = vec![0f32; w * h];
        // A bar 120 long and 8 thick, rising 10 pixels over its length (about 4.8°).
        for x in 40..160 {
            let yc = 40.0 - (x as f32 - 40.0) * 10.0 / 120.0;
            for y in 0..h {
                if (y as f32 - yc).abs() < 4.0 {
                    prob[y * w + x] = 0.9;
                }
            }
        }
        // And a faint blob that is not text.
        for y in 5..15 {
            for x in 5..15 {
                prob[y * w + x] = 0.35;
            }
        }
        let rs = regions(&prob, w, h);
        assert_eq!(rs.len(), 1, "the faint blob is under the box threshold: {rs:?}");
        let r = rs[0];
        let angle = r.dy.atan2(r.dx).to_degrees();
        assert!((angle + 4.76).abs() < 1.0, "the angle follows the bar: {angle}");
        assert!((r.cx - 100.0).abs() < 2.0 && (r.cy - 35.0).abs() < 2.0, "centre {r:?}");
        assert!(r.half_len > 60.0 && r.half_len < 72.0, "grown by the unclip distance: {r:?}");
        // Grown by the same distance across: 4.5 + 121 × 9 × 1.6 / (2 × 130) ≈ 11.2.
        assert!(r.half_thick > 9.0 && r.half_thick < 14.0, "{r:?}");
    }

    #[test]
    fn words_on_one_row_become_one_line_with_cells() {
        let word = |text: &str, left: f32, right: f32, top: f32, region| Word {
            text: text.into(),
            left,
            right,
            top,
            bottom: top + 30.0,
            confidence: 0.9,
            region,
        };
        let words = vec![
            word("12.50", 400.0, 470.0, 103.0, 1),
            word("TOTAL", 10.0, 90.0, 100.0, 0),
            word("Thank", 10.0, 80.0, 160.0, 2),
        ];
        let lines = lines(words, 1, 2.0);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "TOTAL  12.50");
        assert_eq!(lines[0].cells[1].left, 800.0, "positions in original pixels");
        assert_eq!(lines[1].text, "Thank");
    }
}
