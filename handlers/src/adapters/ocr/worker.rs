//! Reader processes: every parse of an uploaded file — the e-invoice XML, PDFium, poppler's
//! rendering, PP-OCR on ONNX Runtime, Tesseract, image decoding — runs in `warranty read-worker`,
//! a child of the service, never in the service itself (decision 0025).
//!
//! - **Pool.** At most `workers` processes, started on demand and ended after `idle` without a
//!   document, so a service at rest maps none of the reading libraries or models. One document
//!   per worker at a time: PDFium's lock is a worker's own, and two documents are read on two
//!   cores at once.
//! - **Protocol** (stdin/stdout of the worker, little-endian lengths): the worker first writes a
//!   hello frame (what confinement is in force); then, per document, the service writes
//!   `u32 header length, header JSON {kind, skipXml, skipText}, u64 body length, body` and the
//!   worker answers `u32 length, JSON {ok | err, health}`. End of input ends the worker.
//! - **The deadline kills.** A reading owns its worker: when the reading's future is dropped
//!   (the OCR deadline in `application::ocr`), the worker's whole process group (Tesseract and
//!   pdftoppm with it) is killed with SIGKILL and its folder removed. No lock is shared between
//!   documents.
//! - **A worker that dies** (a signal, out of memory, an abort) fails only its document, which
//!   is read once more on a fresh worker and then recorded as `reader_failed`.
//! - **Confinement**, set up by the worker before it starts a thread or reads a byte (see
//!   [`confine`]): an environment of the reading settings only (no identity endpoint, no
//!   secrets, no connection strings), its own temporary folder, resource limits (address space,
//!   CPU time, open files, file size, no core files), no new privileges, and where the kernel
//!   has them a network namespace of its own and Landlock rules (files: read-only system and
//!   model folders, read-write its own folder; network: no TCP bind or connect). The children it
//!   starts inherit all of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use super::docintel::DocumentIntelligence;
use super::{InvoiceReaders, ReadOptions};
use crate::domain::InvoiceKind;
use crate::domain::ocr::DocumentClass;
use crate::ports::{EngineHealth, EngineReading, InvoiceReader, ReadError};

/// The stable reason a document gets when its reader died twice.
pub const READER_FAILED: &str = "reader_failed";

/// Frames larger than this are refused (a reading's JSON is far smaller; a document is bounded
/// by the upload limit before it gets here).
const MAX_FRAME: u64 = 256 * 1024 * 1024;

/// How the service starts and bounds its readers.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The `warranty` binary (the service's own, unless a test names it).
    pub exe: PathBuf,
    /// Processes at most.
    pub workers: usize,
    /// An idle worker ends after this long.
    pub idle: Duration,
    /// Where each worker gets a folder of its own.
    pub scratch_root: PathBuf,
    /// The environment a worker gets (the reading settings, `PATH`), nothing else.
    pub env: Vec<(String, String)>,
    pub limits: WorkerLimits,
}

/// Resource limits a worker sets on itself (and so on its children).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerLimits {
    /// `RLIMIT_AS`, bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU`, seconds (a worker's whole life; it is recycled before).
    pub cpu_secs: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_FSIZE`, bytes (rendered pages are the largest files it writes).
    pub file_size: u64,
}

/// Documents a worker reads before it is replaced (its CPU limit counts them all). A new
/// reader costs an exec, a runtime and PDFium's loading: measured, replacing one every 100
/// documents cost about a millisecond per document.
pub const DOCUMENTS_PER_WORKER: u64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    kind: InvoiceKind,
    #[serde(default)]
    skip_xml: bool,
    #[serde(default)]
    skip_text: bool,
    /// Only probe the engines and answer with their health.
    #[serde(default)]
    probe: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<EngineReading>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<WireError>,
    #[serde(default)]
    health: Vec<WireHealth>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hello {
    confinement: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum WireError {
    Permanent { reason: String, detail: String },
    Unavailable { detail: String },
    Transient { detail: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireHealth {
    name: String,
    available: bool,
    #[serde(default)]
    detail: Option<String>,
}

impl From<&ReadError> for WireError {
    fn from(e: &ReadError) -> Self {
        match e {
            ReadError::Permanent { reason, detail } => {
                Self::Permanent { reason: (*reason).to_owned(), detail: detail.clone() }
            }
            ReadError::EngineUnavailable(d) => Self::Unavailable { detail: d.clone() },
            ReadError::Transient(d) => Self::Transient { detail: d.clone() },
        }
    }
}

/// The reasons a reader records, as the static codes the rest of the service uses; a reason
/// the service does not know (a newer worker) is `reader_failed`.
fn known_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "invoice_unreadable",
        "invoice_encrypted",
        "invoice_no_pages",
        "invoice_too_many_pages",
        "invoice_image_too_large",
        "invoice_missing",
        "invoice_corrupt",
        "ocr_timeout",
        "ocr_deadline_exceeded",
        "ocr_engine_unavailable",
        READER_FAILED,
    ];
    KNOWN.iter().copied().find(|k| *k == reason).unwrap_or(READER_FAILED)
}

impl From<WireError> for ReadError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Permanent { reason, detail } => ReadError::Permanent { reason: known_reason(&reason), detail },
            WireError::Unavailable { detail } => ReadError::EngineUnavailable(detail),
            WireError::Transient { detail } => ReadError::Transient(detail),
        }
    }
}

fn engine_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &["embeddedXml", "pdfText", "tesseract", "ppOcr", "documentIntelligence"];
    NAMES.iter().copied().find(|n| *n == name).unwrap_or("reader")
}

impl From<WireHealth> for EngineHealth {
    fn from(h: WireHealth) -> Self {
        EngineHealth { name: engine_name(&h.name), available: h.available, detail: h.detail }
    }
}

impl From<&EngineHealth> for WireHealth {
    fn from(h: &EngineHealth) -> Self {
        WireHealth { name: h.name.to_owned(), available: h.available, detail: h.detail.clone() }
    }
}

// ---- the worker's side ---------------------------------------------------------------------------

/// `warranty read-worker`: confines itself, then reads documents from stdin until it closes.
/// `readers` is built after confinement, inside the worker's runtime.
pub fn run_worker(
    limits: WorkerLimits,
    scratch: &Path,
    read_only: &[PathBuf],
    build: impl FnOnce() -> Result<InvoiceReaders, String>,
) -> std::process::ExitCode {
    let confinement = confine(limits, scratch, read_only);
    // A reader never outlives its service: should the service die (even by SIGKILL), the reader
    // ends its whole process group, Tesseract and poppler included, within a second.
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            // SAFETY: getppid, then killpg(0) on this process's own group.
            if unsafe { libc::getppid() } != parent {
                unsafe { libc::killpg(0, libc::SIGKILL) };
            }
        }
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("read-worker: no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let readers = match build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("read-worker: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(readers, confinement)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The service went away mid-answer (it stopped, or dropped the reading): nothing to say.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof) => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("read-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(readers: InvoiceReaders, confinement: Vec<String>) -> std::io::Result<()> {
    let mut input = BufReader::new(tokio::io::stdin());
    let mut output = tokio::io::stdout();
    write_frame(&mut output, &serde_json::to_vec(&Hello { confinement }).map_err(std::io::Error::other)?).await?;
    loop {
        let header = match read_frame32(&mut input).await {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let header: Header = serde_json::from_slice(&header).map_err(std::io::Error::other)?;
        let body = read_frame64(&mut input).await?;
        let answer = if header.probe {
            readers.probe().await;
            Answer { ok: None, err: None, health: readers.health().iter().map(WireHealth::from).collect() }
        } else {
            let options = ReadOptions { skip_embedded_xml: header.skip_xml, skip_text_layer: header.skip_text };
            let read = readers.read_with(header.kind, Bytes::from(body), options).await;
            let health = readers.health().iter().map(WireHealth::from).collect();
            match read {
                Ok(r) => Answer { ok: Some(r), err: None, health },
                Err(e) => Answer { ok: None, err: Some(WireError::from(&e)), health },
            }
        };
        write_frame(&mut output, &serde_json::to_vec(&answer).map_err(std::io::Error::other)?).await?;
    }
}

async fn write_frame(out: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    out.write_all(bytes).await?;
    out.flush().await
}

async fn read_frame32(input: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = u64::from(input.read_u32_le().await?);
    read_exact_len(input, len).await
}

async fn read_frame64(input: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = input.read_u64_le().await?;
    read_exact_len(input, len).await
}

async fn read_exact_len(input: &mut (impl AsyncReadExt + Unpin), len: u64) -> std::io::Result<Vec<u8>> {
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a frame of {len} bytes")));
    }
    // Grown as the bytes arrive: a length that claims more than is sent costs nothing.
    let mut buf = Vec::new();
    input.take(len).read_to_end(&mut buf).await?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "a frame cut short"));
    }
    Ok(buf)
}

/// Confines this process before it starts a thread: what each step gave is returned, for
/// `/api/health`. A step the kernel does not offer is skipped and said so; the reader still runs.
pub fn confine(limits: WorkerLimits, scratch: &Path, read_only: &[PathBuf]) -> Vec<String> {
    let mut said = Vec::new();
    let set = |resource, value: u64| {
        let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
        // SAFETY: setrlimit with a valid struct; it affects only this process and its children.
        unsafe { libc::setrlimit(resource, &lim) == 0 }
    };
    let rlimits = [
        ("as", libc::RLIMIT_AS, limits.address_space),
        ("cpu", libc::RLIMIT_CPU, limits.cpu_secs),
        ("nofile", libc::RLIMIT_NOFILE, limits.open_files),
        ("fsize", libc::RLIMIT_FSIZE, limits.file_size),
        ("core", libc::RLIMIT_CORE, 0),
    ];
    let applied: Vec<&str> = rlimits.iter().filter(|(_, r, v)| set(*r, *v)).map(|(n, _, _)| *n).collect();
    said.push(format!("rlimits:{}", applied.join(",")));
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0 {
        said.push("no_new_privs".into());
    }
    // SAFETY: unshare on this single-threaded process; on failure nothing changed.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        said.push("netns".into());
    } else {
        said.push("netns:unavailable".into());
    }
    said.push(landlock::restrict(scratch, read_only));
    said
}

/// Landlock (Linux 5.13+): the worker may read the system's and the models' folders, write its
/// own, and (ABI 4+, Linux 6.7+) neither bind nor connect a TCP socket. Raw system calls: the
/// ABI is small and stable, and the crate that wraps it would be one more dependency for four
/// calls.
mod landlock {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    const CREATE_RULESET_VERSION: u32 = 1;
    const RULE_PATH_BENEATH: libc::c_int = 1;

    const FS_EXECUTE: u64 = 1 << 0;
    const FS_WRITE_FILE: u64 = 1 << 1;
    const FS_READ_FILE: u64 = 1 << 2;
    const FS_READ_DIR: u64 = 1 << 3;
    const FS_REMOVE_DIR: u64 = 1 << 4;
    const FS_REMOVE_FILE: u64 = 1 << 5;
    const FS_MAKE_CHAR: u64 = 1 << 6;
    const FS_MAKE_DIR: u64 = 1 << 7;
    const FS_MAKE_REG: u64 = 1 << 8;
    const FS_MAKE_SOCK: u64 = 1 << 9;
    const FS_MAKE_FIFO: u64 = 1 << 10;
    const FS_MAKE_BLOCK: u64 = 1 << 11;
    const FS_MAKE_SYM: u64 = 1 << 12;
    const FS_REFER: u64 = 1 << 13; // ABI 2
    const FS_TRUNCATE: u64 = 1 << 14; // ABI 3
    const NET_BIND_TCP: u64 = 1 << 0; // ABI 4
    const NET_CONNECT_TCP: u64 = 1 << 1; // ABI 4

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
    }

    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }

    const READ_ONLY: u64 = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;

    fn all_fs(abi: i64) -> u64 {
        let mut all = FS_EXECUTE
            | FS_WRITE_FILE
            | FS_READ_FILE
            | FS_READ_DIR
            | FS_REMOVE_DIR
            | FS_REMOVE_FILE
            | FS_MAKE_CHAR
            | FS_MAKE_DIR
            | FS_MAKE_REG
            | FS_MAKE_SOCK
            | FS_MAKE_FIFO
            | FS_MAKE_BLOCK
            | FS_MAKE_SYM;
        if abi >= 2 {
            all |= FS_REFER;
        }
        if abi >= 3 {
            all |= FS_TRUNCATE;
        }
        all
    }

    fn add_path(ruleset: i32, path: &Path, access: u64) -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
        // SAFETY: open with a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return false;
        }
        let attr = PathBeneathAttr { allowed_access: access, parent_fd: fd };
        // SAFETY: landlock_add_rule with a valid ruleset descriptor and attribute.
        let ok = unsafe {
            libc::syscall(libc::SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &attr as *const PathBeneathAttr, 0)
        } == 0;
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        ok
    }

    /// Applies the rules; says what is in force.
    pub fn restrict(scratch: &Path, read_only: &[std::path::PathBuf]) -> String {
        // SAFETY: the documented version query (null attribute, size 0).
        let abi = unsafe {
            libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<RulesetAttr>(), 0, CREATE_RULESET_VERSION)
        };
        if abi < 1 {
            return "landlock:unavailable".into();
        }
        let net = if abi >= 4 { NET_BIND_TCP | NET_CONNECT_TCP } else { 0 };
        let fs = all_fs(abi);
        let attr = RulesetAttr { handled_access_fs: fs, handled_access_net: net };
        let size = if abi >= 4 { std::mem::size_of::<RulesetAttr>() } else { std::mem::size_of::<u64>() };
        // SAFETY: a ruleset attribute of the size this ABI knows.
        let ruleset =
            unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, size, 0) } as i32;
        if ruleset < 0 {
            return "landlock:unavailable".into();
        }
        // What Tesseract, poppler, ONNX Runtime and the loader read: the system's folders, the
        // processor's description, and the folders the settings name (models, tools). Not the
        // rest of /proc: other processes' environments are not the reader's to see.
        for dir in [
            "/usr",
            "/lib",
            "/lib64",
            "/bin",
            "/etc",
            "/opt",
            "/var/cache/fontconfig",
            "/proc/self",
            "/proc/cpuinfo",
            "/proc/meminfo",
            "/sys/devices/system/cpu",
            "/dev/zero",
            "/dev/urandom",
        ] {
            add_path(ruleset, Path::new(dir), READ_ONLY);
        }
        for dir in read_only {
            add_path(ruleset, dir, READ_ONLY);
        }
        // Children get /dev/null as stdin, opened read-write.
        add_path(ruleset, Path::new("/dev/null"), FS_READ_FILE | FS_WRITE_FILE);
        let writable = fs & !(FS_EXECUTE | FS_MAKE_CHAR | FS_MAKE_BLOCK);
        let ok = add_path(ruleset, scratch, writable) && {
            // SAFETY: restrict_self on the ruleset built above; no_new_privs was set first.
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) == 0 }
        };
        // SAFETY: closing the ruleset descriptor.
        unsafe { libc::close(ruleset) };
        match (ok, net != 0) {
            (false, _) => "landlock:unavailable".into(),
            (true, true) => format!("landlock:fs,net(abi {abi})"),
            (true, false) => format!("landlock:fs(abi {abi})"),
        }
    }
}

// ---- the service's side ----------------------------------------------------------------------------

impl WorkerSettings {
    /// The pool the settings describe: the reading settings (and `PATH`, to find Tesseract and
    /// poppler) are all a worker's environment; paths are made absolute, since a worker runs in
    /// its own folder.
    pub fn from_settings(settings: &crate::config::OcrSettings, scratch_root: &Path) -> Self {
        use clap::ValueEnum;
        // A relative path that names a folder or file here is made absolute; a bare command name
        // (`tesseract`) stays, for the reader's `PATH` to find.
        let absolute = |p: &Path| -> String {
            let here = p.is_relative() && (p.components().count() > 1 || p.exists());
            let p = if here {
                std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_owned())
            } else {
                p.to_owned()
            };
            p.display().to_string()
        };
        let recognizers = settings.ocr_recognizers.to_possible_value().expect("a value").get_name().to_owned();
        let mut env = vec![
            ("WARRANTY_OCR_ENGINE".to_owned(), "local".to_owned()),
            ("WARRANTY_TESSERACT_PATH".to_owned(), absolute(&settings.tesseract_path)),
            ("WARRANTY_PDFTOPPM_PATH".to_owned(), absolute(&settings.pdftoppm_path)),
            ("WARRANTY_OCR_LANGUAGES".to_owned(), settings.ocr_languages.clone()),
            ("WARRANTY_OCR_TIMEOUT_SECS".to_owned(), settings.ocr_timeout_secs.to_string()),
            ("WARRANTY_OCR_MAX_PAGES".to_owned(), settings.ocr_max_pages.to_string()),
            ("WARRANTY_OCR_DEADLINE_SECS".to_owned(), settings.ocr_deadline_secs.to_string()),
            ("WARRANTY_OCR_MAX_PIXELS".to_owned(), settings.ocr_max_pixels.to_string()),
            ("WARRANTY_OCR_DPI".to_owned(), settings.ocr_dpi.to_string()),
            ("WARRANTY_OCR_PSM".to_owned(), settings.ocr_psm.to_string()),
            ("WARRANTY_OCR_RECOGNIZERS".to_owned(), recognizers),
            ("WARRANTY_OCR_MODELS_DIR".to_owned(), absolute(&settings.ocr_models_dir)),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ];
        if let Some(n) = settings.ocr_recognizer_instances {
            env.push(("WARRANTY_OCR_RECOGNIZER_INSTANCES".to_owned(), n.to_string()));
        }
        for name in ["PATH", "RUST_LOG"] {
            if let Ok(v) = std::env::var(name) {
                env.push((name.to_owned(), v));
            }
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_gib = memory_gib().unwrap_or(cores as u64).max(1) as usize;
        let deadline = settings.ocr_deadline_secs.max(1);
        Self {
            exe: settings
                .reader_exe
                .clone()
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| "warranty".into()),
            workers: settings.reader_workers.unwrap_or_else(|| cores.min(memory_gib)).max(1),
            idle: Duration::from_secs(settings.reader_idle_secs.max(1)),
            scratch_root: scratch_root.to_owned(),
            env,
            limits: WorkerLimits {
                address_space: settings.reader_memory_mib.saturating_mul(1024 * 1024),
                cpu_secs: deadline.saturating_mul(DOCUMENTS_PER_WORKER).max(60),
                open_files: 256,
                file_size: 512 * 1024 * 1024,
            },
        }
    }
}

/// The machine's memory (`MemTotal`), in GiB.
fn memory_gib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / (1024 * 1024))
}

/// Removes what earlier runs' readers left behind (a service that died with readers running).
pub fn clear_scratch(scratch_root: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch_root) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("reader-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One running worker. Dropping it kills its process group and removes its folder.
struct Worker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    dir: PathBuf,
    pgid: i32,
    documents: u64,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.pgid > 1 {
            // SAFETY: signalling the process group this worker leads (its own pid).
            unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Why a call to a worker did not give an answer.
enum CallFailed {
    /// The worker died or broke the protocol: the document may be read again on a fresh one.
    Died(String),
}

impl Worker {
    async fn call(&mut self, header: &Header, body: &[u8]) -> Result<Answer, CallFailed> {
        let died = |e: std::io::Error| CallFailed::Died(e.to_string());
        let header = serde_json::to_vec(header).expect("a header serialises");
        self.stdin.write_all(&(header.len() as u32).to_le_bytes()).await.map_err(died)?;
        self.stdin.write_all(&header).await.map_err(died)?;
        self.stdin.write_all(&(body.len() as u64).to_le_bytes()).await.map_err(died)?;
        self.stdin.write_all(body).await.map_err(died)?;
        self.stdin.flush().await.map_err(died)?;
        let answer = match read_frame32(&mut self.stdout).await {
            Ok(a) => a,
            Err(e) => {
                let status = self.child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                return Err(CallFailed::Died(format!("the reader process ended ({status}): {e}")));
            }
        };
        self.documents += 1;
        serde_json::from_slice(&answer).map_err(|e| CallFailed::Died(format!("an answer that is not JSON: {e}")))
    }
}

/// The readers as the service sees them: a pool of worker processes, and Document Intelligence
/// (a network call, not a parse) asked from the service itself.
pub struct ReaderPool {
    settings: WorkerSettings,
    slots: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<(Worker, Instant)>>,
    docintel: Option<DocumentIntelligence>,
    health: std::sync::Mutex<Vec<EngineHealth>>,
    confinement: std::sync::Mutex<Option<Vec<String>>>,
    started: AtomicU64,
    reaper: std::sync::OnceLock<()>,
}

impl ReaderPool {
    pub fn new(settings: WorkerSettings, docintel: Option<DocumentIntelligence>) -> Arc<Self> {
        Arc::new(Self {
            slots: tokio::sync::Semaphore::new(settings.workers.max(1)),
            settings,
            idle: std::sync::Mutex::new(Vec::new()),
            docintel,
            health: std::sync::Mutex::new(Vec::new()),
            confinement: std::sync::Mutex::new(None),
            started: AtomicU64::new(0),
            reaper: std::sync::OnceLock::new(),
        })
    }

    /// Worker processes started since the service began.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// What confinement the last worker reported (`None` before the first).
    pub fn confinement(&self) -> Option<Vec<String>> {
        self.confinement.lock().unwrap().clone()
    }

    async fn spawn(self: &Arc<Self>) -> Result<Worker, ReadError> {
        self.start_reaper();
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let dir = self.settings.scratch_root.join(format!("reader-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| ReadError::Transient(format!("reader folder: {e}")))?;
        let mut cmd = tokio::process::Command::new(&self.settings.exe);
        cmd.arg("read-worker")
            .env_clear()
            .envs(self.settings.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("TMPDIR", &dir)
            .env("WARRANTY_READER_SCRATCH", &dir)
            .env("WARRANTY_READER_LIMITS", serde_json::to_string(&self.settings.limits).expect("limits serialise"))
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            ReadError::EngineUnavailable(format!("cannot start the reader process: {e}"))
        })?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(-1);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ReadError::Transient("the reader process has no pipes".into()));
        };
        let mut worker = Worker { child, stdin, stdout: BufReader::new(stdout), dir, pgid, documents: 0 };
        let hello = read_frame32(&mut worker.stdout)
            .await
            .map_err(|e| ReadError::EngineUnavailable(format!("the reader process did not start: {e}")))?;
        if let Ok(hello) = serde_json::from_slice::<Hello>(&hello) {
            *self.confinement.lock().unwrap() = Some(hello.confinement);
        }
        Ok(worker)
    }

    /// Ends idle workers past their idle time, checking every second while any are alive.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.set(()).is_err() {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(pool) = pool.upgrade() else { return };
                let idle = pool.settings.idle;
                let expired: Vec<Worker> = {
                    let mut list = pool.idle.lock().unwrap();
                    let (gone, kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|(_, since)| since.elapsed() >= idle);
                    *list = kept;
                    gone.into_iter().map(|(w, _)| w).collect()
                };
                drop(expired);
            }
        });
    }

    async fn take(self: &Arc<Self>) -> Result<Worker, ReadError> {
        let idle = self.idle.lock().unwrap().pop();
        match idle {
            Some((w, _)) => Ok(w),
            None => self.spawn().await,
        }
    }

    fn give_back(&self, worker: Worker) {
        if worker.documents < DOCUMENTS_PER_WORKER {
            self.idle.lock().unwrap().push((worker, Instant::now()));
        }
    }

    /// One document through a worker: again on a fresh worker if the first died, then
    /// `reader_failed`.
    async fn through_worker(self: &Arc<Self>, header: Header, body: &[u8]) -> Result<Answer, ReadError> {
        let _slot = self.slots.acquire().await.map_err(|_| ReadError::Transient("the reader pool is closed".into()))?;
        let mut why = String::new();
        for attempt in 0..2 {
            let mut worker = if attempt == 0 { self.take().await? } else { self.spawn().await? };
            match worker.call(&header, body).await {
                Ok(answer) => {
                    self.give_back(worker);
                    return Ok(answer);
                }
                Err(CallFailed::Died(e)) => {
                    tracing::warn!(attempt, reason = %e, "a reader process died reading a document");
                    why = e;
                }
            }
        }
        Err(ReadError::permanent(READER_FAILED, format!("the reader process died twice: {why}")))
    }

    /// [`InvoiceReader::read`] with some paths switched off (evaluation only).
    pub async fn read_with(
        self: &Arc<Self>,
        kind: InvoiceKind,
        bytes: Bytes,
        options: ReadOptions,
    ) -> Result<EngineReading, ReadError> {
        let header =
            Header { kind, skip_xml: options.skip_embedded_xml, skip_text: options.skip_text_layer, probe: false };
        let answer = self.through_worker(header, &bytes).await?;
        self.remember(&answer);
        let local = match (answer.ok, answer.err) {
            (Some(reading), _) => Ok(reading),
            (None, Some(e)) => Err(ReadError::from(e)),
            (None, None) => Err(ReadError::permanent(READER_FAILED, "the reader answered nothing")),
        };
        // Without a local recogniser, Document Intelligence (where configured) reads instead.
        match (local, &self.docintel) {
            (Err(ReadError::EngineUnavailable(_)), Some(di)) => {
                di.analyze(bytes, crate::domain::extraction::document_class(kind, "")).await
            }
            (local, _) => local,
        }
    }

    fn remember(&self, answer: &Answer) {
        if !answer.health.is_empty() {
            *self.health.lock().unwrap() = answer.health.iter().cloned().map(EngineHealth::from).collect();
        }
    }

    /// Starts a worker to probe the engines (Tesseract's version, PP-OCR's files), so
    /// `/api/health` can say what the readers have; the worker then idles out.
    pub async fn probe(self: &Arc<Self>) {
        let header = Header { kind: InvoiceKind::Pdf, skip_xml: false, skip_text: false, probe: true };
        match self.through_worker(header, &[]).await {
            Ok(answer) => self.remember(&answer),
            Err(e) => tracing::warn!(reason = %e, "the reader processes could not be probed"),
        }
    }
}

/// The pool behind the port (an `Arc` so a reading can hold the pool while its worker runs).
pub struct PooledReaders(pub Arc<ReaderPool>);

#[async_trait]
impl InvoiceReader for PooledReaders {
    async fn read(&self, kind: InvoiceKind, bytes: Bytes) -> Result<EngineReading, ReadError> {
        self.0.read_with(kind, bytes, ReadOptions::default()).await
    }

    async fn second_opinion(&self, class: DocumentClass, bytes: Bytes) -> Option<Result<EngineReading, ReadError>> {
        let di = self.0.docintel.as_ref()?;
        Some(di.analyze(bytes, class).await)
    }

    fn health(&self) -> Vec<EngineHealth> {
        let mut out = self.0.health.lock().unwrap().clone();
        if out.is_empty() {
            out.push(EngineHealth { name: "tesseract", available: false, detail: Some("not probed yet".into()) });
        }
        out.push(EngineHealth {
            name: "reader",
            available: true,
            detail: Some(match self.0.confinement() {
                Some(c) => format!(
                    "{} processes at most, {} started; confinement: {}",
                    self.0.settings.workers,
                    self.0.started(),
                    c.join(" ")
                ),
                None => format!("{} processes at most, 0 started", self.0.settings.workers),
            }),
        });
        if let Some(di) = &self.0.docintel {
            out.push(EngineHealth {
                name: "documentIntelligence",
                available: true,
                detail: Some(di.endpoint().to_owned()),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    proptest! {
        /// Whatever a peer sends — a reader that misbehaves, a service that dies mid-frame — the
        /// frame readers answer a frame or an error, never panic, and allocate no more than what
        /// arrived (a length that claims 256 MiB behind 10 bytes costs 10 bytes).
        #[test]
        fn frames_from_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (a, b) = run(async {
                let mut input: &[u8] = &bytes;
                let a = read_frame32(&mut input).await;
                let mut input: &[u8] = &bytes;
                let b = read_frame64(&mut input).await;
                (a, b)
            });
            if let Ok(frame) = a {
                prop_assert!(frame.len() + 4 <= bytes.len());
            }
            if let Ok(frame) = b {
                prop_assert!(frame.len() + 8 <= bytes.len());
            }
            // And as an answer, whatever it holds is a reading, an error or nothing.
            let _ = serde_json::from_slice::<Answer>(&bytes);
        }
    }

    /// A frame is its length and its bytes; one cut short is an error, not a shorter frame.
    #[test]
    fn a_frame_round_trips_and_a_cut_one_is_refused() {
        let mut out = Vec::new();
        run(write_frame(&mut out, b"hello")).unwrap();
        let mut input: &[u8] = &out;
        assert_eq!(run(read_frame32(&mut input)).unwrap(), b"hello");
        let mut cut: &[u8] = &out[..out.len() - 1];
        assert_eq!(run(read_frame32(&mut cut)).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
        assert!(run(read_frame32(&mut huge)).is_err(), "a frame over the bound");
    }

    /// A reason the service does not know (a newer reader) is `reader_failed`; known ones keep
    /// their code.
    #[test]
    fn reasons_map_to_the_services_codes() {
        assert_eq!(known_reason("invoice_encrypted"), "invoice_encrypted");
        assert_eq!(known_reason("something_new"), READER_FAILED);
        let e: ReadError = WireError::Permanent { reason: "invoice_too_many_pages".into(), detail: "9".into() }.into();
        assert!(matches!(e, ReadError::Permanent { reason: "invoice_too_many_pages", .. }));
    }
}
