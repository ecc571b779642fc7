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

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use support::*;
use warp::Filter;
use warp::http::Response;
use warranty::adapters::azure::identity::Identity;
use warranty::adapters::azure::servicebus::{ServiceBusAuth, ServiceBusPublisher};

#[tokio::test]
async fn the_user_assigned_identity_authenticates_service_bus_sends() {
    let identity = IdentityEndpoint::start().await;

    let auth_headers: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_auth = auth_headers.clone();
    let issued = identity.issued.clone();
    let bus = warp::post()
        .and(warp::path!("invoice-ocr" / "messages"))
        .and(warp::header::<String>("authorization"))
        .map(move |auth: String| {
            seen_auth.lock().unwrap().push(auth.clone());
            let known = auth.strip_prefix("Bearer ").is_some_and(|t| issued.lock().unwrap().contains_key(t));
            let status = if known { 201 } else { 401 };
            Response::builder().status(status).body(Bytes::new()).unwrap()
        });
    let (bus_port, _stop_bus) = serve_loopback(bus).await;

    // SAFETY: the only test in this process; nothing else reads the environment concurrently.
    unsafe {
        for (name, value) in identity.env() {
            std::env::set_var(name, value);
        }
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

    // The endpoint issues only to the platform's secret with `api-version=2019-08-01`.
    let issued = identity.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1, "the token is cached until it nears expiry: {issued:?}");
    let (token, (resource, client)) = issued.into_iter().next().unwrap();
    assert_eq!(resource, "https://servicebus.azure.net");
    assert_eq!(client.as_deref(), Some("6a1f0c3e-user-assigned"), "the user-assigned identity");
    assert_eq!(*auth_headers.lock().unwrap(), vec![format!("Bearer {token}"); 2]);
}
