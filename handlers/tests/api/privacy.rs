//! A user's data is theirs: the streamed export (checked with Info-ZIP's `unzip -t` and
//! Python's `zipfile`, readers this project did not write) and the erasure (counted on every
//! store afterwards: nothing left of the user, nothing taken from anyone else) — on the
//! embedded store and on the Azure adapters (Cosmos DB emulator, Azurite, loopback Service Bus
//! and Notification Hub).

backends!([embedded, azure]:
    the_export_is_a_zip_with_every_card_file_reminder_and_setting,
    erasure_needs_its_confirmation_and_leaves_nothing_of_the_user,
    an_interrupted_erasure_is_resumed_and_finished,
    an_erasure_longer_than_the_wait_answers_202_and_goes_on,
    a_client_that_leaves_mid_export_leaves_nothing_behind,
);

backends!([embedded]: support_staff_export_and_erase_with_the_cli);

use std::sync::Arc;

use serde_json::{Value, json};
use warranty::ports::ManualClock;

use crate::support::*;

const NOW: &str = "2027-03-01T10:00:00Z";

/// An app at `NOW` with a loopback notification hub.
async fn app() -> (TestApp, Hub) {
    let hub = notification_hub().await;
    let cs = warranty::config::Secret::new(hub.connection_string());
    let clock = Arc::new(ManualClock::new(NOW.parse().unwrap()));
    let app = spawn_at(clock, |s| s.reminders.notification_hub_connection_string = Some(cs)).await;
    (app, hub)
}

/// Everything a user can have: three products (one with a proof-backed coverage ending soon,
/// one with a service request, one registered with an idempotency key), settings, a calendar
/// feed, a device and a reminder. Returns the product ids and the calendar feed's URL.
async fn populate(app: &TestApp, user: &str, tag: &str) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    for (n, file) in ["invoice.pdf", "invoice.png", "invoice.jpg"].iter().enumerate() {
        let form = Form::registration("Dell", "Inspiron 14", &format!("{tag}{n:03}X"), "2027-01-15", &fixture(file));
        let resp = app.post_form_with(user, form, Some(&format!("{user}-key-{n}"))).await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let form = Form::new()
        .text("kind", "extended")
        .text("provider", "CarePlus, \"Gold\"")
        .text("startsOn", "2027-01-15")
        .text("endsOn", "2027-03-05")
        .file("proof", "contract.pdf", "application/pdf", &fixture("invoice.pdf"));
    let resp = post_form_to(&app.client, &format!("{}/api/products/{}/coverages", app.base, ids[0]), user, form).await;
    assert_eq!(resp.status(), 201);
    let body = json!({"description": "=HYPERLINK(\"x\") The fan rattles."});
    assert_eq!(app.post_json(user, &format!("/api/products/{}/service-requests", ids[1]), &body).await.status(), 201);
    let settings = json!({"leadDays": [7], "timeZone": "Europe/Berlin", "channels": ["push"]});
    let resp = app.put_json(user, "/api/me/notification-settings", &settings).await;
    assert_eq!(resp.status(), 200);
    let device = json!({"platform": "fcmv1", "pushChannel": format!("token-{user}")});
    let resp = app.put_json(user, &format!("/api/me/devices/{user}-phone"), &device).await;
    assert_eq!(resp.status(), 201);
    let feed: Value = app.post_json(user, "/api/me/calendar-feed", &json!({})).await.json().await.unwrap();
    let url = feed["url"].as_str().unwrap().to_owned();
    // The coverage ends in 4 days: its 7-day reminder is made, its push delivery queued.
    warranty::application::reminders::choose(&app.services, NOW.parse().unwrap()).await.unwrap();
    (ids, url)
}

async fn export(app: &TestApp, user: &str) -> (reqwest::Response, tempfile::TempDir, std::path::PathBuf) {
    let resp = app.get(user, "/api/me/export").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    (resp, dir, path)
}

fn python(script: &str, zip: &std::path::Path) -> Value {
    let out = std::process::Command::new("python3").arg("-c").arg(script).arg(zip).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn the_export_is_a_zip_with_every_card_file_reminder_and_setting() {
    let (app, _hub) = app().await;
    let (ids, _) = populate(&app, "alice", "EXA").await;
    populate(&app, "bob", "EXB").await;

    let (resp, _dir, path) = export(&app, "alice").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    assert_eq!(resp.headers()["content-disposition"], "attachment; filename=\"warranty-export-2027-03-01.zip\"");
    assert!(resp.headers().get("content-length").is_none(), "streamed, not buffered");
    std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();

    // Info-ZIP checks every entry's CRC.
    let unzip = std::process::Command::new("unzip").arg("-t").arg(&path).output().expect("unzip runs");
    let report = String::from_utf8_lossy(&unzip.stdout);
    assert!(unzip.status.success() && report.contains("No errors detected"), "{report}");

    let listing = python(
        r#"
import sys, json, zipfile, hashlib, csv, io
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
files = {i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}
rows = list(csv.DictReader(io.StringIO(z.read("products.csv").decode())))
print(json.dumps({
  "files": files,
  "products": json.loads(z.read("products.json")),
  "csv": rows,
  "notifications": json.loads(z.read("notifications.json")),
  "settings": json.loads(z.read("settings.json")),
  "readme": z.read("README.txt").decode(),
}))
"#,
        &path,
    );
    let files = listing["files"].as_object().unwrap();
    let products = listing["products"].as_array().unwrap();
    assert_eq!(products.len(), 3);
    for id in &ids {
        let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
        let exported = products.iter().find(|p| p["id"] == id.as_str()).expect("every product");
        assert!(exported["invoice"].get("location").is_none(), "no store location leaks");
        assert_eq!(exported["brand"], card["brand"]);
        // The invoice file is there, under a name built from date, id and version, and its
        // SHA-256 is the card's.
        let name = files
            .keys()
            .find(|n| n.starts_with("invoices/2027-01-15_") && n.contains(id.as_str()) && n.contains("_v1."))
            .expect("the invoice");
        assert_eq!(files[name], card["invoice"]["sha256"], "{name}");
    }
    let with_proof = products.iter().find(|p| p["id"] == ids[0].as_str()).unwrap();
    let coverage = with_proof["coverages"].as_array().unwrap().iter().find(|c| c["proof"].is_object()).unwrap();
    let proof_name = format!("proofs/{}_{}.pdf", ids[0], coverage["id"].as_str().unwrap());
    assert_eq!(files[&proof_name], Value::from(sha256_hex(&fixture("invoice.pdf"))));
    assert!(coverage["proof"].get("location").is_none());
    let with_request = products.iter().find(|p| p["id"] == ids[1].as_str()).unwrap();
    assert_eq!(with_request["serviceRequests"].as_array().unwrap().len(), 1);
    assert!(with_request["audit"].as_array().unwrap().len() >= 2, "the whole audit trail");
    assert!(with_request["ocr"]["status"].is_string(), "the OCR result");
    assert!(!files.keys().any(|n| n.contains("EXB")), "nothing of bob's");

    let csv = listing["csv"].as_array().unwrap();
    assert_eq!(csv.len(), 3);
    assert!(csv.iter().all(|r| r["brand"] == "Dell" && r["purchaseDate"] == "2027-01-15"));
    let first = csv.iter().find(|r| r["id"] == ids[0].as_str()).unwrap();
    let card: Value = app.get("alice", &format!("/api/products/{}", ids[0])).await.json().await.unwrap();
    let latest = card["coverages"].as_array().unwrap().iter().filter_map(|c| c["expiresOn"].as_str()).max().unwrap();
    assert_eq!(first["coveredUntil"], latest, "the last day any coverage covers");
    assert_eq!(first["coverages"], "2");

    let notes = listing["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["leadDays"], 7);
    let settings = &listing["settings"];
    assert_eq!(settings["notificationSettings"]["timeZone"], "Europe/Berlin");
    assert!(settings["notificationSettings"].get("webhookSecret").is_none(), "no secrets in the archive");
    assert!(settings["calendarFeed"]["leadDays"].is_array());
    assert!(settings["calendarFeed"].get("secretSha256").is_none());
    assert_eq!(settings["devices"][0]["installationId"], "alice-phone");
    assert!(listing["readme"].as_str().unwrap().contains("products.csv"));

    // A user with nothing gets a valid, nearly empty archive; no token, no archive.
    let (resp, _d, empty) = export(&app, "carol").await;
    std::fs::write(&empty, resp.bytes().await.unwrap()).unwrap();
    let listing = python(
        "import sys, json, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(json.dumps(sorted(z.namelist())))",
        &empty,
    );
    assert_eq!(
        listing,
        json!(["README.txt", "intakes.json", "notifications.json", "products.csv", "products.json", "settings.json"])
    );
    let resp = app.client.get(format!("{}/api/me/export", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

/// What is stored for `user` on every store, as counts by kind (zero kinds left out).
async fn stored(app: &TestApp, user: &str, ids: &[String]) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    match &app.cosmos {
        None => {
            let db = app.db();
            for (kind, sql) in [
                ("products", "SELECT COUNT(*) FROM products WHERE user_id = ?1"),
                ("idempotency", "SELECT COUNT(*) FROM idempotency WHERE user_id = ?1"),
                ("user_records", "SELECT COUNT(*) FROM user_records WHERE user_id = ?1"),
                ("reminders", "SELECT COUNT(*) FROM reminders WHERE user_id = ?1"),
                (
                    "reminder_deliveries",
                    "SELECT COUNT(*) FROM reminder_deliveries d JOIN reminders r ON r.id = d.reminder_id WHERE r.user_id = ?1",
                ),
                ("ocr_dead_letters", "SELECT COUNT(*) FROM ocr_dead_letters WHERE json_extract(body, '$.userId') = ?1"),
            ] {
                out.insert(kind.to_owned(), db.query_row(sql, [user], |r| r.get(0)).unwrap());
            }
            let queued: i64 = ids
                .iter()
                .map(|id| {
                    db.query_row("SELECT COUNT(*) FROM ocr_queue WHERE product_id = ?1", [id], |r| r.get::<_, i64>(0))
                        .unwrap()
                })
                .sum();
            out.insert("ocr_queue".into(), queued);
            // Deliveries left without their reminder would be someone's data too.
            let orphans: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM reminder_deliveries WHERE reminder_id NOT IN (SELECT id FROM reminders)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            out.insert("orphan_deliveries".into(), orphans);
        }
        Some(cosmos) => {
            for (kind, _) in cosmos.partition(user).await {
                *out.entry(format!("cosmos:{kind}")).or_default() += 1;
            }
        }
    }
    let files = app.invoice_files();
    let theirs = files.iter().filter(|f| ids.iter().any(|id| f.to_string_lossy().contains(id.as_str()))).count();
    out.insert("files".into(), theirs as i64);
    out.retain(|_, n| *n > 0);
    out
}

async fn erase(app: &TestApp, user: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.delete(format!("{}/api/me", app.base)).bearer_auth(token(user));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn erasure_needs_its_confirmation_and_leaves_nothing_of_the_user() {
    let (app, hub) = app().await;
    let (ids, calendar) = populate(&app, "alice", "ERA").await;
    let (bob_ids, _) = populate(&app, "bob", "ERB").await;
    let alice_before = stored(&app, "alice", &ids).await;
    let bob_before = stored(&app, "bob", &bob_ids).await;
    assert!(alice_before.len() >= 4, "alice has data on every store: {alice_before:?}");
    assert_eq!(hub.snapshot().installations.len(), 2);
    // A verification link printed on one of alice's cards.
    let key = std::fs::read_to_string(app.dir.path().join("verification-key")).unwrap();
    let link = warranty::card::token::issue(
        key.trim().as_bytes(),
        ids[0].parse().unwrap(),
        0,
        NOW.parse::<chrono::DateTime<chrono::Utc>>().unwrap() + chrono::Duration::days(1),
    );
    assert_eq!(app.client.get(format!("{}/api/verify/{link}", app.base)).send().await.unwrap().status(), 200);

    // Without the confirmation phrase: 428, nothing erased.
    for body in [None, Some(json!({})), Some(json!({"confirm": "yes"}))] {
        let resp = erase(&app, "alice", body).await;
        assert_eq!(resp.status(), 428);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "confirmation_required");
    }
    assert_eq!(stored(&app, "alice", &ids).await, alice_before);

    let resp = erase(&app, "alice", Some(json!({"confirm": "delete my data"}))).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(stored(&app, "alice", &ids).await, Default::default(), "nothing of alice's is left");
    assert_eq!(stored(&app, "bob", &bob_ids).await, bob_before, "bob's data is untouched");
    let installations = hub.snapshot().installations;
    assert_eq!(installations.len(), 1, "alice's installation went from the hub, bob's stayed");
    assert_eq!(installations.values().next().unwrap()["pushChannel"], "token-bob");

    // Every endpoint answers as for a user who never existed.
    let list: Value = app.get("alice", "/api/products").await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    assert_eq!(app.get("alice", &format!("/api/products/{}", ids[0])).await.status(), 404);
    assert_eq!(app.get("alice", "/api/notifications").await.json::<Value>().await.unwrap()["unreadCount"], 0);
    let settings: Value = app.get("alice", "/api/me/notification-settings").await.json().await.unwrap();
    assert_eq!(settings["leadDays"], json!([30, 7]), "back to the defaults");
    let path = calendar.split_once("/api/").map(|(_, p)| format!("/api/{p}")).unwrap();
    assert_eq!(app.client.get(format!("{}{path}", app.base)).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(format!("{}/api/verify/{link}", app.base)).send().await.unwrap().status(), 404);
    assert_eq!(app.get("alice", "/api/me/erasure").await.status(), 404, "no erasure in progress");
    // The delivery that was still queued for alice's reminder is gone: nothing is pushed.
    warranty::application::reminders::deliver(&app.services, "2027-03-02T10:00:00Z".parse().unwrap()).await.unwrap();
    assert!(hub.snapshot().sent.iter().all(|(_, m)| !ids.iter().any(|id| m["productId"] == id.as_str())));
    // An OCR message still in flight for an erased product changes nothing.
    let event = json!({
        "messageId": format!("{}:invoice:1", ids[0]), "productId": ids[0], "userId": "alice",
        "invoiceLocation": format!("{}.v1.pdf", ids[0]), "invoiceContentType": "application/pdf",
        "invoiceSha256": "00", "invoiceVersion": 1, "requestedAt": NOW
    });
    let invocation = json!({"Data": {"message": event}, "Metadata": {"DeliveryCount": "1", "MessageId": "\"m\""}});
    let resp = app.client.post(format!("{}/ProcessInvoiceOcr", app.base)).json(&invocation).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(stored(&app, "alice", &ids).await, Default::default());
    // The same idempotency key makes a fresh product, not a replay of erased data.
    let form = Form::registration("Dell", "Inspiron 14", "ERA000X", "2027-01-15", &fixture("invoice.pdf"));
    let resp = app.post_form_with("alice", form, Some("alice-key-0")).await;
    assert_eq!(resp.status(), 201);
    let fresh = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert!(!ids.contains(&fresh));
    // Erasing again is harmless.
    assert_eq!(erase(&app, "alice", Some(json!({"confirm": "delete my data"}))).await.status(), 204);
    assert_eq!(erase(&app, "dave", Some(json!({"confirm": "delete my data"}))).await.status(), 204);
}

async fn an_interrupted_erasure_is_resumed_and_finished() {
    let (app, _hub) = app().await;
    let (ids, _) = populate(&app, "erin", "ERC").await;
    let (other, _) = populate(&app, "frank", "ERD").await;
    let frank = stored(&app, "frank", &other).await;
    let user = warranty::domain::UserId("erin".into());
    // The erasure starts, erases one product, and the process dies.
    warranty::application::privacy::begin_erasure(&app.services, &user).await.unwrap();
    let finished = warranty::application::privacy::continue_erasure(&app.services, &user, Some(1)).await.unwrap();
    assert!(!finished);
    let left = stored(&app, "erin", &ids).await;
    assert!(!left.is_empty(), "partly erased: {left:?}");
    let status = app.get("erin", "/api/me/erasure").await;
    assert_eq!(status.status(), 200);
    assert_eq!(status.json::<Value>().await.unwrap()["status"], "in_progress");
    // What a restart runs finds it by its marker and finishes it.
    assert_eq!(warranty::application::privacy::resume_pending(&app.services).await.unwrap(), 1);
    assert_eq!(stored(&app, "erin", &ids).await, Default::default());
    assert_eq!(stored(&app, "frank", &other).await, frank);
    assert_eq!(app.get("erin", "/api/me/erasure").await.status(), 404);
    assert_eq!(warranty::application::privacy::resume_pending(&app.services).await.unwrap(), 0);
}

async fn an_erasure_longer_than_the_wait_answers_202_and_goes_on() {
    let hub = notification_hub().await;
    let cs = warranty::config::Secret::new(hub.connection_string());
    let clock = Arc::new(ManualClock::new(NOW.parse().unwrap()));
    let app = spawn_at(clock, |s| {
        s.reminders.notification_hub_connection_string = Some(cs);
        // No wait at all: every erasure outlives it.
        s.server.erasure_wait_secs = 0;
    })
    .await;
    let (ids, _) = populate(&app, "gail", "ERE").await;
    let resp = erase(&app, "gail", Some(json!({"confirm": "delete my data"}))).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["location"], "/api/me/erasure");
    let body: Value = resp.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["startedAt"].as_str()), (Some("in_progress"), Some(NOW)));
    // It goes on without the request: poll the status until it is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get("gail", "/api/me/erasure").await.status() == 200 {
        assert!(std::time::Instant::now() < deadline, "the erasure did not finish");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.get("gail", "/api/me/erasure").await.status(), 404);
    assert_eq!(stored(&app, "gail", &ids).await, Default::default());
}

/// `warranty users export` and `warranty users erase`: the release procedures for support staff,
/// run as the real binary on the same data directory as a running server.
async fn support_staff_export_and_erase_with_the_cli() {
    let (app, _hub) = app().await;
    let (ids, _) = populate(&app, "hank", "CLI").await;
    let (others, _) = populate(&app, "ivy", "CLJ").await;
    let ivy = stored(&app, "ivy", &others).await;
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_warranty"))
            .args(args)
            .env("WARRANTY_DATA_DIR", app.dir.path())
            .env("WARRANTY_DEV_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs")
    };
    let out = cli(&["users", "export", "--user", "hank"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("hank.zip");
    std::fs::write(&zip, &out.stdout).unwrap();
    let listing = python(
        "import sys, json, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps([len(json.loads(z.read('products.json'))), len([n for n in z.namelist() if n.startswith('invoices/')])]))",
        &zip,
    );
    assert_eq!(listing, json!([3, 3]));
    let out = cli(&["users", "erase", "--user", "hank"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&app, "hank", &ids).await, Default::default());
    assert_eq!(stored(&app, "ivy", &others).await, ivy);
}

/// Every file under `dir`, with its size.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, u64> {
    fn walk(p: &std::path::Path, out: &mut std::collections::BTreeMap<String, u64>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if !path.to_string_lossy().contains("warranty.sqlite3") {
                out.insert(path.display().to_string(), e.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    let mut out = Default::default();
    walk(dir, &mut out);
    out
}

async fn a_client_that_leaves_mid_export_leaves_nothing_behind() {
    let (app, _hub) = app().await;
    // Invoices large enough that the archive cannot sit in the socket's buffers.
    let mut big = b"%PDF-1.7\n".to_vec();
    big.resize(6_000_000, b' ');
    for n in 0..3 {
        let form = Form::registration("Dell", "Inspiron 14", &format!("BIG{n:03}X"), "2027-01-15", &big);
        assert_eq!(app.post_form("lena", form).await.status(), 201);
    }
    let before = tree(app.dir.path());
    let mut resp = app.get("lena", "/api/me/export").await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("the archive starts");
    assert!(first.starts_with(b"PK\x03\x04"));
    drop(resp);
    // The server wrote nothing for the export and serves the next one whole.
    assert_eq!(tree(app.dir.path()), before);
    let whole = app.get("lena", "/api/me/export").await.bytes().await.unwrap();
    assert!(whole.len() > 18_000_000);
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("lena.zip");
    std::fs::write(&zip, &whole).unwrap();
    let names = python(
        "import sys, json, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps(len(z.namelist())))",
        &zip,
    );
    assert_eq!(names, json!(9), "README, 2 product files, 3 invoices, intakes, notifications, settings");
}
