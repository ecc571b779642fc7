//! Registration throughput and latency on each backend configuration, side by side:
//! `embedded` (SQLite + files), `blob` (SQLite + Azurite) and `azure` (Cosmos DB emulator +
//! Azurite + loopback Service Bus).
//!
//! Run: `cargo bench --bench backends` (add `-- --seconds 10 --clients 16`). The app runs in
//! this process, built exactly as the integration tests build it (`tests/api/support`), because the
//! Cosmos DB emulator is an in-process transport that only a dev-dependency provides; each
//! configuration gets the same load from the same generator. The emulator does no network or
//! disk I/O, so the `azure` figures measure this service and the SDK's pipeline, not Cosmos DB's
//! own latency (single-digit milliseconds for a point write in the same region, per its SLA).

#[path = "../tests/api/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{BACKEND, Backend, Form};

struct Args {
    seconds: u64,
    clients: usize,
}

fn args() -> Args {
    let mut a = Args { seconds: 10, clients: 16 };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--seconds" => a.seconds = w[1].parse().expect("--seconds N"),
            "--clients" => a.clients = w[1].parse().expect("--clients N"),
            _ => {}
        }
    }
    a
}

/// A PDF of about `size` bytes (a valid header, padding in a comment).
fn pdf(size: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%".to_vec();
    v.resize(size, b'x');
    v.extend_from_slice(b"\n%%EOF\n");
    v
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

async fn run(backend: Backend, args: &Args) {
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
    lat.sort();
    println!(
        "{:<8} registrations, 1 MB PDF, {} clients, {:.1} s: {} done, {:.0} req/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        format!("{backend:?}").to_lowercase(),
        args.clients,
        elapsed,
        lat.len(),
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0
    );
    if let Some(bus) = &app.bus {
        let state = bus.snapshot();
        println!(
            "         Service Bus: {} messages accepted for {} registrations (each published before its 201)",
            state.accepted.len(),
            lat.len()
        );
    }
}

fn main() {
    let args = args();
    println!(
        "# registration on each backend ({} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("command: cargo bench --bench backends -- --seconds {} --clients {}", args.seconds, args.clients);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for backend in [Backend::Embedded, Backend::Blob, Backend::Azure] {
            run(backend, &args).await;
        }
    });
}
