//! `POST /ProcessInvoiceOcr` as the Functions host calls it for a Service Bus message.
//!
//! Neither the Functions host nor Service Bus can run here; these tests post the payloads the
//! host documents and produces (`{"Data":{…},"Metadata":{…}}`, Metadata scalars as
//! JSON-serialised strings, the body JSON-encoded once or twice or base64, chunked transfer)
//! and assert the outcome rules: 2xx completes, non-2xx makes the host retry.

backends!([embedded, blob, azure]:
    every_body_encoding_the_host_uses_is_accepted,
    a_matching_invoice_completes_and_a_mismatch_needs_review,
    an_unsupported_total_needs_review_and_says_which_field,
    a_redelivered_message_is_not_processed_twice,
    unreadable_invoices_are_recorded_as_failed_and_not_retried,
    a_deleted_product_completes_the_message,
    a_locked_database_is_transient_and_the_retry_succeeds,
    a_missing_ocr_engine_fails_the_invocation_and_says_so,
    malformed_invocations_are_refused_so_they_dead_letter,
    hostile_inputs_hit_the_limits_not_the_worker,
);

backends!([embedded]: a_stored_invoice_that_changed_fails_as_corrupt_and_an_older_record_is_checked_by_sha256);

use crate::support::*;
use base64::Engine;
use serde_json::{Value, json};

/// Registers `invoice` with a registration that matches the fixture's content.
async fn register(app: &TestApp, file: &str, bytes: &[u8], serial: &str) -> (String, Value) {
    let form = Form::new()
        .text("brand", "Apple")
        .text("model", "MacBook Air")
        .text("serialNumber", serial)
        .text("purchaseDate", "2026-03-15")
        .file("invoice", file, "application/octet-stream", bytes);
    let resp = app.post_form("alice", form).await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();
    let event = app.ocr_event_for(&id).await;
    (id, event)
}

fn payload(data: Value, delivery: u32, message_id: &str) -> Value {
    json!({
        "Data": { "message": data },
        "Metadata": {
            "DeliveryCount": delivery.to_string(),
            "MessageId": serde_json::to_string(message_id).unwrap(),
            "EnqueuedTimeUtc": "\"2026-11-24T10:00:00Z\"",
            "sys": { "MethodName": "ProcessInvoiceOcr", "UtcNow": "2026-11-24T10:00:01Z" }
        }
    })
}

/// Posts with chunked transfer encoding (a streamed body has no Content-Length).
async fn invoke(app: &TestApp, payload: &Value) -> (u16, Value) {
    let bytes = payload.to_string().into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let resp = app
        .client
        .post(format!("{}/ProcessInvoiceOcr", app.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Outputs"], json!({}), "{body}");
    assert!(body["Logs"].is_array());
    assert!(body["ReturnValue"].is_null());
    (status, body)
}

async fn ocr_of(app: &TestApp, id: &str) -> Value {
    app.get("alice", &format!("/api/products/{id}")).await.json::<Value>().await.unwrap()["ocr"].clone()
}

async fn every_body_encoding_the_host_uses_is_accepted() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    type Encode = Box<dyn Fn(&Value) -> Value>;
    let encodings: Vec<(&str, Encode)> = vec![
        ("object", Box::new(|e: &Value| e.clone())),
        ("json once", Box::new(|e: &Value| Value::String(e.to_string()))),
        ("json twice", Box::new(|e: &Value| Value::String(Value::String(e.to_string()).to_string()))),
        (
            "base64 (dataType binary)",
            Box::new(|e: &Value| Value::String(base64::engine::general_purpose::STANDARD.encode(e.to_string()))),
        ),
    ];
    for (i, (what, encode)) in encodings.iter().enumerate() {
        let (id, event) = register(&app, "invoice.pdf", &pdf, &format!("C02XK0ABJGH{i}")).await;
        let (status, body) = invoke(&app, &payload(encode(&event), 1, event["messageId"].as_str().unwrap())).await;
        assert_eq!(status, 200, "{what}: {body}");
        let ocr = ocr_of(&app, &id).await;
        assert_eq!(ocr["engine"], "pdf-text", "{what}");
        assert_eq!(ocr["attempts"], 1);
        assert_eq!(ocr["fields"]["invoiceDate"]["value"], "2026-03-15", "{what}: {ocr}");
        assert_eq!(ocr["fields"]["total"]["value"], "1199.00", "{what}: {ocr}");
        assert!(ocr["processedAt"].is_string());
    }
}

async fn a_matching_invoice_completes_and_a_mismatch_needs_review() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf"); // Apple MacBook Air, C02XK0ABJGH5, 2026-03-15
    let (id, event) = register(&app, "invoice.pdf", &pdf, "C02XK0ABJGH5").await;
    assert_eq!(invoke(&app, &payload(event.clone(), 1, "m1")).await.0, 200);
    let ocr = ocr_of(&app, &id).await;
    assert_eq!(ocr["status"], "completed", "{ocr}");
    assert!(ocr.get("uncertainFields").is_none(), "{ocr}");
    assert_eq!(
        ocr["matches"],
        json!({"purchaseDate": "matched", "serialNumber": "matched", "brand": "matched", "model": "matched"})
    );

    // Same invoice, registered with another serial number: it does not prove this product.
    let (id2, event2) = register(&app, "invoice.pdf", &pdf, "C02XK0ZZZZZ9").await;
    assert_eq!(invoke(&app, &payload(event2, 1, "m2")).await.0, 200);
    let ocr = ocr_of(&app, &id2).await;
    assert_eq!(ocr["status"], "needs_review");
    assert_eq!(ocr["matches"]["serialNumber"], "not_found");
    assert_eq!(ocr["uncertainFields"], json!(["serialNumber"]), "{ocr}");
}

/// Everything matches the registration, but two amounts under equal labels leave the total
/// unsupported: the card is not `completed` and names the field to check.
async fn an_unsupported_total_needs_review_and_says_which_field() {
    let app = spawn_app().await;
    let pdf = text_pdf(&[
        "Apple MacBook Air Serial C02XK0ABJGH5",
        "Invoice date 2026-03-15",
        "Amount 1199.00 EUR",
        "Amount 99.00 EUR",
    ]);
    let (id, event) = register(&app, "invoice.pdf", &pdf, "C02XK0ABJGH5").await;
    assert_eq!(invoke(&app, &payload(event, 1, "m1")).await.0, 200);
    let ocr = ocr_of(&app, &id).await;
    assert_eq!(ocr["engine"], "pdf-text", "{ocr}");
    assert_eq!(ocr["status"], "needs_review", "{ocr}");
    assert_eq!(ocr["uncertainFields"], json!(["total"]), "{ocr}");
    assert_eq!(
        ocr["matches"],
        json!({"purchaseDate": "matched", "serialNumber": "matched", "brand": "matched", "model": "matched"})
    );

    // The same document with a grand total that subtotal and tax add up to: completed.
    let pdf = text_pdf(&[
        "Apple MacBook Air Serial C02XK0ABJGH5",
        "Invoice date 2026-03-15",
        "Subtotal 1000.00 EUR",
        "VAT 19% 190.00 EUR",
        "Total due 1190.00 EUR",
    ]);
    let (id, event) = register(&app, "invoice.pdf", &pdf, "C02XK0ABJGH6").await;
    assert_eq!(invoke(&app, &payload(event, 1, "m2")).await.0, 200);
    let ocr = ocr_of(&app, &id).await;
    assert_eq!(ocr["status"], "needs_review", "another serial: {ocr}");
    assert_eq!(ocr["uncertainFields"], json!(["serialNumber"]), "the total is supported: {ocr}");
    assert_eq!(ocr["fields"]["total"]["value"], "1190.00");
}

async fn a_redelivered_message_is_not_processed_twice() {
    let app = spawn_app().await;
    let (id, event) = register(&app, "invoice.pdf", &fixture("invoice.pdf"), "C02XK0ABJGH5").await;
    assert_eq!(invoke(&app, &payload(event.clone(), 1, "m1")).await.0, 200);
    let first = ocr_of(&app, &id).await;
    let (status, body) = invoke(&app, &payload(event, 2, "m1")).await;
    assert_eq!(status, 200);
    assert!(body["Logs"][0].as_str().unwrap().contains("already_processed"), "{body}");
    assert_eq!(ocr_of(&app, &id).await, first, "nothing changed, attempts included");
}

async fn unreadable_invoices_are_recorded_as_failed_and_not_retried() {
    let app = spawn_app().await;
    let mut corrupt = b"%PDF-1.7\n".to_vec();
    corrupt.extend_from_slice(b"this is not a PDF body at all \x00\x01\x02");
    let zero_pages = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec();
    // The standard security handler with a user password we do not know.
    let encrypted = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n\
3 0 obj << /Filter /Standard /V 2 /R 3 /Length 128 /P -3904 /O <0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef> /U <fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210> >> endobj\n\
trailer << /Root 1 0 R /Encrypt 3 0 R /ID [<00112233445566778899aabbccddeeff><00112233445566778899aabbccddeeff>] >>\n%%EOF\n"
        .to_vec();
    for (i, (bytes, reason)) in
        [(corrupt, "invoice_unreadable"), (zero_pages, "invoice_no_pages"), (encrypted, "invoice_encrypted")]
            .into_iter()
            .enumerate()
    {
        let (id, event) = register(&app, "bad.pdf", &bytes, &format!("C02XK0ABJGH{i}")).await;
        let (status, _) = invoke(&app, &payload(event, 1, "m")).await;
        assert_eq!(status, 200, "{reason}: a permanent failure is not retried");
        let ocr = ocr_of(&app, &id).await;
        assert_eq!(ocr["status"], "failed", "{reason}");
        assert_eq!(ocr["failureReason"], reason, "{ocr}");
    }
}

async fn a_deleted_product_completes_the_message() {
    let app = spawn_app().await;
    let (id, event) = register(&app, "invoice.pdf", &fixture("invoice.pdf"), "C02XK0ABJGH5").await;
    app.delete_product_directly("alice", &id).await;
    let (status, body) = invoke(&app, &payload(event, 1, "m")).await;
    assert_eq!(status, 200);
    assert!(body["Logs"][0].as_str().unwrap().contains("product_deleted"));
}

async fn a_locked_database_is_transient_and_the_retry_succeeds() {
    let app = spawn_with(|s| s.products.sqlite_busy_timeout_ms = 200).await;
    let (id, event) = register(&app, "invoice.pdf", &fixture("invoice.pdf"), "C02XK0ABJGH5").await;
    app.start_product_store_outage();
    let (status, _) = invoke(&app, &payload(event.clone(), 1, "m")).await;
    match &app.bus {
        // Service Bus: the delivery completes and a copy comes back later, so an outage does not
        // use up the message's deliveries.
        Some(bus) => {
            assert_eq!(status, 200, "put back, not abandoned");
            let copy = format!("{}~r1", event["messageId"].as_str().unwrap());
            assert_eq!(bus.snapshot().accepted[&copy].1["requeued"], 1);
        }
        // The embedded queue retries with its own backoff and dead-letter table.
        None => assert_eq!(status, 503, "the dispatcher must retry"),
    }
    app.end_product_store_outage();
    let (status, _) = invoke(&app, &payload(event, 2, "m")).await;
    assert_eq!(status, 200);
    assert_eq!(ocr_of(&app, &id).await["status"], "completed");
}

async fn a_missing_ocr_engine_fails_the_invocation_and_says_so() {
    // Neither local recogniser is installed.
    let app = spawn_with(|s| {
        s.ocr.tesseract_path = "/nonexistent/tesseract".into();
        s.ocr.ocr_models_dir = "/nonexistent/models".into();
    })
    .await;
    let (id, event) = register(&app, "invoice.png", &fixture("invoice.png"), "C02XK0ABJGH5").await;
    let (status, body) = invoke(&app, &payload(event, 1, "m")).await;
    assert_eq!(status, 503, "{body}");
    let ocr = ocr_of(&app, &id).await;
    assert_eq!(ocr["status"], "failed");
    assert_eq!(ocr["failureReason"], "ocr_engine_unavailable");
    let health: Value = app.client.get(format!("{}/api/health", app.base)).send().await.unwrap().json().await.unwrap();
    let tesseract = health["ocrEngines"].as_array().unwrap().iter().find(|e| e["name"] == "tesseract").unwrap().clone();
    assert_eq!(tesseract["available"], false, "{health}");
    let pp = health["ocrEngines"].as_array().unwrap().iter().find(|e| e["name"] == "ppOcr").unwrap().clone();
    assert_eq!(pp["available"], false, "{health}");
    // PDFs with a text layer still work without Tesseract.
    let (id, event) = register(&app, "invoice.pdf", &fixture("invoice.pdf"), "C02XK0ABJGH6").await;
    assert_eq!(invoke(&app, &payload(event, 1, "m2")).await.0, 200);
    assert_eq!(ocr_of(&app, &id).await["engine"], "pdf-text");
}

async fn malformed_invocations_are_refused_so_they_dead_letter() {
    let app = spawn_app().await;
    for bad in [
        json!({"Data": {"message": "not json, not base64!"}}),
        json!({"Data": {"message": {"foo": 1}}}),
        json!({"Metadata": {}}),
    ] {
        let (status, _) = invoke(&app, &bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

/// A PNG whose header claims a 20000 × 20000 image: refused from the header alone.
fn huge_png() -> Vec<u8> {
    let mut png = fixture("invoice.png");
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    png
}

/// A valid PDF with `n` empty pages.
pub(crate) fn pdf_with_pages(n: usize) -> Vec<u8> {
    let mut objs = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            (0..n).map(|i| format!("{} 0 R", i + 3)).collect::<Vec<_>>().join(" ")
        ),
    ];
    for _ in 0..n {
        objs.push("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>".into());
    }
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).bytes());
    for off in offsets {
        out.extend(format!("{off:010} 00000 n \n").bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).bytes());
    out
}

async fn hostile_inputs_hit_the_limits_not_the_worker() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Stands in for a tesseract that never finishes (probes go to the real one).
    let hang = dir.path().join("slow-tesseract");
    std::fs::write(
        &hang,
        "#!/bin/sh\ncase \"$1\" in --version|--list-langs) exec tesseract \"$@\";; esac\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_with(|s| {
        s.ocr.ocr_max_pages = 5;
        s.ocr.ocr_timeout_secs = 1;
        s.ocr.tesseract_path = hang.clone();
        // Tesseract's process limit is what this checks (PP-OCR would read the page alone).
        s.ocr.ocr_recognizers = warranty::adapters::ocr::Recognizers::Tesseract;
    })
    .await;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("huge.png", huge_png(), "invoice_image_too_large"),
        ("pages.pdf", pdf_with_pages(6), "invoice_too_many_pages"),
        ("slow.png", fixture("invoice.png"), "ocr_timeout"),
    ];
    for (i, (file, bytes, reason)) in cases.into_iter().enumerate() {
        let (id, event) = register(&app, file, &bytes, &format!("C02XK0ABJGH{i}")).await;
        let started = std::time::Instant::now();
        let (status, body) = invoke(&app, &payload(event, 1, "m")).await;
        assert_eq!(status, 200, "{reason}: {body}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{reason}: the limit cut it short");
        let ocr = ocr_of(&app, &id).await;
        assert_eq!((ocr["status"].as_str(), ocr["failureReason"].as_str()), (Some("failed"), Some(reason)), "{ocr}");
    }
    // A page count within the limit is not refused for its count (empty pages: nothing to read).
    let (id, event) = register(&app, "five.pdf", &pdf_with_pages(5), "C02XK0ABJGH9").await;
    invoke(&app, &payload(event, 1, "m")).await;
    assert_ne!(ocr_of(&app, &id).await["failureReason"], "invoice_too_many_pages");
}

/// The reader checks the stored bytes against the CRC-32 kept at registration (same length, one
/// byte changed: `invoice_corrupt`, never read); a record stored before the CRC existed is
/// checked by its SHA-256 and read.
async fn a_stored_invoice_that_changed_fails_as_corrupt_and_an_older_record_is_checked_by_sha256() {
    let app = spawn_app().await;
    let pdf = fixture("invoice.pdf");
    let location = |id: &str| -> String {
        app.db()
            .query_row("SELECT json_extract(doc, '$.invoice.location') FROM products WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };

    let (id, event) = register(&app, "invoice.pdf", &pdf, "C02XK0ABJGH5").await;
    let path = app.invoices_root().join(location(&id));
    let mut stored = std::fs::read(&path).unwrap();
    assert_eq!(stored, pdf);
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    assert_eq!(invoke(&app, &payload(event, 1, "corrupt")).await.0, 200, "a final outcome, not a retry");
    let ocr = ocr_of(&app, &id).await;
    assert_eq!(ocr["status"], "failed", "{ocr}");
    assert_eq!(ocr["failureReason"], "invoice_corrupt", "{ocr}");

    let (id, event) = register(&app, "invoice.pdf", &pdf, "C02XK0ABJGH6").await;
    let removed = app
        .db()
        .execute("UPDATE products SET doc = json_remove(doc, '$.invoice.crc32') WHERE id = ?1 AND json_extract(doc, '$.invoice.crc32') IS NOT NULL", [&id])
        .unwrap();
    assert_eq!(removed, 1, "registration keeps the CRC-32");
    assert_eq!(invoke(&app, &payload(event, 1, "legacy")).await.0, 200);
    let ocr = ocr_of(&app, &id).await;
    // Read (its serial differs from the invoice's, so it needs review), not refused.
    assert_eq!(ocr["status"], "needs_review", "the SHA-256 matched: {ocr}");
    assert!(ocr["failureReason"].is_null(), "{ocr}");
    assert_eq!(ocr["engine"], "pdf-text");
}
