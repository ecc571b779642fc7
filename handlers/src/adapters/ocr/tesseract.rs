//! Tesseract (Debian `tesseract-ocr`) and poppler's `pdftoppm`, run as processes.
//!
//! The CLI's TSV output gives every word with its box and confidence, which is all we need;
//! the Rust bindings would need libclang and bindgen at build time. Every run has a timeout
//! (the process is killed when it expires or when the caller goes away), one OCR thread
//! (`OMP_THREAD_LIMIT=1`, so one invoice cannot take both cores), and inputs are checked
//! against page and pixel limits before anything is rendered.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::domain::extraction::{Cell, TextLine};
use crate::ports::ReadError;

#[derive(Debug, Clone)]
pub struct TesseractConfig {
    pub tesseract: PathBuf,
    pub pdftoppm: PathBuf,
    /// `deu+fra+eng`: the invoice languages we read (German first: it keeps umlauts that the
    /// English model drops).
    pub languages: String,
    pub timeout: Duration,
    pub dpi: u32,
    /// Page-segmentation mode (`--psm`).
    pub psm: u8,
    /// Scratch space for rendered pages; one subdirectory per run, removed afterwards.
    pub scratch: PathBuf,
    /// Development only (`warranty ocr-eval --cache`): Tesseract's raw TSV output is kept here,
    /// keyed by the SHA-256 of the image and the arguments, so that re-running an evaluation
    /// after a change to the extraction does not OCR the corpus again. Never set by the service.
    pub cache: Option<PathBuf>,
}

impl TesseractConfig {
    /// The service's defaults (binaries on PATH, `deu+fra+eng`, 60 s, 200 dpi): the same
    /// values as the settings' defaults, for the benchmark and the corpus test.
    pub fn defaults(scratch: PathBuf) -> Self {
        Self {
            tesseract: "tesseract".into(),
            pdftoppm: "pdftoppm".into(),
            languages: "deu+fra+eng".into(),
            timeout: Duration::from_secs(60),
            dpi: 200,
            psm: 6,
            scratch,
            cache: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tesseract {
    cfg: TesseractConfig,
    version: String,
}

/// How much lower than the server OCR work runs (`nice` +10): the children started here, and
/// PP-OCR's reading thread.
pub const OCR_NICENESS: i32 = 10;

async fn run(cmd: &mut Command, timeout: Duration, what: &str) -> Result<std::process::Output, ReadError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // OCR and rendering run below the server's priority (see ppocr::lower_priority).
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls setpriority,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, OCR_NICENESS);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| ReadError::EngineUnavailable(format!("cannot start {what}: {e}")))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(ReadError::Transient(format!("{what} failed: {e}"))),
        // Dropping the future kills the process (kill_on_drop).
        Err(_) => Err(ReadError::permanent("ocr_timeout", format!("{what} took longer than {timeout:?}"))),
    }
}

/// Runs `cmd`; a non-zero exit means the invoice cannot be read (`invoice_unreadable`,
/// `failure` and the tool's own message as the detail).
async fn run_ok(cmd: &mut Command, timeout: Duration, what: &str, failure: &str) -> Result<Vec<u8>, ReadError> {
    let out = run(cmd, timeout, what).await?;
    if !out.status.success() {
        return Err(ReadError::permanent(
            "invoice_unreadable",
            format!("{failure}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(out.stdout)
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Tesseract {
    /// Probes the binaries. `Err` says what is missing (reported by `/api/health`).
    pub async fn probe(cfg: TesseractConfig) -> Result<Self, String> {
        let out = run(Command::new(&cfg.tesseract).arg("--version"), Duration::from_secs(10), "tesseract")
            .await
            .map_err(|e| e.to_string())?;
        let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("tesseract").trim().to_owned();
        let langs = run(Command::new(&cfg.tesseract).arg("--list-langs"), Duration::from_secs(10), "tesseract")
            .await
            .map_err(|e| e.to_string())?;
        let listed = String::from_utf8_lossy(&langs.stdout).to_string();
        for lang in cfg.languages.split('+') {
            if !listed.lines().any(|l| l.trim() == lang) {
                return Err(format!("tesseract language data `{lang}` is not installed (tesseract-ocr-{lang})"));
            }
        }
        for tool in [cfg.pdftoppm.clone(), cfg.pdftoppm.with_file_name("pdftotext")] {
            run(Command::new(&tool).arg("-v"), Duration::from_secs(10), "poppler")
                .await
                .map_err(|e| format!("{e} (poppler-utils)"))?;
        }
        std::fs::create_dir_all(&cfg.scratch).map_err(|e| format!("scratch dir: {e}"))?;
        Ok(Self { cfg, version })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    fn scratch(&self) -> Result<Scratch, ReadError> {
        let dir = self.cfg.scratch.join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&dir).map_err(|e| ReadError::Transient(format!("scratch dir: {e}")))?;
        Ok(Scratch(dir))
    }

    /// OCR of one image file.
    pub async fn image_file(&self, path: &Path) -> Result<Vec<TextLine>, ReadError> {
        let psm = self.cfg.psm.to_string();
        let args = ["-l", &self.cfg.languages, "--psm", &psm, "tsv"];
        let cached = match &self.cfg.cache {
            Some(dir) => {
                let image = tokio::fs::read(path).await.map_err(|e| ReadError::Transient(e.to_string()))?;
                let mut key = Sha256::new();
                key.update(&image);
                key.update(args.join(" ").as_bytes());
                key.update(self.version.as_bytes());
                Some(dir.join(format!("{}.tsv", hex::encode(key.finalize()))))
            }
            None => None,
        };
        if let Some(tsv) = cached.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            return Ok(parse_tsv(&tsv));
        }
        let out = run_ok(
            Command::new(&self.cfg.tesseract).arg(path).arg("stdout").args(args).env("OMP_THREAD_LIMIT", "1"),
            self.cfg.timeout,
            "tesseract",
            "tesseract could not read the image",
        )
        .await?;
        let tsv = String::from_utf8_lossy(&out);
        if let Some(p) = &cached {
            let _ = std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))
                .and_then(|_| std::fs::write(p, tsv.as_bytes()));
        }
        Ok(parse_tsv(&tsv))
    }

    /// OCR of a JPEG or PNG.
    pub async fn image(&self, bytes: &[u8], ext: &str) -> Result<Vec<TextLine>, ReadError> {
        let dir = self.scratch()?;
        let path = dir.0.join(format!("invoice.{ext}"));
        tokio::fs::write(&path, bytes).await.map_err(|e| ReadError::Transient(e.to_string()))?;
        self.image_file(&path).await
    }

    /// The text layer of the first `pages` pages, with word boxes, from poppler's `pdftotext`.
    pub async fn pdf_text(&self, bytes: &[u8], pages: usize) -> Result<Vec<TextLine>, ReadError> {
        let (dir, pdf) = self.scratch_pdf(bytes).await?;
        let out = run_ok(
            Command::new(self.cfg.pdftoppm.with_file_name("pdftotext"))
                .args(["-tsv", "-f", "1", "-l", &pages.to_string()])
                .arg(&pdf)
                .arg("-"),
            self.cfg.timeout,
            "pdftotext",
            "the PDF's text could not be read",
        )
        .await?;
        drop(dir);
        Ok(parse_pdftotext_tsv(&String::from_utf8_lossy(&out)))
    }

    /// The PDF written into a fresh scratch directory (removed when the guard drops).
    async fn scratch_pdf(&self, bytes: &[u8]) -> Result<(Scratch, PathBuf), ReadError> {
        let dir = self.scratch()?;
        let pdf = dir.0.join("invoice.pdf");
        tokio::fs::write(&pdf, bytes).await.map_err(|e| ReadError::Transient(e.to_string()))?;
        Ok((dir, pdf))
    }

    /// Renders the first `pages` pages of a PDF into PNG files, in page order (removed when
    /// the returned value drops).
    /// Renders the first `pages` pages, each at most `max_pixels`: bounded where the pixels are
    /// made (poppler renders no more than a crop of `√max_pixels` × `√max_pixels`, whatever size
    /// the page claims), and each rendered image checked again before anything reads it.
    pub async fn render(&self, bytes: &[u8], pages: usize, max_pixels: u64) -> Result<Rendered, ReadError> {
        let (dir, pdf) = self.scratch_pdf(bytes).await?;
        let side = ((max_pixels as f64).sqrt() as u64).max(1).to_string();
        run_ok(
            Command::new(&self.cfg.pdftoppm)
                .args(["-r", &self.cfg.dpi.to_string(), "-gray", "-png", "-f", "1", "-l", &pages.to_string()])
                .args(["-W", &side, "-H", &side])
                .arg(&pdf)
                .arg(dir.0.join("page")),
            self.cfg.timeout,
            "pdftoppm",
            "the PDF could not be rendered",
        )
        .await?;
        let mut rendered: Vec<PathBuf> = std::fs::read_dir(&dir.0)
            .map_err(|e| ReadError::Transient(e.to_string()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        rendered.sort();
        for page in &rendered {
            let mut head = vec![0u8; 64 * 1024];
            let n = {
                use std::io::Read;
                std::fs::File::open(page)
                    .and_then(|mut f| f.read(&mut head))
                    .map_err(|e| ReadError::Transient(e.to_string()))?
            };
            let (w, h) = image_dimensions(&head[..n])
                .ok_or_else(|| ReadError::permanent("invoice_unreadable", "a rendered page is not an image"))?;
            if u64::from(w) * u64::from(h) > max_pixels {
                return Err(ReadError::permanent(
                    "invoice_image_too_large",
                    format!("a page rendered to {w}×{h} pixels, more than the {max_pixels} allowed"),
                ));
            }
        }
        Ok(Rendered { _dir: dir, pages: rendered })
    }

    /// Reads rendered pages one after the other.
    pub async fn pages(&self, rendered: &Rendered) -> Result<Vec<TextLine>, ReadError> {
        let mut lines = Vec::new();
        for page in &rendered.pages {
            lines.extend(self.image_file(page).await?);
        }
        Ok(lines)
    }
}

/// Pages rendered to PNG files in a scratch directory that goes when this drops.
pub struct Rendered {
    _dir: Scratch,
    pub pages: Vec<PathBuf>,
}

/// Tesseract TSV: level, page, block, par, line, word, left, top, width, height, conf, text.
/// Words (level 5) are joined into their lines with their boxes; a gap wider than the line's
/// height starts a new cell (a column). A line's confidence is its words' mean.
pub fn parse_tsv(tsv: &str) -> Vec<TextLine> {
    /// (page, block, paragraph, line) and the line's words.
    type Line = ((u32, u32, u32, u32), Vec<TsvWord>);
    let mut lines: Vec<Line> = Vec::new();
    for w in tsv_words(tsv) {
        let key = (w.page, w.block, w.paragraph, w.line);
        match lines.last_mut() {
            Some((k, words)) if *k == key => words.push(w),
            _ => lines.push((key, vec![w])),
        }
    }
    lines
        .into_iter()
        .map(|((page, ..), words)| {
            let conf = words.iter().map(|w| w.conf).sum::<f32>() / words.len() as f32 / 100.0;
            let height = words.iter().map(|w| w.height).fold(0.0, f32::max);
            let top = words.iter().map(|w| w.top).fold(f32::MAX, f32::min);
            let cells = cells(words.into_iter().map(|w| (w.text, w.left, w.width, w.conf / 100.0)), height);
            TextLine::positioned(cells, page, top, height, conf)
        })
        .collect()
}

/// One word of a Tesseract or pdftotext TSV (level 5): where it is, and the engine's confidence
/// (0–100; pdftotext always says 100).
struct TsvWord {
    page: u32,
    block: u32,
    paragraph: u32,
    line: u32,
    left: f32,
    top: f32,
    width: f32,
    height: f32,
    conf: f32,
    text: String,
}

/// The words of a TSV (columns: level, page, block, paragraph, line, word, left, top, width,
/// height, conf, text), without empty words and the rows of other levels.
fn tsv_words(tsv: &str) -> impl Iterator<Item = TsvWord> + '_ {
    tsv.lines().skip(1).filter_map(|row| {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            return None;
        }
        let text = cols[11].trim();
        let conf = cols[10].parse::<f32>().ok()?;
        if text.is_empty() || conf < 0.0 {
            return None;
        }
        let n = |i: usize| cols[i].parse::<f32>().unwrap_or(0.0);
        let id = |i: usize| cols[i].parse::<u32>().unwrap_or(0);
        Some(TsvWord {
            page: id(1),
            block: id(2),
            paragraph: id(3),
            line: id(4),
            left: n(6),
            top: n(7),
            width: n(8),
            height: n(9),
            conf,
            text: text.to_owned(),
        })
    })
}

/// Words of one line, left to right, as (text, left, width, confidence), joined into cells: a
/// gap wider than the line's height starts a new cell (a column).
pub(crate) fn cells(words: impl Iterator<Item = (String, f32, f32, f32)>, height: f32) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for (text, left, width, confidence) in words {
        match cells.last_mut() {
            Some(c) if left - c.right <= height.max(1.0) => {
                c.text.push(' ');
                c.text.push_str(&text);
                c.right = left + width;
                c.confidence = c.confidence.min(confidence);
            }
            _ => cells.push(Cell { text, left, right: left + width, confidence }),
        }
    }
    cells
}

/// Poppler's `pdftotext -tsv`: the same columns as Tesseract's, words at level 5 with their
/// boxes in points, joined into lines by [`lines_from_words`].
pub fn parse_pdftotext_tsv(tsv: &str) -> Vec<TextLine> {
    lines_from_words(
        tsv_words(tsv)
            .map(|w| Word { page: w.page, left: w.left, top: w.top, width: w.width, height: w.height, text: w.text })
            .collect(),
    )
}

/// One word of a PDF's text layer (from poppler or PDFium): its page, its box in points from the
/// page's top-left corner, and its text.
pub struct Word {
    pub page: u32,
    pub left: f32,
    pub top: f32,
    pub width: f32,
    pub height: f32,
    pub text: String,
}

/// A text layer's words joined into visual lines. The engines' own lines follow the text flows,
/// so a row of a table split into flows is put back together here: words whose vertical centres
/// are within half a line height form one visual line, and a gap wider than the line height
/// starts a new cell.
pub fn lines_from_words(mut words: Vec<Word>) -> Vec<TextLine> {
    for w in &mut words {
        w.height = w.height.max(1.0);
    }
    let centre = |w: &Word| w.top + w.height / 2.0;
    words.sort_by(|a, b| a.page.cmp(&b.page).then(centre(a).total_cmp(&centre(b))).then(a.left.total_cmp(&b.left)));
    let mut lines: Vec<Vec<Word>> = Vec::new();
    for w in words {
        match lines.last_mut() {
            Some(line)
                if line[0].page == w.page
                    && (centre(&w) - centre(&line[0])).abs() <= line[0].height.min(w.height) / 2.0 =>
            {
                line.push(w)
            }
            _ => lines.push(vec![w]),
        }
    }
    lines
        .into_iter()
        .map(|mut words| {
            words.sort_by(|a, b| a.left.total_cmp(&b.left));
            let height = words.iter().map(|w| w.height).fold(0.0, f32::max);
            let top = words.iter().map(|w| w.top).fold(f32::MAX, f32::min);
            let page = words[0].page;
            let cells = cells(words.into_iter().map(|w| (w.text, w.left, w.width, 0.99)), height);
            TextLine::positioned(cells, page, top, height, 0.99)
        })
        .collect()
}

/// Width and height of a PNG or JPEG from its header, without decoding it.
pub fn image_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) && bytes.len() >= 24 {
        let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
        return Some((w, h));
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        while i + 9 < bytes.len() {
            if bytes[i] != 0xFF {
                i += 1;
                continue;
            }
            let marker = bytes[i + 1];
            let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
            if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u32;
                let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u32;
                return Some((w, h));
            }
            i += 2 + len;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_words_become_lines_with_mean_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t10\t50\t10\t90\tTotal\n\
                   5\t1\t1\t1\t1\t2\t90\t10\t50\t10\t80\t12.00\n\
                   5\t1\t1\t1\t2\t1\t10\t30\t50\t10\t95\tVAT\n";
        let lines = parse_tsv(tsv);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "Total  12.00", "a gap wider than the line height separates cells");
        assert_eq!(lines[0].cells[1].left, 90.0);
        assert!((lines[0].confidence - 0.85).abs() < 1e-6);
        assert_eq!(lines[1].text, "VAT");
    }

    #[test]
    fn image_sizes_come_from_headers() {
        let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.png")).unwrap();
        assert_eq!(image_dimensions(&png), Some((600, 300)));
        let jpg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.jpg")).unwrap();
        assert_eq!(image_dimensions(&jpg), Some((600, 300)));
        assert_eq!(image_dimensions(b"garbage"), None);
    }
}
