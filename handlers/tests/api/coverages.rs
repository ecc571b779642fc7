//! Several coverages per product: the catalogue's manufacturer coverage made at registration,
//! others added, edited (merge patch, `If-Match`) and removed; service requests rely on one and
//! lock its dates — on the embedded store and on Cosmos DB, over real HTTP.

backends!([embedded, azure]:
    registration_makes_the_manufacturer_coverage_and_others_are_added_edited_and_removed,
    bad_coverage_requests_get_problems_and_change_nothing,
    a_service_request_relies_on_the_first_active_coverage_and_locks_its_dates,
    the_catalogue_coverage_follows_product_edits_until_its_own_dates_are_edited,
    a_coverage_carries_its_proof_document_and_a_refused_one_leaves_no_file,
);

use crate::support::*;
use serde_json::{Value, json};

/// Registers a Dell Inspiron (12 months) bought `bought` days from today; returns its id.
async fn product(app: &TestApp, serial: &str, bought: i64) -> String {
    let form = Form::registration("Dell", "Inspiron 14", serial, &day(bought), &fixture("invoice.pdf"));
    let resp = app.post_form("alice", form).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn card(app: &TestApp, id: &str) -> Value {
    app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap()
}

async fn add(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.post_json("alice", &format!("/api/products/{id}/coverages"), &body).await
}

async fn edit(app: &TestApp, id: &str, cid: &str, if_match: Option<&str>, body: Value) -> reqwest::Response {
    app.merge_patch("alice", &format!("/api/products/{id}/coverages/{cid}"), if_match, &body.to_string()).await
}

async fn remove(app: &TestApp, id: &str, cid: &str) -> reqwest::Response {
    app.client
        .delete(format!("{}/api/products/{id}/coverages/{cid}", app.base))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
}

async fn raise(app: &TestApp, id: &str, body: Value) -> Value {
    let resp = app.post_json("alice", &format!("/api/products/{id}/service-requests"), &body).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

fn etag(resp: &reqwest::Response) -> String {
    resp.headers()["etag"].to_str().unwrap().to_owned()
}

async fn registration_makes_the_manufacturer_coverage_and_others_are_added_edited_and_removed() {
    let app = spawn_app().await;
    let id = product(&app, "CVR0001", -30).await;
    let c = card(&app, &id).await;
    let coverages = c["coverages"].as_array().unwrap();
    assert_eq!(coverages.len(), 1);
    let manufacturer = &coverages[0];
    assert_eq!(manufacturer["kind"], "manufacturer");
    assert_eq!(manufacturer["id"], c["id"], "the catalogue coverage has the product's id");
    assert_eq!(manufacturer["provider"], "Dell");
    assert_eq!(
        (manufacturer["startsOn"].as_str(), manufacturer["months"].as_u64()),
        (Some(day(-30).as_str()), Some(12))
    );
    assert_eq!(manufacturer["expiresOn"], c["warrantyExpiresOn"]);
    assert_eq!((manufacturer["status"].as_str(), manufacturer["locked"].as_bool()), (Some("active"), Some(false)));
    assert_eq!(c["coveredUntil"], c["warrantyExpiresOn"]);

    // An extended warranty that starts when the manufacturer's ends.
    let starts = c["warrantyExpiresOn"].as_str().unwrap().to_owned();
    let resp = add(
        &app,
        &id,
        json!({"kind": "extended", "provider": "Acme Care", "reference": "EXT-77", "startsOn": starts, "months": 24}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(etag(&resp), "\"r2\"");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let extended: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/products/{id}/coverages/{}", extended["id"].as_str().unwrap()));
    assert_eq!((extended["status"].as_str(), extended["lifetime"].as_bool()), (Some("upcoming"), Some(false)));
    let c = card(&app, &id).await;
    assert_eq!(c["coverages"].as_array().unwrap().len(), 2);
    assert_eq!(c["coveredUntil"], extended["expiresOn"], "covered until the later expiry");
    assert_eq!(c["revision"], 2);

    // An edit needs the card's ETag; a stale one changes nothing.
    let cid = extended["id"].as_str().unwrap();
    let (s, p) = problem(edit(&app, &id, cid, None, json!({"provider": "X"})).await).await;
    assert_eq!((s, p["code"].as_str()), (428, Some("precondition_required")));
    let (s, p) = problem(edit(&app, &id, cid, Some("\"r1\""), json!({"provider": "X"})).await).await;
    assert_eq!((s, p["code"].as_str()), (412, Some("precondition_failed")));
    let resp = edit(&app, &id, cid, Some("\"r2\""), json!({"months": null, "lifetime": true, "reference": null})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(etag(&resp), "\"r3\"");
    let edited: Value = resp.json().await.unwrap();
    assert_eq!((edited["lifetime"].as_bool(), edited["expiresOn"].is_null()), (Some(true), true));
    assert!(edited.get("reference").is_none() && edited.get("months").is_none());
    assert!(card(&app, &id).await["coveredUntil"].is_null(), "a lifetime coverage covers for good");

    let resp = remove(&app, &id, cid).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(etag(&resp), "\"r4\"");
    let c = card(&app, &id).await;
    assert_eq!(c["coverages"].as_array().unwrap().len(), 1);
    let audit: Value = app.get("alice", &format!("/api/products/{id}/audit")).await.json().await.unwrap();
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["registered", "coverage_added", "coverage_edited", "coverage_removed"]);
    let edit_entry = &audit["items"][2]["changes"];
    assert!(
        edit_entry
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["field"] == format!("coverages/{cid}/lifetime") && ch["to"] == "true")
    );
}

async fn bad_coverage_requests_get_problems_and_change_nothing() {
    let app = spawn_app().await;
    let id = product(&app, "CVR0002", -30).await;
    for (body, status, code) in [
        (json!({"months": 12}), 422, "coverage_kind_invalid"),
        (json!({"kind": "gold", "months": 12}), 422, "coverage_kind_invalid"),
        (json!({"kind": "retailer"}), 422, "coverage_duration_invalid"),
        (json!({"kind": "retailer", "months": 12, "endsOn": "2040-01-01"}), 422, "coverage_duration_invalid"),
        (json!({"kind": "retailer", "months": 0}), 422, "coverage_months_invalid"),
        (json!({"kind": "retailer", "months": 1201}), 422, "coverage_months_invalid"),
        (json!({"kind": "retailer", "startsOn": "2026-02-30", "months": 3}), 422, "coverage_date_invalid"),
        (
            json!({"kind": "retailer", "startsOn": "2030-05-01", "endsOn": "2030-05-01"}),
            422,
            "coverage_dates_out_of_order",
        ),
        (json!({"kind": "retailer", "months": 3, "status": "active"}), 422, "field_read_only"),
        (json!({"kind": "retailer", "months": 3, "provider": "x".repeat(201)}), 422, "field_too_long"),
        (json!({"kind": "retailer", "months": 3, "colour": "red"}), 400, "patch_invalid"),
        (json!({"kind": "retailer", "lifetime": "yes"}), 400, "patch_invalid"),
        (json!(["kind"]), 400, "patch_invalid"),
    ] {
        let (s, p) = problem(add(&app, &id, body.clone()).await).await;
        assert_eq!((s, p["code"].as_str().unwrap()), (status, code), "{body}");
    }
    let resp = app
        .client
        .post(format!("{}/api/products/{id}/coverages", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", "text/plain")
        .body("kind=retailer")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(resp).await.1["code"], "content_type_unsupported");
    // Another user's product, and coverages that do not exist, are not found.
    let resp = app
        .post_json("mallory", &format!("/api/products/{id}/coverages"), &json!({"kind": "retailer", "months": 3}))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        edit(&app, &id, &uuid::Uuid::now_v7().to_string(), Some("\"r1\""), json!({"months": 3})).await.status(),
        404
    );
    assert_eq!(remove(&app, &id, "not-a-uuid").await.status(), 404);
    assert_eq!(card(&app, &id).await["revision"], 1, "no refusal changed the product");

    // The last coverage stays; at most twelve.
    let (s, p) = problem(remove(&app, &id, &id).await).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("coverage_last")));
    for n in 0..11 {
        assert_eq!(add(&app, &id, json!({"kind": "insurance", "months": 1 + n})).await.status(), 201);
    }
    let (s, p) = problem(add(&app, &id, json!({"kind": "insurance", "months": 99})).await).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("coverage_limit_reached")));
    assert_eq!(card(&app, &id).await["coverages"].as_array().unwrap().len(), 12);
}

async fn a_service_request_relies_on_the_first_active_coverage_and_locks_its_dates() {
    let app = spawn_app().await;
    // The manufacturer's 12 months ended long ago.
    let id = product(&app, "CVR0003", -1000).await;
    assert_eq!(card(&app, &id).await["warrantyStatus"], "expired");
    let repair: Value =
        add(&app, &id, json!({"kind": "repair", "startsOn": day(-5), "endsOn": day(100)})).await.json().await.unwrap();
    let retailer: Value =
        add(&app, &id, json!({"kind": "retailer", "startsOn": day(-10), "months": 12})).await.json().await.unwrap();
    let c = card(&app, &id).await;
    assert_eq!(c["warrantyStatus"], "active", "active while any coverage is");

    // Retailer comes before repair in the order of reliance.
    let first = raise(&app, &id, json!({"description": "The hinge broke."})).await;
    assert_eq!((first["coverageId"].as_str(), first["inWarranty"].as_bool()), (retailer["id"].as_str(), Some(true)));
    // The one the user names.
    let named = raise(&app, &id, json!({"description": "Fan noise.", "coverageId": repair["id"]})).await;
    assert_eq!(named["coverageId"], repair["id"]);
    let c = card(&app, &id).await;
    let locked: Vec<bool> = c["coverages"].as_array().unwrap().iter().map(|c| c["locked"].as_bool().unwrap()).collect();
    assert_eq!(locked, [false, true, true], "manufacturer open, repair and retailer locked");

    // Dates of a locked coverage stay; provider and reference do not.
    let tag = format!("\"r{}\"", c["revision"]);
    let rid = retailer["id"].as_str().unwrap();
    let (s, p) = problem(edit(&app, &id, rid, Some(&tag), json!({"months": 60})).await).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("coverage_locked")));
    assert!(p["detail"].as_str().unwrap().contains("`months`"));
    let (s, p) = problem(remove(&app, &id, rid).await).await;
    assert_eq!((s, p["code"].as_str()), (409, Some("coverage_locked")));
    let resp = edit(&app, &id, rid, Some(&tag), json!({"provider": "MediaMarkt", "reference": "R-1"})).await;
    assert_eq!(resp.status(), 200);
    // The manufacturer's, not relied on, stays editable; new coverages can be added.
    let tag = etag(&resp);
    assert_eq!(edit(&app, &id, &id, Some(&tag), json!({"months": 24})).await.status(), 200);
    assert_eq!(add(&app, &id, json!({"kind": "insurance", "lifetime": true})).await.status(), 201);

    let unknown = json!({"description": "x", "coverageId": uuid::Uuid::now_v7()});
    let resp = app.post_json("alice", &format!("/api/products/{id}/service-requests"), &unknown).await;
    let (s, p) = problem(resp).await;
    assert_eq!((s, p["code"].as_str()), (422, Some("coverage_unknown")));

    // Nothing active: the request relies on no coverage.
    let bare = product(&app, "CVR0004", -1000).await;
    let uncovered = raise(&app, &bare, json!({"description": "Dead pixel."})).await;
    assert_eq!((uncovered["coverageId"].clone(), uncovered["inWarranty"].as_bool()), (Value::Null, Some(false)));
}

async fn the_catalogue_coverage_follows_product_edits_until_its_own_dates_are_edited() {
    let app = spawn_app().await;
    let id = product(&app, "CVR0005", -30).await;
    let edit_product = json!({"purchaseDate": day(-40), "model": "Latitude 7440"}).to_string();
    let resp = app.merge_patch("alice", &format!("/api/products/{id}"), Some("\"r1\""), &edit_product).await;
    assert_eq!(resp.status(), 200);
    let c: Value = resp.json().await.unwrap();
    assert_eq!(
        (c["coverages"][0]["startsOn"].as_str(), c["coverages"][0]["months"].as_u64()),
        (Some(day(-40).as_str()), Some(36))
    );
    assert_eq!(c["coverages"][0]["expiresOn"], c["warrantyExpiresOn"]);

    // Once its own dates are edited, it keeps them.
    let resp = edit(&app, &id, &id, Some("\"r2\""), json!({"months": 48})).await;
    assert_eq!(resp.status(), 200);
    let later = json!({"purchaseDate": day(-50)}).to_string();
    let resp = app.merge_patch("alice", &format!("/api/products/{id}"), Some("\"r3\""), &later).await;
    let c: Value = resp.json().await.unwrap();
    assert_eq!(
        (c["coverages"][0]["startsOn"].as_str(), c["coverages"][0]["months"].as_u64()),
        (Some(day(-40).as_str()), Some(48))
    );
}

/// A product stored before coverages existed (its document has none) reads with the catalogue's
/// manufacturer coverage, and the first coverage change stores that one beside the new one
/// (embedded store: the document is a SQLite row).
#[tokio::test]
async fn a_product_stored_before_coverages_reads_with_its_manufacturer_coverage() {
    let app = spawn_app().await;
    let id = product(&app, "CVR0006", -30).await;
    let db = app.db();
    let changed = db.execute("UPDATE products SET doc = json_remove(doc, '$.coverages') WHERE id = ?1", [&id]).unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let c = card(&app, &id).await;
    assert_eq!(
        (c["coverages"][0]["id"].as_str(), c["coverages"][0]["kind"].as_str()),
        (Some(id.as_str()), Some("manufacturer"))
    );
    assert_eq!(add(&app, &id, json!({"kind": "retailer", "months": 24})).await.status(), 201);
    let stored: String = app
        .db()
        .query_row("SELECT json_extract(doc, '$.coverages') FROM products WHERE id = ?1", [&id], |r| r.get(0))
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored.as_array().unwrap().len(), 2);
    assert_eq!(stored[0]["id"], id.as_str());
}

async fn add_form(app: &TestApp, id: &str, form: Form) -> reqwest::Response {
    post_form_to(&app.client, &format!("{}/api/products/{id}/coverages", app.base), "alice", form).await
}

async fn a_coverage_carries_its_proof_document_and_a_refused_one_leaves_no_file() {
    let app = spawn_app().await;
    let id = product(&app, "CVR0007", -30).await;
    let files_before = app.invoice_files().len();
    let png = fixture("invoice.png");
    let form = Form::new()
        .text("kind", "insurance")
        .text("provider", "Allianz")
        .text("reference", "POL-99")
        .text("endsOn", &day(700))
        .file("proof", "Police Allianz.png", "image/png", &png);
    let resp = add_form(&app, &id, form).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let added: Value = resp.json().await.unwrap();
    assert_eq!((added["kind"].as_str(), added["endsOn"].as_str()), (Some("insurance"), Some(day(700).as_str())));
    let proof = &added["proof"];
    assert_eq!(
        (proof["fileName"].as_str(), proof["contentType"].as_str()),
        (Some("Police Allianz.png"), Some("image/png"))
    );
    assert_eq!(
        (proof["sizeBytes"].as_u64(), proof["sha256"].as_str()),
        (Some(png.len() as u64), Some(sha256_hex(&png).as_str()))
    );
    assert_eq!(app.invoice_files().len(), files_before + 1);
    let cid = added["id"].as_str().unwrap();
    let resp = app.get("alice", &format!("/api/products/{id}/coverages/{cid}/proof")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), png.as_slice());
    assert_eq!(app.get("mallory", &format!("/api/products/{id}/coverages/{cid}/proof")).await.status(), 404);
    assert_eq!(app.get("alice", &format!("/api/products/{id}/coverages/{id}/proof")).await.status(), 404, "no proof");

    // Refused after the file arrived (a rule), refused by the file itself (type), and an empty
    // file: the product does not change and no file stays.
    let revision = card(&app, &id).await["revision"].clone();
    for (form, status, code) in [
        (
            Form::new().text("kind", "insurance").file("proof", "p.png", "image/png", &png),
            422,
            "coverage_duration_invalid",
        ),
        (
            Form::new().text("kind", "insurance").text("months", "twelve").file("proof", "p.png", "image/png", &png),
            422,
            "coverage_months_invalid",
        ),
        (
            Form::new().text("kind", "insurance").text("months", "12").file(
                "proof",
                "p.txt",
                "text/plain",
                b"not a document",
            ),
            415,
            "invoice_type_unsupported",
        ),
        (
            Form::new().text("kind", "insurance").text("months", "12").file("proof", "p.png", "image/png", b""),
            422,
            "proof_empty",
        ),
    ] {
        let (s, p) = problem(add_form(&app, &id, form).await).await;
        assert_eq!((s, p["code"].as_str().unwrap()), (status, code));
    }
    assert_eq!(card(&app, &id).await["revision"], revision);
    assert_eq!(app.invoice_files().len(), files_before + 1, "no file of a refused coverage stays");

    // Removing the coverage removes its proof.
    assert_eq!(remove(&app, &id, cid).await.status(), 204);
    assert_eq!(app.invoice_files().len(), files_before);
}
