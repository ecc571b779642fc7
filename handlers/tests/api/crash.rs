//! Crashes: the real binary killed with SIGKILL in the middle of concurrent registrations,
//! restarted on the same data directory. What was acknowledged stays, every product has its OCR
//! event, and no invoice is left without its product (start-up reconciliation).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_warranty");

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `data` and waits (polling `/`, as the host does) until its stores are
/// connected.
async fn start(data: &Path) -> Proc {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", data)
        .env("WARRANTY_DEV_JWT_SECRET", SECRET)
        // Events stay in the queue so the test can count them.
        .env("WARRANTY_OCR_DISPATCHER", "false")
        .env("WARRANTY_ORPHAN_GRACE_SECS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until_ready(&client, &base).await;
    Proc { child, base }
}

fn invoices(data: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data.join("invoices"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Product ids, the files they reference (invoices and coverages' proofs), and OCR events.
fn stored(data: &Path) -> (BTreeSet<String>, BTreeSet<String>, usize) {
    let db = rusqlite::Connection::open(data.join("warranty.sqlite3")).unwrap();
    let mut q = db.prepare("SELECT id, doc FROM products").unwrap();
    let rows: Vec<(String, String)> =
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let events: usize = db.query_row("SELECT count(*) FROM ocr_queue", [], |r| r.get(0)).unwrap();
    let mut files = BTreeSet::new();
    for (_, doc) in &rows {
        let doc: Value = serde_json::from_str(doc).unwrap();
        files.insert(doc["invoice"]["location"].as_str().unwrap().to_owned());
        for c in doc["coverages"].as_array().into_iter().flatten() {
            if let Some(proof) = c["proof"]["location"].as_str() {
                files.insert(proof.to_owned());
            }
        }
    }
    (rows.iter().map(|r| r.0.clone()).collect(), files, events)
}

/// Waits until reconciliation has left exactly the referenced invoices (bounded).
async fn until_files_match(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, locations, _) = stored(data);
        let files = invoices(data);
        if files == locations {
            return;
        }
        assert!(Instant::now() < deadline, "invoices {files:?} ≠ referenced {locations:?}");
        tokio::task::yield_now().await;
    }
}

/// Invoices no product references — a new product's, an old version of an existing one — are
/// removed at start; the referenced one stays.
#[tokio::test]
async fn unreferenced_invoices_are_removed_at_start_and_referenced_ones_kept() {
    let data = tempfile::tempdir().unwrap();
    let app = start(data.path()).await;
    let client = reqwest::Client::new();
    let form = Form::registration("Dell", "XPS", "7XK9JH2", &day(-3), &fixture("invoice.pdf"));
    let resp = post_form_to(&client, &format!("{}/api/products", app.base), "alice", form).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // A coverage with its proof document: referenced, so it stays.
    let form = Form::new().text("kind", "insurance").text("months", "24").file(
        "proof",
        "policy.png",
        "image/png",
        &fixture("invoice.png"),
    );
    let resp = post_form_to(&client, &format!("{}/api/products/{id}/coverages", app.base), "alice", form).await;
    assert_eq!(resp.status(), 201);
    let cid = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    drop(app);
    // What an interrupted registration, an interrupted invoice replacement and an interrupted
    // coverage with a proof leave behind.
    let orphan = format!("{}.v1.pdf", uuid::Uuid::now_v7());
    let old_version = format!("{id}.v7.pdf");
    let orphan_proof = format!("{id}.proof-{}.png", uuid::Uuid::now_v7());
    for (name, bytes) in
        [(&orphan, &b"%PDF-1.7 orphan"[..]), (&old_version, b"%PDF-1.7 stale"), (&orphan_proof, b"\x89PNG orphan")]
    {
        std::fs::write(data.path().join("invoices").join(name), bytes).unwrap();
    }
    assert_eq!(invoices(data.path()).len(), 5);
    let _app = start(data.path()).await;
    until_files_match(data.path()).await;
    assert_eq!(invoices(data.path()), BTreeSet::from([format!("{id}.v1.pdf"), format!("{id}.proof-{cid}.png")]));
}

/// SIGKILL at several points of a burst of concurrent registrations, then a restart: every
/// acknowledged product is stored (at most the in-flight ones more), every product has its OCR
/// event, and the invoices are exactly the products' after start-up reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_registration_burst_loses_nothing_and_leaves_no_orphan() {
    let data = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut in_flight_at_kills = 0;
    let pdf = Arc::new({
        let mut v = b"%PDF-1.7\n%".to_vec();
        v.resize(48 * 1024, b'x');
        v
    });
    for round in 0..6u32 {
        let app = start(data.path()).await;
        let sent = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for c in 0..8u32 {
            let (base, acked, pdf, sent, done) =
                (app.base.clone(), acked.clone(), pdf.clone(), sent.clone(), done.clone());
            clients.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    let form = Form::registration("Acme", "Burst", &format!("R{round}C{c}N{n}"), "2026-01-15", &pdf);
                    let (ct, body) = form.finish();
                    sent.fetch_add(1, Ordering::SeqCst);
                    let resp = client
                        .post(format!("{base}/api/products"))
                        .bearer_auth(token("alice"))
                        .header("content-type", ct)
                        .body(body)
                        .send()
                        .await;
                    let Ok(resp) = resp else { return };
                    if resp.status() != 201 {
                        return;
                    }
                    let Ok(card) = resp.json::<Value>().await else { return };
                    acked.lock().unwrap().insert(card["id"].as_str().unwrap().to_owned());
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Kill at a different point each round.
        let threshold = 5 + 7 * round as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        while done.load(Ordering::SeqCst) < threshold {
            assert!(Instant::now() < deadline, "the burst stalled");
            tokio::task::yield_now().await;
        }
        let mut app = app;
        app.child.kill().unwrap(); // SIGKILL
        app.child.wait().unwrap();
        in_flight_at_kills += sent.load(Ordering::SeqCst) - done.load(Ordering::SeqCst);
        for c in clients {
            c.await.unwrap();
        }
    }
    let _app = start(data.path()).await;
    until_files_match(data.path()).await;
    let (products, locations, events) = stored(data.path());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 6 * 5, "the burst registered products: {}", acked.len());
    let lost: Vec<_> = acked.difference(&products).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(products.len() - acked.len() <= in_flight_at_kills, "more products than acknowledged + in flight");
    assert_eq!(events, products.len(), "every product has its OCR event");
    assert_eq!(invoices(data.path()), locations, "the invoices are exactly the products'");
}
