//! The `warranty` binary as the Functions host runs it: a child process told its port by
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, polled on `/`, logging JSON lines on stdout, stopped by
//! SIGTERM. The host itself cannot run here; this follows its documented contract.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
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
        if let Some(answer) = http(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            && answer.1.contains("handler ready")
        {
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

    // An OCR invocation as the host sends it, for a product that does not exist: its log lines
    // carry the invocation's span (message id, product id, delivery count).
    let product = "0193b6a0-0000-7000-8000-0000000000aa";
    let event = serde_json::json!({
        "messageId": format!("{product}:invoice:1"), "productId": product, "userId": "carol",
        "invoiceLocation": "nowhere", "invoiceContentType": "application/pdf", "invoiceSha256": "00",
        "invoiceVersion": 1, "requestedAt": "2026-11-27T10:00:00Z"
    });
    let body = serde_json::json!({"Data": {"message": event}, "Metadata": {"MessageId": "\"msg-span-1\"", "DeliveryCount": "2"}})
        .to_string();
    let (status, response) = http(
        port,
        &format!(
            "POST /ProcessInvoiceOcr HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
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
    let skipped = logs
        .iter()
        .find(|l| l["message"] == "OCR message skipped")
        .unwrap_or_else(|| panic!("no OCR log line in {logs:?}"));
    assert_eq!(skipped["span"]["name"], "ocr", "{skipped}");
    assert_eq!(skipped["span"]["message_id"], "msg-span-1", "{skipped}");
    assert_eq!(skipped["span"]["product_id"], product, "{skipped}");
    assert_eq!(skipped["span"]["delivery_count"], 2, "{skipped}");
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
    // An error: on stderr, which the host logs at Error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARRANTY_JWT_ISSUER"), "{stderr}");
    let out = Command::new(BIN).env("WARRANTY_DEFAULT_MONTHS", "0").arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("default-warranty-months"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A crash while a message is in flight: the process is killed (SIGKILL, no shutdown code runs)
/// while the OCR of a registered invoice is running; after a restart the message's lock expires
/// and it is delivered again, and the card ends up read.
#[test]
fn a_message_in_flight_when_the_process_is_killed_is_redelivered_after_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Stands in for tesseract during the first run only: it records that OCR started, then
    // hangs, so the kill lands mid-delivery. Probes (--version, --list-langs) go to the real one.
    let hang = dir.path().join("hanging-tesseract");
    std::fs::write(
        &hang,
        // Its own process stays (no exec), so its command line, which names the script, shows it
        // running: a reader's environment and files are its own (decision 0025), so no marker
        // file or variable reaches it.
        "#!/bin/sh\ncase \"$1\" in --version|--list-langs) exec tesseract \"$@\";; esac\nsleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();

    let start = |tesseract: &Path, port: u16| {
        Command::new(BIN)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("WARRANTY_DATA_DIR", &data)
            .env("WARRANTY_DEV_JWT_SECRET", "crash-test-secret")
            .env("WARRANTY_TESSERACT_PATH", tesseract)
            .env("WARRANTY_OCR_DISPATCHER", "true")
            .env("WARRANTY_OCR_LOCK_SECS", "2")
            // The crash and the redelivery are under test, read by the stand-in above: PP-OCR
            // (unoptimised in a test build, beside the other tests) could outlast the 2 s lock.
            .env("WARRANTY_OCR_RECOGNIZERS", "tesseract")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_ready = |port: u16| {
        let t = Instant::now();
        while !http(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_some_and(|(_, body)| body.contains("handler ready"))
        {
            assert!(t.elapsed() < Duration::from_secs(30), "not ready");
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    let token = warranty::inbound::auth::dev_token(b"crash-test-secret", "alice", Duration::from_secs(600));

    let port = free_port();
    let mut first = start(&hang, port);
    wait_ready(port);
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.png")).unwrap();
    let boundary = "crashBoundary";
    let mut body = Vec::new();
    for (k, v) in
        [("brand", "Apple"), ("model", "MacBook Air"), ("serialNumber", "C02XK0ABJGH5"), ("purchaseDate", "2026-03-15")]
    {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"i.png\"\r\n\r\n").bytes(),
    );
    body.extend(&png);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        format!(
            "POST /api/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let location = resp.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim().to_owned();

    // The delivery is in flight: OCR started.
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*hang.to_string_lossy()))
            })
            .count()
    };
    let t = Instant::now();
    while running() == 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "OCR never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Its reader goes with it (the reader watches its parent), and the stand-in with the reader.
    let t = Instant::now();
    while running() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "the reader outlived the service");
        std::thread::sleep(Duration::from_millis(20));
    }

    let port = free_port();
    let mut second = start(Path::new("tesseract"), port);
    wait_ready(port);
    let t = Instant::now();
    let ocr = loop {
        let (_, resp) = http(
            port,
            &format!(
                "GET {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
            ),
        )
        .unwrap();
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        let card: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        if matches!(card["ocr"]["status"].as_str(), Some("completed" | "needs_review" | "failed")) {
            break card["ocr"].clone();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never redelivered: {card}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = second.kill();
    let _ = second.wait();
    // Read, not failed. (Tesseract reads this PNG's total as 1198.00 where 1199.00 is printed,
    // and nothing else on it confirms the amount, so the card honestly says needs_review.)
    assert!(matches!(ocr["status"].as_str(), Some("completed" | "needs_review")), "{ocr}");
    assert_eq!(ocr["engine"], "tesseract", "{ocr}");
    assert_eq!(ocr["fields"]["invoiceDate"]["value"], "2026-03-15", "{ocr}");
    assert_eq!(ocr["attempts"], 2, "one attempt died with the process, the redelivery finished: {ocr}");
}
