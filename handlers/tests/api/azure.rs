//! What only the Azure adapters do: the pending-publication marker on the Cosmos DB document,
//! the `RepublishPendingOcr` sweeper, ETag-guarded updates, and throttling past the SDK's
//! retries.
//!
//! Cosmos DB is the in-memory emulator inside `azure_data_cosmos`, with the SDK's fault
//! injection; invoices go to Azurite. Service Bus and the Functions host cannot run here: a
//! loopback namespace checks the documented "Send Message" request, keeps one message per
//! `MessageId` as duplicate detection does, and plays the host by POSTing each new message to
//! `/ProcessInvoiceOcr` (see `common/servicebus.rs`).

use std::sync::Arc;

use crate::support::*;
use serde_json::{Value, json};
use warranty::ports::{Outbox, ProductRepository};

async fn azure_app(configure: impl FnOnce(&mut warranty::config::Settings)) -> TestApp {
    BACKEND.scope(Backend::Azure, spawn_with(configure)).await
}

/// The Functions host's payload for a timer trigger.
fn timer_payload() -> Value {
    json!({
        "Data": { "timer": { "Schedule": { "AdjustForDST": true }, "ScheduleStatus": null, "IsPastDue": false } },
        "Metadata": { "sys": { "MethodName": "RepublishPendingOcr", "UtcNow": chrono::Utc::now().to_rfc3339() } }
    })
}

async fn sweep(app: &TestApp) -> Value {
    let resp =
        app.client.post(format!("{}/RepublishPendingOcr", app.base)).json(&timer_payload()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["ReturnValue"].clone()
}

async fn register(app: &TestApp, serial: &str) -> (String, String) {
    let resp = app
        .post_form("alice", Form::registration("Apple", "MacBook Air", serial, "2026-03-15", &fixture("invoice.pdf")))
        .await;
    assert_eq!(resp.status(), 201, "{serial}");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let card: Value = resp.json().await.unwrap();
    (card["id"].as_str().unwrap().to_owned(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reaches_a_completed_card_through_service_bus_and_clears_its_marker() {
    let app = azure_app(|s| s.delivery.ocr_dispatcher = true).await;
    let (id, location) = register(&app, "C02XK0ABJGH5").await;
    let cosmos = app.cosmos.as_ref().unwrap();
    let doc = cosmos.document("alice", &id).await.unwrap();
    assert_eq!(doc["type"], "product");
    assert_eq!(doc["schemaVersion"], 1);
    assert_eq!(doc["userId"], "alice");
    assert!(doc.get("pendingOcr").is_none(), "published, so the marker was cleared: {doc}");

    let ocr = final_ocr(&app, "alice", &location).await;
    assert_eq!(ocr["status"], "completed", "{ocr}");
    assert_eq!(ocr["engine"], "pdf-text");
    let bus = app.bus.as_ref().unwrap().snapshot();
    assert_eq!(bus.accepted.len(), 1);
    let (broker, body) = &bus.accepted[&format!("{id}:invoice:1")];
    assert_eq!(broker["ContentType"], "application/json");
    assert_eq!(body["productId"], id.as_str());
    assert_eq!(bus.deliveries, vec![(format!("{id}:invoice:1"), 1, 200)]);
    assert!(bus.refused.is_empty(), "{:?}", bus.refused);
}

/// The publish step is killed between the write and the send (the namespace refuses it): the
/// product is stored with its marker, the registration still succeeds, and the sweeper
/// delivers the event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_queue_refused_is_republished_once_by_the_sweeper() {
    let app = azure_app(|s| {
        s.delivery.ocr_dispatcher = true;
        s.delivery.ocr_republish_after_secs = 0;
    })
    .await;
    let bus = app.bus.as_ref().unwrap();
    bus.script(vec![(503, Some("30"))]);
    let (id, location) = register(&app, "C02XK0ABJGH5").await;
    let doc = app.cosmos.as_ref().unwrap().document("alice", &id).await.unwrap();
    assert_eq!(doc["pendingOcr"]["messageId"], format!("{id}:invoice:1"), "{doc}");
    assert!(bus.snapshot().accepted.is_empty());
    let card: Value = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(card["ocr"]["status"], "queued");

    assert_eq!(sweep(&app).await, json!({ "found": 1, "published": 1, "failed": 0 }));
    let ocr = final_ocr(&app, "alice", &location).await;
    assert_eq!(ocr["status"], "completed", "{ocr}");
    assert_eq!(ocr["attempts"], 1, "one effective OCR run");
    let doc = app.cosmos.as_ref().unwrap().document("alice", &id).await.unwrap();
    assert!(doc.get("pendingOcr").is_none(), "{doc}");

    // Nothing is left to sweep, and a second tick sends nothing.
    assert_eq!(sweep(&app).await, json!({ "found": 0, "published": 0, "failed": 0 }));
    let state = bus.snapshot();
    assert_eq!(state.requests, 2, "the refused send and the sweeper's");
    assert_eq!(state.deliveries.len(), 1, "{:?}", state.deliveries);
}

/// After an outage of the queue many events wait: one timer tick drains them all, batch after
/// batch (5 here), several in flight at once, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tick_drains_every_waiting_event_in_batches() {
    let app = azure_app(|s| {
        s.delivery.ocr_republish_after_secs = 0;
        s.delivery.ocr_drain_batch = 5;
        s.delivery.ocr_drain_concurrency = 4;
    })
    .await;
    let bus = app.bus.as_ref().unwrap();
    bus.script(vec![(503, None); 12]);
    for i in 0..12 {
        register(&app, &format!("C02DRAIN{i:04}")).await;
    }
    assert!(bus.snapshot().accepted.is_empty(), "the queue refused every send at registration");
    assert_eq!(sweep(&app).await, json!({ "found": 12, "published": 12, "failed": 0 }));
    let state = bus.snapshot();
    assert_eq!(state.accepted.len(), 12);
    assert_eq!(state.requests, 24, "12 refused, 12 sent by the sweeper");
    for id in app.cosmos.as_ref().unwrap().product_ids().await {
        assert!(app.cosmos.as_ref().unwrap().document("alice", &id).await.unwrap().get("pendingOcr").is_none());
    }
    assert_eq!(sweep(&app).await, json!({ "found": 0, "published": 0, "failed": 0 }));
}

/// The send went through but clearing the marker failed: the sweeper sends the same message
/// id again and duplicate detection absorbs it, so the queue holds one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_event_whose_marker_stayed_is_absorbed_as_a_duplicate() {
    let app = azure_app(|s| s.delivery.ocr_republish_after_secs = 0).await;
    let cosmos = app.cosmos.as_ref().unwrap();
    cosmos.replace_unavailable.enable();
    let (id, _) = register(&app, "C02XK0ABJGH5").await;
    cosmos.replace_unavailable.disable();
    assert!(cosmos.document("alice", &id).await.unwrap().get("pendingOcr").is_some());

    assert_eq!(sweep(&app).await, json!({ "found": 1, "published": 1, "failed": 0 }));
    let state = app.bus.as_ref().unwrap().snapshot();
    assert_eq!(state.requests, 2, "sent twice");
    assert_eq!(state.accepted.len(), 1, "kept once");
    assert!(cosmos.document("alice", &id).await.unwrap().get("pendingOcr").is_none());
}

/// A young marker belongs to a request that may still be publishing it: the sweeper leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_leaves_markers_younger_than_the_threshold() {
    let app = azure_app(|s| s.delivery.ocr_republish_after_secs = 3600).await;
    app.bus.as_ref().unwrap().script(vec![(503, None)]);
    register(&app, "C02XK0ABJGH5").await;
    assert_eq!(sweep(&app).await, json!({ "found": 0, "published": 0, "failed": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_with_the_store_down_fails_so_the_next_tick_retries() {
    let app = azure_app(|_| {}).await;
    app.start_product_store_outage();
    let resp =
        app.client.post(format!("{}/RepublishPendingOcr", app.base)).json(&timer_payload()).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    app.end_product_store_outage();
    let resp = app.client.post(format!("{}/RepublishPendingOcr", app.base)).body("not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn on_the_embedded_store_the_sweeper_has_nothing_to_do() {
    let app = spawn_app().await;
    let resp =
        app.client.post(format!("{}/RepublishPendingOcr", app.base)).json(&timer_payload()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["Logs"][0].as_str().unwrap().contains("nothing to sweep"), "{body}");
}

/// Cosmos DB throttles every write (429) beyond the SDK's retry policy: the client gets
/// `503 storage_unavailable` with `Retry-After`, nothing is stored, and the invoice is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_past_the_sdk_retries_is_503_and_loses_nothing() {
    let app = azure_app(|_| {}).await;
    let cosmos = app.cosmos.as_ref().unwrap();
    cosmos.throttled.enable();
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "iPhone", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")),
        )
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    let (status, p) = problem(resp).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (503, "storage_unavailable"));
    assert!(cosmos.throttled.hit_count() > 1, "the SDK retried before giving up");
    cosmos.throttled.disable();
    assert_eq!(app.product_count().await, 0);
    assert!(app.invoice_files().is_empty());
    assert!(app.ocr_events().await.is_empty());
    register(&app, "C02XK0ABJGH5").await;
}

/// Read-modify-write with `If-Match`: concurrent updates of one document (the OCR handler's
/// state and the relay's marker) never overwrite each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_of_one_document_lose_nothing() {
    let app = azure_app(|s| s.delivery.ocr_republish_after_secs = 0).await;
    let cosmos = app.cosmos.as_ref().unwrap();
    // Keep the markers: every publication is refused.
    app.bus.as_ref().unwrap().script(vec![(503, None); 20]);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(register(&app, &format!("C02XK0ABJG{i:02}")).await.0);
    }
    let repo = Arc::new(warranty::adapters::azure::cosmos::CosmosProductRepository::new(cosmos.container.clone()));
    let user = warranty::domain::UserId("alice".into());
    let claimed = repo.claim(std::time::Duration::ZERO, std::time::Duration::from_secs(60), 100).await.unwrap();
    assert_eq!(claimed.len(), 20);
    let mut tasks = Vec::new();
    for message in claimed {
        let (repo, user) = (repo.clone(), user.clone());
        let event = message.event().unwrap();
        tasks.push(tokio::spawn(async move {
            let product = repo.get(&user, event.product_id).await.unwrap().unwrap();
            let mut state = product.ocr.clone();
            state.status = warranty::domain::ocr::OcrStatus::Processing;
            state.attempts = 7;
            let (updated, cleared) =
                tokio::join!(repo.update_ocr(&user, event.product_id, &state), repo.delivered(&message));
            assert!(updated.unwrap());
            cleared.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in &ids {
        let doc = cosmos.document("alice", id).await.unwrap();
        assert_eq!(doc["product"]["ocr"]["attempts"], 7, "{doc}");
        assert_eq!(doc["product"]["ocr"]["status"], "processing", "{doc}");
        assert!(doc.get("pendingOcr").is_none(), "{doc}");
    }
}

#[tokio::test]
async fn cosmos_without_a_connection_or_without_service_bus_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = warranty::config::Settings::for_tests(dir.path().to_owned());
    settings.products.product_store = warranty::config::ProductStoreKind::Cosmos;
    let err = warranty::host::Application::build(&settings).await.err().expect("refused");
    assert!(err.to_string().contains("WARRANTY_OCR_DELIVERY=servicebus"), "{err}");
    settings.delivery.ocr_delivery = warranty::config::OcrDeliveryKind::Servicebus;
    settings.delivery.servicebus_connection_string =
        Some("Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=eA==".into());
    let err = warranty::host::Application::build(&settings).await.err().expect("refused");
    assert!(err.to_string().contains("CosmosDb__accountEndpoint"), "{err}");
}

/// A namespace that accepts the connection and never answers: the registration does not wait
/// for the publisher's own 30 s timeout; it answers once the relay gives up (3 s) and leaves the
/// event to the sweeper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_queue_does_not_hold_the_registration() {
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let app = azure_app(move |s| {
        s.delivery.servicebus_connection_string =
            Some(format!("Endpoint={endpoint}/;SharedAccessKeyName=send;SharedAccessKey={SB_KEY}").into())
    })
    .await;
    let (ct, body) =
        Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.pdf")).finish();
    // Well under the publisher's 30 s request timeout.
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15)).build().unwrap();
    let resp = client
        .post(format!("{}/api/products", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("answered before the client gave up");
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let doc = app.cosmos.as_ref().unwrap().document("alice", &id).await.unwrap();
    assert_eq!(doc["pendingOcr"]["messageId"], format!("{id}:invoice:1"), "the sweeper will send it");
    drop(black_hole);
}

/// Reconciliation on Blob Storage lists the hours of its window, never the container: invoices
/// are named under the hour they were written (UTC), a window finds exactly the invoices written
/// in it, each with its owner (blob metadata), and a blob outside the hour folders (named before
/// this scheme) is not listed at all.
/// (Against Azurite; the benchmark shows the listing's cost flat in the container's size.)
#[tokio::test]
async fn blob_reconciliation_lists_only_the_hours_of_its_window() {
    use warranty::adapters::azure::blob::{BlobInvoiceStore, hour_prefix};
    use warranty::ports::InvoiceStore;
    let app = azure_app(|_| {}).await;
    let before = chrono::Utc::now();
    let (id, _) = register(&app, "C02XK0ABJGH5").await;
    let (recent, old, all) = app.with_blob_container(|url| async move {
        let legacy = azure_storage_blob::BlobContainerClient::new(url.clone(), None, None).unwrap();
        legacy
            .blob_client("0190a0b0-0000-7000-8000-000000000001.v1.pdf")
            .upload(azure_core::http::RequestContent::from(b"%PDF-1.7 legacy".to_vec()), None)
            .await
            .unwrap();
        let store = BlobInvoiceStore::new(url, None).unwrap();
        let now = chrono::Utc::now();
        let recent = store.written_between(now - chrono::Duration::hours(1), now).await.unwrap();
        let old =
            store.written_between(now - chrono::Duration::hours(48), now - chrono::Duration::hours(3)).await.unwrap();
        (recent, old, store.list().await.unwrap())
    });
    assert_eq!(recent.len(), 1, "{recent:?}");
    let hours = [hour_prefix(before), hour_prefix(chrono::Utc::now())];
    assert!(hours.iter().any(|h| recent[0].location == format!("{h}{id}.v1.pdf")), "{recent:?} under {hours:?}");
    assert_eq!(recent[0].owner, Some(warranty::domain::UserId("alice".into())));
    assert!(old.is_empty(), "{old:?}");
    assert_eq!(all.len(), 2, "the legacy blob is stored, only not listed: {all:?}");
}

/// In Azure one timer function reconciles for all instances (`ReconcileInvoices`, hourly): an
/// invoice written in the window that no product references is removed, the product's stays, and
/// the invocation reports what it checked. Each product is a point read in the owner's partition
/// the blob names: the run succeeds with every Cosmos DB query failing. (The Functions host is
/// played by this test's POST with the host's timer payload.)
#[tokio::test]
async fn the_reconcile_timer_removes_orphans_once_for_all_instances() {
    use warranty::adapters::azure::blob::BlobInvoiceStore;
    use warranty::ports::InvoiceStore;
    let app = azure_app(|s| s.invoices.orphan_grace_secs = 0).await;
    let (id, _) = register(&app, "C02XK0ABJGH5").await;
    let orphan = app.with_blob_container(|url| async move {
        let store = BlobInvoiceStore::new(url, None).unwrap();
        let alice = warranty::domain::UserId("alice".into());
        let mut upload = store.begin_named(&alice, &format!("{}.v1", uuid::Uuid::now_v7()), "pdf").await.unwrap();
        upload.write(b"%PDF-1.7 left by a crash").await.unwrap();
        upload.commit().await.unwrap()
    });
    assert_eq!(app.invoice_files().len(), 2);
    // What is not an invocation is refused, and removes nothing.
    let resp = app.client.post(format!("{}/ReconcileInvoices", app.base)).body("not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(app.invoice_files().len(), 2);
    let mut payload = timer_payload();
    payload["Metadata"]["sys"]["MethodName"] = json!("ReconcileInvoices");
    app.cosmos.as_ref().unwrap().queries_unavailable.enable();
    let resp = app.client.post(format!("{}/ReconcileInvoices", app.base)).json(&payload).send().await.unwrap();
    app.cosmos.as_ref().unwrap().queries_unavailable.disable();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    // Reconciliation needs no query; the intake sweep does, and says it failed (the next tick
    // retries it) without holding reconciliation back.
    assert_eq!(body["ReturnValue"], json!({"checked": 2, "removed": 1, "intakeSweep": "failed"}), "{body}");
    let files: Vec<String> = app.invoice_files().iter().map(|p| p.to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(&format!("{id}.v1.pdf")) && !files.contains(&orphan), "{files:?}");
}

/// A verification is two point reads: the product's owner from the lookup in the product's
/// bucket (written when its card is issued), then the product. Checked with every query
/// failing. Links printed before the buckets keep working: an owner in the old single
/// partition moves to the bucket, and a product with neither is found once by a query. A
/// deleted product takes its lookups with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_the_owner_from_the_products_bucket_and_never_queries() {
    let app = azure_app(|_| {}).await;
    let cosmos = app.cosmos.as_ref().unwrap();
    let key = std::fs::read_to_string(app.dir.path().join("verification-key")).unwrap();
    let verify = |id: &str| {
        let token = warranty::card::token::issue(
            key.trim().as_bytes(),
            id.parse().unwrap(),
            0,
            chrono::Utc::now() + chrono::Duration::days(1),
        );
        app.client.get(format!("{}/api/verify/{token}", app.base)).send()
    };
    let lookup = |id: String| async move { cosmos.find_by_id("link-owner", &id).await };

    // A card issued: its lookup is in a bucket, and the link verifies with queries failing.
    let (carded, _) = register(&app, "C02XK0ABJGH5").await;
    assert_eq!(app.get("alice", &format!("/api/products/{carded}/card.pdf")).await.status(), 200);
    let found = lookup(carded.clone()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["owner"], "alice");
    let bucket = found[0]["userId"].as_str().unwrap().to_owned();
    assert!(bucket.starts_with("~links-") && bucket.len() == 10, "{bucket}");
    cosmos.queries_unavailable.enable();
    assert_eq!(verify(&carded).await.unwrap().status(), 200);
    cosmos.queries_unavailable.disable();
    // A bucket holds many lookups (the container's unique key counts a missing value once).
    let alice = warranty::domain::UserId("alice".into());
    let record = app.services.products.get(&alice, carded.parse().unwrap()).await.unwrap().unwrap();
    for n in 0..3u8 {
        let mut other = record.clone();
        let mut bytes = *record.id.as_bytes();
        bytes[0] ^= n + 1;
        other.id = uuid::Uuid::from_bytes(bytes);
        app.services.products.link_issued(&other).await.unwrap();
    }
    let shared: Vec<Value> = cosmos.partition(&bucket).await.into_iter().map(|(t, id)| json!([t, id])).collect();
    assert_eq!(shared.len(), 4, "{shared:?}");

    // A link printed before the buckets, its owner in the old partition: found without a
    // query, then moved.
    cosmos.queries_unavailable.disable();
    let (legacy, _) = register(&app, "C02XK0ABJGH7").await;
    cosmos
        .upsert(
            "~link-owners",
            &json!({"id": legacy, "userId": "~link-owners", "type": "link-owner", "owner": "alice"}),
        )
        .await;
    cosmos.queries_unavailable.enable();
    assert_eq!(verify(&legacy).await.unwrap().status(), 200);
    cosmos.queries_unavailable.disable();
    let found = lookup(legacy.clone()).await;
    assert_eq!(found.len(), 1, "moved, not copied: {found:?}");
    assert!(found[0]["userId"].as_str().unwrap().starts_with("~links-"));

    // Never carded nor verified: one query finds it, the lookup is written, and from then on
    // no query is needed.
    let (bare, _) = register(&app, "C02XK0ABJGH6").await;
    assert!(lookup(bare.clone()).await.is_empty());
    cosmos.queries_unavailable.enable();
    assert_eq!(verify(&bare).await.unwrap().status(), 503, "the first lookup needs the query");
    cosmos.queries_unavailable.disable();
    assert_eq!(verify(&bare).await.unwrap().status(), 200);
    cosmos.queries_unavailable.enable();
    assert_eq!(verify(&bare).await.unwrap().status(), 200);
    cosmos.queries_unavailable.disable();

    // Deleting the product removes its lookup: nothing names its owner any more.
    let current = app.get("alice", &format!("/api/products/{carded}")).await;
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    let resp = app
        .client
        .delete(format!("{}/api/products/{carded}", app.base))
        .bearer_auth(token("alice"))
        .header("if-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(lookup(carded.clone()).await.is_empty());
    assert_eq!(verify(&carded).await.unwrap().status(), 404);
}
