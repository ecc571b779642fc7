//! Hostile clients on real sockets: heads that never finish, bodies that stop mid-way, more
//! connections than the service will hold, and the open-file limit.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads until the server closes the connection (or `bound` passes: then the server held it).
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Result<String, String> {
    let mut out = Vec::new();
    match tokio::time::timeout(bound, stream.read_to_end(&mut out)).await {
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => Err(format!("the server still holds the connection after {bound:?}")),
    }
}

/// A request head that never finishes is cut off after the header timeout.
#[tokio::test]
async fn a_request_head_that_never_finishes_is_disconnected() {
    let app = spawn_with(|s| s.server.header_timeout_secs = 1).await;
    let mut slow = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    slow.write_all(b"GET /api/brands HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    closed_within(&mut slow, Duration::from_secs(10)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout");
    // The service still answers others.
    assert_eq!(app.client.get(format!("{}/api/brands", app.base)).send().await.unwrap().status(), 200);
}

/// An upload that stops sending is failed after the idle timeout, and its partial invoice is
/// removed.
#[tokio::test]
async fn an_upload_that_stops_mid_way_fails_and_leaves_no_partial_file() {
    let app = spawn_with(|s| s.server.body_idle_timeout_secs = 1).await;
    let mut pdf = b"%PDF-1.7\n%".to_vec();
    pdf.resize(600_000, b'x');
    let (ct, body) = Form::registration("Dell", "XPS", "7XK9JH2", &day(-3), &pdf).finish();
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /api/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        token("alice"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Half the body (past the invoice's first bytes), then silence.
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    let tmp = app.dir.path().join("invoices").join("tmp");
    eventually("the upload started", || std::fs::read_dir(&tmp).unwrap().count() == 1).await;
    let answer = closed_within(&mut stream, Duration::from_secs(10)).await.unwrap();
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    eventually("the partial upload is removed", || std::fs::read_dir(&tmp).unwrap().count() == 0).await;
    let listed: serde_json::Value = app.get("alice", "/api/products").await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "nothing was registered");
}

/// Past the connection ceiling, a new connection gets `503 server_busy` with `Retry-After` at
/// once instead of waiting or exhausting descriptors; once connections close, service resumes.
#[tokio::test]
async fn past_the_connection_ceiling_new_connections_are_shed_with_503() {
    let app = spawn_with(|s| s.server.max_connections = 8).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        // Each holds its connection with a request head in progress.
        c.write_all(b"GET /api/brands HTTP/1.1\r\n").await.unwrap();
        idle.push(c);
    }
    let mut extra = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    extra.write_all(b"GET /api/brands HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = closed_within(&mut extra, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after:"), "{answer}");
    assert!(answer.contains("\"code\":\"server_busy\""), "{answer}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.client.get(format!("{}/api/brands", app.base)).send().await {
            Ok(r) if r.status() == 200 => break,
            _ => assert!(Instant::now() < deadline, "service did not resume"),
        }
        tokio::task::yield_now().await;
    }
}

/// The binary raises its soft open-file limit to the hard one at start.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let limits = |pid: u32| -> (String, String) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[3].to_owned(), f[4].to_owned())
    };
    let (soft, hard) = limits(std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Start it with a low soft limit so the raise is visible wherever the hard limit is higher.
    let mut child = std::process::Command::new("sh")
        .args(["-c", &format!("ulimit -S -n 256 && exec {} serve", env!("CARGO_BIN_EXE_warranty"))])
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", dir.path())
        .env("WARRANTY_DEV_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the binary never listened");
        std::thread::yield_now();
    }
    let (child_soft, child_hard) = limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if hard == "256" {
        eprintln!("skipped: the hard limit here is 256 (this process: soft {soft}, hard {hard})");
        return;
    }
    assert_eq!(child_soft, child_hard, "soft limit raised to the hard one");
}
