//! A full disk: the real binary with its data directory on a small tmpfs, filled up while it
//! runs. Every refused write answers `507 storage_full` and leaves nothing behind; reads keep
//! working; health says `full`; once space is freed, registrations work again without a
//! restart.
//!
//! The tmpfs is mounted inside a user + mount namespace (`unshare --user --map-root-user
//! --mount`), so no root is needed where the kernel allows unprivileged user namespaces. Where
//! it does not (or `unshare` is missing), the test prints why and returns. The test sees the
//! mount through `/proc/{pid}/root`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_warranty");
/// Size of the volume: room for the database and one largest invoice (10 MiB), not much more.
const VOLUME: &str = "16m";
/// The tmpfs page: the unit in which it hands out space.
const PAGE: u64 = 4096;

struct Namespaced {
    child: Child,
    base: String,
    /// The data directory as this process sees it (through the child's root).
    data: PathBuf,
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a tmpfs cannot be mounted here, if it cannot.
fn cannot_mount(dir: &Path) -> Option<String> {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", r#"mount -t tmpfs -o size=1m tmpfs "$0""#])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Err(e) => Some(format!("`unshare` cannot run: {e}")),
        Ok(out) if !out.status.success() => {
            Some(format!("cannot mount a tmpfs in a user namespace: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
        Ok(_) => None,
    }
}

/// Starts the binary with its data directory on a fresh tmpfs of [`VOLUME`] and waits until it
/// answers. `None` (with the reason printed) where the namespace cannot be made.
async fn start_on_tmpfs(mount: &Path, log: std::fs::File) -> Option<Namespaced> {
    if let Some(why) = cannot_mount(mount) {
        eprintln!("SKIPPED full-disk test: {why}");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(r#"mount -t tmpfs -o size={VOLUME} tmpfs "$0" && exec "$1""#))
        .arg(mount)
        .arg(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", mount.join("data"))
        .env("WARRANTY_DEV_JWT_SECRET", SECRET)
        .env("WARRANTY_OCR_DISPATCHER", "false")
        .env("RUST_LOG", "warn")
        // Warnings and errors go to stderr (the host's level for them); the test reads them.
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut ns = Namespaced { data: PathBuf::new(), base: format!("http://127.0.0.1:{port}"), child };
    // `unshare` and `sh` exec: the pid is the service's.
    ns.data =
        PathBuf::from(format!("/proc/{}/root", ns.child.id())).join(mount.strip_prefix("/").unwrap()).join("data");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&ns.base).send().await
            && r.text().await.is_ok_and(|t| t.contains("ready"))
        {
            break;
        }
        if let Some(status) = ns.child.try_wait().unwrap() {
            panic!("the service exited on the tmpfs: {status}");
        }
        assert!(Instant::now() < deadline, "the binary never became ready");
        tokio::task::yield_now().await;
    }
    Some(ns)
}

fn invoice(size: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%".to_vec();
    v.resize(size, b'x');
    v
}

async fn register(base: &str, serial: &str, pdf: &[u8]) -> (u16, Value, Option<String>) {
    let (ct, body) = Form::registration("Acme", "Full", serial, &day(-3), pdf).finish();
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/products"))
        .bearer_auth(token("alice"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("an answer, not a reset connection");
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap(), retry)
}

async fn health(base: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}/api/health")).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Product ids the API lists for alice.
async fn listed(base: &str) -> BTreeSet<String> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/products?limit=100"))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "reads work on a full disk");
    let page: Value = resp.json().await.unwrap();
    page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

/// Invoice files, and unfinished uploads, on the volume.
fn files(data: &Path) -> (usize, usize) {
    let count = |dir: PathBuf| std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_file()).count();
    (count(data.join("invoices")), count(data.join("invoices/tmp")))
}

/// Appends to `filler` until the volume refuses: the volume is then full. Returns the filler's
/// size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let block = vec![0xA5u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "the volume filled up: {e}");
                break;
            }
        }
    }
    f.metadata().unwrap().len()
}

/// Fills the volume the service writes to and checks, at every level of free space on the way
/// back: a registration either answers 201 with its product and its file, or `507
/// storage_full` (with `Retry-After`) with no product, no invoice file and no partial upload;
/// nothing else, and the process never dies. Reads and health keep answering; freeing space
/// brings registrations back without a restart.
#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_leaves_nothing_behind() {
    let mount = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let Some(mut ns) = start_on_tmpfs(mount.path(), log.reopen().unwrap()).await else { return };
    let base = ns.base.clone();

    let (status, first, _) = register(&base, "FULL-0", &invoice(200_000)).await;
    assert_eq!(status, 201, "{first}");
    let (status, h) = health(&base).await;
    assert_eq!((status, h["checks"]["invoiceStore"]["status"].as_str()), (200, Some("up")), "{h}");

    // No space at all.
    let filler = ns.data.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0);
    let (status, p, retry) = register(&base, "FULL-1", &invoice(300_000)).await;
    assert_eq!((status, p["code"].as_str()), (507, Some("storage_full")), "{p}");
    assert!(retry.is_some(), "507 carries Retry-After");
    assert_eq!(listed(&base).await, BTreeSet::from([first["id"].as_str().unwrap().to_owned()]));
    assert_eq!(files(&ns.data), (1, 0), "no file of the refused registration");
    let (status, h) = health(&base).await;
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["checks"]["invoiceStore"]["status"], "full", "{h}");
    assert_eq!(h["checks"]["productStore"]["status"], "full", "{h}");
    let card = reqwest::Client::new()
        .get(format!("{base}/api/products/{}", first["id"].as_str().unwrap()))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(card.status(), 200, "a card is readable on a full disk");

    // Room for the invoice file and one page more: the file is written, then the database's
    // log cannot grow. The registration is refused and its file removed.
    let pdf = invoice(300_000);
    let size = filled - ((pdf.len() as u64).div_ceil(PAGE) * PAGE + PAGE);
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(size).unwrap();
    let (status, p, _) = register(&base, "FULL-2", &pdf).await;
    assert_eq!((status, p["code"].as_str()), (507, Some("storage_full")), "{p}");
    assert_eq!(files(&ns.data), (1, 0), "the invoice of the refused registration is removed");
    assert_eq!(listed(&base).await.len(), 1);
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("no storage space left") && l.contains(r#""backend":"product store""#)),
        "the database, not the file, was what ran out of space:\n{logged}"
    );

    // Full again, then space given back 48 KiB at a time: each registration of a 300 KB invoice
    // fails at another point of its upload (or in the database) until one fits.
    let mut size = fill(&filler);
    let mut refused = 0;
    let mut n = 3;
    loop {
        let (status, body, retry) = register(&base, &format!("FULL-{n}"), &invoice(300_000)).await;
        let ids = listed(&base).await;
        let (stored, partial) = files(&ns.data);
        assert_eq!(partial, 0, "no partial upload after answer {status}");
        assert_eq!(stored, ids.len(), "one invoice per product after answer {status}: {ids:?}");
        match status {
            507 => {
                assert_eq!(body["code"], "storage_full", "{body}");
                assert!(retry.is_some());
                refused += 1;
            }
            201 => {
                assert!(ids.contains(body["id"].as_str().unwrap()), "the acknowledged product is stored");
                break;
            }
            other => panic!("a full disk answered {other}: {body}"),
        }
        assert!(ns.child.try_wait().unwrap().is_none(), "the service died");
        size = size.saturating_sub(48 * 1024);
        assert!(size > 0, "registrations kept failing after all the filler was gone");
        std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(size).unwrap();
        n += 1;
    }
    eprintln!("filled {filled} bytes; {refused} refusals before a registration fitted");
    assert!(refused >= 2, "the sweep passed through refusals ({refused})");

    // All space back: healthy, and registrations work.
    std::fs::remove_file(&filler).unwrap();
    let (status, h) = health(&base).await;
    assert_eq!(status, 200, "{h}");
    let (status, body, _) = register(&base, "FULL-AFTER", &invoice(300_000)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(files(&ns.data), (listed(&base).await.len(), 0));
}
