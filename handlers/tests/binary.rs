//! The `warranty` binary as the Functions host runs it: a child process told its port by
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, polled on `/`, logging JSON lines on stdout, stopped by
//! SIGTERM. The host itself cannot run here; this follows its documented contract.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_warranty");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the whole response.
fn http(port: u16, request: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out))
}

#[test]
fn serves_on_the_host_port_logs_json_with_trace_ids_and_accepts_its_own_dev_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();

    // `dev-token` creates the secret in the data dir; `serve` must accept what it signs.
    let out = Command::new(BIN)
        .args(["dev-token", "--user", "carol", "--ttl", "5m"])
        .env("WARRANTY_DATA_DIR", dir.path())
        .env_remove("WARRANTY_DEV_JWT_SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let mut child = Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("WARRANTY_DATA_DIR", dir.path())
        .env_remove("WARRANTY_DEV_JWT_SECRET")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // Poll `/` like the host (it retries every 25 ms); the loop ends on the first answer.
    let started = Instant::now();
    let (status, _) = loop {
        if let Some(answer) = http(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the binary never answered on /");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status, 200);

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, response) = http(
        port,
        &format!(
            "GET /api/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             traceparent: 00-{trace}-00f067aa0ba902b7-01\r\nx-request-id: req-42\r\n\r\n"
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{response}");

    // SIGTERM: the host stopping the worker. The process exits cleanly.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");

    let logs: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("every stdout line is JSON"))
        .collect();
    let request_line = logs
        .iter()
        .find(|l| l["message"] == "request" && l["span"]["path"] == "/api/products")
        .unwrap_or_else(|| panic!("no request log line in {logs:?}"));
    assert_eq!(request_line["span"]["trace_id"], trace);
    assert_eq!(request_line["span"]["request_id"], "req-42");
    assert_eq!(request_line["status"], 200);
    assert!(logs.iter().any(|l| l["message"] == "listening"));
}

#[test]
fn a_bad_setting_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", free_port().to_string())
        .env("WARRANTY_DATA_DIR", dir.path())
        .env("WARRANTY_JWKS_URL", "https://login.example.com/keys")
        .env_remove("WARRANTY_JWT_ISSUER")
        .env_remove("WARRANTY_JWT_AUDIENCE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("WARRANTY_JWT_ISSUER"), "{stdout}");
    let out = Command::new(BIN).env("WARRANTY_DEFAULT_MONTHS", "0").arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("default-warranty-months"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
