//! The app's managed identity against the App Service identity endpoint's documented contract.
//!
//! No Azure runs here. A loopback server plays the endpoint the platform exposes through
//! `IDENTITY_ENDPOINT` / `IDENTITY_HEADER`: it checks the documented request (GET, `resource`,
//! `api-version=2019-08-01`, the user-assigned `client_id`, the `X-IDENTITY-HEADER` secret) and
//! answers with a documented token response. A second loopback server plays Service Bus and
//! checks that the token is sent as `Authorization: Bearer`. One test per process: it sets the
//! two environment variables the credential reads.

// Its own test binary: it sets the process environment the credential reads.
#[path = "api/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use support::*;
use warp::Filter;
use warp::http::{Response, StatusCode};
use warranty::adapters::azure::identity::Identity;
use warranty::adapters::azure::servicebus::{ServiceBusAuth, ServiceBusPublisher};

/// What the identity endpoint saw: the query, and the `X-IDENTITY-HEADER` value.
type TokenRequests = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>;

#[tokio::test]
async fn the_user_assigned_identity_authenticates_service_bus_sends() {
    let requests: TokenRequests = Arc::default();
    let seen = requests.clone();
    let identity = warp::get()
        .and(warp::path!("msi" / "token"))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("x-identity-header"))
        .map(move |q: HashMap<String, String>, secret: Option<String>| {
            seen.lock().unwrap().push((q.clone(), secret.clone()));
            if secret.as_deref() != Some("platform-secret") {
                return Response::builder().status(StatusCode::UNAUTHORIZED).body(Bytes::new()).unwrap();
            }
            let expires = chrono::Utc::now().timestamp() + 3600;
            let body = serde_json::json!({
                "access_token": "mi-token-for-servicebus",
                "expires_on": expires.to_string(),
                "resource": q.get("resource").cloned().unwrap_or_default(),
                "token_type": "Bearer",
                "client_id": q.get("client_id").cloned().unwrap_or_default(),
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Bytes::from(body.to_string()))
                .unwrap()
        });
    let (identity_port, _stop_identity) = serve_loopback(identity).await;

    let auth_headers: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_auth = auth_headers.clone();
    let bus = warp::post()
        .and(warp::path!("invoice-ocr" / "messages"))
        .and(warp::header::<String>("authorization"))
        .map(move |auth: String| {
            seen_auth.lock().unwrap().push(auth.clone());
            let status = if auth == "Bearer mi-token-for-servicebus" { 201 } else { 401 };
            Response::builder().status(status).body(Bytes::new()).unwrap()
        });
    let (bus_port, _stop_bus) = serve_loopback(bus).await;

    // SAFETY: the only test in this process; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", format!("http://127.0.0.1:{identity_port}/msi/token"));
        std::env::set_var("IDENTITY_HEADER", "platform-secret");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = warranty::config::Settings::for_tests(dir.path().to_owned());
    settings.identity.managed_identity_client_id = Some("6a1f0c3e-user-assigned".into());
    let credential = Identity::new(&settings.identity).credential().unwrap();
    let endpoint = format!("http://127.0.0.1:{bus_port}");
    let publisher = ServiceBusPublisher::new(&endpoint, "invoice-ocr", ServiceBusAuth::Credential(credential));
    let event = sample_event();
    publisher.publish(&event, Some("trace")).await.expect("sent with the identity's token");
    publisher.publish(&event, Some("trace")).await.expect("sent again");

    let calls = requests.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "the token is cached until it nears expiry: {calls:?}");
    let (query, secret) = &calls[0];
    assert_eq!(secret.as_deref(), Some("platform-secret"));
    assert_eq!(query.get("api-version").map(String::as_str), Some("2019-08-01"));
    assert_eq!(query.get("resource").map(String::as_str), Some("https://servicebus.azure.net"));
    assert_eq!(
        query.get("client_id").map(String::as_str),
        Some("6a1f0c3e-user-assigned"),
        "the user-assigned identity"
    );
    assert_eq!(*auth_headers.lock().unwrap(), vec!["Bearer mi-token-for-servicebus".to_owned(); 2]);
}
