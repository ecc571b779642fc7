//! The calendar feed, read by a real iCalendar parser (Python's `icalendar`, pinned in
//! tools/clients) event by event; made, rotated and revoked by its owner — on the embedded store
//! and on Cosmos DB.

backends!([embedded, azure]:
    the_feed_has_one_event_per_coverage_expiry_with_the_owners_alarms,
    a_feed_is_rotated_and_revoked_and_forged_urls_are_not_found,
);

use std::process::Command;

use crate::support::*;
use serde_json::{Value, json};

/// The feed parsed by `icalendar`: each event's uid, start, end, summary and alarm triggers.
fn parse_ics(ics: &str) -> Value {
    const SCRIPT: &str = r#"
import icalendar, json, sys
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
assert cal.get("VERSION") == "2.0" and cal.get("PRODID"), "a VCALENDAR with VERSION and PRODID"
events = []
for e in cal.walk("VEVENT"):
    events.append({
        "uid": str(e.get("UID")),
        "start": e.decoded("DTSTART").isoformat(),
        "end": e.decoded("DTEND").isoformat(),
        "summary": str(e.get("SUMMARY")),
        "description": str(e.get("DESCRIPTION")),
        "alarms": sorted(int(a.decoded("TRIGGER").total_seconds() // 86400) for a in e.walk("VALARM")),
    })
print(json.dumps(events))
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/clients/.venv/bin/python");
    assert!(python.exists(), "{} is missing: run tools/clients/install (./tools/test does)", python.display());
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(ics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "icalendar refused the feed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn create_feed(app: &TestApp, user: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/api/me/calendar-feed", app.base)).bearer_auth(token(user));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn the_feed_has_one_event_per_coverage_expiry_with_the_owners_alarms() {
    let app = spawn_app().await;
    let laptop: Value = app
        .post_form(
            "alice",
            Form::registration("Apple", "MacBook Air 13", "C02XK0ABJGH5", &day(-30), &fixture("invoice.pdf")),
        )
        .await
        .json()
        .await
        .unwrap();
    let phone: Value = app
        .post_form("alice", Form::registration("Dell", "Inspiron 14", "7XK9JH2", &day(-400), &fixture("invoice.pdf")))
        .await
        .json()
        .await
        .unwrap();
    let lid = laptop["id"].as_str().unwrap();
    for body in [
        json!({"kind": "extended", "provider": "Acme Care, Ltd.", "startsOn": laptop["warrantyExpiresOn"], "months": 24}),
        json!({"kind": "insurance", "lifetime": true}),
    ] {
        assert_eq!(app.post_json("alice", &format!("/api/products/{lid}/coverages"), &body).await.status(), 201);
    }
    // Someone else's product never appears in alice's feed.
    app.post_form("bob", Form::registration("Dell", "Inspiron 14", "BOB0001", &day(-10), &fixture("invoice.pdf")))
        .await;

    let resp = create_feed(&app, "alice", Some(json!({"leadDays": [7, 30, 7]}))).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["leadDays"], json!([30, 7]), "distinct, largest first");
    let url = created["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/api/calendar/", app.base)) && url.ends_with(".ics"), "{url}");

    // A calendar app fetches it without a token.
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/calendar; charset=utf-8");
    let ics = resp.text().await.unwrap();
    assert!(ics.lines().all(|l| l.len() <= 76), "folded lines");
    let events = parse_ics(&ics);
    let events = events.as_array().unwrap();

    // Expected: every coverage with an expiry (the lifetime insurance has none), alice's only.
    let mut expected: Vec<(String, String)> = Vec::new();
    for id in [lid, phone["id"].as_str().unwrap()] {
        let card: Value = app.get("alice", &format!("/api/products/{id}")).await.json().await.unwrap();
        for c in card["coverages"].as_array().unwrap() {
            if let Some(end) = c["expiresOn"].as_str() {
                expected.push((format!("{id}-{}@warranty", c["id"].as_str().unwrap()), end.to_owned()));
            }
        }
    }
    expected.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["uid"].as_str().unwrap().to_owned(), e["start"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, expected, "one event per expiry, in date order");
    for e in events {
        let start = chrono::NaiveDate::parse_from_str(e["start"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        assert_eq!(e["end"].as_str().unwrap(), (start + chrono::Duration::days(1)).to_string(), "an all-day event");
        assert_eq!(e["alarms"], json!([-30, -7]), "an alarm at each lead time");
        assert!(!e["description"].as_str().unwrap().contains("C02XK0ABJGH5"), "serials are masked");
    }
    let extended = events.iter().find(|e| e["summary"].as_str().unwrap().starts_with("Extended warranty")).unwrap();
    assert_eq!(extended["summary"], "Extended warranty ends: Apple MacBook Air 13");
    assert!(extended["description"].as_str().unwrap().contains("by Acme Care, Ltd."), "text escaping round-trips");
    assert!(!events.iter().any(|e| e["summary"].as_str().unwrap().contains("BOB0001")));
}

async fn a_feed_is_rotated_and_revoked_and_forged_urls_are_not_found() {
    let app = spawn_app().await;
    app.post_form("alice", Form::registration("Dell", "Inspiron 14", "7XK9JH2", &day(-10), &fixture("invoice.pdf")))
        .await;
    assert_eq!(app.client.post(format!("{}/api/me/calendar-feed", app.base)).send().await.unwrap().status(), 401);
    for bad in [
        json!({"leadDays": []}),
        json!({"leadDays": [400]}),
        json!({"leadDays": [-1]}),
        json!({"leadDays": [1, 2, 3, 4, 5, 6]}),
    ] {
        let (s, p) = problem(create_feed(&app, "alice", Some(bad.clone())).await).await;
        assert_eq!((s, p["code"].as_str()), (422, Some("lead_days_invalid")), "{bad}");
    }
    let (s, p) = problem(create_feed(&app, "alice", Some(json!({"reminders": 3}))).await).await;
    assert_eq!((s, p["code"].as_str()), (400, Some("patch_invalid")));

    let first: Value = create_feed(&app, "alice", None).await.json().await.unwrap();
    assert_eq!(first["leadDays"], json!([30, 7]), "the default lead times");
    let first = first["url"].as_str().unwrap().to_owned();
    assert_eq!(app.client.get(&first).send().await.unwrap().status(), 200);

    // Rotation: the old URL stops working, the new one works.
    let second: Value = create_feed(&app, "alice", None).await.json().await.unwrap();
    let second = second["url"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(app.client.get(&first).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(&second).send().await.unwrap().status(), 200);

    // Forged: alice's user part with another secret; bob's part with alice's secret; garbage.
    let (base, alice_token) = second.rsplit_once('/').unwrap();
    let (user_part, secret_part) = alice_token.trim_end_matches(".ics").split_once('.').unwrap();
    let other_secret = match secret_part.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &secret_part[1..]),
    };
    let bob_feed: Value = create_feed(&app, "bob", None).await.json().await.unwrap();
    let bob_user = bob_feed["url"].as_str().unwrap().rsplit('/').next().unwrap().split('.').next().unwrap().to_owned();
    for forged in [
        format!("{base}/{user_part}.{other_secret}.ics"),
        format!("{base}/{bob_user}.{secret_part}.ics"),
        format!("{base}/not-a-token.ics"),
        format!("{base}/{user_part}.ics"),
    ] {
        let (s, p) = problem(app.client.get(&forged).send().await.unwrap()).await;
        assert_eq!((s, p["code"].as_str()), (404, Some("not_found")), "{forged}");
    }

    // Revocation.
    let revoke = || app.client.delete(format!("{}/api/me/calendar-feed", app.base)).bearer_auth(token("alice")).send();
    assert_eq!(revoke().await.unwrap().status(), 204);
    assert_eq!(app.client.get(&second).send().await.unwrap().status(), 404);
    assert_eq!(revoke().await.unwrap().status(), 404, "nothing left to revoke");
    assert_eq!(
        app.client.get(bob_feed["url"].as_str().unwrap()).send().await.unwrap().status(),
        200,
        "bob's is untouched"
    );
}
