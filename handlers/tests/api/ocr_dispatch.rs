//! The embedded default end to end: registration over HTTP → durable queue → local dispatcher
//! → `/ProcessInvoiceOcr` → the card, observed through the public API only; plus retries,
//! dead-lettering and replay through the `warranty queue` commands.

backends!([embedded, blob]:
    a_registration_wakes_the_idle_dispatcher_at_once,
    a_registered_scan_moves_from_queued_to_completed,
    failing_deliveries_back_off_dead_letter_and_replay,
);

use std::process::Command;

use crate::support::*;
use serde_json::Value;

/// The dispatcher's idle wait is set to an hour: the invoice can only be read within the
/// test's deadline if the registration wakes the dispatcher (before the fix it waited for the
/// next poll whatever happened).
async fn a_registration_wakes_the_idle_dispatcher_at_once() {
    let app = spawn_with(|s| {
        s.delivery.ocr_dispatcher = true;
        s.delivery.ocr_idle_poll_ms = 3_600_000;
    })
    .await;
    let pdf = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invoice.pdf")).unwrap();
    let form = Form::new()
        .text("brand", "Apple")
        .text("model", "MacBook Air 13")
        .text("serialNumber", "C02XK0ABJGH5")
        .text("purchaseDate", &day(-1))
        .file("invoice", "invoice.pdf", "application/pdf", &pdf);
    let resp = app.post_form("alice", form).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let ocr = final_ocr(&app, "alice", &location).await;
    assert_ne!(ocr["status"], "failed", "{ocr}");
    assert_eq!(ocr["attempts"], 1);
}

async fn a_registered_scan_moves_from_queued_to_completed() {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = true).await;
    let truth: Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/ground-truth.json")).unwrap(),
    )
    .unwrap();
    let inv = truth["invoices"].as_array().unwrap().iter().find(|i| i["kind"] == "scanned").unwrap();
    let bytes = std::fs::read(format!("{}/tests/corpus/{}", env!("CARGO_MANIFEST_DIR"), inv["file"].as_str().unwrap()))
        .unwrap();
    let r = &inv["registration"];
    let form = Form::new()
        .text("brand", r["brand"].as_str().unwrap())
        .text("model", r["model"].as_str().unwrap())
        .text("serialNumber", r["serialNumber"].as_str().unwrap())
        .text("purchaseDate", r["purchaseDate"].as_str().unwrap())
        .file("invoice", "scan.pdf", "application/pdf", &bytes);
    let resp = app.post_form("alice", form).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["ocr"]["status"], "queued");

    let ocr = final_ocr(&app, "alice", &location).await;
    assert_eq!(ocr["status"], "completed", "{ocr}");
    assert_eq!(ocr["engine"], "pp-ocr+tesseract", "both local recognisers, checked against each other");
    assert_eq!(ocr["fields"]["invoiceDate"]["value"], inv["fields"]["invoiceDate"]);
    assert_eq!(ocr["fields"]["total"]["value"], inv["fields"]["total"]);
    // Subtotal + tax = total: the top confidence band an OCR reading gets (0.97; a text layer's
    // or an e-invoice's exact characters go higher).
    assert!(ocr["fields"]["total"]["confidence"].as_f64().unwrap() >= 0.95, "cross-checked: {ocr}");
    assert!(ocr.get("uncertainFields").is_none(), "{ocr}");
    assert_eq!(ocr["attempts"], 1);
    // The dispatcher completes the message once the handler's 200 reaches it, just after the
    // handler recorded the result the card shows.
    eventually("the message was completed", || app.count("ocr_queue") == 0).await;
}

async fn failing_deliveries_back_off_dead_letter_and_replay() {
    let app = spawn_with(|s| {
        s.delivery.ocr_dispatcher = true;
        s.ocr.tesseract_path = "/nonexistent/tesseract".into();
        s.ocr.ocr_models_dir = "/nonexistent/models".into();
        s.delivery.ocr_max_delivery_count = 3;
        s.delivery.ocr_retry_base_ms = 20;
    })
    .await;
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.png")),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let dead = || {
        app.db()
            .query_row("SELECT delivery_count, reason FROM ocr_dead_letters WHERE product_id = ?1", [&id], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
            })
            .ok()
    };
    eventually("the message is dead-lettered", || dead().is_some()).await;
    let (deliveries, reason) = dead().unwrap();
    assert_eq!(deliveries, 3);
    assert!(reason.starts_with("MaxDeliveryCountExceeded"), "{reason}");
    assert_eq!(app.count("ocr_queue"), 0);
    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    assert_eq!(card["ocr"]["failureReason"], "ocr_engine_unavailable");
    assert_eq!(card["ocr"]["attempts"], 3);

    // The operator sees it and replays it.
    let bin = env!("CARGO_BIN_EXE_warranty");
    let data = app.dir.path();
    let out = Command::new(bin).args(["queue", "dead-letters"]).env("WARRANTY_DATA_DIR", data).output().unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let message_id = format!("{id}:invoice:1");
    assert!(listed.contains(&message_id), "{listed}");
    let out =
        Command::new(bin).args(["queue", "requeue", &message_id]).env("WARRANTY_DATA_DIR", data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.count("ocr_dead_letters"), 0);
    // Requeuing something that is not dead-lettered is an error.
    let out = Command::new(bin)
        .args(["queue", "requeue", "no-such-message"])
        .env("WARRANTY_DATA_DIR", data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Still no engine: it comes back to the dead-letter table after three more deliveries.
    eventually("dead-lettered again", || dead().is_some()).await;
    let out = Command::new(bin).args(["queue", "list"]).env("WARRANTY_DATA_DIR", data).output().unwrap();
    assert!(out.status.success());
}
