//! Publishing OCR events to an Azure Service Bus queue over the documented REST "Send Message"
//! call: `POST https://{namespace}.servicebus.windows.net/{queue}/messages` with the message
//! body, `Content-Type`, and the broker properties (`MessageId`, `CorrelationId`) as JSON in the
//! `BrokerProperties` header. `201 Created` means stored.
//!
//! The message id is the event's (`{productId}:invoice:{version}`), so with duplicate detection
//! on the queue a retried send is absorbed. Auth: an Entra token for `https://servicebus.azure.net/.default`
//! from the managed identity (needs only the *Azure Service Bus Data Sender* role on the queue),
//! or, for local use only, a SAS token signed from a connection string.
//! See docs/decisions/0008-service-bus.md for why not `azure_messaging_servicebus`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};

use crate::domain::OcrRequested;

pub const SCOPE: &str = "https://servicebus.azure.net/.default";

/// Produces the `Authorization` header value for a request.
pub type AuthSource = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Throttled, busy or unreachable: retry (after `retry_after` when the service said).
    #[error("Service Bus unavailable: {detail}")]
    Transient { retry_after: Option<Duration>, detail: String },
    /// Refused for a reason retrying will not fix soon (auth, missing queue, quota, size).
    #[error("Service Bus refused the message: {0}")]
    Rejected(String),
}

/// A Service Bus connection string (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`).
#[derive(Clone)]
pub struct SasKey {
    pub endpoint: String,
    pub key_name: String,
    pub key: String,
}

impl SasKey {
    pub fn parse(connection_string: &str) -> Result<Self, String> {
        let get = |k: &str| {
            connection_string
                .split(';')
                .filter_map(|p| p.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case(k))
                .map(|(_, v)| v.trim().to_owned())
        };
        Ok(Self {
            endpoint: get("Endpoint").ok_or("no Endpoint")?,
            key_name: get("SharedAccessKeyName").ok_or("no SharedAccessKeyName")?,
            key: get("SharedAccessKey").ok_or("no SharedAccessKey")?,
        })
    }

    /// `SharedAccessSignature sr={uri}&sig={HMAC-SHA256(key, urlencode(uri) + "\n" + expiry)}&se={expiry}&skn={name}`.
    pub fn token(&self, resource_uri: &str, expiry_unix: i64) -> String {
        let encoded: String = url_encode(resource_uri);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.key.as_bytes()).expect("HMAC takes any key length");
        mac.update(format!("{encoded}\n{expiry_unix}").as_bytes());
        let sig = url_encode(&STANDARD.encode(mac.finalize().into_bytes()));
        format!("SharedAccessSignature sr={encoded}&sig={sig}&se={expiry_unix}&skn={}", self.key_name)
    }

    pub fn auth_source(self, resource_uri: String) -> AuthSource {
        Arc::new(move || {
            let token = self.token(&resource_uri, chrono::Utc::now().timestamp() + 3600);
            Box::pin(async move { Ok(token) })
        })
    }
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).map(|q| q[2..].to_owned()).unwrap_or_default()
}

/// Bearer tokens from an Entra credential (the managed identity in Azure).
pub fn entra_auth(credential: Arc<dyn azure_core::credentials::TokenCredential>) -> AuthSource {
    Arc::new(move || {
        let credential = credential.clone();
        Box::pin(async move {
            let token = credential.get_token(&[SCOPE], None).await.map_err(|e| e.to_string())?;
            Ok(format!("Bearer {}", token.token.secret()))
        })
    })
}

#[derive(Clone)]
pub struct ServiceBusPublisher {
    messages_url: String,
    auth: AuthSource,
    client: reqwest::Client,
}

impl ServiceBusPublisher {
    /// `namespace` is `{name}.servicebus.windows.net` (or a full base URL, for local contract
    /// tests).
    pub fn new(namespace: &str, queue: &str, auth: AuthSource) -> Self {
        let base = if namespace.contains("://") {
            namespace.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", namespace.trim_end_matches('/'))
        };
        Self {
            messages_url: format!("{base}/{queue}/messages"),
            auth,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client"),
        }
    }

    /// The queue's resource URI (what a SAS token is scoped to).
    pub fn resource_uri(namespace: &str, queue: &str) -> String {
        let host = namespace.split("://").last().unwrap_or(namespace).trim_end_matches('/');
        format!("https://{host}/{queue}")
    }

    pub async fn publish(&self, event: &OcrRequested, correlation_id: Option<&str>) -> Result<(), PublishError> {
        let auth = (self.auth)().await.map_err(|e| PublishError::Rejected(format!("no credential: {e}")))?;
        let mut broker = serde_json::json!({ "MessageId": event.message_id, "ContentType": "application/json" });
        if let Some(c) = correlation_id {
            broker["CorrelationId"] = c.into();
        }
        let resp = self
            .client
            .post(&self.messages_url)
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .header("BrokerProperties", broker.to_string())
            .body(serde_json::to_vec(event).expect("an event serialises"))
            .send()
            .await
            .map_err(|e| PublishError::Transient { retry_after: None, detail: format!("unreachable: {e}") })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status {
            201 => Ok(()),
            408 | 429 | 500 | 503 => Err(PublishError::Transient { retry_after, detail: format!("answered {status}") }),
            _ => Err(PublishError::Rejected(format!("answered {status}"))),
        }
    }
}

#[async_trait::async_trait]
impl crate::ports::OcrPublisher for ServiceBusPublisher {
    async fn publish(&self, event: &OcrRequested) -> Result<(), crate::ports::PublishFailed> {
        let correlation = event.trace_id.as_deref().unwrap_or(&event.message_id);
        ServiceBusPublisher::publish(self, event, Some(correlation))
            .await
            .map_err(|e| crate::ports::PublishFailed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_tokens_follow_the_documented_format() {
        let key =
            SasKey::parse("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0")
                .unwrap();
        let t = key.token("https://ns.servicebus.windows.net/invoice-ocr", 1_900_000_000);
        assert!(
            t.starts_with("SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Finvoice-ocr&sig="),
            "{t}"
        );
        assert!(t.ends_with("&se=1900000000&skn=send"), "{t}");
        assert!(SasKey::parse("Endpoint=sb://x/").is_err());
    }
}
