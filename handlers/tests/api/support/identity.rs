//! A loopback managed-identity endpoint, as App Service (and so the Functions host) exposes it
//! through `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`: `GET {endpoint}?resource=…&api-version=2019-08-01
//! [&client_id=…]` with the secret in `X-IDENTITY-HEADER`, answered with
//! `{access_token, expires_on, resource, token_type, client_id}` (learn.microsoft.com,
//! *overview-managed-identity*, "REST endpoint reference"). Each token it issues is remembered
//! with its resource, so a peer (the Service Bus double) can accept only those.
//!
//! Where it differs from the platform: tokens are opaque strings, not JWTs; no throttling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use warp::Filter;
use warp::http::{Response, StatusCode};

/// Tokens issued: token → (resource, client id).
pub type IssuedTokens = Arc<Mutex<HashMap<String, (String, Option<String>)>>>;

/// The secret the platform puts in `IDENTITY_HEADER`.
pub const IDENTITY_SECRET: &str = "platform-identity-secret";

pub struct IdentityEndpoint {
    /// `IDENTITY_ENDPOINT`.
    pub url: String,
    pub issued: IssuedTokens,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IdentityEndpoint {
    pub async fn start() -> Self {
        let issued: IssuedTokens = Arc::default();
        let seen = issued.clone();
        let route = warp::get()
            .and(warp::path!("msi" / "token"))
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(move |q: HashMap<String, String>, secret: Option<String>| {
                let refuse = |status: StatusCode| Response::builder().status(status).body(Bytes::new()).unwrap();
                if secret.as_deref() != Some(IDENTITY_SECRET) {
                    return refuse(StatusCode::UNAUTHORIZED);
                }
                let (Some(resource), Some("2019-08-01")) =
                    (q.get("resource"), q.get("api-version").map(String::as_str))
                else {
                    return refuse(StatusCode::BAD_REQUEST);
                };
                let token = format!("mi-{}", uuid::Uuid::new_v4().simple());
                seen.lock().unwrap().insert(token.clone(), (resource.clone(), q.get("client_id").cloned()));
                let body = serde_json::json!({
                    "access_token": token,
                    "expires_on": (chrono::Utc::now().timestamp() + 3600).to_string(),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": q.get("client_id").cloned().unwrap_or_default(),
                });
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Bytes::from(body.to_string()))
                    .unwrap()
            });
        let (port, stop) = super::serve_loopback(route).await;
        Self { url: format!("http://127.0.0.1:{port}/msi/token"), issued, _stop: stop }
    }

    /// The environment the platform gives the app for this endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("IDENTITY_ENDPOINT", self.url.clone()), ("IDENTITY_HEADER", IDENTITY_SECRET.to_owned())]
    }
}
