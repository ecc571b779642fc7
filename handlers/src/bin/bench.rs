//! Benchmark of the `warranty` binary on the embedded default.
//!
//! Run: `cargo run --release --bin bench` (add `-- --seconds 10 --clients 16` to change the
//! load). It builds and starts the real release binary as a child process, speaks HTTP to it
//! on loopback, and prints:
//! - time from process spawn to the first answer on `GET /` (the host's readiness probe);
//! - idle RSS;
//! - registrations per second and p50/p95/p99 latency, 1 MB PDF invoices, N clients, T seconds;
//! - peak RSS while 32 clients upload 9.9 MB invoices at once.
//!
//! The load generator runs on the same machine and competes for the same cores: the figures
//! are a floor for the service, not a ceiling.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Seconds of sustained load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients for the sustained load.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Process starts measured for the readiness figure.
    #[arg(long, default_value_t = 10)]
    starts: usize,
    /// Skip the registration load and measure only OCR.
    #[arg(long)]
    ocr_only: bool,
    /// Invoice store for the registration figures: `files` or `blob` (an Azurite started from
    /// tools/azurite for the run).
    #[arg(long, default_value = "files", value_parser = ["files", "blob"])]
    invoice_store: String,
}

/// Extra environment for the server (the invoice store choice).
static SERVER_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Starts Azurite for the run on a free port; returns the child and its connection string.
fn start_azurite() -> (std::process::Child, String) {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/azurite/node_modules/.bin/azurite-blob");
    assert!(bin.exists(), "run `npm ci --prefix tools/azurite` first");
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--blobPort",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Azurite starts");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "Azurite did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cs = format!(
        "AccountName={};AccountKey={};BlobEndpoint=http://127.0.0.1:{port}/{}",
        warranty::adapters::blob::sas::DEV_ACCOUNT,
        warranty::adapters::blob::sas::DEV_KEY,
        warranty::adapters::blob::sas::DEV_ACCOUNT
    );
    (child, cs)
}

const SECRET: &str = "bench-secret";

fn server_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(cargo).args(["build", "--release", "--quiet", "--bin", "warranty"]).status().expect("cargo runs");
    assert!(status.success(), "building the server failed");
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("target dir").join("warranty")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("warranty-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Starts the server and returns it with the time until `GET /` first answered.
fn start(bin: &PathBuf) -> (Server, Duration) {
    let dir = scratch_dir();
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", &dir)
        .env("WARRANTY_DEV_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .envs(SERVER_ENV.get().cloned().unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    // Poll like the Functions host does (it waits 25 ms between tries; we try every 0.5 ms).
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "server did not start");
        std::thread::sleep(Duration::from_micros(500));
    }
    (Server { child, port, dir }, started.elapsed())
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn pdf(size: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 0x9E37_79B9;
    v.extend((0..size - 9).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    v
}

fn form(serial: &str, invoice: &[u8]) -> (String, Vec<u8>) {
    let b = "----benchBoundary";
    let mut body = Vec::with_capacity(invoice.len() + 1024);
    for (k, v) in [("brand", "Acme"), ("model", "Bench 1"), ("serialNumber", serial), ("purchaseDate", "2026-01-15")] {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"i.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(invoice);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// One registration; returns the status after reading the whole answer.
async fn post_registration(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ct: String,
    body: Vec<u8>,
) -> reqwest::StatusCode {
    let resp = client
        .post(format!("{base}/api/products"))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status();
    let _ = resp.bytes().await;
    status
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bin = server_binary();
    let token = warranty::inbound::auth::dev_token(SECRET.as_bytes(), "bench-user", Duration::from_secs(3600));
    println!("# warranty benchmark ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    if args.ocr_only {
        println!("command: cargo run --release --bin bench -- --ocr-only");
        ocr_bench(&bin).await;
        return;
    }

    println!(
        "command: cargo run --release --bin bench -- --seconds {} --clients {} --starts {} --invoice-store {}",
        args.seconds, args.clients, args.starts, args.invoice_store
    );
    let mut azurite = None;
    if args.invoice_store == "blob" {
        let (child, cs) = start_azurite();
        azurite = Some(child);
        let _ = SERVER_ENV.set(vec![
            ("WARRANTY_INVOICE_STORE".into(), "blob".into()),
            ("InvoiceStorage".into(), cs),
            // One container per server start.
            ("WARRANTY_BLOB_CONTAINER".into(), format!("bench{}", std::process::id())),
        ]);
    }

    // 1. Readiness.
    let mut starts = Vec::new();
    for _ in 0..args.starts {
        let (server, took) = start(&bin);
        starts.push(took);
        drop(server);
    }
    starts.sort();
    println!(
        "startup to first answer on GET /: median {:.1} ms, max {:.1} ms over {} starts",
        percentile(&starts, 0.5),
        starts.last().unwrap().as_secs_f64() * 1000.0,
        starts.len()
    );

    // 2. Idle RSS.
    let (server, _) = start(&bin);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    for _ in 0..3 {
        client.get(format!("{base}/api/health")).send().await.unwrap();
    }
    println!("idle RSS: {:.1} MiB", status_kib(pid, "VmRSS:") as f64 / 1024.0);

    // 3. Sustained registrations with 1 MB invoices.
    let invoice = Arc::new(pdf(1_000_000));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base, token, invoice, latencies) =
            (client.clone(), base.clone(), token.clone(), invoice.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (ct, body) = form(&format!("C{c:02}N{n:08}"), &invoice);
                n += 1;
                let t = Instant::now();
                let status = post_registration(&client, &base, &token, ct, body).await;
                assert_eq!(status, 201, "registration failed under load");
                mine.push(t.elapsed());
            }
            latencies.lock().await.extend(mine);
        }));
    }
    let cpu_before = cpu_seconds(pid);
    let load_started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = load_started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    println!(
        "registrations, 1 MB PDF, {} clients, {:.1} s: {} done, {:.0} req/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.clients,
        elapsed,
        lat.len(),
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0
    );
    println!(
        "server CPU during the load: {:.1} s of {:.1} s wall on {} cores (the rest is the load generator and the kernel)",
        cpu_seconds(pid) - cpu_before,
        elapsed,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("RSS after sustained load: {:.1} MiB", status_kib(pid, "VmRSS:") as f64 / 1024.0);
    drop(server);

    // 4. Peak RSS with 32 simultaneous 9.9 MB uploads, on a fresh process.
    let (server, _) = start(&bin);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let big = Arc::new(pdf(9_900_000));
    let before = status_kib(pid, "VmHWM:");
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    let t = Instant::now();
    for c in 0..32 {
        let (client, base, token, big, barrier) =
            (client.clone(), base.clone(), token.clone(), big.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let (ct, body) = form(&format!("BIG{c:04}"), &big);
            barrier.wait().await;
            assert_eq!(post_registration(&client, &base, &token, ct, body).await, 201);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "32 simultaneous 9.9 MB uploads: all 201 in {:.2} s; server peak RSS {:.1} MiB (before: {:.1} MiB)",
        t.elapsed().as_secs_f64(),
        status_kib(pid, "VmHWM:") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    drop(server);
    if let Some(mut a) = azurite {
        let _ = a.kill();
        let _ = a.wait();
        return; // The OCR figures do not depend on the invoice store.
    }

    ocr_bench(&bin).await;
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Runs a command to completion, sampling its peak RSS (VmHWM) from /proc while it runs.
fn run_sampling_peak(cmd: &mut Command) -> (Duration, u64) {
    let t = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawns");
    let pid = child.id();
    let mut peak = 0;
    loop {
        peak = peak.max(status_kib(pid, "VmHWM:"));
        if child.try_wait().expect("waits").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (t.elapsed(), peak)
}

/// OCR figures: per-page latency by kind (in process, release build), the Tesseract child's
/// peak RSS, and the whole corpus through a running server (register → queue → dispatcher →
/// OCR → card) with the server's peak RSS.
async fn ocr_bench(bin: &PathBuf) {
    use warranty::adapters::ocr::tesseract::TesseractConfig;
    use warranty::adapters::ocr::{InvoiceReaders, ReaderLimits};
    use warranty::ports::InvoiceReader;

    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus_dir().join("ground-truth.json")).expect("ground truth"))
            .expect("json");
    let invoices = truth["invoices"].as_array().expect("invoices").clone();
    let scratch = scratch_dir();
    let readers = InvoiceReaders::new(TesseractConfig::defaults(scratch.clone()), None, ReaderLimits::default());
    let mut per_kind: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    for inv in &invoices {
        let file = inv["file"].as_str().expect("file");
        let kind = match file.rsplit('.').next() {
            Some("pdf") => warranty::domain::InvoiceKind::Pdf,
            Some("jpg") => warranty::domain::InvoiceKind::Jpeg,
            _ => warranty::domain::InvoiceKind::Png,
        };
        let bytes = bytes::Bytes::from(std::fs::read(corpus_dir().join(file)).expect("corpus file"));
        let rounds = if matches!(inv["kind"].as_str(), Some("digital" | "facturx")) { 50 } else { 1 };
        for _ in 0..rounds {
            let t = Instant::now();
            readers.read(kind, bytes.clone()).await.expect("readable");
            per_kind.entry(inv["kind"].as_str().unwrap_or("?").to_owned()).or_default().push(t.elapsed());
        }
    }
    for (kind, mut times) in per_kind {
        times.sort();
        println!(
            "OCR latency per one-page invoice, {kind:<8}: median {:.2} ms, max {:.2} ms ({} runs)",
            percentile(&times, 0.5),
            times.last().expect("runs").as_secs_f64() * 1000.0,
            times.len()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let photo = invoices.iter().find(|i| i["kind"] == "photo").expect("a photo");
    let (took, peak) = run_sampling_peak(
        Command::new("tesseract")
            .arg(corpus_dir().join(photo["file"].as_str().expect("file")))
            .args(["stdout", "-l", "deu+fra+eng", "--psm", "6", "tsv"])
            .env("OMP_THREAD_LIMIT", "1"),
    );
    println!(
        "tesseract child on a photo ({}): {:.0} ms, peak RSS {:.1} MiB",
        photo["file"],
        took.as_secs_f64() * 1000.0,
        peak as f64 / 1024.0
    );

    // The corpus through a running server, its local OCR dispatcher on (the binary's default);
    // the guard stops it even if an assertion fails.
    let (server, _) = start(bin);
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::new();
    let t = Instant::now();
    // The corpus reuses products (invoice 12 is another Apple with the same serial): one
    // user per invoice keeps them apart, as different buyers would be.
    let users: Vec<String> = (0..invoices.len()).map(|i| format!("corpus-user-{i}")).collect();
    for (inv, user) in invoices.iter().zip(&users) {
        let token = &warranty::inbound::auth::dev_token(SECRET.as_bytes(), user, Duration::from_secs(3600));
        let (content_type, body) = corpus_form(inv);
        let status = post_registration(&client, &base, token, content_type, body).await;
        assert_eq!(status, 201, "{}", inv["file"]);
    }
    let (completed, all) = loop {
        let mut statuses = Vec::new();
        for user in &users {
            let token = warranty::inbound::auth::dev_token(SECRET.as_bytes(), user, Duration::from_secs(3600));
            let page: serde_json::Value = client
                .get(format!("{base}/api/products"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("lists")
                .json()
                .await
                .expect("json");
            statuses.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|c| c["ocr"]["status"].as_str().unwrap_or("").to_owned()),
            );
        }
        if statuses.iter().all(|s| matches!(s.as_str(), "completed" | "needs_review" | "failed")) {
            break (statuses.iter().filter(|s| *s == "completed").count(), statuses.len());
        }
        assert!(t.elapsed() < Duration::from_secs(300), "OCR did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "corpus through the server (register → queue → dispatcher → OCR → card): {all} invoices in {:.1} s, {completed} completed, server peak RSS {:.1} MiB",
        t.elapsed().as_secs_f64(),
        status_kib(server.child.id(), "VmHWM:") as f64 / 1024.0
    );

    // From the 201 to the reading on the card, one registration at a time on an idle server:
    // what a user waits for (the dispatcher is woken by the registration itself).
    for (kind, rounds) in [("digital", 20), ("facturx", 20), ("photo", 5)] {
        let inv = invoices.iter().find(|i| i["kind"] == kind).expect("kind in corpus");
        let mut times = Vec::new();
        for round in 0..rounds {
            let user = format!("latency-{kind}-{round}");
            let token = warranty::inbound::auth::dev_token(SECRET.as_bytes(), &user, Duration::from_secs(3600));
            let (content_type, body) = corpus_form(inv);
            let resp = client
                .post(format!("{base}/api/products"))
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("registers");
            let created = Instant::now();
            assert_eq!(resp.status(), 201);
            let location = resp.headers()["location"].to_str().expect("location").to_owned();
            loop {
                let card: serde_json::Value = client
                    .get(format!("{base}{location}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("card")
                    .json()
                    .await
                    .expect("json");
                if matches!(card["ocr"]["status"].as_str(), Some("completed" | "needs_review" | "failed")) {
                    break;
                }
                assert!(created.elapsed() < Duration::from_secs(60), "OCR did not finish");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            times.push(created.elapsed());
        }
        times.sort();
        println!(
            "201 → reading on the card, {kind:<8}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} runs)",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().expect("runs").as_secs_f64() * 1000.0,
            times.len()
        );
    }
    drop(server);
}

/// A corpus invoice's registration as a multipart body.
fn corpus_form(inv: &serde_json::Value) -> (String, Vec<u8>) {
    let r = &inv["registration"];
    let file = inv["file"].as_str().expect("file");
    let bytes = std::fs::read(corpus_dir().join(file)).expect("corpus file");
    let b = "----ocrBench";
    let mut body = Vec::new();
    for k in ["brand", "model", "serialNumber", "purchaseDate"] {
        body.extend(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{}\r\n",
                r[k].as_str().expect("field")
            )
            .bytes(),
        );
    }
    body.extend(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"{file}\"\r\n\r\n").bytes(),
    );
    body.extend(bytes);
    body.extend(format!("\r\n--{b}--\r\n").bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}
