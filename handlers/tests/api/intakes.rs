//! Invoice-first registration (issue 29): `POST /api/intakes`, `GET /api/intakes/{id}`,
//! `POST /api/products` with `intakeId`, the sweep, export and erasure — over real HTTP, on the
//! embedded store and on the Azure adapters (Cosmos DB emulator, Azurite, the loopback Service
//! Bus namespace whose deliveries go through `POST /ProcessInvoiceOcr` as the host sends them).

backends!([embedded, blob, azure]:
    an_invoice_proposes_the_form_and_registers_its_products_from_the_stored_invoice,
    concurrent_registrations_never_use_an_intake_beyond_its_products,
    intakes_refuse_what_they_cannot_do_and_lose_nothing,
    an_unused_intake_expires_with_its_file_and_its_tombstone_goes_a_month_later,
    export_and_erasure_include_intakes,
);

use crate::support::*;
use serde_json::{Value, json};
use warranty::ports::Clock;

/// An invoice of two products of the catalogue's brands, each with its serial number below it.
fn two_product_invoice() -> Vec<u8> {
    text_pdf(&[
        "Elektro Schmidt GmbH",
        "Invoice no. RE-2026-0412",
        "Invoice date 2026-03-15",
        "Hewlett-Packard EliteBook 840 G9 1 x 1299.00 EUR",
        "S/N: 5CD1234XYZ",
        "Samsung Galaxy S24 1 x 899.00 EUR",
        "Serial No. R58N12ABCDE",
        "Total 2198.00 EUR",
    ])
}

async fn post_intake(app: &TestApp, user: &str, file: &str, bytes: &[u8], key: Option<&str>) -> reqwest::Response {
    let (ct, body) = Form::new().file("invoice", file, "application/octet-stream", bytes).finish();
    let mut req =
        app.client.post(format!("{}/api/intakes", app.base)).bearer_auth(token(user)).header("content-type", ct);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.body(body).send().await.unwrap()
}

/// Posts an intake and returns its location.
async fn intake(app: &TestApp, user: &str, bytes: &[u8]) -> String {
    let resp = post_intake(app, user, "invoice.pdf", bytes, None).await;
    assert_eq!(resp.status(), 202);
    resp.headers()["location"].to_str().unwrap().to_owned()
}

/// Polls the intake (public API only) until it is no longer `reading`.
async fn read_intake(app: &TestApp, user: &str, location: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let view: Value = app.get(user, location).await.json().await.unwrap();
        if view["status"] != "reading" {
            return view;
        }
        assert!(tokio::time::Instant::now() < deadline, "the intake was never read: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn from_intake(id: &str, brand: &str, model: &str, serial: &str, date: &str) -> Form {
    Form::new()
        .text("intakeId", id)
        .text("brand", brand)
        .text("model", model)
        .text("serialNumber", serial)
        .text("purchaseDate", date)
}

async fn an_invoice_proposes_the_form_and_registers_its_products_from_the_stored_invoice() {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = true).await;
    let pdf = two_product_invoice();
    let resp = post_intake(&app, "alice", "Rechnung.pdf", &pdf, None).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(resp.headers().contains_key("retry-after"));
    let first: Value = resp.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/intakes/{id}"));
    assert_eq!(first["status"], "reading");
    assert_eq!(first["invoice"]["sha256"], sha256_hex(&pdf));

    let view = read_intake(&app, "alice", &location).await;
    assert_eq!(view["status"], "ready", "{view}");
    assert_eq!(view["engine"], "pdf-text");
    let p = &view["proposals"];
    assert_eq!(p["purchaseDate"]["value"], "2026-03-15", "{p}");
    assert_eq!(p["currency"]["value"], "EUR", "{p}");
    let products = p["products"].as_array().unwrap();
    assert_eq!(products.len(), 2, "{p}");
    // The alias is proposed in the catalogue's spelling; every value says where it was read.
    assert_eq!(products[0]["brand"]["value"], "HP", "{p}");
    assert_eq!(products[0]["model"]["value"], "EliteBook 840 G9", "{p}");
    assert_eq!(products[0]["serialNumber"]["value"], "5CD1234XYZ", "{p}");
    assert_eq!(products[0]["price"]["value"], "1299.00", "{p}");
    assert_eq!(products[1]["brand"]["value"], "Samsung", "{p}");
    assert_eq!(products[1]["model"]["value"], "Galaxy S24", "{p}");
    assert_eq!(products[1]["serialNumber"]["value"], "R58N12ABCDE", "{p}");
    for field in ["brand", "model", "serialNumber"] {
        let at = &products[0][field]["at"];
        assert_eq!(at["page"], 1, "{field}: {p}");
        assert!(at["width"].as_f64().unwrap() > 0.0 && at["top"].as_f64().unwrap() > 0.0, "{field}: {p}");
        let confidence = products[0][field]["confidence"].as_f64().unwrap();
        assert!(confidence > 0.0 && confidence <= 1.0, "{field}: {p}");
    }
    assert_eq!(view["productsLeft"], 2);

    // The first product, as confirmed: no file, no second reading; the card links the intake
    // and its OCR state is the intake's reading checked against the fields. A retry with the
    // same Idempotency-Key answers the same card and uses nothing more of the intake.
    let hp_form = || from_intake(&id, "HP", "EliteBook 840 G9", "5CD1234XYZ", "2026-03-15");
    let resp = app.post_form_with("alice", hp_form(), Some("hp-from-intake")).await;
    assert_eq!(resp.status(), 201);
    let hp: Value = resp.json().await.unwrap();
    let again = app.post_form_with("alice", hp_form(), Some("hp-from-intake")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], hp["id"]);
    let view: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(view["productsLeft"], 1, "{view}");
    assert_eq!(hp["intakeId"], id);
    assert_eq!(hp["invoice"]["sha256"], sha256_hex(&pdf));
    assert_eq!(hp["invoice"]["fileName"], "Rechnung.pdf");
    assert_eq!(hp["ocr"]["engine"], "pdf-text", "{hp}");
    assert_eq!(hp["ocr"]["matches"]["serialNumber"], "matched", "{hp}");
    assert_eq!(hp["ocr"]["matches"]["brand"], "matched", "{hp}");
    assert_eq!(hp["ocr"]["matches"]["purchaseDate"], "matched", "{hp}");
    assert_eq!(hp["ocr"]["status"], "completed", "{hp}");

    // The second, with a corrected model the invoice does not show: the reading says so.
    let resp = app.post_form("alice", from_intake(&id, "Samsung", "Galaxy Z Fold", "R58N12ABCDE", "2026-03-15")).await;
    assert_eq!(resp.status(), 201);
    let samsung: Value = resp.json().await.unwrap();
    assert_eq!(samsung["warrantyMonths"], 24, "the catalogue's terms for the confirmed brand");
    assert_eq!(samsung["ocr"]["status"], "needs_review", "{samsung}");
    assert!(samsung["ocr"]["uncertainFields"].as_array().unwrap().contains(&json!("model")), "{samsung}");

    let view: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(view["status"], "used");
    assert_eq!(view["products"], json!([hp["id"], samsung["id"]]));
    assert_eq!(view["productsLeft"], 0);
    let (status, body) =
        problem(app.post_form("alice", from_intake(&id, "Apple", "iPad", "C02XK0ABJGH5", "2026-03-15")).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (410, "intake_used"));

    // Each product has its own copy of the invoice: deleting one leaves the other's.
    let hp_id = hp["id"].as_str().unwrap();
    let resp = app
        .client
        .delete(format!("{}/api/products/{hp_id}", app.base))
        .bearer_auth(token("alice"))
        .header("if-match", "\"r1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let path = format!("/api/products/{}/invoice", samsung["id"].as_str().unwrap());
    let resp = app.client.get(format!("{}{path}", app.base)).bearer_auth(token("alice")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), pdf.as_slice());
    // No reading was queued for either product: the only event is the intake's.
    if let Some(bus) = &app.bus {
        let bodies = bus.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        assert_eq!(bodies[0]["subject"], "intake");
    }
}

/// Four registrations at once from an intake whose invoice lists one product: one card, three
/// `410 intake_used`, and no file left by the refused ones.
async fn concurrent_registrations_never_use_an_intake_beyond_its_products() {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = true).await;
    let pdf = text_pdf(&["Invoice date 2026-03-15", "Dell XPS 13 9340 999.00 EUR", "Serial No. 7XK9JH2"]);
    let location = intake(&app, "alice", &pdf).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    let view = read_intake(&app, "alice", &location).await;
    assert_eq!(view["productsLeft"], 1, "{view}");
    let attempts = (0..4).map(|n| {
        // Different serials: each would be a product of its own.
        let form = from_intake(&id, "Dell", "XPS 13 9340", &format!("7XK9JH{n}"), "2026-03-15");
        app.post_form("alice", form)
    });
    let mut statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 410, 410, 410]);
    assert_eq!(app.product_count().await, 1);
    let view: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(view["status"], "used");
    assert_eq!(view["products"].as_array().unwrap().len(), 1);
    // The intake's file and the one product's: the refused registrations left none.
    assert_eq!(app.invoice_files().len(), 2, "{:?}", app.invoice_files());
}

async fn intakes_refuse_what_they_cannot_do_and_lose_nothing() {
    // No dispatcher: an intake stays `reading` until the test delivers its event.
    let app = spawn_app().await;
    let pdf = two_product_invoice();
    let location = intake(&app, "alice", &pdf).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    let fields = || from_intake(&id, "HP", "EliteBook 840 G9", "5CD1234XYZ", "2026-03-15");

    // Another user's intake does not exist for them.
    assert_eq!(problem(app.get("bob", &location).await).await.0, 404);
    let (status, body) = problem(app.post_form("bob", fields()).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (404, "not_found"));
    assert_eq!(problem(app.get("alice", "/api/intakes/not-a-uuid").await).await.0, 404);

    // Still reading: 409 and when to come back.
    let view = app.get("alice", &location).await;
    assert!(view.headers().contains_key("retry-after"));
    assert_eq!(view.json::<Value>().await.unwrap()["status"], "reading");
    let resp = app.post_form("alice", fields()).await;
    assert_eq!(resp.headers()["retry-after"], "2");
    let (status, body) = problem(resp).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (409, "intake_reading"));

    // Both a file and an intake: refused, and the uploaded file is not kept.
    let files_before = app.invoice_files().len();
    let form = fields().file("invoice", "invoice.pdf", "application/pdf", &pdf);
    let (status, body) = problem(app.post_form("alice", form).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (422, "invoice_with_intake"), "{body}");
    assert_eq!(app.invoice_files().len(), files_before);

    // Invalid confirmed fields are reported like a registration's; nothing is registered.
    let (status, body) =
        problem(app.post_form("alice", from_intake(&id, "HP", "EliteBook", "bad serial!", "2026-03-15")).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (422, "serial_format_invalid"), "{body}");

    // Not an invoice: 415, nothing stored; no file at all: 422.
    let (status, _) = problem(post_intake(&app, "alice", "x.exe", b"MZ\x90\x00binary", None).await).await;
    assert_eq!(status, 415);
    let (ct, body) = Form::new().text("note", "no file").finish();
    let resp = app
        .client
        .post(format!("{}/api/intakes", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(resp).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (422, "invoice_missing"));
    assert_eq!(app.invoice_files().len(), files_before);

    // The same Idempotency-Key answers the same intake; another file under it is refused.
    let other = text_pdf(&["Dell XPS 13", "Invoice date 2026-04-01"]);
    let first = post_intake(&app, "alice", "a.pdf", &other, Some("k-1")).await;
    assert_eq!(first.status(), 202);
    let again = post_intake(&app, "alice", "a.pdf", &other, Some("k-1")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], first.headers()["location"]);
    let (status, body) = problem(post_intake(&app, "alice", "b.pdf", &pdf, Some("k-1")).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (422, "idempotency_key_reused"));
    assert_eq!(app.invoice_files().len(), files_before + 1, "one file per intake, none for refusals");

    // An invoice that cannot be read: the intake fails and says why; registering from it 422.
    let broken = intake(&app, "alice", b"%PDF-1.7\nthis is not a PDF body at all \x00\x01\x02").await;
    let broken_id = broken.rsplit('/').next().unwrap().to_owned();
    deliver(&app, &broken_id).await;
    let view: Value = app.get("alice", &broken).await.json().await.unwrap();
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["failureReasons"], json!(["invoice_unreadable"]));
    let form = from_intake(&broken_id, "HP", "EliteBook 840 G9", "5CD1234XYZ", "2026-03-15");
    let (status, body) = problem(app.post_form("alice", form).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (422, "intake_failed"));
    assert_eq!(body["failureReasons"], json!(["invoice_unreadable"]));
    assert_eq!(app.product_count().await, 0, "nothing registered by any refusal");
}

/// Delivers the reading event of intake `id` as the Functions host would (the embedded queue's
/// row, or the message the loopback namespace accepted), and waits for its answer.
async fn deliver(app: &TestApp, id: &str) {
    let event = app.ocr_event_for(id).await;
    assert_eq!(event["subject"], "intake");
    let payload = json!({
        "Data": { "message": event },
        "Metadata": { "DeliveryCount": "1", "MessageId": serde_json::to_string(&event["messageId"]).unwrap() }
    });
    let resp = app.client.post(format!("{}/ProcessInvoiceOcr", app.base)).json(&payload).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn an_unused_intake_expires_with_its_file_and_its_tombstone_goes_a_month_later() {
    let start: chrono::DateTime<chrono::Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
    let clock = std::sync::Arc::new(warranty::ports::ManualClock::new(start));
    let app = spawn_at(clock.clone(), |_| {}).await;
    let pdf = two_product_invoice();
    let location = intake(&app, "alice", &pdf).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    deliver(&app, &id).await;
    let files = app.invoice_files();
    assert_eq!(files.len(), 1, "{files:?}");

    // Before its day is over the sweep leaves it alone.
    let swept = warranty::application::intakes::sweep(&app.services, start + chrono::Duration::hours(23)).await;
    assert_eq!(swept.unwrap(), Default::default());
    assert_eq!(app.invoice_files(), files);

    // A day later it cannot be used, even before the sweep.
    clock.set(start + chrono::Duration::hours(24));
    let view: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(view["status"], "expired");
    let form = from_intake(&id, "HP", "EliteBook 840 G9", "5CD1234XYZ", "2026-03-15");
    let (status, body) = problem(app.post_form("alice", form).await).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (410, "intake_expired"));

    // The sweep removes its file; a tombstone still answers.
    let swept = warranty::application::intakes::sweep(&app.services, clock.now()).await.unwrap();
    assert_eq!((swept.expired, swept.purged), (1, 0));
    assert!(app.invoice_files().is_empty(), "{:?}", app.invoice_files());
    let view: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(view["status"], "expired");
    assert!(view.get("invoice").is_none(), "{view}");
    let again = warranty::application::intakes::sweep(&app.services, clock.now()).await.unwrap();
    assert_eq!(again, Default::default(), "an expired intake is swept once");

    // Its tombstone goes after a month.
    let later = start + chrono::Duration::hours(24) + chrono::Duration::days(30);
    let swept = warranty::application::intakes::sweep(&app.services, later).await.unwrap();
    assert_eq!((swept.expired, swept.purged), (0, 1));
    assert_eq!(problem(app.get("alice", &location).await).await.0, 404);
}

async fn export_and_erasure_include_intakes() {
    let app = spawn_with(|s| s.delivery.ocr_dispatcher = true).await;
    let pdf = two_product_invoice();
    let location = intake(&app, "alice", &pdf).await;
    let id = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(read_intake(&app, "alice", &location).await["status"], "ready");
    let bob = intake(&app, "bob", &text_pdf(&["Dell XPS 13"])).await;

    let zip = app.get("alice", "/api/me/export").await.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    std::fs::write(&path, &zip).unwrap();
    let script = "import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\n\
        print(json.dumps({'names': z.namelist(), 'intakes': json.loads(z.read('intakes.json'))}))";
    let out = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listing["names"].as_array().unwrap().contains(&json!(format!("intakes/{id}.pdf"))), "{listing}");
    let intakes = listing["intakes"].as_array().unwrap();
    assert_eq!(intakes.len(), 1, "only alice's: {listing}");
    assert_eq!(intakes[0]["id"], id);
    assert_eq!(intakes[0]["reading"]["proposals"]["products"][0]["brand"]["value"], "HP");
    assert!(intakes[0]["invoice"].get("location").is_none(), "store internals stay out");

    let resp = app
        .client
        .delete(format!("{}/api/me", app.base))
        .bearer_auth(token("alice"))
        .json(&json!({ "confirm": "delete my data" }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(problem(app.get("alice", &location).await).await.0, 404);
    // Bob's intake and its file are untouched; alice's file is gone.
    assert_eq!(app.get("bob", &bob).await.status(), 200);
    let files = app.invoice_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(!files[0].to_string_lossy().contains(&id));
}
