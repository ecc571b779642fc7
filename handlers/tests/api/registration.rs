//! The registration journey end to end: the real server on a random port, real multipart
//! bodies with real PDF/JPEG/PNG bytes, the real SQLite database and invoice files.

backends!([embedded, blob, azure]:
    registers_pdf_jpeg_and_png_invoices_and_returns_the_warranty_card,
    model_overrides_and_unknown_brands_set_the_warranty_length,
    an_expired_warranty_is_reported_as_expired,
    every_field_rule_is_reported_with_its_code_and_nothing_is_stored,
    all_missing_fields_are_reported_at_once_in_form_order,
    an_executable_renamed_pdf_is_refused_with_415_and_nothing_is_stored,
    invoices_must_be_strictly_smaller_than_10_mib,
    a_50_mb_chunked_upload_is_refused_at_once,
    a_declared_oversize_body_is_refused_before_it_is_sent,
    the_same_user_cannot_register_the_same_brand_and_serial_twice,
    an_idempotency_key_replays_the_first_answer,
    concurrent_retries_with_one_key_create_one_product,
    malformed_requests_get_4xx_problems,
    a_failing_database_gives_503_and_removes_the_stored_invoice,
    users_only_ever_see_their_own_products,
    listing_pages_newest_first_with_a_continuation_token,
    unknown_paths_and_methods_get_problems_and_the_probe_answers,
    the_brand_catalogue_is_served_with_an_etag,
);

use crate::support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Another process holds the database's write lock (a backup, a long migration) while three
/// registrations wait for it: reads and `/api/health` answer at once (health says the store is
/// busy), and every waiting write fails with `503 storage_unavailable` + `Retry-After` at its own
/// deadline — not one budget after the other. Embedded store (its SQLite file).
#[tokio::test]
async fn a_locked_database_delays_no_read_and_queued_writes_fail_within_their_budget() {
    let budget = std::time::Duration::from_millis(1500);
    let app =
        std::sync::Arc::new(spawn_with(move |s| s.products.sqlite_busy_timeout_ms = budget.as_millis() as u64).await);
    let resp =
        app.post_form("alice", Form::registration("Dell", "XPS", "7XK9JH2", &day(-3), &fixture("invoice.pdf"))).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let locker = rusqlite::Connection::open(app.dir.path().join("warranty.sqlite3")).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let mut writers = Vec::new();
    for i in 0..3 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            let form = Form::registration("Dell", "XPS", &format!("8XK9JH{i}"), &day(-3), &fixture("invoice.pdf"));
            let resp = app.post_form("alice", form).await;
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let (status, p) = problem(resp).await;
            (status, p["code"].as_str().unwrap().to_owned(), retry_after, started.elapsed())
        }));
    }
    // While they wait: a read and the health check answer without waiting for the lock.
    let read = tokio::time::timeout(budget / 2, app.get("alice", &format!("/api/products/{id}"))).await;
    assert_eq!(read.expect("a read waited behind the writers").status(), 200);
    let health = tokio::time::timeout(budget / 2, app.client.get(format!("{}/api/health", app.base)).send()).await;
    let health = health.expect("health waited behind the writers").unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["checks"]["productStore"]["status"], "busy", "{body}");
    for w in writers {
        let (status, code, retry_after, took) = w.await.unwrap();
        assert_eq!((status, code.as_str()), (503, "storage_unavailable"));
        assert!(retry_after.is_some());
        // Each at its own deadline (plus the upload), not after the others' budgets.
        assert!(took < budget * 2, "a queued write took {took:?} with a {budget:?} budget");
    }
    locker.execute_batch("ROLLBACK").unwrap();
    let resp =
        app.post_form("alice", Form::registration("Dell", "XPS", "9XK9JH2", &day(-3), &fixture("invoice.pdf"))).await;
    assert_eq!(resp.status(), 201, "writes work again once the lock is released");
}

const MIB: usize = 1024 * 1024;

async fn registers_pdf_jpeg_and_png_invoices_and_returns_the_warranty_card() {
    let app = spawn_app().await;
    let cases = [
        ("invoice.pdf", "application/pdf", "C02XK0ABJGH5"),
        ("invoice.jpg", "image/jpeg", "C02XK0ABJGH6"),
        ("invoice.png", "image/png", "C02XK0ABJGH7"),
    ];
    for (file, content_type, serial) in cases {
        let bytes = fixture(file);
        let date = day(-30);
        let form = Form::new()
            .text("brand", "apple")
            .text("model", "MacBook Air 13")
            .text("serialNumber", &format!("  {} ", serial.to_lowercase()))
            .text("purchaseDate", &date)
            // The declared type is deliberately wrong: only the content decides.
            .file("invoice", &format!("My Scans/{file}"), "application/octet-stream", &bytes);
        let resp = app.post_form("alice", form).await;
        assert_eq!(resp.status(), 201, "{file}");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let card: Value = resp.json().await.unwrap();
        assert_eq!(location, format!("/api/products/{}", card["id"].as_str().unwrap()));
        assert_eq!(card["brand"], "Apple");
        assert_eq!(card["model"], "MacBook Air 13");
        assert_eq!(card["serialNumber"], serial);
        assert_eq!(card["purchaseDate"], date.as_str());
        assert_eq!(card["warrantyMonths"], 12);
        let expected_end = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap() + chrono::Months::new(12);
        assert_eq!(card["warrantyExpiresOn"], expected_end.to_string());
        assert_eq!(card["warrantyStatus"], "active");
        assert_eq!(card["invoice"]["fileName"], file);
        assert_eq!(card["invoice"]["contentType"], content_type);
        assert_eq!(card["invoice"]["sizeBytes"], bytes.len());
        assert_eq!(card["invoice"]["sha256"], sha256_hex(&bytes));
        assert_eq!(card["ocr"]["status"], "queued");
        assert!(card["createdAt"].as_str().unwrap().ends_with('Z'));

        // The card reads back identically, and the stored file is byte-for-byte the upload,
        // named from ids only.
        let again: Value = app.get("alice", &location).await.json().await.unwrap();
        assert_eq!(again, card);
        let id = card["id"].as_str().unwrap();
        let ext = file.rsplit('.').next().unwrap();

        // The OCR event was written with the product, with a message id derived from both.
        let event = app.ocr_event_for(id).await;
        assert_eq!(event["messageId"], format!("{id}:invoice:1"));
        assert_eq!(event["userId"], "alice");
        // `{id}.v1.{ext}`, under the hour it was written on Blob Storage (`2026-12-06T05/…`).
        let stored = event["invoiceLocation"].as_str().unwrap();
        let (folder, name) = stored.rsplit_once('/').unwrap_or(("", stored));
        assert_eq!(name, format!("{id}.v1.{ext}"));
        assert!(
            folder.is_empty()
                || chrono::NaiveDateTime::parse_from_str(&format!("{folder}:00"), "%Y-%m-%dT%H:%M").is_ok(),
            "{stored}"
        );
        assert_eq!(app.read_invoice(stored).unwrap(), bytes);
        assert_eq!(event["invoiceSha256"], sha256_hex(&bytes));
    }
    assert_eq!(app.product_count().await, 3);
    assert_eq!(app.ocr_events().await.len(), 3);
}

async fn model_overrides_and_unknown_brands_set_the_warranty_length() {
    let app = spawn_with(|s| s.server.default_warranty_months = 18).await;
    let pdf = fixture("invoice.pdf");
    let resp = app.post_form("u", Form::registration("Dell", "Latitude 7440", "7xk9jh2", "2024-01-31", &pdf)).await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["warrantyMonths"], 36);
    assert_eq!(card["warrantyExpiresOn"], "2027-01-31");

    let resp = app.post_form("u", Form::registration("Acme Rockets", "R-1", "ab-12/3.4", "2024-02-29", &pdf)).await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["brand"], "Acme Rockets");
    assert_eq!(card["serialNumber"], "AB-12/3.4");
    assert_eq!(card["warrantyMonths"], 18);
    // Leap day + 18 months lands on 29 August; + 12 would clamp to 28 February.
    assert_eq!(card["warrantyExpiresOn"], "2025-08-29");

    let resp =
        app.post_form("u", Form::registration("Samsung", "Galaxy S24", "0B7X3CAR500123K", "2024-05-01", &pdf)).await;
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "serial_format_invalid"));
}

async fn an_expired_warranty_is_reported_as_expired() {
    let app = spawn_app().await;
    let resp =
        app.post_form("u", Form::registration("Nikon", "Z6", "6012345", "2020-01-10", &fixture("invoice.jpg"))).await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["warrantyExpiresOn"], "2021-01-10");
    assert_eq!(card["warrantyStatus"], "expired");
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(app.product_count().await, 0);
    assert_eq!(app.ocr_events().await.len(), 0);
    assert_eq!(app.invoice_files(), Vec::<std::path::PathBuf>::new());
}

async fn every_field_rule_is_reported_with_its_code_and_nothing_is_stored() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", &day(2), &pdf),
            "purchaseDate",
            "purchase_date_in_future",
        ),
        (
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2023-02-29", &pdf),
            "purchaseDate",
            "purchase_date_invalid",
        ),
        (
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "15/03/2024", &pdf),
            "purchaseDate",
            "purchase_date_invalid",
        ),
        (
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "1960-01-01", &pdf),
            "purchaseDate",
            "purchase_date_too_old",
        ),
        (Form::registration("Apple", "iPhone", "C02-XK0", "2024-01-01", &pdf), "serialNumber", "serial_format_invalid"),
        (Form::registration("Acme", "X", "a b c d", "2024-01-01", &pdf), "serialNumber", "serial_format_invalid"),
        (Form::registration(" ", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf), "brand", "brand_missing"),
        (Form::registration("Apple", &"m".repeat(101), "C02XK0ABJGH5", "2024-01-01", &pdf), "model", "field_too_long"),
        (
            Form::new()
                .text("brand", "Apple")
                .text("model", "iPhone")
                .text("serialNumber", "C02XK0ABJGH5")
                .text("purchaseDate", "2024-01-01"),
            "invoice",
            "invoice_missing",
        ),
        (
            Form::new()
                .text("brand", "Apple")
                .text("model", "iPhone")
                .text("serialNumber", "C02XK0ABJGH5")
                .text("purchaseDate", "2024-01-01")
                .file("invoice", "empty.pdf", "application/pdf", b""),
            "invoice",
            "invoice_empty",
        ),
        (
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf).text("brand", "Samsung"),
            "brand",
            "field_duplicated",
        ),
        (
            Form::new()
                .text("model", "iPhone")
                .text("serialNumber", "C02XK0ABJGH5")
                .text("purchaseDate", "2024-01-01")
                .file("invoice", "a.pdf", "application/pdf", &pdf),
            "brand",
            "brand_missing",
        ),
    ];
    for (form, field, code) in cases {
        let (status, p) = problem(app.post_form("alice", form).await).await;
        assert_eq!(status, 422, "{code}: {p}");
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], 422);
        assert_eq!(p["errors"][0]["field"], field, "{p}");
        assert_eq!(p["errors"][0]["code"], code, "{p}");
        assert!(p["requestId"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(p["type"], format!("https://warranty.example.com/problems/{code}"));
    }
    assert_nothing_stored(&app).await;
}

async fn all_missing_fields_are_reported_at_once_in_form_order() {
    let app = spawn_app().await;
    let (status, p) = problem(app.post_form("alice", Form::new()).await).await;
    assert_eq!(status, 422);
    let codes: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        ["brand_missing", "model_missing", "serial_number_missing", "purchase_date_missing", "invoice_missing"]
    );
    assert_eq!(p["code"], "brand_missing");
}

async fn an_executable_renamed_pdf_is_refused_with_415_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.extend(std::iter::repeat_n(0u8, 4096));
    for bytes in [exe, b"<html><script>alert(1)</script></html>".to_vec(), b"%PD".to_vec()] {
        let form = Form::new()
            .text("brand", "Apple")
            .text("model", "iPhone")
            .text("serialNumber", "C02XK0ABJGH5")
            .text("purchaseDate", "2024-01-01")
            .file("invoice", "invoice.pdf", "application/pdf", &bytes);
        let (status, p) = problem(app.post_form("alice", form).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (415, "invoice_type_unsupported"));
    }
    assert_nothing_stored(&app).await;
}

fn pdf_of_size(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.resize(n, b'A');
    v
}

async fn invoices_must_be_strictly_smaller_than_10_mib() {
    let app = spawn_app().await;
    let ok = pdf_of_size(10 * MIB - 1);
    let resp = app.post_form("alice", Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &ok)).await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["invoice"]["sizeBytes"], 10 * MIB - 1);

    let too_big = pdf_of_size(10 * MIB);
    let resp =
        app.post_form("alice", Form::registration("Apple", "iPhone", "C02XK0ABJGH6", "2024-01-01", &too_big)).await;
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (413, "invoice_too_large"));
    assert_eq!(app.product_count().await, 1);
    assert_eq!(app.invoice_files().len(), 1, "only the accepted invoice is on disk");
}

/// Reads one HTTP/1.1 response head and returns (status, head text).
async fn read_response_head(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// A body of unknown length never reaches the handler through the Functions host (it forwards
/// a body only with a Content-Length), so the handler refuses one at once, before reading it,
/// with 411: the same answer here as behind the gateway.
async fn a_50_mb_chunked_upload_is_refused_at_once() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let boundary = "b0undary";
    let head = format!(
        "POST /api/products HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n",
        token("alice")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The client keeps sending 50 MB in 64 KiB chunks; write errors after the server has
    // answered are expected and ignored.
    let sender = tokio::spawn(async move {
        let preamble = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"big.pdf\"\r\n\r\n%PDF-1.7\n"
        );
        let mut chunks = vec![preamble.into_bytes()];
        let filler = vec![b'A'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 50 * 1_000_000 {
            chunks.push(filler.clone());
            sent += filler.len();
            for c in chunks.drain(..) {
                let framed = [format!("{:x}\r\n", c.len()).into_bytes(), c, b"\r\n".to_vec()].concat();
                if writer.write_all(&framed).await.is_err() {
                    return sent;
                }
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
        sent
    });
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = reader.read(&mut byte).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    assert!(head.starts_with("HTTP/1.1 411"), "{head}");
    assert!(head.to_lowercase().contains("content-type: application/problem+json"));
    let _ = sender.await;
    assert_nothing_stored(&app).await;
}

async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /api/products HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 52428800\r\nExpect: 100-continue\r\n\r\n",
        token("alice")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // No body is sent: the answer must come without waiting for it, and must not be a
    // "100 Continue" invitation to upload.
    let (status, _) = read_response_head(&mut stream).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_file_behind() {
    let app = spawn_app().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let part = "--xx\r\nContent-Disposition: form-data; name=\"invoice\"; filename=\"a.pdf\"\r\n\r\n%PDF-1.7\n";
    let head = format!(
        "POST /api/products HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 5000000\r\n\r\n{part}",
        token("alice")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'A'; 1_000_000]).await.unwrap();
    // The partial upload reached the store.
    eventually("a partial upload exists", || !app.invoice_files().is_empty()).await;
    drop(stream);
    eventually("the partial upload is removed", || app.invoice_files().is_empty()).await;
    assert_eq!(app.product_count().await, 0);
}

async fn the_same_user_cannot_register_the_same_brand_and_serial_twice() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let first = app.post_form("alice", Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf)).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Same serial typed differently, brand in another case: still the same product.
    let resp =
        app.post_form("alice", Form::registration("APPLE", "iPhone 15", " c02xk0abjgh5", "2024-02-01", &pdf)).await;
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (409, "product_already_registered"));
    assert_eq!(p["existingProductId"], first["id"]);
    // Another user may register the same serial (a resold device is re-registered).
    let resp = app.post_form("bob", Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf)).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(app.product_count().await, 2);
    assert_eq!(app.ocr_events().await.len(), 2);
    assert_eq!(app.invoice_files().len(), 2, "the refused duplicate's invoice was removed");
}

async fn an_idempotency_key_replays_the_first_answer() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let form = || Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf);
    let first = app.post_form_with("alice", form(), Some("retry-1")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();

    let again = app.post_form_with("alice", form(), Some("retry-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.text().await.unwrap(), first_body);

    // The same key with a different registration is an error, not a silent replay.
    let other = Form::registration("Apple", "iPhone", "C02XK0ABJGH9", "2024-01-01", &pdf);
    let (status, p) = problem(app.post_form_with("alice", other, Some("retry-1")).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "idempotency_key_reused"));
    // Keys are per user: bob's "retry-1" is his own.
    assert_eq!(app.post_form_with("bob", form(), Some("retry-1")).await.status(), 201);

    assert_eq!(app.product_count().await, 2);
    assert_eq!(app.invoice_files().len(), 2);

    let (status, p) = problem(app.post_form_with("alice", form(), Some("has space")).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "idempotency_key_invalid"));
}

async fn concurrent_retries_with_one_key_create_one_product() {
    let app = std::sync::Arc::new(spawn_app().await);
    let pdf = fixture("invoice.png");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        let pdf = pdf.clone();
        tasks.push(tokio::spawn(async move {
            let form = Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &pdf);
            let resp = app.post_form_with("alice", form, Some("same-key")).await;
            assert_eq!(resp.status(), 201);
            let v: Value = resp.json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(app.product_count().await, 1);
    assert_eq!(app.ocr_events().await.len(), 1);
    assert_eq!(app.invoice_files().len(), 1);
}

async fn malformed_requests_get_4xx_problems() {
    let app = spawn_app().await;
    let url = format!("{}/api/products", app.base);
    let send = |ct: &'static str, body: &'static [u8]| {
        app.client.post(&url).bearer_auth(token("alice")).header("content-type", ct).body(body).send()
    };
    let (s, p) = problem(send("application/json", b"{\"brand\":\"Apple\"}").await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "content_type_unsupported"));
    let (s, p) = problem(send("multipart/form-data", b"--x\r\n").await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "content_type_unsupported"));
    let (s, p) = problem(send("multipart/form-data; boundary=x", b"garbage without a boundary").await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "multipart_malformed"));
    let (s, p) = problem(
        send("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=\"brand\"\r\n\r\nApple")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "multipart_malformed"));
    let resp = app.client.post(&url).bearer_auth(token("alice")).send().await.unwrap();
    let (s, p) = problem(resp).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "content_type_unsupported"));
    assert_nothing_stored(&app).await;
}

async fn a_failing_database_gives_503_and_removes_the_stored_invoice() {
    let app = spawn_with(|s| s.products.sqlite_busy_timeout_ms = 200).await;
    // Another writer holds the database lock (our write times out like on a stuck disk), or
    // Cosmos DB answers 503 past the SDK's retries.
    app.start_product_store_outage();
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &fixture("invoice.pdf")),
        )
        .await;
    assert_eq!(resp.headers()["retry-after"], "5");
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "storage_unavailable"));
    assert!(!p["detail"].as_str().unwrap().contains("locked"), "no internals in the body: {p}");
    app.end_product_store_outage();
    assert_nothing_stored(&app).await;
    // Once the database is back, the same registration succeeds.
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &fixture("invoice.pdf")),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn a_failing_invoice_store_gives_503_and_an_unhealthy_health_check() {
    let app = spawn_app().await;
    let tmp = app.invoices_root().join("tmp");
    std::fs::remove_dir(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    assert_invoice_store_outage_is_refused(&app).await;
}

/// With the invoice store broken: a registration is refused with 503 and leaves no product
/// and no OCR event, and the health check names the invoice store as down.
async fn assert_invoice_store_outage_is_refused(app: &TestApp) {
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &fixture("invoice.pdf")),
        )
        .await;
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "storage_unavailable"));
    assert_eq!(app.product_count().await, 0);
    assert_eq!(app.ocr_events().await.len(), 0);
    let health = app.client.get(format!("{}/api/health", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["checks"]["invoiceStore"]["status"], "down");
    assert_eq!(h["checks"]["productStore"]["status"], "up");
}

async fn users_only_ever_see_their_own_products() {
    let app = spawn_app().await;
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2024-01-01", &fixture("invoice.pdf")),
        )
        .await;
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(app.get("alice", &location).await.status(), 200);
    let (status, p) = problem(app.get("mallory", &location).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (404, "not_found"));
    let list: Value = app.get("mallory", "/api/products").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let (status, _) = problem(app.get("alice", "/api/products/not-a-uuid").await).await;
    assert_eq!(status, 404);
    let (status, _) = problem(app.get("alice", &format!("/api/products/{}", uuid::Uuid::now_v7())).await).await;
    assert_eq!(status, 404);
}

async fn listing_pages_newest_first_with_a_continuation_token() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let mut created = Vec::new();
    for i in 0..5 {
        let resp =
            app.post_form("alice", Form::registration("Dell", "XPS", &format!("ABCDE0{i}"), "2024-01-01", &pdf)).await;
        assert_eq!(resp.status(), 201);
        created.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/products?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = app.get("alice", &path).await.json().await.unwrap();
        pages += 1;
        seen.extend(page["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["continuationToken"].as_str() {
            Some(t) => path = format!("/api/products?limit=2&continuationToken={t}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    let all: Value = app.get("alice", "/api/products").await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert!(all["continuationToken"].is_null());

    for (q, code) in [
        ("limit=0", "limit_invalid"),
        ("limit=101", "limit_invalid"),
        ("limit=ten", "limit_invalid"),
        ("continuationToken=bm9wZQ", "continuation_token_invalid"),
    ] {
        let (status, p) = problem(app.get("alice", &format!("/api/products?{q}")).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (400, code), "{q}");
    }
}

async fn unknown_paths_and_methods_get_problems_and_the_probe_answers() {
    let app = spawn_app().await;
    let root = app.client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(root.status(), 200);
    let (status, p) = problem(app.get("alice", "/api/nope").await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (404, "not_found"));
    let resp = app.client.delete(format!("{}/api/products", app.base)).send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "GET, POST");
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (405, "method_not_allowed"));
    let resp =
        app.client.get(format!("{}/api/health", app.base)).header("x-request-id", "trace-me-1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "trace-me-1");
    let h: Value = resp.json().await.unwrap();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
}

async fn the_brand_catalogue_is_served_with_an_etag() {
    let app = spawn_app().await;
    let resp = app.client.get(format!("{}/api/brands", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let brands = body["brands"].as_array().unwrap();
    assert!(brands.len() >= 10);
    for b in brands {
        let re = regex::Regex::new(b["serialPattern"].as_str().unwrap()).unwrap();
        assert!(re.is_match(b["serialExample"].as_str().unwrap()), "{b}");
        assert!(b["warrantyMonths"].as_u64().unwrap() > 0);
        assert!(!b["name"].as_str().unwrap().is_empty());
    }
    assert_eq!(body["otherBrands"]["warrantyMonths"], 24);
    let cached =
        app.client.get(format!("{}/api/brands", app.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(cached.status(), 304);
}

#[tokio::test]
async fn a_failing_blob_store_gives_503_and_stores_no_product() {
    BACKEND
        .scope(Backend::Blob, async {
            let app = spawn_app().await;
            app.delete_blob_container();
            assert_invoice_store_outage_is_refused(&app).await;
        })
        .await
}
