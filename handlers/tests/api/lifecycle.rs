//! After registration: edits with `If-Match`, service requests and the lock they set (REQ-3.2),
//! the audit trail, the invoice download and deletion — on every backend, over real HTTP.

backends!([embedded, blob, azure]:
    edits_need_the_current_etag_reapply_the_rules_and_are_audited,
    the_first_service_request_locks_the_critical_fields_only,
    a_product_with_service_requests_cannot_be_deleted_and_one_without_leaves_nothing,
    the_invoice_downloads_byte_for_byte_with_a_safe_file_name,
    edits_racing_the_first_service_request_never_change_a_locked_product,
    bad_lifecycle_requests_get_problems,
    a_replaced_invoice_gets_its_own_ocr_run_and_the_old_one_is_removed,
    the_card_carries_the_newest_audit_entries_and_the_trail_pages,
);

use crate::support::*;
use serde_json::{Value, json};

/// The brand catalogue's serial rule can tighten after a product was registered. Such a
/// product's notes stay editable (only changed fields are validated), while a change of its
/// serial meets today's rule. The stored row is given a serial the current Dell rule refuses,
/// as one registered under an older rule would be (embedded store: the row is SQLite).
#[tokio::test]
async fn notes_stay_editable_after_the_catalogue_changed_the_serial_rule() {
    let app = spawn_app().await;
    let (id, _, etag) = registered(&app, "7XK9JH2").await;
    let db = rusqlite::Connection::open(app.dir.path().join("warranty.sqlite3")).unwrap();
    let changed = db
        .execute(
            "UPDATE products SET serial_number = 'OLD-RULE-42', doc = json_set(doc, '$.serialNumber', 'OLD-RULE-42') WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let resp = patch(&app, &id, Some(&etag), r#"{"notes":"bought at the airport"}"#).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    assert_eq!(card["notes"], "bought at the airport");
    assert_eq!(card["serialNumber"], "OLD-RULE-42", "kept as stored");
    assert_eq!(card["revision"], 2);

    // Touching the serial validates it against the current rule.
    let (s, p) = problem(patch(&app, &id, Some("\"r2\""), r#"{"serialNumber":"OLD-RULE-43"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "serial_format_invalid"));
}

async fn registered(app: &TestApp, serial: &str) -> (String, Value, String) {
    registered_as(app, "Dell", serial).await
}

async fn registered_as(app: &TestApp, brand: &str, serial: &str) -> (String, Value, String) {
    let resp = app
        .post_form("alice", Form::registration(brand, "Latitude 7440", serial, "2024-01-31", &fixture("invoice.pdf")))
        .await;
    assert_eq!(resp.status(), 201);
    let card: Value = resp.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();
    let etag = app.get("alice", &format!("/api/products/{id}")).await.headers()["etag"].to_str().unwrap().to_owned();
    (id, card, etag)
}

async fn patch(app: &TestApp, id: &str, if_match: Option<&str>, body: &str) -> reqwest::Response {
    app.merge_patch("alice", &format!("/api/products/{id}"), if_match, body).await
}

async fn raise(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.post_json("alice", &format!("/api/products/{id}/service-requests"), &body).await
}

async fn edits_need_the_current_etag_reapply_the_rules_and_are_audited() {
    let app = spawn_app().await;
    let (id, card, etag) = registered(&app, "7XK9JH2").await;
    assert_eq!(etag, "\"r1\"");
    assert_eq!(card["revision"], 1);
    assert_eq!(card["audit"][0]["action"], "registered");
    assert_eq!(card["audit"][0]["by"], "alice");

    let (s, p) = problem(patch(&app, &id, None, r#"{"model":"Latitude 5440"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (428, "precondition_required"));
    let (s, p) = problem(patch(&app, &id, Some("*"), r#"{"model":"Latitude 5440"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (428, "precondition_required"));

    // A new purchase date and brand: the serial rule and the expiry follow the new brand.
    let resp = patch(
        &app,
        &id,
        Some(&etag),
        r#"{"brand":"apple","model":"MacBook Pro","serialNumber":"c02xk0abjgh5","purchaseDate":"2024-02-29"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"r2\"");
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["brand"], "Apple");
    assert_eq!(edited["serialNumber"], "C02XK0ABJGH5");
    assert_eq!(edited["warrantyMonths"], 12);
    assert_eq!(edited["warrantyExpiresOn"], "2025-02-28");
    let entry = &edited["audit"][1];
    assert_eq!(entry["action"], "edited");
    let changed: Vec<&str> =
        entry["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(changed, ["brand", "model", "serialNumber", "purchaseDate", "warrantyExpiresOn"]);
    assert_eq!(entry["changes"][2], json!({"field": "serialNumber", "from": "7XK9JH2", "to": "C02XK0ABJGH5"}));
    // It reads back the same, with the same ETag.
    let again = app.get("alice", &format!("/api/products/{id}")).await;
    assert_eq!(again.headers()["etag"], "\"r2\"");
    assert_eq!(again.json::<Value>().await.unwrap(), edited);

    // The old ETag is stale now.
    let (s, p) = problem(patch(&app, &id, Some(&etag), r#"{"model":"X"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (412, "precondition_failed"));
    // Every registration rule applies again, and nothing changes when one fails.
    let (s, p) = problem(patch(&app, &id, Some("\"r2\""), r#"{"serialNumber":"123"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "serial_format_invalid"));
    let (s, p) = problem(patch(&app, &id, Some("\"r2\""), r#"{"purchaseDate":"2999-01-01","model":null}"#).await).await;
    assert_eq!(s, 422);
    let codes: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["model_missing", "purchase_date_in_future"]);
    let (s, p) = problem(patch(&app, &id, Some("\"r2\""), r#"{"warrantyMonths":60,"id":"x"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "field_read_only"));
    assert_eq!(app.get("alice", &format!("/api/products/{id}")).await.json::<Value>().await.unwrap(), edited);

    // Another product of the user with the same brand + serial: 409 like at registration.
    let (other, _, other_etag) = registered(&app, "ABC1234").await;
    let resp =
        patch(&app, &other, Some(&other_etag), r#"{"brand":"Apple","model":"iPhone","serialNumber":"C02XK0ABJGH5"}"#)
            .await;
    let (s, p) = problem(resp).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (409, "product_already_registered"));
    assert_eq!(p["existingProductId"], id.as_str());

    // A patch that changes nothing is not a change.
    let resp = patch(&app, &id, Some("\"r2\""), r#"{"model":"MacBook Pro"}"#).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"r2\"");
}

async fn the_first_service_request_locks_the_critical_fields_only() {
    let app = spawn_app().await;
    let (id, _, etag) = registered(&app, "7XK9JH2").await;
    let resp = raise(&app, &id, json!({"description": "  Fan is loud ", "preferredContact": "phone"})).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let sr: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/products/{id}/service-requests/{}", sr["id"].as_str().unwrap()));
    assert_eq!(sr["description"], "Fan is loud");
    assert_eq!(sr["preferredContact"], "phone");
    assert_eq!(sr["inWarranty"], true, "bought 2024-01-31 with 36 months");

    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    assert_eq!(
        (card["locked"].as_bool(), card["serviceRequestCount"].as_u64(), card["revision"].as_u64()),
        (Some(true), Some(1), Some(2))
    );
    assert_eq!(card["audit"][1]["action"], "service_request_raised");

    // Critical fields are fixed now, whatever the ETag; notes are not.
    let (s, p) = problem(patch(&app, &id, Some("\"r2\""), r#"{"serialNumber":"7XK9JH3"}"#).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (409, "product_locked"));
    assert!(p["detail"].as_str().unwrap().contains("`serialNumber`"), "{p}");
    let (s, _) = problem(patch(&app, &id, Some("\"r2\""), r#"{"purchaseDate":"2024-02-01","notes":"x"}"#).await).await;
    assert_eq!(s, 409, "the whole patch is refused");
    let resp = patch(&app, &id, Some("\"r2\""), r#"{"notes":"Receipt in the drawer","serialNumber":"7xk9jh2"}"#).await;
    assert_eq!(resp.status(), 200, "same serial after normalisation, and notes: allowed");
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["notes"], "Receipt in the drawer");
    assert_eq!(card["serialNumber"], "7XK9JH2");
    let resp = patch(&app, &id, Some("\"r3\""), r#"{"notes":null}"#).await;
    assert!(resp.json::<Value>().await.unwrap().get("notes").is_none());

    // A second request, after the warranty ended, says so; the list has both in order.
    let (old, _, _) = {
        let resp = app
            .post_form("alice", Form::registration("Nikon", "Z6", "6012345", "2020-01-10", &fixture("invoice.jpg")))
            .await;
        let card: Value = resp.json().await.unwrap();
        (card["id"].as_str().unwrap().to_owned(), (), ())
    };
    let sr: Value = raise(&app, &old, json!({"description": "Shutter stuck"})).await.json().await.unwrap();
    assert_eq!(sr["inWarranty"], false);
    raise(&app, &id, json!({"description": "Battery"})).await;
    let list: Value = app.get("alice", &format!("/api/products/{id}/service-requests")).await.json().await.unwrap();
    let descriptions: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|s| s["description"].as_str().unwrap()).collect();
    assert_eq!(descriptions, ["Fan is loud", "Battery"]);
    // Another user sees nothing.
    let resp = app.get("bob", &format!("/api/products/{id}/service-requests")).await;
    assert_eq!(problem(resp).await.0, 404);
    let _ = etag;
}

async fn a_product_with_service_requests_cannot_be_deleted_and_one_without_leaves_nothing() {
    let app = spawn_app().await;
    let (kept, _, _) = registered(&app, "7XK9JH2").await;
    raise(&app, &kept, json!({"description": "Hinge"})).await;
    let del = |id: String, tag: Option<&'static str>| {
        let mut req = app.client.delete(format!("{}/api/products/{id}", app.base)).bearer_auth(token("alice"));
        if let Some(t) = tag {
            req = req.header("if-match", t);
        }
        req.send()
    };
    let (s, p) = problem(del(kept.clone(), None).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (409, "product_has_service_requests"));

    let (gone, _, _) = registered(&app, "ABC1234").await;
    let event = app.ocr_event_for(&gone).await;
    let (s, p) = problem(del(gone.clone(), Some("\"r7\"")).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (412, "precondition_failed"));
    assert_eq!(app.product_count().await, 2);
    let resp = del(gone.clone(), Some("\"r1\"")).await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(problem(app.get("alice", &format!("/api/products/{gone}")).await).await.0, 404);
    assert_eq!(app.product_count().await, 1);
    // Its invoice is gone from the store; the kept product's is there.
    let files: Vec<String> = app.invoice_files().iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert!(files.iter().all(|f| !f.contains(&gone)), "{files:?}");
    assert!(files.iter().any(|f| f.contains(&kept)), "{files:?}");
    // A redelivered OCR message for it completes without doing anything.
    let payload = json!({"Data": {"message": event}, "Metadata": {"DeliveryCount": "2", "MessageId": "\"m\""}});
    let resp = app.client.post(format!("{}/ProcessInvoiceOcr", app.base)).json(&payload).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["Logs"][0].as_str().unwrap().contains("product_deleted"), "{body}");
    // Deleting again: not found.
    assert_eq!(problem(del(gone, None).await.unwrap()).await.0, 404);
}

async fn the_invoice_downloads_byte_for_byte_with_a_safe_file_name() {
    let app = spawn_app().await;
    let bytes = fixture("invoice.png");
    let form = Form::new()
        .text("brand", "Apple")
        .text("model", "iPhone")
        .text("serialNumber", "C02XK0ABJGH5")
        .text("purchaseDate", "2024-01-01")
        .file("invoice", "../Rechnung März (1);.png", "image/png", &bytes);
    let card: Value = app.post_form("alice", form).await.json().await.unwrap();
    let id = card["id"].as_str().unwrap();
    let resp = app.get("alice", &format!("/api/products/{id}/invoice")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert_eq!(card["invoice"]["fileName"], "Rechnung März (1);.png", "the path is dropped at intake");
    assert_eq!(
        disposition,
        "attachment; filename=\"Rechnung M_rz (1)_.png\"; filename*=UTF-8''Rechnung%20M%C3%A4rz%20%281%29%3B.png"
    );
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), format!("\"{}\"", sha256_hex(&bytes)));
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);
    assert_eq!(problem(app.get("bob", &format!("/api/products/{id}/invoice")).await).await.0, 404);
}

/// REQ-3.2 under contention: an edit of a critical field and the first service request hit
/// the same product at once, many times. Whichever wins, no critical field changes after the
/// lock: either the edit landed first (and the lock followed it) or it was refused.
async fn edits_racing_the_first_service_request_never_change_a_locked_product() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut edits_won = 0;
    let mut edits_refused = 0;
    for round in 0..15 {
        let (id, _, etag) = registered_as(&app, "Acme", &format!("RACE{round:04}")).await;
        let (a, b) = (app.clone(), app.clone());
        let (id_a, id_b) = (id.clone(), id.clone());
        let edit = tokio::spawn(async move {
            patch(&a, &id_a, Some(&etag), &format!(r#"{{"serialNumber":"EDIT{round:04}"}}"#)).await.status().as_u16()
        });
        let request =
            tokio::spawn(async move { raise(&b, &id_b, json!({"description": "race"})).await.status().as_u16() });
        let (edit, request) = (edit.await.unwrap(), request.await.unwrap());
        assert_eq!(request, 201, "the service request always lands (it retries on a stale revision)");
        let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
        assert_eq!(card["locked"], true);
        let actions: Vec<&str> =
            card["audit"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        match edit {
            200 => {
                edits_won += 1;
                assert_eq!(card["serialNumber"], format!("EDIT{round:04}"));
                assert_eq!(
                    actions,
                    ["registered", "edited", "service_request_raised"],
                    "the edit came before the lock"
                );
            }
            409 | 412 => {
                edits_refused += 1;
                assert_eq!(card["serialNumber"], format!("RACE{round:04}"), "a refused edit changed nothing");
                assert_eq!(actions, ["registered", "service_request_raised"]);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(edits_won + edits_refused, 15);
}

async fn bad_lifecycle_requests_get_problems() {
    let app = spawn_app().await;
    let (id, _, etag) = registered(&app, "7XK9JH2").await;
    let url = format!("{}/api/products/{id}", app.base);
    let send = |ct: &'static str, body: &'static str| {
        app.client
            .patch(url.clone())
            .bearer_auth(token("alice"))
            .header("if-match", etag.clone())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let (s, p) = problem(send("text/plain", r#"{"notes":"x"}"#).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "content_type_unsupported"));
    let (s, p) = problem(send("application/merge-patch+json", "{not json").await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "patch_invalid"));
    let (s, p) = problem(send("application/merge-patch+json", "[1,2]").await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "patch_invalid"));
    let (s, p) = problem(send("application/merge-patch+json", r#"{"colour":"red"}"#).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "patch_invalid"));
    assert!(p["detail"].as_str().unwrap().contains("colour"));
    let (s, p) = problem(send("application/merge-patch+json", r#"{"model":42}"#).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "patch_invalid"));
    let big = format!(r#"{{"notes":"{}"}}"#, "x".repeat(70 * 1024));
    let resp = app
        .client
        .patch(url.clone())
        .bearer_auth(token("alice"))
        .header("if-match", etag.clone())
        .header("content-type", "application/merge-patch+json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (s, p) = problem(resp).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "body_too_large"));
    let (s, p) = problem(
        send(
            "application/merge-patch+json",
            &*Box::leak(format!(r#"{{"notes":"{}"}}"#, "n".repeat(1001)).into_boxed_str()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "field_too_long"));

    let (s, p) = problem(raise(&app, &id, json!({"description": "   "})).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "description_missing"));
    let (s, p) = problem(raise(&app, &id, json!({"text": "hello"})).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "patch_invalid"));
    let (s, p) = problem(raise(&app, &id, json!({"description": "x".repeat(2001)})).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "field_too_long"));
    let (s, _) = problem(raise(&app, "not-a-uuid", json!({"description": "x"})).await).await;
    assert_eq!(s, 404);
    let resp = app.client.put(format!("{url}/service-requests")).bearer_auth(token("alice")).send().await.unwrap();
    let (s, p) = problem(resp).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (405, "method_not_allowed"));
    // Nothing of this changed the product.
    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    assert_eq!((card["revision"].as_u64(), card["locked"].as_bool()), (Some(1), Some(false)));
}

async fn put_invoice(app: &TestApp, id: &str, if_match: Option<&str>, form: Form) -> reqwest::Response {
    let (ct, body) = form.finish();
    let mut req = app
        .client
        .put(format!("{}/api/products/{id}/invoice", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", ct)
        .body(body);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    req.send().await.unwrap()
}

fn invoice_form(name: &str, content_type: &str, bytes: &[u8]) -> Form {
    Form::new().file("invoice", name, content_type, bytes)
}

async fn a_replaced_invoice_gets_its_own_ocr_run_and_the_old_one_is_removed() {
    let app = spawn_app().await;
    let form = Form::new()
        .text("brand", "Apple")
        .text("model", "MacBook Air")
        .text("serialNumber", "C02XK0ABJGH5")
        .text("purchaseDate", "2026-03-15")
        .file("invoice", "blurry.png", "image/png", &fixture("invoice.png"));
    let card: Value = app.post_form("alice", form).await.json().await.unwrap();
    let id = card["id"].as_str().unwrap().to_owned();
    let first = app.ocr_event_for(&id).await;
    let pdf = fixture("invoice.pdf");

    // If-Match is required; a wrong type is refused and changes nothing.
    let (s, p) = problem(put_invoice(&app, &id, None, invoice_form("a.pdf", "application/pdf", &pdf)).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (428, "precondition_required"));
    let exe = b"MZ\x90\x00 not an invoice".to_vec();
    let (s, p) =
        problem(put_invoice(&app, &id, Some("\"r1\""), invoice_form("a.pdf", "application/pdf", &exe)).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "invoice_type_unsupported"));
    let (s, p) = problem(put_invoice(&app, &id, Some("\"r1\""), Form::new().text("note", "x")).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "invoice_missing"));
    assert_eq!(app.invoice_files().len(), 1, "nothing left behind by refused uploads");

    let resp = put_invoice(&app, &id, Some("\"r1\""), invoice_form("clear scan.pdf", "application/pdf", &pdf)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"r2\"");
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["invoice"]["version"], 2);
    assert_eq!(card["invoice"]["fileName"], "clear scan.pdf");
    assert_eq!(card["invoice"]["sha256"], sha256_hex(&pdf));
    assert_eq!(card["ocr"]["status"], "queued");
    assert_eq!(card["ocr"]["invoiceVersion"], 2);
    assert_eq!(card["audit"].as_array().unwrap().last().unwrap()["action"], "invoice_replaced");
    // Only the new file is stored; the download is the new file.
    let files: Vec<String> = app.invoice_files().iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(&format!("{id}.v2.pdf")), "{files:?}");
    let download = app.get("alice", &format!("/api/products/{id}/invoice")).await;
    assert_eq!(download.bytes().await.unwrap().to_vec(), pdf);

    // The new OCR event is queued with the product; the old one is now a no-op.
    let events = app.ocr_events().await;
    let second = events.iter().find(|e| e["messageId"] == format!("{id}:invoice:2")).expect("an event for v2").clone();
    assert_eq!(second["invoiceVersion"], 2);
    let invoke = |event: Value| {
        let payload = json!({"Data": {"message": event}, "Metadata": {"DeliveryCount": "1", "MessageId": "\"m\""}});
        app.client.post(format!("{}/ProcessInvoiceOcr", app.base)).json(&payload).send()
    };
    let old: Value = invoke(first).await.unwrap().json().await.unwrap();
    assert!(old["Logs"][0].as_str().unwrap().contains("invoice_replaced"), "{old}");
    assert_eq!(invoke(second).await.unwrap().status(), 200);
    let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
    assert_eq!(card["ocr"]["status"], "completed", "{card}");
    assert_eq!(card["ocr"]["invoiceVersion"], 2);
    assert_eq!(card["ocr"]["engine"], "pdf-text");

    // Stale ETag: refused before the upload is read.
    let (s, p) =
        problem(put_invoice(&app, &id, Some("\"r1\""), invoice_form("b.pdf", "application/pdf", &pdf)).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (412, "precondition_failed"));
    // Locked by a service request: the invoice is part of the record now.
    raise(&app, &id, json!({"description": "Keyboard"})).await;
    let (s, p) =
        problem(put_invoice(&app, &id, Some("\"r3\""), invoice_form("c.pdf", "application/pdf", &pdf)).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (409, "product_locked"));
    assert_eq!(app.invoice_files().len(), 1, "no orphan from refused replacements");
}

/// 30 edits do not grow the card: it carries the newest 5 audit entries and the count, and
/// `GET /api/products/{id}/audit` pages through all of them, oldest first.
async fn the_card_carries_the_newest_audit_entries_and_the_trail_pages() {
    let app = spawn_app().await;
    let (id, first, mut etag) = registered(&app, "7XK9JH2").await;
    let first_size = serde_json::to_vec(&first).unwrap().len();
    for i in 0..30 {
        let resp =
            patch(&app, &id, Some(&etag), &format!(r#"{{"notes":"note number {i} {}"}}"#, "x".repeat(200))).await;
        assert_eq!(resp.status(), 200);
        etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    }
    let resp = app.get("alice", &format!("/api/products/{id}")).await;
    let card: Value = resp.json().await.unwrap();
    assert_eq!(card["auditCount"], 31);
    let audit = card["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 5, "the newest five");
    assert_eq!(audit[4]["changes"][0]["to"].as_str().unwrap().split(' ').nth(2), Some("29"));
    let size = serde_json::to_vec(&card).unwrap().len();
    assert!(size < first_size + 5 * 1200, "the card stays small: {first_size} → {size} bytes");
    let listed: Value = app.get("alice", "/api/products").await.json().await.unwrap();
    assert_eq!(listed["items"][0]["audit"].as_array().unwrap().len(), 5);

    // The whole trail, 12 at a time.
    let mut entries = Vec::new();
    let mut path = format!("/api/products/{id}/audit?limit=12");
    loop {
        let page: Value = app.get("alice", &path).await.json().await.unwrap();
        entries.extend(page["items"].as_array().unwrap().clone());
        match page["continuationToken"].as_str() {
            Some(t) => path = format!("/api/products/{id}/audit?limit=12&continuationToken={t}"),
            None => break,
        }
    }
    assert_eq!(entries.len(), 31);
    assert_eq!(entries[0]["action"], "registered");
    assert!(entries[1..].iter().all(|e| e["action"] == "edited"));
    assert_eq!(entries[30], audit[4], "the card's newest entry is the trail's last");

    let (s, p) = problem(app.get("alice", &format!("/api/products/{id}/audit?continuationToken=bm9wZQ")).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "continuation_token_invalid"));
    let (s, p) = problem(app.get("alice", &format!("/api/products/{id}/audit?limit=0")).await).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "limit_invalid"));
    let (s, _) = problem(app.get("bob", &format!("/api/products/{id}/audit")).await).await;
    assert_eq!(s, 404, "another user's product is not found");
}
