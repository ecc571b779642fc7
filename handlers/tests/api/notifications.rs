//! Notification settings through the API, on the embedded store and on Cosmos DB: defaults until
//! set, every field validated, a user sees only their own.

backends!([embedded, azure]:
    notification_settings_default_validate_and_belong_to_their_user,
);

use crate::support::*;
use serde_json::{Value, json};

async fn put(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.put_json(user, "/api/me/notification-settings", &body).await
}

async fn get(app: &TestApp, user: &str) -> Value {
    let resp = app.get(user, "/api/me/notification-settings").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn notification_settings_default_validate_and_belong_to_their_user() {
    let app = spawn_app().await;
    let defaults = json!({"leadDays": [30, 7], "timeZone": "UTC", "hour": 9, "channels": ["push", "feed"]});
    assert_eq!(get(&app, "alice").await, defaults);

    let resp = put(&app, "alice", json!({"leadDays": [7, 60], "timeZone": "Europe/Berlin", "hour": 18, "channels": ["webhook"], "webhookUrl": "https://hooks.example.com/warranty"})).await;
    assert_eq!(resp.status(), 200);
    let stored = json!({"leadDays": [60, 7], "timeZone": "Europe/Berlin", "hour": 18, "channels": ["feed", "webhook"], "webhookUrl": "https://hooks.example.com/warranty"});
    let mut answered: Value = resp.json().await.unwrap();
    // With the webhook on, its signing secret is shown to its owner, the same on every read.
    let secret = answered.as_object_mut().unwrap().remove("webhookSecret").expect("the webhook's secret");
    assert!(secret.as_str().unwrap().starts_with("whsec_"));
    assert_eq!(answered, stored, "sorted, feed always on");
    let mut read = get(&app, "alice").await;
    assert_eq!(read.as_object_mut().unwrap().remove("webhookSecret"), Some(secret));
    assert_eq!(read, stored);
    assert_eq!(get(&app, "bob").await, defaults, "bob's are his own");

    for (body, status, code) in [
        (json!({"leadDays": []}), 422, "lead_days_invalid"),
        (json!({"leadDays": [0]}), 422, "lead_days_invalid"),
        (json!({"timeZone": "Europe/Atlantis"}), 422, "time_zone_invalid"),
        (json!({"hour": 24}), 422, "hour_invalid"),
        (json!({"channels": ["sms"]}), 422, "channel_invalid"),
        (json!({"channels": ["webhook"]}), 422, "webhook_url_invalid"),
        (json!({"webhookUrl": "http://hooks.example.com/"}), 422, "webhook_url_invalid"),
        (json!({"volume": 11}), 400, "patch_invalid"),
        (json!([1]), 400, "patch_invalid"),
    ] {
        let (s, p) = problem(put(&app, "alice", body.clone()).await).await;
        assert_eq!((s, p["code"].as_str().unwrap()), (status, code), "{body}");
    }
    let mut read = get(&app, "alice").await;
    read.as_object_mut().unwrap().remove("webhookSecret");
    assert_eq!(read, stored, "a refused PUT changes nothing");
    assert_eq!(
        app.client.get(format!("{}/api/me/notification-settings", app.base)).send().await.unwrap().status(),
        401
    );
}
