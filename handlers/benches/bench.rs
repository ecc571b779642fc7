//! The benchmark, one entry point: `cargo bench --bench bench` (options after `--`).
//!
//! Sections (all by default; `--only binary|ocr|intake|backends|card|reminders|delivery|verify|export|reconcile`
//! runs one):
//! - **binary**: the release `warranty` binary as a child process on loopback, as the Functions
//!   host runs it: time from spawn to the first answer on `GET /`, idle RSS, registrations per
//!   second with p50/p95/p99 latency (1 MB PDFs, N clients, T seconds), peak RSS while 32 clients
//!   upload 9.9 MB invoices at once (`--invoice-store blob` puts the invoices in Azurite);
//! - **ocr**: per-page reading latency by kind, the Tesseract child's peak RSS, the generated
//!   corpus through a running server, and the time from 201 to the reading on the card;
//! - **intake**: invoice-first registration through the release binary (its local dispatcher on,
//!   as shipped): from `POST /api/intakes` to the proposals on `GET /api/intakes/{id}`, p50/p95,
//!   for digital PDFs and receipt photos, one intake at a time on an idle server;
//! - **backends**: registration throughput on each backend side by side — `embedded` (SQLite +
//!   files), `blob` (SQLite + Azurite), `azure` (Cosmos DB emulator + Azurite + loopback Service
//!   Bus) — with the app in this process, built exactly as the integration tests build it
//!   (`tests/api/support`, compiled in here), because the Cosmos DB emulator is an in-process
//!   transport only a dev-dependency provides. The emulator does no network or disk I/O: the
//!   `azure` figures measure this service and the SDK's pipeline, not Cosmos DB's own latency;
//! - **card**: the warranty card PDF (rendering alone, and `GET …/card.pdf` end to end) and the
//!   public verification endpoint's latency, in process on the embedded and Cosmos DB backends;
//! - **reminders**: the expiry-reminder sweep over a generated SQLite store of up to 1,000,000
//!   coverages (one per product, each scheduled as a sweep leaves it), with 1,000 or 10,000
//!   due: the time to choose and create the due reminders, and the process's RSS around it;
//! - **delivery**: 100,000 due reminders across 10,000 users delivered through the loopback
//!   Notification Hub (`tests/api/support/hub.rs`) answering each send in 50 ms: deliveries per
//!   second, each reminder sent exactly once;
//! - **verify**: `GET /api/verify/{token}` with 10,000 and 1,000,000 products stored, each with
//!   its verification lookup (`--verify-links` for other sizes): p50/p95/p99 on the Cosmos DB
//!   emulator with every query made to fail (so only point reads can answer), and on SQLite;
//! - **export**: `GET /api/me/export` of 200 products with 1 MB invoices from the release binary
//!   (a child process), invoices on files and in Azurite: bytes per second and the server's RSS
//!   while it streams;
//! - **reconcile**: reconciliation's listing of a 48-hour window on Blob Storage (Azurite) in a
//!   container of 10,000 invoices (`--reconcile-invoices 10000,100000` for more sizes): list
//!   requests, time, and what a whole-container listing (the scheme before hour-named blobs)
//!   takes on the same container.
//!
//! The load generator runs on the same machine and competes for the same cores: the figures are
//! a floor for the service, not a ceiling. Results: `docs/benchmarks.md`.

#[path = "../tests/api/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use support::{BACKEND, Backend, Form};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Binary,
    Ocr,
    Intake,
    Backends,
    Card,
    Reminders,
    Delivery,
    Verify,
    Export,
    Reconcile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InvoiceStore {
    Files,
    Blob,
}

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
    /// Run one section only.
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Invoice store of the binary section: files, or blob (Azurite from tools/azurite).
    #[arg(long, value_enum, default_value = "files")]
    invoice_store: InvoiceStore,
    /// Container sizes of the reconcile section (comma-separated). Filling Azurite's in-memory
    /// store slows as it grows: 10,000 takes about a minute, 100,000 more than 20.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize])]
    reconcile_invoices: Vec<usize>,
    /// Links stored in the verify section (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 1_000_000])]
    verify_links: Vec<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const SECRET: &str = "bench-secret";

/// The `warranty` binary of this build (bench profile: optimised like release), or the one
/// `WARRANTY_BENCH_SERVER` names (an earlier build, to compare before and after on one machine).
fn server_binary() -> PathBuf {
    std::env::var_os("WARRANTY_BENCH_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_warranty").into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch_dir() -> PathBuf {
    tempfile::Builder::new().prefix("warranty-bench-").tempdir().expect("scratch dir").keep()
}

/// Starts the server and returns it with the time until `GET /` first answered and, unless
/// `wait_ready` is false, until it said its stores are connected.
fn start_with(bin: &Path, env: &[(String, String)], wait_ready: bool) -> (Server, Duration, Option<Duration>) {
    let dir = tempfile::Builder::new().prefix("warranty-bench-").tempdir().expect("scratch dir");
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", dir.path())
        .env("WARRANTY_DEV_JWT_SECRET", SECRET)
        .env("RUST_LOG", "error")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    // Poll like the Functions host does (it waits 25 ms between tries; we try every 0.5 ms).
    let mut first = None;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                first.get_or_insert(started.elapsed());
                if !wait_ready || buf.windows(13).any(|w| w == b"handler ready") {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
        std::thread::sleep(Duration::from_micros(500));
    }
    let ready = wait_ready.then(|| started.elapsed());
    (Server { child, port, _dir: dir }, first.unwrap(), ready)
}

fn start(bin: &Path, env: &[(String, String)]) -> (Server, Duration) {
    let (server, first, _) = start_with(bin, env, true);
    (server, first)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process and the children it has waited for (poppler,
/// Tesseract) have used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime.
    let ticks: f64 = (11..=14).map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)).sum();
    ticks / 100.0
}

/// CPU seconds (user + system) of this process and of its children that have been waited for.
fn self_and_children_cpu() -> f64 {
    let usage = |who| {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        unsafe { libc::getrusage(who, u.as_mut_ptr()) };
        // SAFETY: zero-initialised, then filled by the call above.
        let u = unsafe { u.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

/// Files of 1 MiB written and synced (`fdatasync`) per second by `writers` threads at once, each
/// rewriting its own file in `dir` (removed afterwards) for `time`.
fn disk_rate(dir: &Path, writers: usize, time: Duration) -> f64 {
    use std::io::Write;
    let block = pdf(1 << 20);
    let started = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (block, path) = (&block, dir.join(format!("disk-{w}")));
                s.spawn(move || {
                    let mut n = 0;
                    while started.elapsed() < time {
                        let mut f = std::fs::File::create(&path).unwrap();
                        f.write_all(block).unwrap();
                        f.sync_data().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rate = done as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    rate
}

/// The corpus's first digital invoice, grown to about `size` bytes by an incremental update that
/// adds one unreferenced stream of incompressible bytes (as a scanned attachment would): a
/// valid PDF whose text layer is the invoice's.
fn digital_invoice(size: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(corpus_dir().join("00-digital-classic-en.pdf")).expect("corpus invoice");
    let doc = lopdf::Document::load_mem(&bytes).expect("a PDF");
    let root = doc.trailer.get(b"Root").and_then(|r| r.as_reference()).expect("a catalogue");
    let prev = {
        let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(64)..]).into_owned();
        let after = tail.rsplit_once("startxref").expect("startxref").1;
        after.split_whitespace().next().expect("offset").parse::<usize>().expect("offset")
    };
    let id = doc.max_id + 1;
    let filler = pdf(size.saturating_sub(bytes.len() + 400));
    let object = bytes.len() + 1;
    bytes.extend_from_slice(format!("\n{id} 0 obj\n<< /Length {} >>\nstream\n", filler.len()).as_bytes());
    bytes.extend_from_slice(&filler);
    bytes.extend_from_slice(b"\nendstream\nendobj\n");
    let xref = bytes.len();
    bytes.extend_from_slice(
        format!(
            "xref\n{id} 1\n{object:010} 00000 n \ntrailer\n<< /Size {} /Root {} {} R /Prev {prev} >>\nstartxref\n{xref}\n%%EOF\n",
            id + 1,
            root.0,
            root.1
        )
        .as_bytes(),
    );
    bytes
}

/// A PDF of `size` bytes: the magic, then incompressible bytes.
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

/// One registration; returns the status after reading the whole answer.
async fn post_registration(client: &reqwest::Client, base: &str, token: &str, form: Form) -> reqwest::StatusCode {
    let (ct, body) = form.finish();
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

/// The latency line every load section prints.
fn latency_report(label: &str, clients: usize, elapsed: f64, lat: &mut [Duration]) -> String {
    lat.sort();
    format!(
        "{label}registrations, 1 MB PDF, {clients} clients, {elapsed:.1} s: {} done, {:.0} req/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        lat.len() as f64 / elapsed,
        percentile(lat, 0.50),
        percentile(lat, 0.95),
        percentile(lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0
    )
}

fn token(user: &str) -> String {
    warranty::inbound::auth::dev_token(SECRET.as_bytes(), user, Duration::from_secs(3600))
}

fn main() {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("# warranty benchmark ({cores} cores)");
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    println!(
        "command: cargo bench --bench bench -- --seconds {} --clients {} --starts {}{}{}{}",
        args.seconds,
        args.clients,
        args.starts,
        args.only.map(|s| format!(" --only {}", s.to_possible_value().unwrap().get_name())).unwrap_or_default(),
        if args.invoice_store == InvoiceStore::Blob { " --invoice-store blob" } else { "" },
        match args.only {
            Some(Section::Verify) => format!(" --verify-links {}", list(&args.verify_links)),
            Some(Section::Reconcile) => format!(" --reconcile-invoices {}", list(&args.reconcile_invoices)),
            _ => String::new(),
        }
    );
    let runs = |s: Section| args.only.is_none_or(|o| o == s);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bin = server_binary();
        if runs(Section::Binary) {
            binary_bench(&bin, &args).await;
        }
        if runs(Section::Ocr) {
            ocr_bench(&bin).await;
        }
        if runs(Section::Intake) {
            intake_bench(&bin).await;
        }
        if runs(Section::Card) {
            println!("## warranty card and verification, in process");
            card_render_bench();
            for backend in [Backend::Embedded, Backend::Azure] {
                card_bench(backend).await;
            }
        }
        if runs(Section::Export) {
            export_bench(&bin, InvoiceStore::Files).await;
            export_bench(&bin, InvoiceStore::Blob).await;
        }
        if runs(Section::Reminders) {
            reminder_bench().await;
        }
        if runs(Section::Delivery) {
            delivery_bench().await;
        }
        if runs(Section::Verify) {
            verify_bench(&args.verify_links).await;
        }
        if runs(Section::Reconcile) {
            reconcile_bench(&args.reconcile_invoices).await;
        }
        if runs(Section::Backends) {
            println!("## registration on each backend, in process");
            for backend in [Backend::Embedded, Backend::Blob, Backend::Azure] {
                backend_bench(backend, &args).await;
            }
        }
    });
}

async fn binary_bench(bin: &Path, args: &Args) {
    println!("## the release binary as a child process ({:?} invoice store)", args.invoice_store);
    let mut env = Vec::new();
    if args.invoice_store == InvoiceStore::Blob {
        env = vec![
            ("WARRANTY_INVOICE_STORE".to_owned(), "blob".to_owned()),
            ("InvoiceStorage".to_owned(), support::azurite_connection_string()),
            // One container per run.
            ("WARRANTY_BLOB_CONTAINER".to_owned(), format!("bench{}", std::process::id())),
        ];
    }

    // 1. Readiness: the first answer on `/` (what the Functions host waits for), and the stores
    //    connected; then the first answer with an invoice store that never answers.
    let (mut starts, mut readies) = (Vec::new(), Vec::new());
    for _ in 0..args.starts {
        let (server, first, ready) = start_with(bin, &env, true);
        starts.push(first);
        readies.extend(ready);
        drop(server);
    }
    starts.sort();
    readies.sort();
    println!(
        "startup to first answer on GET /: median {:.1} ms, max {:.1} ms over {} starts; stores connected: median {:.1} ms, max {:.1} ms",
        percentile(&starts, 0.5),
        starts.last().unwrap().as_secs_f64() * 1000.0,
        starts.len(),
        percentile(&readies, 0.5),
        readies.last().unwrap().as_secs_f64() * 1000.0,
    );
    {
        let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use warranty::adapters::azure::blob::sas::{DEV_ACCOUNT, DEV_KEY};
        let unreachable = vec![
            ("WARRANTY_INVOICE_STORE".to_owned(), "blob".to_owned()),
            (
                "InvoiceStorage".to_owned(),
                format!(
                    "AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=http://{}/devstoreaccount1",
                    black_hole.local_addr().unwrap()
                ),
            ),
        ];
        let mut firsts = Vec::new();
        for _ in 0..args.starts {
            let (server, first, _) = start_with(bin, &unreachable, false);
            firsts.push(first);
            drop(server);
        }
        firsts.sort();
        println!(
            "startup to first answer on GET / with an invoice store that never answers: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} starts",
            percentile(&firsts, 0.5),
            percentile(&firsts, 0.95),
            firsts.last().unwrap().as_secs_f64() * 1000.0,
            firsts.len()
        );
    }

    // 2. Idle RSS.
    let (server, _) = start(bin, &env);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    // At rest: started, the OCR tools probed (health says so), then a quarter of a second idle.
    let probed = Instant::now();
    loop {
        let health = client.get(format!("{base}/api/health")).send().await.unwrap().text().await.unwrap();
        if !health.contains("not probed yet") && !health.contains("not checked yet") {
            break;
        }
        assert!(probed.elapsed() < Duration::from_secs(30), "the OCR tools were never probed: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Probes while serving, then at rest: five seconds without a request, during which the
    // background loops (the OCR relay's look at its queue each second) keep running.
    for _ in 0..3 {
        client.get(format!("{base}/api/health")).send().await.unwrap();
    }
    let rss = || {
        format!(
            "{:.1} MiB (anonymous {:.1} MiB, file-backed {:.1} MiB)",
            status_kib(pid, "VmRSS:") as f64 / 1024.0,
            status_kib(pid, "RssAnon:") as f64 / 1024.0,
            status_kib(pid, "RssFile:") as f64 / 1024.0
        )
    };
    println!("RSS right after three health probes: {}", rss());
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("idle RSS (at rest, 5 s without a request): {}", rss());

    // 3. Sustained registrations with 1 MB invoices: a digital invoice with a text layer (the
    //    corpus's first), made 1 MB by an attached incompressible stream, so each registration's
    //    reading (which the server's dispatcher runs during the load) is a real one.
    let invoice = Arc::new(digital_invoice(1_000_000));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let token = token("bench-user");
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base, token, invoice) = (client.clone(), base.clone(), token.clone(), invoice.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let form = Form::registration("Acme", "Bench 1", &format!("C{c:02}N{n:08}"), "2026-01-15", &invoice);
                n += 1;
                let t = Instant::now();
                let status = post_registration(&client, &base, &token, form).await;
                assert_eq!(status, 201, "registration failed under load");
                mine.push(t.elapsed());
            }
            mine
        }));
    }
    let cpu_before = cpu_seconds(pid);
    let load_started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = load_started.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(pid) - cpu_before;
    let registrations = lat.len() as f64;
    println!("{}", latency_report("", args.clients, elapsed, &mut lat));
    println!(
        "server CPU during the load: {server_cpu:.1} s of {elapsed:.1} s wall (the rest is the load generator and the kernel): {:.2} ms per registration",
        server_cpu * 1000.0 / registrations
    );
    // The readings the load queued finish after it (the dispatcher reads below the server's
    // priority): the whole cost of a registration is measured until the server is idle again.
    let drained = Instant::now();
    let mut last = cpu_seconds(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = cpu_seconds(pid);
        if now - last < 0.01 || drained.elapsed() > Duration::from_secs(300) {
            break;
        }
        last = now;
    }
    let whole = cpu_seconds(pid) - cpu_before;
    println!(
        "server CPU until its queue drained ({:.1} s after the load): {whole:.1} s, {:.2} ms per registration including its reading",
        drained.elapsed().as_secs_f64(),
        whole * 1000.0 / registrations
    );
    // The same disk, the same writers, nothing else: what the hardware allows for a 1 MiB
    // invoice made durable. Each registration writes (and syncs) at least this.
    let disk = disk_rate(&scratch_dir(), args.clients, Duration::from_secs(args.seconds.min(5)));
    println!(
        "disk: 1 MiB write + fdatasync, {} writers at once: {disk:.0} per second; registrations reached {:.2} of it",
        args.clients,
        registrations / elapsed / disk
    );
    println!("RSS after sustained load: {:.1} MiB", status_kib(pid, "VmRSS:") as f64 / 1024.0);
    drop(server);

    // 4. Peak RSS with 32 simultaneous 9.9 MB uploads, on a fresh process: alone, then with two
    //    CPU-bound threads competing for the cores (a busy neighbour).
    for contended in [false, true] {
        peak_under_uploads(bin, &env, &client, &token, contended).await;
    }
}

async fn peak_under_uploads(
    bin: &Path,
    env: &[(String, String)],
    client: &reqwest::Client,
    token: &str,
    contended: bool,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..if contended { 2 } else { 0 })
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let (server, _) = start(bin, env);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let big = Arc::new(pdf(9_900_000));
    let before = status_kib(pid, "VmHWM:");
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    let t = Instant::now();
    for c in 0..32 {
        let (client, base, token, big, barrier) =
            (client.clone(), base.clone(), token.to_owned(), big.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let form = Form::registration("Acme", "Bench 1", &format!("BIG{c:04}"), "2026-01-15", &big);
            barrier.wait().await;
            assert_eq!(post_registration(&client, &base, &token, form).await, 201);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "32 simultaneous 9.9 MB uploads{}: all 201 in {:.2} s; server peak RSS {:.1} MiB (before: {:.1} MiB)",
        if contended { ", 2 CPU-bound threads beside" } else { "" },
        t.elapsed().as_secs_f64(),
        status_kib(pid, "VmHWM:") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
}

async fn backend_bench(backend: Backend, args: &Args) {
    let app = Arc::new(BACKEND.scope(backend, support::spawn_app()).await);
    let invoice = Arc::new(pdf(1_000_000));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..args.clients {
        let (app, invoice) = (app.clone(), invoice.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let form = Form::registration("Acme", "Bench 1", &format!("C{c:02}N{n:08}"), "2026-01-15", &invoice);
                n += 1;
                let t = Instant::now();
                let resp = app.post_form("bench-user", form).await;
                assert_eq!(resp.status(), 201, "registration failed under load");
                let _ = resp.bytes().await;
                mine.push(t.elapsed());
            }
            mine
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let label = format!("{:<8} ", format!("{backend:?}").to_lowercase());
    println!("{}", latency_report(&label, args.clients, elapsed, &mut lat));
    if let Some(bus) = &app.bus {
        let state = bus.snapshot();
        println!(
            "         Service Bus: {} messages accepted for {} registrations (each published before its 201)",
            state.accepted.len(),
            lat.len()
        );
    }
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
async fn ocr_bench(bin: &Path) {
    use warranty::adapters::ocr::tesseract::TesseractConfig;
    use warranty::adapters::ocr::{InvoiceReaders, ReaderLimits};
    use warranty::ports::InvoiceReader;
    println!("## OCR");

    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus_dir().join("ground-truth.json")).expect("ground truth"))
            .expect("json");
    let invoices = truth["invoices"].as_array().expect("invoices").clone();
    let scratch = scratch_dir();
    let readers = InvoiceReaders::new(TesseractConfig::defaults(scratch.clone()), None, ReaderLimits::default());
    let mut per_kind: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    // CPU of this process and of the processes it started (poppler, Tesseract), per kind.
    let mut cpu_per_kind: std::collections::BTreeMap<String, f64> = Default::default();
    for inv in &invoices {
        let file = inv["file"].as_str().expect("file");
        let kind = match file.rsplit('.').next() {
            Some("pdf") => warranty::domain::InvoiceKind::Pdf,
            Some("jpg") => warranty::domain::InvoiceKind::Jpeg,
            _ => warranty::domain::InvoiceKind::Png,
        };
        let bytes = bytes::Bytes::from(std::fs::read(corpus_dir().join(file)).expect("corpus file"));
        let rounds = if matches!(inv["kind"].as_str(), Some("digital" | "facturx")) { 50 } else { 1 };
        // One reading first, uncounted: the libraries load and the tools are probed once.
        readers.read(kind, bytes.clone()).await.expect("readable");
        let cpu = self_and_children_cpu();
        for _ in 0..rounds {
            let t = Instant::now();
            readers.read(kind, bytes.clone()).await.expect("readable");
            per_kind.entry(inv["kind"].as_str().unwrap_or("?").to_owned()).or_default().push(t.elapsed());
        }
        *cpu_per_kind.entry(inv["kind"].as_str().unwrap_or("?").to_owned()).or_default() +=
            self_and_children_cpu() - cpu;
    }
    for (kind, mut times) in per_kind {
        times.sort();
        println!(
            "OCR latency per one-page invoice, {kind:<8}: median {:.2} ms, max {:.2} ms ({} runs); CPU {:.2} ms per reading (this process and the tools it ran)",
            percentile(&times, 0.5),
            times.last().expect("runs").as_secs_f64() * 1000.0,
            times.len(),
            cpu_per_kind[&kind] * 1000.0 / times.len() as f64,
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
    let (server, _) = start(bin, &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::new();
    let t = Instant::now();
    // The corpus reuses products (invoice 12 is another Apple with the same serial): one
    // user per invoice keeps them apart, as different buyers would be.
    let users: Vec<String> = (0..invoices.len()).map(|i| format!("corpus-user-{i}")).collect();
    for (inv, user) in invoices.iter().zip(&users) {
        let status = post_registration(&client, &base, &token(user), corpus_form(inv)).await;
        assert_eq!(status, 201, "{}", inv["file"]);
    }
    let (completed, all) = loop {
        let mut statuses = Vec::new();
        for user in &users {
            let token = token(user);
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
            let token = token(&user);
            let (content_type, body) = corpus_form(inv).finish();
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

    // Registration latency at rest and while photos are being read (the recognisers on their
    // bounded pool must not starve the HTTP server): 100 digital registrations each, one at a
    // time; during the second run another client keeps the OCR queue full of photos.
    let digital = invoices.iter().find(|i| i["kind"] == "digital").expect("a digital invoice").clone();
    let photo = photo.clone();
    // Spaced 20 ms apart so the runs last a few seconds: long enough to overlap the reading.
    let register_100 = |tag: &'static str| {
        let (client, base, digital) = (client.clone(), base.clone(), digital.clone());
        async move {
            let mut times = Vec::new();
            for round in 0..100 {
                let token = token(&format!("rest-{tag}-{round}"));
                let t = Instant::now();
                assert_eq!(post_registration(&client, &base, &token, corpus_form(&digital)).await, 201);
                times.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            times.sort();
            times
        }
    };
    let at_rest = register_100("idle").await;
    // Eight photos queued (several seconds of reading), then the same 100 registrations.
    let photos = 8;
    for n in 0..photos {
        let token = token(&format!("photo-load-{n}"));
        assert_eq!(post_registration(&client, &base, &token, corpus_form(&photo)).await, 201);
    }
    let busy = register_100("busy").await;
    let (rest95, busy95) = (percentile(&at_rest, 0.95), percentile(&busy, 0.95));
    println!(
        "registration (digital PDF) at rest: p50 {:.1} ms, p95 {rest95:.1} ms; while photos are read ({photos} queued): p50 {:.1} ms, p95 {busy95:.1} ms; p95 ratio {:.2} (100 each)",
        percentile(&at_rest, 0.5),
        percentile(&busy, 0.5),
        busy95 / rest95
    );
    println!(
        "server peak RSS after reading photos: {:.1} MiB",
        status_kib(server.child.id(), "VmHWM:") as f64 / 1024.0
    );
    drop(server);
}

/// From `POST /api/intakes` to its proposals, one intake at a time on an idle server: what a
/// person waits for between taking the picture and seeing the form filled.
async fn intake_bench(bin: &Path) {
    println!("## invoice first: intake → proposals (release binary, local dispatcher)");
    let (server, _) = start(bin, &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::new();
    let written = support::text_pdf(&[
        "Elektro Schmidt GmbH",
        "Invoice date 2026-03-15",
        "Hewlett-Packard EliteBook 840 G9 1 x 1299.00 EUR",
        "S/N: 5CD1234XYZ",
        "Samsung Galaxy S24 1 x 899.00 EUR",
        "Serial No. R58N12ABCDE",
        "Total 2198.00 EUR",
    ]);
    let corpus = |name: &str| std::fs::read(corpus_dir().join(name)).expect("corpus file");
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("digital PDF, two products (written)", written, 40),
        ("digital PDF (00-digital-classic-en)", corpus("00-digital-classic-en.pdf"), 40),
        ("Factur-X PDF (01-facturx-classic-de)", corpus("01-facturx-classic-de.pdf"), 40),
        ("receipt photo (03-photo-classic-en)", corpus("03-photo-classic-en.jpg"), 5),
        ("receipt photo (08-photo-modern-fr)", corpus("08-photo-modern-fr.jpg"), 5),
    ];
    for (label, bytes, rounds) in cases {
        let mut times = Vec::new();
        let mut products = 0;
        // One uncounted round first: the readers load what they load once.
        for round in 0..=rounds {
            let token = token(&format!("intake-{round}"));
            let (content_type, body) =
                Form::new().file("invoice", "invoice", "application/octet-stream", &bytes).finish();
            let started = Instant::now();
            let resp = client
                .post(format!("{base}/api/intakes"))
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("uploads");
            assert_eq!(resp.status(), 202, "{label}");
            let location = resp.headers()["location"].to_str().expect("location").to_owned();
            let view = loop {
                let view: serde_json::Value = client
                    .get(format!("{base}{location}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("intake")
                    .json()
                    .await
                    .expect("json");
                if view["status"] != "reading" {
                    break view;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "{label}: never read");
                // Polled every millisecond for the first 100 ms (a digital PDF is read in a few),
                // then every 25 ms: a poll costs the server CPU at normal priority, and polling a
                // photo's three seconds every millisecond would take it from the recognisers
                // (which run at nice +10) and measure the poller. A client polls after
                // Retry-After (1 s).
                let pause = if started.elapsed() < Duration::from_millis(100) { 1 } else { 25 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            };
            assert_eq!(view["status"], "ready", "{label}: {view}");
            if round > 0 {
                times.push(started.elapsed());
                products = view["proposals"]["products"].as_array().map_or(0, Vec::len);
            }
        }
        println!("intake → proposals, {label}: {} ({products} products proposed)", quantiles(&mut times));
    }
    println!("server peak RSS: {:.1} MiB", status_kib(server.child.id(), "VmHWM:") as f64 / 1024.0);
    println!("command: cargo bench --bench bench -- --only intake");
    drop(server);
}

/// A corpus invoice's registration as a multipart body.
fn corpus_form(inv: &serde_json::Value) -> Form {
    let r = &inv["registration"];
    let file = inv["file"].as_str().expect("file");
    let bytes = std::fs::read(corpus_dir().join(file)).expect("corpus file");
    let content_type = match file.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("jpg") => "image/jpeg",
        _ => "image/png",
    };
    let field = |k: &str| r[k].as_str().expect("field").to_owned();
    Form::new()
        .text("brand", &field("brand"))
        .text("model", &field("model"))
        .text("serialNumber", &field("serialNumber"))
        .text("purchaseDate", &field("purchaseDate"))
        .file("invoice", file, content_type, &bytes)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantiles(lat: &mut [Duration]) -> String {
    lat.sort();
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} runs)",
        percentile(lat, 0.50),
        percentile(lat, 0.95),
        percentile(lat, 0.99),
        ms(*lat.last().unwrap()),
        lat.len()
    )
}

/// Rendering the card alone: layout, font subsetting, compression, the QR code.
fn card_render_bench() {
    use warranty::card::pdf::{CardSheet, CoverageLine, render};
    let sheet = CardSheet {
        brand: "Apple".into(),
        model: "MacBook Air 13".into(),
        serial_number: "C02XK0ABJGH5".into(),
        purchase_date: "2026-03-14".into(),
        coverages: ["Manufacturer warranty", "Extended warranty", "Insurance"]
            .iter()
            .map(|l| CoverageLine {
                label: (*l).into(),
                provider: Some("Acme Care".into()),
                term: "until 2029-03-15".into(),
                status: "active".into(),
            })
            .collect(),
        verdict: "Covered today, until 2029-03-15".into(),
        verify_url: "https://api.example.com/api/verify/AaIcbT6Zd5SmZXpzFTp0qQAAAAAAAAAAa3_6Q8yAwekB05dyjkr_LGlYNiw"
            .into(),
        issued_on: "2026-11-27".into(),
        link_expires_on: "2027-02-25".into(),
    };
    let size = render(&sheet).len();
    let mut lat: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(render(std::hint::black_box(&sheet)));
            t.elapsed()
        })
        .collect();
    println!("card PDF rendering alone (3 coverages, {size} bytes): {}", quantiles(&mut lat));
}

/// `GET …/card.pdf` and `GET /api/verify/{token}` through HTTP on loopback, one client.
async fn card_bench(backend: Backend) {
    let app = BACKEND.scope(backend, support::spawn_app()).await;
    let label = format!("{backend:?}").to_lowercase();
    let resp = app
        .post_form(
            "bench-user",
            Form::registration("Apple", "MacBook Air 13", "C02XK0ABJGH5", "2026-03-14", &pdf(50_000)),
        )
        .await;
    let card: serde_json::Value = resp.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();
    for body in [
        serde_json::json!({"kind": "extended", "startsOn": "2027-03-15", "months": 24}),
        serde_json::json!({"kind": "insurance", "lifetime": true}),
    ] {
        let resp = app.post_json("bench-user", &format!("/api/products/{id}/coverages"), &body).await;
        assert_eq!(resp.status(), 201);
    }
    // Other users' products in the store, so the lookup is not of the only row.
    for n in 0..200 {
        let form = Form::registration("Dell", "Inspiron 14", &format!("B{n:06}"), "2026-01-15", &pdf(2_000));
        assert_eq!(app.post_form(&format!("other-{n}"), form).await.status(), 201);
    }
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let resp = app.get("bench-user", &format!("/api/products/{id}/card.pdf")).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    println!("{label:<8} GET card.pdf end to end: {}", quantiles(&mut lat));
    let key = std::fs::read_to_string(app.dir.path().join("verification-key")).unwrap();
    let token = warranty::card::token::issue(
        key.trim().as_bytes(),
        id.parse().unwrap(),
        0,
        chrono::Utc::now() + chrono::Duration::days(1),
    );
    let url = format!("{}/api/verify/{token}", app.base);
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let resp = app.client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    println!("{label:<8} GET /api/verify/{{token}} (JSON): {}", quantiles(&mut lat));
}

/// Inserts `total` products, each with one coverage, straight into the app's database in one
/// transaction: `due` of them have a reminder due at `now` (their coverage ends in 5 days, the
/// 7-day reminder has come), the rest are scheduled over the coming year, as a sweep leaves them.
fn generate_store(
    app: &support::TestApp,
    template: &serde_json::Value,
    total: usize,
    due: usize,
    users: usize,
    now: chrono::DateTime<chrono::Utc>,
) {
    let mut db = app.db();
    db.pragma_update(None, "synchronous", "OFF").unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO products (id, user_id, brand_key, serial_number, created_at, doc, next_reminder_at)
                 VALUES (?1, ?2, 'dell', ?3, ?4, ?5, ?6)",
            )
            .unwrap();
        let today = now.date_naive();
        for n in 0..total {
            let id = uuid::Uuid::now_v7();
            let user = format!("user-{}", n % users.max(1));
            let serial = format!("G{n:07}");
            // Due: ends in 5 days. Not due: ends 40 to 400 days out; next reminder 30 days before.
            let (ends, next) = if n < due {
                (today + chrono::Duration::days(5), String::new())
            } else {
                let ends = today + chrono::Duration::days(40 + (n % 360) as i64);
                let next = (ends - chrono::Duration::days(30)).and_hms_opt(9, 0, 0).unwrap().and_utc();
                (ends, next.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            };
            let mut doc = template.clone();
            doc["id"] = id.to_string().into();
            doc["userId"] = user.clone().into();
            doc["serialNumber"] = serial.clone().into();
            doc["coverages"] = serde_json::json!([{
                "id": id, "kind": "extended", "provider": "CarePlus",
                "startsOn": "2026-01-15", "endsOn": ends.to_string()
            }]);
            insert
                .execute(rusqlite::params![
                    id.to_string(),
                    user,
                    serial,
                    "2026-01-15T10:00:00.000000Z",
                    doc.to_string(),
                    next
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    // Write the generated pages into the database now: left in the log, the sweep's first
    // write would copy them (a cost of generating, not of sweeping).
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
}

fn rss_kib() -> u64 {
    status_kib(std::process::id(), "VmRSS:")
}

async fn reminder_bench() {
    println!("## expiry-reminder sweep on SQLite (generated store, in process)");
    let now: chrono::DateTime<chrono::Utc> = "2027-03-01T10:00:00Z".parse().unwrap();
    for (total, due) in [(100_000, 1_000), (1_000_000, 1_000), (1_000_000, 10_000)] {
        let clock = Arc::new(warranty::ports::ManualClock::new(now));
        let app = BACKEND.scope(Backend::Embedded, support::spawn_at(clock, |_| {})).await;
        // One real registration gives the stored document's shape.
        let form = Form::registration("Dell", "Inspiron 14", "TPL0001", "2026-01-15", &pdf(2_000));
        assert_eq!(app.post_form("template", form).await.status(), 201);
        let doc: String = app.db().query_row("SELECT doc FROM products", [], |r| r.get(0)).unwrap();
        app.db().execute("DELETE FROM products", []).unwrap();
        let template: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let t = Instant::now();
        generate_store(&app, &template, total, due, total / 2, now);
        let generated = t.elapsed();
        let size = std::fs::metadata(app.dir.path().join("warranty.sqlite3")).map(|m| m.len()).unwrap_or(0);
        let before = rss_kib();
        let t = Instant::now();
        let report = warranty::application::reminders::choose(&app.services, now).await.unwrap();
        let took = t.elapsed();
        let after = rss_kib();
        assert_eq!(report.created, due, "every due coverage gets its reminder");
        assert_eq!(report.products, due, "only the due products are read");
        // A second sweep finds nothing: the schedule moved on.
        let t = Instant::now();
        let again = warranty::application::reminders::choose(&app.services, now).await.unwrap();
        let idle = t.elapsed();
        assert_eq!(again.created, 0);
        println!(
            "{total:>9} coverages, {due:>6} due: sweep {:.1} ms ({:.1} ms per 1,000 due); idle sweep {:.2} ms; RSS {} → {} MiB (database {} MiB, generated in {:.0} s)",
            ms(took),
            ms(took) * 1000.0 / due as f64,
            ms(idle),
            before / 1024,
            after / 1024,
            size / (1024 * 1024),
            generated.as_secs_f64()
        );
    }
    println!("command: cargo bench --bench bench -- --only reminders");
}

/// 100,000 reminders due across 10,000 users, each with one push device, delivered through the
/// loopback Notification Hub answering every send after 50 ms: deliveries per second, and that
/// each reminder reached the hub exactly once.
async fn delivery_bench() {
    const USERS: usize = 10_000;
    const DUE: usize = 100_000;
    const LATENCY: Duration = Duration::from_millis(50);
    println!("## reminder delivery through a loopback hub answering in 50 ms (SQLite, in process)");
    let now: chrono::DateTime<chrono::Utc> = "2027-03-01T10:00:00Z".parse().unwrap();
    let hub = support::notification_hub().await;
    let cs = hub.connection_string();
    let clock = Arc::new(warranty::ports::ManualClock::new(now));
    let app = BACKEND
        .scope(
            Backend::Embedded,
            support::spawn_at(clock, move |s| {
                s.reminders.notification_hub_connection_string = Some(warranty::config::Secret::new(cs));
                s.reminders.reminder_sweep_secs = 0;
            }),
        )
        .await;
    let form = Form::registration("Dell", "Inspiron 14", "TPL0001", "2026-01-15", &pdf(2_000));
    assert_eq!(app.post_form("template", form).await.status(), 201);
    let doc: String = app.db().query_row("SELECT doc FROM products", [], |r| r.get(0)).unwrap();
    app.db().execute("DELETE FROM products", []).unwrap();
    let template: serde_json::Value = serde_json::from_str(&doc).unwrap();
    generate_store(&app, &template, DUE, DUE, USERS, now);
    for n in 0..USERS {
        let user = warranty::domain::UserId(format!("user-{n}"));
        let device = serde_json::json!([{
            "installationId": "phone", "hubId": format!("hub-{n}"), "platform": "fcmv1",
            "registeredAt": "2026-01-15T10:00:00Z"
        }]);
        app.services.products.put_user_record(&user, "devices", &device).await.unwrap();
    }
    let t = Instant::now();
    let chosen = warranty::application::reminders::choose(&app.services, now).await.unwrap();
    let choosing = t.elapsed();
    assert_eq!(chosen.created, DUE);
    hub.state.lock().unwrap().send_latency = Some(LATENCY);
    let t = Instant::now();
    let report = warranty::application::reminders::deliver(&app.services, now).await.unwrap();
    let took = t.elapsed();
    let state = hub.snapshot();
    let ids: std::collections::HashSet<&str> =
        state.sent.iter().map(|(_, m)| m["reminderId"].as_str().unwrap()).collect();
    assert_eq!(report.delivered, DUE, "{report:?}");
    assert_eq!(state.send_requests, DUE, "one send per delivery");
    assert_eq!(ids.len(), DUE, "each reminder reached the hub once");
    assert!(state.refused.is_empty(), "{:?}", state.refused.first());
    let policy = app.services.reminders.policy;
    println!(
        "{DUE} due across {USERS} users: choosing {:.1} s; delivering {:.1} s = {:.0} deliveries/s ({} in flight, batches of {}), each reminder sent once",
        choosing.as_secs_f64(),
        took.as_secs_f64(),
        DUE as f64 / took.as_secs_f64(),
        policy.concurrency,
        policy.batch
    );
    println!("command: cargo bench --bench bench -- --only delivery");
}

/// 2,000 requests for products drawn from `ids` (owner, product id) in a fixed pseudo-random
/// order, one client: the public verification, or (`card`) the owner's card read, one point read
/// of the product alone, which tells the store's own cost per read apart from the lookup's.
async fn read_latency(app: &support::TestApp, ids: &[(String, String)], card: bool) -> String {
    let key = std::fs::read_to_string(app.dir.path().join("verification-key")).unwrap();
    let mut lat = Vec::with_capacity(2000);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (owner, id) = &ids[(x % ids.len() as u64) as usize];
        let t;
        let resp = if card {
            t = Instant::now();
            app.get(owner, &format!("/api/products/{id}")).await
        } else {
            let token = warranty::card::token::issue(
                key.trim().as_bytes(),
                id.parse().unwrap(),
                0,
                chrono::Utc::now() + chrono::Duration::days(1),
            );
            let url = format!("{}/api/verify/{token}", app.base);
            t = Instant::now();
            app.client.get(&url).send().await.unwrap()
        };
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    quantiles(&mut lat)
}

/// Verification against stores of `sizes` products, each with its owner lookup.
async fn verify_bench(sizes: &[usize]) {
    use futures_util::StreamExt;
    println!("## verification (GET /api/verify/{{token}}) against the number of links stored, in process");
    for &total in sizes {
        let users = (total / 10).max(1);
        // SQLite first (before the emulator's memory pushes the file out of the page cache): the
        // products table filled in one transaction.
        let app = BACKEND.scope(Backend::Embedded, support::spawn_app()).await;
        let form = Form::registration("Dell", "Inspiron 14", "TPL0001", "2026-01-15", &pdf(2_000));
        assert_eq!(app.post_form("template", form).await.status(), 201);
        let doc: String = app.db().query_row("SELECT doc FROM products", [], |r| r.get(0)).unwrap();
        let template: serde_json::Value = serde_json::from_str(&doc).unwrap();
        generate_store(&app, &template, total, 0, users, chrono::Utc::now());
        let ids: Vec<(String, String)> = {
            let db = app.db();
            let mut stmt = db.prepare("SELECT user_id, id FROM products ORDER BY random() LIMIT 10000").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
        };
        println!(
            "embedded {total:>9} links: verify {}; card read {}",
            read_latency(&app, &ids, false).await,
            read_latency(&app, &ids, true).await
        );
        drop(app);

        // Cosmos DB: products written straight into the container, their lookups by the
        // adapter's own `link_issued` (what issuing a card does).
        let app = BACKEND.scope(Backend::Azure, support::spawn_app()).await;
        let form = Form::registration("Dell", "Inspiron 14", "TPL0001", "2026-01-15", &pdf(2_000));
        let resp = app.post_form("template", form).await;
        assert_eq!(resp.status(), 201);
        let card: serde_json::Value = resp.json().await.unwrap();
        let cosmos = app.cosmos.as_ref().unwrap();
        let mut template = cosmos.document("template", card["id"].as_str().unwrap()).await.unwrap();
        for k in ["pendingOcr", "pendingOcrSince", "nextReminderAt", "_etag", "_rid", "_self", "_ts", "_attachments"] {
            template.as_object_mut().unwrap().remove(k);
        }
        let t = Instant::now();
        let ids: Vec<(String, String)> =
            (0..total).map(|n| (format!("user-{}", n % users), uuid::Uuid::now_v7().to_string())).collect();
        let (services, template) = (&app.services, &template);
        futures_util::stream::iter(ids.iter().enumerate())
            .map(|(n, (user, id))| async move {
                let mut doc = template.clone();
                doc["id"] = id.clone().into();
                doc["userId"] = user.clone().into();
                doc["serialKey"] = format!("dell\u{1f}G{n:07}").into();
                doc["product"]["id"] = id.clone().into();
                doc["product"]["userId"] = user.clone().into();
                doc["product"]["serialNumber"] = format!("G{n:07}").into();
                cosmos.upsert(user, &doc).await;
                let product: warranty::domain::ProductRecord = serde_json::from_value(doc["product"].clone()).unwrap();
                services.products.link_issued(&product).await.unwrap();
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        let filled = t.elapsed().as_secs_f64();
        cosmos.queries_unavailable.enable();
        let verify = read_latency(&app, &ids, false).await;
        let card = read_latency(&app, &ids, true).await;
        cosmos.queries_unavailable.disable();
        println!(
            "cosmos   {total:>9} links (filled in {filled:.0} s; a product document is {} bytes; RSS {} MiB), every query failing: verify {verify}; card read {card}",
            template.to_string().len(),
            rss_kib() / 1024
        );
    }
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    println!("command: cargo bench --bench bench -- --only verify --verify-links {}", sizes.join(","));
}

/// Peak RSS (`VmHWM`) of `pid` in KiB.
fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

async fn export_bench(bin: &Path, store: InvoiceStore) {
    println!("## the export (GET /api/me/export), release binary as a child process, {store:?} invoice store");
    let env = match store {
        InvoiceStore::Files => Vec::new(),
        InvoiceStore::Blob => vec![
            ("WARRANTY_INVOICE_STORE".to_owned(), "blob".to_owned()),
            ("InvoiceStorage".to_owned(), support::azurite_connection_string()),
            ("WARRANTY_BLOB_CONTAINER".to_owned(), format!("export{}", std::process::id())),
        ],
    };
    let (server, _) = start(bin, &env);
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    let client = reqwest::Client::new();
    let token = token("export-user");
    let invoice = pdf(1_000_000);
    for n in 0..200 {
        let form = Form::registration("Acme", "Export 1", &format!("EXP{n:06}"), "2026-01-15", &invoice);
        assert_eq!(post_registration(&client, &base, &token, form).await, 201);
    }
    let before = status_kib(pid, "VmRSS:");
    let peak_before = peak_kib(pid);
    let t = Instant::now();
    // Every part, following the `Link` headers (64 MiB of files per part).
    let (mut bytes, mut peak, mut parts) = (0u64, 0u64, 0u32);
    let mut next = Some("/api/me/export".to_owned());
    while let Some(path) = next.take() {
        let mut resp = client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        parts += 1;
        next = resp
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .map(|l| l.trim_start_matches('<').split('>').next().unwrap_or_default().to_owned());
        while let Some(chunk) = resp.chunk().await.unwrap() {
            bytes += chunk.len() as u64;
            peak = peak.max(status_kib(pid, "VmRSS:"));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert!(bytes > 200_000_000, "every invoice is in the archive");
    println!(
        "200 products, 1 MB invoices: {:.1} MB in {parts} parts in {secs:.2} s = {:.0} MB/s; server RSS {:.1} MiB before, {:.1} MiB at most while streaming (process peak before the export {:.1} MiB, after {:.1} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak_before as f64 / 1024.0,
        peak_kib(pid) as f64 / 1024.0,
    );
    println!("command: cargo bench --bench bench -- --only export");
}

/// Reconciliation's listing on Blob Storage: a 48-hour window in containers of 10,000 and
/// 100,000 invoices, of which 100 were written in the window (through the store) and the rest
/// over the two years before it (uploaded directly under their hour's name).
async fn reconcile_bench(sizes: &[usize]) {
    use futures_util::StreamExt;
    use warranty::adapters::azure::blob::{BlobInvoiceStore, hour_prefix};
    use warranty::ports::InvoiceStore;
    println!("## reconciliation's listing on Blob Storage (Azurite), by container size");
    let account = warranty::adapters::azure::blob::sas::StorageAccount::parse(&warranty::config::Secret::new(
        support::azurite_connection_string(),
    ))
    .unwrap();
    for &total in sizes {
        assert!(total >= 100, "at least the window's 100 invoices");
        let container = format!("reconcile{}x{total}", std::process::id());
        let url: azure_core::http::Url = account
            .container_sas_url(&container, chrono::Utc::now() + chrono::Duration::hours(4))
            .unwrap()
            .parse()
            .unwrap();
        let store = BlobInvoiceStore::new(url.clone(), None).unwrap();
        let owner = warranty::domain::UserId("bench".into());
        store.ensure_container().await.unwrap();
        let client = Arc::new(azure_storage_blob::BlobContainerClient::new(url, None, None).unwrap());
        let now = chrono::Utc::now();
        let t = Instant::now();
        futures_util::stream::iter(0..total - 100)
            .map(|i| {
                let client = client.clone();
                async move {
                    let hour = now - chrono::Duration::hours(50 + (i % 17_000) as i64);
                    let name = format!("{}{}.v1.pdf", hour_prefix(hour), uuid::Uuid::now_v7());
                    client
                        .blob_client(&name)
                        .upload(azure_core::http::RequestContent::from(b"%PDF-1.7 old".to_vec()), None)
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        for _ in 0..100 {
            let mut upload = store.begin_named(&owner, &format!("{}.v1", uuid::Uuid::now_v7()), "pdf").await.unwrap();
            upload.write(b"%PDF-1.7 new").await.unwrap();
            upload.commit().await.unwrap();
        }
        let filled = t.elapsed().as_secs_f64();
        let end = chrono::Utc::now();
        let mut window = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let found = store.written_between(end - chrono::Duration::hours(48), end).await.unwrap();
            window.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(found.len(), 100, "exactly the window's invoices");
        }
        window.sort_by(f64::total_cmp);
        let t = Instant::now();
        let all = store.list().await.unwrap();
        let whole = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(all.len(), total);
        println!(
            "{total} invoices (filled in {filled:.0} s): the 48-hour window in {} list requests (one per hour and one each side), median {:.1} ms, max {:.1} ms over 5 runs; the whole container listed (before): {whole:.0} ms in {} pages",
            51, // 49 hours touched by the window, and one each side
            window[2],
            window[4],
            total.div_ceil(5000),
        );
    }
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    println!("command: cargo bench --bench bench -- --only reconcile --reconcile-invoices {}", sizes.join(","));
}
