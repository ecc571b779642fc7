//! Uploaded files are parsed in reader processes (decision 0025), never in the service: the real
//! binary behind the host harness, its reader processes its own children. Stand-ins for
//! Tesseract (shell scripts named by `WARRANTY_TESSERACT_PATH`) play a recogniser that never
//! returns and one whose process kills the reader mid-read: the hang and the crash are real
//! processes' behaviour inside a real reader, which is what the service must survive; the
//! documents around them are read by the real engines.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// The binary behind the harness on the embedded default, reading with these settings.
async fn service(dir: &Path, more: &[(&str, String)]) -> FunctionsHost {
    let mut env = vec![
        ("WARRANTY_DATA_DIR", dir.display().to_string()),
        ("WARRANTY_DEV_JWT_SECRET", SECRET.to_owned()),
        ("WARRANTY_OCR_DISPATCHER", "true".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, v.clone())));
    let host = FunctionsHost::with_binary(&env).await;
    wait_until_ready(host.client(), &format!("http://127.0.0.1:{}", host.worker_port())).await;
    host
}

fn call(host: &FunctionsHost, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    host.client()
        .request(method, format!("{}{path}", host.base))
        .header("x-functions-key", FUNCTION_KEY)
        .bearer_auth(token("alice"))
}

async fn register(host: &FunctionsHost, serial: &str, file: &str) -> String {
    let (ct, body) = Form::registration("Apple", "MacBook Air", serial, &day(-3), &fixture(file)).finish();
    let resp =
        call(host, reqwest::Method::POST, "/api/products").header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

async fn ocr(host: &FunctionsHost, location: &str) -> Value {
    let card: Value = call(host, reqwest::Method::GET, location).send().await.unwrap().json().await.unwrap();
    card["ocr"].clone()
}

/// Waits for the reading of `location` to end (completed, needs_review or failed).
async fn read_to_the_end(host: &FunctionsHost, location: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let o = ocr(host, location).await;
        if matches!(o["status"].as_str(), Some("completed" | "needs_review" | "failed")) {
            return o;
        }
        assert!(tokio::time::Instant::now() < deadline, "never read: {o}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The process ids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// Reader folders left under the data folder's scratch space.
fn reader_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("ocr-scratch"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("reader-")))
        .collect()
}

/// The `reader` entry of the service's `/api/health`.
async fn reader_health(host: &FunctionsHost) -> Value {
    let health: Value = reqwest::get(format!("http://127.0.0.1:{}/api/health", host.worker_port()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["ocrEngines"].as_array().unwrap().iter().find(|e| e["name"] == "reader").cloned().unwrap()
}

/// A Tesseract stand-in: answers the probe as Tesseract does, and runs `body` for a reading.
fn stand_in(dir: &Path, body: &str) -> PathBuf {
    let script = dir.join("tesseract-stand-in");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'tesseract 5.3.0'; exit 0;;\n  --list-langs) printf 'List of available languages (3):\\ndeu\\neng\\nfra\\n'; exit 0;;\nesac\n{body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A digital PDF and a photo are read by reader processes: afterwards the service maps none of
/// PDFium, ONNX Runtime or a model file, its readers end once idle, their folders are gone, and
/// the health endpoint says what confinement they ran under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_maps_no_reader_library_and_its_readers_end_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let host = service(dir.path(), &[("WARRANTY_READER_IDLE_SECS", "1".to_owned())]).await;
    let pid = host.worker_pid().unwrap();
    let pdf = register(&host, "C02XK0ABJGH5", "invoice.pdf").await;
    let photo = register(&host, "C02XK0ABJGH6", "invoice.jpg").await;
    for location in [&pdf, &photo] {
        let o = read_to_the_end(&host, location).await;
        assert_ne!(o["status"], "failed", "{o}");
    }
    assert_eq!(ocr(&host, &photo).await["engine"], "pp-ocr+tesseract");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for library in ["libpdfium", "libonnxruntime", ".onnx"] {
        assert!(!maps.contains(library), "the service maps {library}");
    }
    eventually("the readers end once idle", || children(pid).is_empty()).await;
    assert!(reader_folders(dir.path()).is_empty(), "{:?}", reader_folders(dir.path()));
    let reader = reader_health(&host).await;
    let detail = reader["detail"].as_str().unwrap();
    for part in ["confinement:", "rlimits:as,cpu,nofile,fsize,core", "no_new_privs", "landlock"] {
        assert!(detail.contains(part), "{detail}");
    }
}

/// A recogniser that never returns holds only its own document: at the OCR deadline its reader
/// (with the stand-in's process) is killed and the document recorded as
/// `ocr_deadline_exceeded`; a digital PDF registered after it is read meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_past_its_deadline_kills_its_reader_and_the_others_are_read() {
    let dir = tempfile::tempdir().unwrap();
    // The stand-in's own process (its command line names the script) waits on a sleep.
    let script = stand_in(dir.path(), "sleep 1000");
    let marker = script.display().to_string();
    let host = service(
        dir.path(),
        &[
            ("WARRANTY_TESSERACT_PATH", script.display().to_string()),
            ("WARRANTY_OCR_RECOGNIZERS", "tesseract".to_owned()),
            ("WARRANTY_OCR_DEADLINE_SECS", "8".to_owned()),
            // Two messages and two readers at once: the hung one holds one of each.
            ("WARRANTY_OCR_WORKERS", "2".to_owned()),
            ("WARRANTY_READER_WORKERS", "2".to_owned()),
        ],
    )
    .await;
    let photo = register(&host, "C02XK0ABJGH5", "invoice.jpg").await;
    eventually("the stand-in hangs", || !processes_with(&marker).is_empty()).await;
    let pdf = register(&host, "C02XK0ABJGH6", "invoice.pdf").await;
    let read = read_to_the_end(&host, &pdf).await;
    assert_ne!(read["status"], "failed", "the PDF is read while the photo's reader hangs: {read}");
    assert!(!processes_with(&marker).is_empty(), "the photo's reading still hangs");
    let hung = read_to_the_end(&host, &photo).await;
    assert_eq!(hung["status"], "failed");
    assert_eq!(hung["failureReason"], "ocr_deadline_exceeded", "{hung}");
    eventually("the hung process is killed with its reader", || processes_with(&marker).is_empty()).await;
    // The service still registers and reads.
    let again = register(&host, "C02XK0ABJGH7", "invoice.pdf").await;
    assert_ne!(read_to_the_end(&host, &again).await["status"], "failed");
}

/// A reader that dies mid-read (its recogniser's process kills it, as a crash in a decoder
/// would) fails only its document: read once more on a fresh reader, then recorded as
/// `reader_failed`. The service and the other documents carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_killed_mid_read_fails_only_its_document_after_one_retry() {
    let dir = tempfile::tempdir().unwrap();
    let script = stand_in(dir.path(), "kill -9 $PPID\nsleep 5");
    let host = service(
        dir.path(),
        &[
            ("WARRANTY_TESSERACT_PATH", script.display().to_string()),
            ("WARRANTY_OCR_RECOGNIZERS", "tesseract".to_owned()),
        ],
    )
    .await;
    let photo = register(&host, "C02XK0ABJGH5", "invoice.jpg").await;
    let failed = read_to_the_end(&host, &photo).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failureReason"], "reader_failed", "{failed}");
    let reader = reader_health(&host).await;
    let started: u64 = reader["detail"]
        .as_str()
        .unwrap()
        .split(" started")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The probe's reader (idle, so the first attempt's) and a fresh one for the retry.
    assert!(started >= 2, "a fresh reader for the retry: {reader}");
    let pdf = register(&host, "C02XK0ABJGH6", "invoice.pdf").await;
    assert_ne!(read_to_the_end(&host, &pdf).await["status"], "failed");
    assert_eq!(host.log().errors.len(), 0, "the service itself never died");
}

/// A document that needs more memory than a reader may have fails alone, with a stable
/// reason; the service stays up and reads the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_out_of_memory_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    // PP-OCR on ONNX Runtime needs more address space than this for a photo (measured: it reads
    // at 1024 MiB; at 512 the reader dies allocating or ONNX Runtime reports the allocation, by
    // chance; at 256 the models do not load, every time).
    let host = service(
        dir.path(),
        &[("WARRANTY_READER_MEMORY_MIB", "256".to_owned()), ("WARRANTY_OCR_RECOGNIZERS", "pp-ocr".to_owned())],
    )
    .await;
    let photo = register(&host, "C02XK0ABJGH5", "invoice.jpg").await;
    let o = read_to_the_end(&host, &photo).await;
    assert_eq!(o["status"], "failed", "{o}");
    assert_eq!(o["failureReason"], "ocr_engine_unavailable", "{o}");
    assert_eq!(host.log().errors.len(), 0, "the service itself never died");
    let health = reqwest::get(format!("http://127.0.0.1:{}/api/health", host.worker_port())).await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A PDF of `objects` (object 1 the catalog), with a correct cross-reference table.
fn pdf_from(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).bytes());
        out.extend(body);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).bytes());
    out
}

/// The service's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

async fn register_bytes(host: &FunctionsHost, serial: &str, name: &str, bytes: &[u8]) -> String {
    let (ct, body) = Form::new()
        .text("brand", "Apple")
        .text("model", "MacBook Air")
        .text("serialNumber", serial)
        .text("purchaseDate", &day(-3))
        .file("invoice", name, "application/pdf", bytes)
        .finish();
    let resp =
        call(host, reqwest::Method::POST, "/api/products").header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// Hostile PDFs, each read by a reader and failing (or read) alone: one page under a page tree
/// 40 levels deep whose root alone has a 14400 × 14400 pt box (deeper than lopdf follows), and a
/// decompression bomb (a 1 MB file holding a 10000 × 10000 image of zeros). The service's own
/// memory does not move with them, nothing is left in the readers' folders, and a plain invoice
/// after them is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pdfs_fail_in_their_readers_and_the_service_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let host = service(dir.path(), &[("WARRANTY_READER_IDLE_SECS", "1".to_owned())]).await;
    let pid = host.worker_pid().unwrap();

    // The deep tree: 1 catalog, 2 root (the only box), 3..=41 intermediate nodes, 42 the page,
    // 43 its content.
    let depth = 40;
    let mut deep: Vec<Vec<u8>> = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
    deep.push(b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 14400 14400] >>".to_vec());
    for n in 3..depth + 2 {
        deep.push(format!("<< /Type /Pages /Parent {} 0 R /Kids [{} 0 R] /Count 1 >>", n - 1, n + 1).into_bytes());
    }
    let page = depth + 2;
    deep.push(format!("<< /Type /Page /Parent {} 0 R /Contents {} 0 R >>", page - 1, page + 1).into_bytes());
    let content = b"0 0 m 100 100 l S";
    deep.push(
        [format!("<< /Length {} >>\nstream\n", content.len()).into_bytes(), content.to_vec(), b"\nendstream".to_vec()]
            .concat(),
    );
    let deep = pdf_from(&deep);
    assert!(deep.len() < 8 * 1024, "{} bytes", deep.len());

    // The bomb: 100 MB of pixels in a compressed image.
    let zeros = vec![0u8; 10_000 * 10_000];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&zeros).unwrap();
    let packed = z.finish().unwrap();
    drop(zeros);
    let page_content = b"q 612 0 0 792 0 0 cm /Im0 Do Q";
    let bomb = pdf_from(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        [
            format!(
                "<< /Type /XObject /Subtype /Image /Width 10000 /Height 10000 /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length {} >>\nstream\n",
                packed.len()
            )
            .into_bytes(),
            packed,
            b"\nendstream".to_vec(),
        ]
        .concat(),
        [format!("<< /Length {} >>\nstream\n", page_content.len()).into_bytes(), page_content.to_vec(), b"\nendstream".to_vec()].concat(),
    ]);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());

    let before = rss_kib(pid);
    let hostile = [
        register_bytes(&host, "C02XK0ABJGH5", "deep.pdf", &deep).await,
        register_bytes(&host, "C02XK0ABJGH6", "bomb.pdf", &bomb).await,
    ];
    for location in &hostile {
        let o = read_to_the_end(&host, location).await;
        eprintln!("{location}: {o}");
        if o["status"] == "failed" {
            let reason = o["failureReason"].as_str().unwrap_or_default().to_owned();
            assert!(
                [
                    "invoice_image_too_large",
                    "invoice_unreadable",
                    "invoice_corrupt",
                    "reader_failed",
                    "ocr_deadline_exceeded"
                ]
                .contains(&reason.as_str()),
                "{o}"
            );
        }
    }
    let plain = register(&host, "C02XK0ABJGH7", "invoice.pdf").await;
    assert_ne!(read_to_the_end(&host, &plain).await["status"], "failed");
    let after = rss_kib(pid);
    assert!(after < before + 64 * 1024, "the service grew from {before} to {after} KiB");
    eventually("the readers end once idle", || children(pid).is_empty()).await;
    assert!(reader_folders(dir.path()).is_empty(), "{:?}", reader_folders(dir.path()));
}
