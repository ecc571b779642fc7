//! Expiry reminders: chosen by the sweep (the `SendExpiryReminders` timer function) at the
//! user's hour in their zone, exactly once per coverage, expiry date and lead time, shown in the
//! feed and pushed through Notification Hubs (a loopback hub, see `support::hub`) — on the
//! embedded store and on Cosmos DB. The clock is moved by hand; nothing waits.

backends!([embedded, azure]:
    reminders_fall_due_at_the_users_hour_across_a_dst_change_exactly_once,
    a_leap_day_reminder_in_auckland_falls_due_the_utc_day_before,
    edits_deletions_and_expiry_decide_which_reminders_exist,
    racing_sweeps_create_each_reminder_once,
    racing_deliverers_send_each_reminder_once_many_at_a_time,
    a_settings_change_reschedules_the_users_products_at_the_next_sweep,
    push_goes_to_each_device_with_retries_dead_letters_and_gone_devices_removed,
    a_delivery_whose_deliverer_died_is_sent_once_after_its_lease,
    webhooks_to_internal_addresses_are_refused,
);

backends!([embedded]: the_local_scheduler_in_warranty_serve_sweeps_by_itself);

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use warranty::ports::ManualClock;

use crate::support::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// An app at `start` (UTC) whose clock the test moves.
async fn app_at(start: &str, configure: impl FnOnce(&mut warranty::config::Settings)) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(start)));
    (spawn_at(clock.clone(), configure).await, clock)
}

/// A product bought on `bought`, with an extended coverage ending on `ends_on`; returns the
/// product id and the coverage id.
async fn product_with_coverage(
    app: &TestApp,
    user: &str,
    serial: &str,
    bought: &str,
    ends_on: &str,
) -> (String, String) {
    let form = Form::registration("Dell", "Inspiron 14", serial, bought, &fixture("invoice.pdf"));
    let resp = app.post_form(user, form).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let body = json!({"kind": "extended", "provider": "CarePlus", "startsOn": bought, "endsOn": ends_on});
    let resp = app.post_json(user, &format!("/api/products/{id}/coverages"), &body).await;
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let cid = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    (id, cid)
}

async fn put_settings(app: &TestApp, user: &str, body: Value) -> Value {
    let resp = app.put_json(user, "/api/me/notification-settings", &body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Runs the timer function as the Functions host invokes it, at `now`; returns its report.
async fn tick(app: &TestApp, clock: &ManualClock, now: &str) -> Value {
    clock.set(at(now));
    let invocation = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last": now, "Next": now, "LastUpdated": now}, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "SendExpiryReminders", "UtcNow": now}}
    });
    let resp = app.client.post(format!("{}/SendExpiryReminders", app.base)).json(&invocation).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let out: Value = resp.json().await.unwrap();
    assert!(out["Outputs"].is_object() && out["Logs"].is_array());
    out["ReturnValue"].clone()
}

async fn feed(app: &TestApp, user: &str, query: &str) -> Value {
    let resp = app.get(user, &format!("/api/notifications{query}")).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn mark_read(app: &TestApp, user: &str, id: &str) -> u16 {
    let url = format!("{}/api/notifications/{id}/read", app.base);
    app.client.post(url).bearer_auth(token(user)).send().await.unwrap().status().as_u16()
}

async fn reminders_fall_due_at_the_users_hour_across_a_dst_change_exactly_once() {
    let (app, clock) = app_at("2027-03-01T10:00:00Z", |_| {}).await;
    put_settings(&app, "alice", json!({"leadDays": [1, 2, 3], "timeZone": "Europe/Berlin", "hour": 9})).await;
    // Berlin moves to summer time at 01:00 UTC on 28 March 2027.
    let (id, cid) = product_with_coverage(&app, "alice", "REM0001", "2027-01-15", "2027-03-30").await;
    assert_eq!(tick(&app, &clock, "2027-03-01T10:00:00Z").await["created"], 0, "nothing due yet");
    // Three days before: 09:00 CET = 08:00 UTC.
    assert_eq!(tick(&app, &clock, "2027-03-27T07:59:59Z").await["created"], 0);
    assert_eq!(tick(&app, &clock, "2027-03-27T08:00:00Z").await["created"], 1);
    assert_eq!(tick(&app, &clock, "2027-03-27T08:00:00Z").await["created"], 0, "a rerun creates none");
    // Two days before, after the change: 09:00 CEST = 07:00 UTC.
    assert_eq!(tick(&app, &clock, "2027-03-28T06:59:59Z").await["created"], 0);
    assert_eq!(tick(&app, &clock, "2027-03-28T07:00:00Z").await["created"], 1);
    assert_eq!(tick(&app, &clock, "2027-03-29T07:00:00Z").await["created"], 1);
    // Expired: nothing more, ever.
    assert_eq!(tick(&app, &clock, "2027-04-15T07:00:00Z").await["created"], 0);

    let page = feed(&app, "alice", "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(page["unreadCount"], 3);
    let leads: Vec<_> = items.iter().map(|i| i["leadDays"].as_u64().unwrap()).collect();
    assert_eq!(leads, [1, 2, 3], "newest first");
    let first = &items[0];
    assert_eq!(first["productId"], id.as_str());
    assert_eq!(first["coverageId"], cid.as_str());
    assert_eq!(first["expiresOn"], "2027-03-30");
    assert_eq!(first["dueAt"], "2027-03-29T07:00:00Z");
    assert_eq!(first["title"], "Warranty ends tomorrow");
    assert!(first["body"].as_str().unwrap().contains("Dell Inspiron 14: Extended warranty covers until 30 March 2027"));
    assert_eq!(items[2]["dueAt"], "2027-03-27T08:00:00Z");
    assert_eq!(first["read"], false);

    // Read marks: once, idempotent, own reminders only.
    let rid = first["id"].as_str().unwrap().to_owned();
    assert_eq!(mark_read(&app, "alice", &rid).await, 204);
    assert_eq!(mark_read(&app, "alice", &rid).await, 204);
    assert_eq!(mark_read(&app, "mallory", &rid).await, 404);
    assert_eq!(mark_read(&app, "alice", "rem-unknown").await, 404);
    let page = feed(&app, "alice", "?limit=2").await;
    assert_eq!(page["unreadCount"], 2);
    assert_eq!(page["items"][0]["read"], true);
    assert!(page["items"][0]["readAt"].is_string());
    let token = page["continuationToken"].as_str().expect("a second page").to_owned();
    let rest = feed(&app, "alice", &format!("?limit=2&continuationToken={token}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["leadDays"], 3);
    assert!(rest["continuationToken"].is_null());
    assert_eq!(feed(&app, "mallory", "").await["items"], json!([]), "another user's feed is theirs");
    let bad = app.get("alice", "/api/notifications?continuationToken=xyz").await;
    assert_eq!(bad.status(), 400);
}

async fn a_leap_day_reminder_in_auckland_falls_due_the_utc_day_before() {
    let (app, clock) = app_at("2028-01-10T00:00:00Z", |_| {}).await;
    put_settings(&app, "kiri", json!({"leadDays": [1], "timeZone": "Pacific/Auckland", "hour": 9})).await;
    product_with_coverage(&app, "kiri", "LEAP001", "2027-12-01", "2028-03-01").await;
    // One day before 1 March 2028 is 29 February; 09:00 in Auckland (UTC+13 in summer) is
    // 20:00 UTC on the 28th.
    assert_eq!(tick(&app, &clock, "2028-02-28T19:59:59Z").await["created"], 0);
    assert_eq!(tick(&app, &clock, "2028-02-28T20:00:00Z").await["created"], 1);
    let items = feed(&app, "kiri", "").await["items"].clone();
    assert_eq!(items[0]["dueAt"], "2028-02-28T20:00:00Z");
    assert_eq!(items[0]["title"], "Warranty ends tomorrow", "tomorrow in Auckland, whatever the UTC date");
}

async fn edits_deletions_and_expiry_decide_which_reminders_exist() {
    // Default settings: 30 and 7 days, 09:00 UTC.
    let (app, clock) = app_at("2027-03-01T10:00:00Z", |_| {}).await;
    // Added 4 days before it ends: both lead times have passed; only the latest is sent.
    let (id, cid) = product_with_coverage(&app, "bob", "REM0101", "2027-01-10", "2027-03-05").await;
    // One that ended already: never reminded.
    product_with_coverage(&app, "bob", "REM0102", "2026-01-10", "2027-02-01").await;
    let report = tick(&app, &clock, "2027-03-01T10:00:00Z").await;
    assert_eq!(report["created"], 1);
    let items = feed(&app, "bob", "").await["items"].clone();
    assert_eq!((items[0]["leadDays"].as_u64(), items[0]["title"].as_str()), (Some(7), Some("Warranty ends in 4 days")));

    // Extended after the reminder went out: the new date gets its own reminders, when due.
    let etag = app.get("bob", &format!("/api/products/{id}")).await.headers()["etag"].to_str().unwrap().to_owned();
    let resp = app
        .merge_patch("bob", &format!("/api/products/{id}/coverages/{cid}"), Some(&etag), r#"{"endsOn":"2027-04-30"}"#)
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(tick(&app, &clock, "2027-03-01T11:00:00Z").await["created"], 0, "30 days before 30 April is 31 March");
    assert_eq!(tick(&app, &clock, "2027-03-31T08:59:00Z").await["created"], 0);
    assert_eq!(tick(&app, &clock, "2027-03-31T09:00:00Z").await["created"], 1);
    let items = feed(&app, "bob", "").await["items"].clone();
    assert_eq!((items[0]["expiresOn"].as_str(), items[0]["leadDays"].as_u64()), (Some("2027-04-30"), Some(30)));

    // Deleted: its 7-day reminder never comes.
    let etag = app.get("bob", &format!("/api/products/{id}")).await.headers()["etag"].to_str().unwrap().to_owned();
    let resp = app
        .client
        .delete(format!("{}/api/products/{id}", app.base))
        .bearer_auth(token("bob"))
        .header("If-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(tick(&app, &clock, "2027-04-23T09:00:00Z").await["created"], 0);
    assert_eq!(feed(&app, "bob", "").await["items"].as_array().unwrap().len(), 2);
}

async fn racing_sweeps_create_each_reminder_once() {
    let (app, clock) = app_at("2027-05-01T10:00:00Z", |_| {}).await;
    for n in 0..12 {
        product_with_coverage(&app, "carol", &format!("RACE{n:03}"), "2027-01-10", "2027-05-06").await;
    }
    let now = at("2027-05-01T10:00:00Z");
    let s = &app.services;
    let (a, b, c, d) = tokio::join!(
        warranty::application::reminders::sweep(s, now),
        warranty::application::reminders::sweep(s, now),
        warranty::application::reminders::sweep(s, now),
        tick(&app, &clock, "2027-05-01T10:00:00Z"),
    );
    let created =
        a.unwrap().created + b.unwrap().created + c.unwrap().created + d["created"].as_u64().unwrap() as usize;
    assert_eq!(created, 12, "one reminder per coverage whoever wins");
    assert_eq!(feed(&app, "carol", "?limit=50").await["items"].as_array().unwrap().len(), 12);
    assert_eq!(tick(&app, &clock, "2027-05-01T11:00:00Z").await["created"], 0);
}

/// Deliveries go out many at a time, and several deliverers (instances whose runs overlap) may
/// work at once: each reminder still reaches the hub once, because a claim leases what it
/// takes and of two claims of one delivery only one is stored. The hub answers every send after
/// a delay, so sends overlap and a deliverer that sent them one by one would be seen doing so.
async fn racing_deliverers_send_each_reminder_once_many_at_a_time() {
    let hub = notification_hub().await;
    hub.state.lock().unwrap().send_latency = Some(std::time::Duration::from_millis(20));
    let cs = hub.connection_string();
    let (app, _clock) = app_at("2027-05-01T10:00:00Z", |s| {
        s.reminders.notification_hub_connection_string = Some(warranty::config::Secret::new(cs));
    })
    .await;
    for user in ["erin", "frank", "grace"] {
        let device = json!({"platform": "fcmv1", "pushChannel": format!("token-{user}")});
        assert_eq!(put_device(&app, user, "phone", device).await.status(), 201);
        for n in 0..8 {
            product_with_coverage(
                &app,
                user,
                &format!("DLV{}{n:02}X", user[..1].to_uppercase()),
                "2027-01-10",
                "2027-05-06",
            )
            .await;
        }
    }
    let now = at("2027-05-01T10:00:00Z");
    let s = &app.services;
    assert_eq!(warranty::application::reminders::choose(s, now).await.unwrap().created, 24);
    let (a, b, c) = tokio::join!(
        warranty::application::reminders::deliver(s, now),
        warranty::application::reminders::deliver(s, now),
        warranty::application::reminders::deliver(s, now),
    );
    let delivered = a.unwrap().delivered + b.unwrap().delivered + c.unwrap().delivered;
    let state = hub.snapshot();
    let ids: std::collections::HashSet<&str> =
        state.sent.iter().map(|(_, m)| m["reminderId"].as_str().unwrap()).collect();
    assert_eq!((delivered, state.send_requests, ids.len()), (24, 24, 24), "each reminder sent once");
    assert!(state.max_in_flight > 1, "sends overlap: {}", state.max_in_flight);
    assert!(state.max_in_flight <= 3 * app.services.reminders.policy.concurrency);
    let again = warranty::application::reminders::deliver(s, now).await.unwrap();
    assert_eq!(again.delivered, 0, "nothing is left to send");
}

/// A change of the user's settings reschedules the products already scheduled. On Cosmos DB the
/// request only records that it must be done (one write, however many products the user has) and
/// the next sweep marks the products and computes their new due times.
/// Reschedule requests waiting in the user's partition (Cosmos DB; none on SQLite).
async fn reschedules(app: &TestApp, user: &str) -> usize {
    match &app.cosmos {
        Some(c) => c.partition(user).await.iter().filter(|(t, _)| t == "reschedule").count(),
        None => 0,
    }
}

async fn a_settings_change_reschedules_the_users_products_at_the_next_sweep() {
    let (app, clock) = app_at("2027-03-01T10:00:00Z", |_| {}).await;
    put_settings(&app, "heidi", json!({"leadDays": [3], "timeZone": "UTC", "hour": 9})).await;
    for n in 0..3 {
        product_with_coverage(&app, "heidi", &format!("RSC{n:03}X"), "2027-01-15", "2027-03-30").await;
    }
    // Scheduled for 27 March, 09:00.
    assert_eq!(tick(&app, &clock, "2027-03-01T10:00:00Z").await["created"], 0);
    put_settings(&app, "heidi", json!({"leadDays": [10], "timeZone": "UTC", "hour": 9})).await;
    if app.cosmos.is_some() {
        assert_eq!(reschedules(&app, "heidi").await, 1, "the request recorded the reschedule");
    }
    // Ten days before is 20 March: without the reschedule they would wait for the 27th.
    assert_eq!(tick(&app, &clock, "2027-03-20T08:59:59Z").await["created"], 0);
    assert_eq!(tick(&app, &clock, "2027-03-20T09:00:00Z").await["created"], 3);
    assert_eq!(reschedules(&app, "heidi").await, 0, "done, and removed");
    assert_eq!(tick(&app, &clock, "2027-03-27T09:00:00Z").await["created"], 0, "3 days is no longer a lead time");
}

async fn put_device(app: &TestApp, user: &str, id: &str, body: Value) -> reqwest::Response {
    app.put_json(user, &format!("/api/me/devices/{id}"), &body).await
}

async fn delete_device(app: &TestApp, user: &str, id: &str) -> u16 {
    let url = format!("{}/api/me/devices/{id}", app.base);
    app.client.delete(url).bearer_auth(token(user)).send().await.unwrap().status().as_u16()
}

async fn push_goes_to_each_device_with_retries_dead_letters_and_gone_devices_removed() {
    let hub = notification_hub().await;
    let cs = hub.connection_string();
    let (app, clock) = app_at("2027-06-01T10:00:00Z", |s| {
        s.reminders.notification_hub_connection_string = Some(warranty::config::Secret::new(cs));
        s.reminders.reminder_max_attempts = 3;
    })
    .await;
    // Devices: validated, registered with the hub under the user's tag, refreshed in place.
    let bad = put_device(&app, "dave", "phone-1", json!({"platform": "sms", "pushChannel": ""})).await;
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.unwrap();
    let codes: Vec<_> = problem["errors"].as_array().unwrap().iter().map(|e| e["code"].clone()).collect();
    assert_eq!(codes, [json!("platform_invalid"), json!("push_channel_invalid")]);
    assert_eq!(
        put_device(&app, "dave", "phone/1", json!({"platform": "apns", "pushChannel": "ab"})).await.status(),
        404
    );
    let long = "x".repeat(65);
    for id in ["phone!1", long.as_str()] {
        let bad = put_device(&app, "dave", id, json!({"platform": "apns", "pushChannel": "ab"})).await;
        assert_eq!(bad.status(), 422, "{id}");
        assert_eq!(bad.json::<Value>().await.unwrap()["code"], "installation_id_invalid");
    }
    let not_json = app
        .client
        .put(format!("{}/api/me/devices/phone-1", app.base))
        .bearer_auth(token("dave"))
        .body("platform=apns")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    assert!(hub.snapshot().installations.is_empty(), "no refused request reached the hub");
    let phone = put_device(&app, "dave", "phone-1", json!({"platform": "fcmv1", "pushChannel": "fcm-token-1"})).await;
    assert_eq!(phone.status(), 201);
    assert_eq!(
        put_device(&app, "dave", "phone-1", json!({"platform": "fcmv1", "pushChannel": "fcm-token-2"})).await.status(),
        200
    );
    assert_eq!(
        put_device(&app, "dave", "tablet", json!({"platform": "apns", "pushChannel": "a1b2c3"})).await.status(),
        201
    );
    let state = hub.snapshot();
    assert_eq!(state.refused, Vec::<String>::new());
    assert_eq!(state.installations.len(), 2);
    let phone_inst = state.installations.values().find(|i| i["platform"] == "fcmv1").unwrap().clone();
    assert_eq!(phone_inst["pushChannel"], "fcm-token-2", "refreshed, not duplicated");
    let phone_id = phone_inst["installationId"].as_str().unwrap().to_owned();
    assert_ne!(phone_id, "phone-1", "the hub's id is derived, so no client can take over another user's");
    let tablet_id = state.installations.keys().find(|k| **k != phone_id).unwrap().clone();
    let tag = phone_inst["tags"][0].as_str().unwrap();
    assert_eq!(state.installations[&tablet_id]["tags"][0], tag, "both carry the user's tag");

    // One reminder, one send per device; the tablet's send is throttled first.
    product_with_coverage(&app, "dave", "PUSH001", "2027-01-10", "2027-06-05").await;
    hub.script_sends(&tablet_id, &[(429, Some("120"))]);
    let report = tick(&app, &clock, "2027-06-01T10:00:00Z").await;
    assert_eq!(
        (report["created"].as_u64(), report["delivered"].as_u64(), report["retried"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        tick(&app, &clock, "2027-06-01T10:01:00Z").await["delivered"],
        0,
        "Retry-After (120 s) beats the 60 s backoff"
    );
    assert_eq!(tick(&app, &clock, "2027-06-01T10:02:00Z").await["delivered"], 1);
    let sent = hub.snapshot().sent;
    assert_eq!(sent.len(), 2, "each device once");
    let targets: std::collections::BTreeSet<_> = sent.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(targets.len(), 2);
    let (_, msg) = &sent[0];
    assert_eq!(msg["title"], "Warranty ends in 4 days");
    assert!(msg["reminderId"].as_str().unwrap().starts_with("rem-"));
    assert_eq!(tick(&app, &clock, "2027-06-02T10:00:00Z").await["delivered"], 0, "nothing twice");

    // A second reminder (another coverage): the phone is gone (410) and is forgotten; the
    // tablet's hub fails on every attempt and its delivery is dead-lettered after 3.
    product_with_coverage(&app, "dave", "PUSH002", "2027-01-10", "2027-06-08").await;
    hub.script_sends(&phone_id, &[(410, None)]);
    hub.script_sends(&tablet_id, &[(503, None)]);
    let first = tick(&app, &clock, "2027-06-02T10:00:00Z").await;
    assert_eq!(
        (first["created"].as_u64(), first["dropped"].as_u64(), first["retried"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(delete_device(&app, "dave", "phone-1").await, 404, "the gone device was removed");
    hub.script_sends(&tablet_id, &[(500, None), (500, None)]);
    assert_eq!(tick(&app, &clock, "2027-06-02T10:01:00Z").await["retried"], 1);
    let last = tick(&app, &clock, "2027-06-02T10:03:00Z").await;
    assert_eq!(last["deadLettered"], 1);
    let before = hub.snapshot().send_requests;
    assert_eq!(tick(&app, &clock, "2027-06-03T10:00:00Z").await["deadLettered"], 0);
    assert_eq!(hub.snapshot().send_requests, before, "a dead letter is not retried");

    // Removal: from the hub and the list; another user's id is not found.
    assert_eq!(delete_device(&app, "mallory", "tablet").await, 404);
    assert_eq!(delete_device(&app, "dave", "tablet").await, 204);
    assert!(hub.snapshot().installations.is_empty());
    assert_eq!(hub.snapshot().refused, Vec::<String>::new());
}

async fn a_delivery_whose_deliverer_died_is_sent_once_after_its_lease() {
    let hub = notification_hub().await;
    let cs = hub.connection_string();
    let (app, clock) = app_at("2027-07-01T10:00:00Z", |s| {
        s.reminders.notification_hub_connection_string = Some(warranty::config::Secret::new(cs));
    })
    .await;
    assert_eq!(
        put_device(&app, "erin", "phone", json!({"platform": "apns", "pushChannel": "ff00"})).await.status(),
        201
    );
    product_with_coverage(&app, "erin", "LEASE01", "2027-01-10", "2027-07-05").await;
    let s = &app.services;
    // Chosen, then the process dies before delivering.
    let chosen = warranty::application::reminders::choose(s, at("2027-07-01T10:00:00Z")).await.unwrap();
    assert_eq!(chosen.created, 1);
    // Another instance claims it and dies before settling.
    let claimed = s.reminders.store.claim(at("2027-07-01T10:00:00Z"), at("2027-07-01T10:05:00Z"), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(hub.snapshot().sent.is_empty());
    // While the lease holds, nobody sends it; after, exactly once.
    assert_eq!(tick(&app, &clock, "2027-07-01T10:04:59Z").await["delivered"], 0);
    assert_eq!(tick(&app, &clock, "2027-07-01T10:05:00Z").await["delivered"], 1);
    assert_eq!(tick(&app, &clock, "2027-07-01T11:00:00Z").await["delivered"], 0);
    assert_eq!(hub.snapshot().sent.len(), 1);
}

async fn webhooks_to_internal_addresses_are_refused() {
    let (app, clock) = app_at("2027-08-01T10:00:00Z", |_| {}).await;
    // Push is not configured here: devices are refused with a clear problem.
    let resp = put_device(&app, "frank", "phone", json!({"platform": "apns", "pushChannel": "ff00"})).await;
    assert_eq!(resp.status(), 501);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "push_not_configured");
    for (day, url) in [
        "https://localhost/hook",
        "https://127.0.0.1:8443/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
    ]
    .into_iter()
    .enumerate()
    {
        let day = day + 1;
        let settings = put_settings(&app, "frank", json!({"channels": ["webhook"], "webhookUrl": url})).await;
        assert!(settings["webhookSecret"].as_str().unwrap().starts_with("whsec_"));
        // A new expiry each time, so a new reminder.
        product_with_coverage(&app, "frank", &format!("HOOK{day:03}"), "2027-01-10", "2027-08-05").await;
        let report = tick(&app, &clock, &format!("2027-08-01T1{day}:00:00Z")).await;
        assert_eq!(report["deadLettered"], 1, "{url}: {report}");
        assert_eq!(report["delivered"], 0, "{url}");
    }
    // Switching the webhook off stops it.
    let settings = put_settings(&app, "frank", json!({"channels": ["feed"]})).await;
    assert!(settings.get("webhookSecret").is_none());
}

/// The embedded default has no timer function: `warranty serve` sweeps on its own (here every
/// second, on the wall clock), and the reminder reaches the feed with no one calling the timer.
async fn the_local_scheduler_in_warranty_serve_sweeps_by_itself() {
    let app = spawn_with(|s| s.reminders.reminder_sweep_secs = 1).await;
    // Ends in three days: both default lead times (30, 7 days at 09:00 UTC) have passed.
    let today = chrono::Utc::now().date_naive();
    let ends = (today + chrono::Duration::days(3)).to_string();
    let bought = (today - chrono::Duration::days(30)).to_string();
    product_with_coverage(&app, "gina", "LOCAL01", &bought, &ends).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let page = feed(&app, "gina", "").await;
        if !page["items"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one reminder, from the scheduler: {page}");
    assert_eq!(items[0]["leadDays"], 7);
    assert_eq!(items[0]["expiresOn"], ends.as_str());
    // The timer entry point refuses what is not an invocation.
    let resp = app.client.post(format!("{}/SendExpiryReminders", app.base)).body("not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
}
