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

use azure_core::credentials::TokenCredential;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

use super::connection_string::ConnectionString;
use super::identity::Identity;
use crate::config::{DeliverySettings, OcrDeliveryKind, Secret, StartupError};
use crate::domain::OcrRequested;

pub const SCOPE: &str = "https://servicebus.azure.net/.default";

/// How requests to the namespace are authenticated.
#[derive(Clone)]
pub enum ServiceBusAuth {
    /// Entra ID tokens (the app's managed identity in Azure).
    Credential(Arc<dyn TokenCredential>),
    /// A SAS token signed from a connection string's key, for local use only.
    Sas { key: SasKey, resource_uri: String },
}

impl ServiceBusAuth {
    /// The `Authorization` header value for a request now.
    async fn header(&self) -> Result<String, String> {
        match self {
            Self::Credential(c) => {
                let token = c.get_token(&[SCOPE], None).await.map_err(|e| e.to_string())?;
                Ok(format!("Bearer {}", token.token.secret()))
            }
            Self::Sas { key, resource_uri } => Ok(key.token(resource_uri, chrono::Utc::now().timestamp() + 3600)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Throttled, busy or unreachable: retry (after `retry_after` when the service said).
    #[error("Service Bus unavailable: {detail}")]
    Transient { retry_after: Option<Duration>, detail: String },
    /// Refused for a reason retrying will not fix soon (auth, missing queue, quota, size).
    #[error("Service Bus refused the message: {0}")]
    Rejected(String),
}

/// A Service Bus connection string's signing key (`Endpoint=sb://…;SharedAccessKeyName=…;
/// SharedAccessKey=…`). The key is a [`Secret`]: this type never prints it.
#[derive(Clone, Debug)]
pub struct SasKey {
    pub endpoint: String,
    pub key_name: String,
    key: Secret,
}

impl SasKey {
    pub fn parse(connection_string: &Secret) -> Result<Self, String> {
        let cs = ConnectionString::parse(connection_string);
        Ok(Self {
            endpoint: cs.require("Endpoint")?.to_owned(),
            key_name: cs.require("SharedAccessKeyName")?.to_owned(),
            key: cs.secret("SharedAccessKey")?,
        })
    }

    /// `SharedAccessSignature sr={uri}&sig={HMAC-SHA256(key, urlencode(uri) + "\n" + expiry)}&se={expiry}&skn={name}`.
    pub fn token(&self, resource_uri: &str, expiry_unix: i64) -> String {
        let encoded: String = url_encode(resource_uri);
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.key.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(format!("{encoded}\n{expiry_unix}").as_bytes());
        let sig = url_encode(&STANDARD.encode(mac.finalize().into_bytes()));
        format!("SharedAccessSignature sr={encoded}&sig={sig}&se={expiry_unix}&skn={}", self.key_name)
    }
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).map(|q| q[2..].to_owned()).unwrap_or_default()
}

#[derive(Clone)]
pub struct ServiceBusPublisher {
    messages_url: String,
    auth: ServiceBusAuth,
    client: reqwest::Client,
}

impl ServiceBusPublisher {
    /// `namespace` is `{name}.servicebus.windows.net` (or a full base URL, for local contract
    /// tests).
    pub fn new(namespace: &str, queue: &str, auth: ServiceBusAuth) -> Self {
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

    /// The publisher the settings describe; `None` when OCR events are delivered locally.
    pub fn from_settings(settings: &DeliverySettings, identity: &Identity) -> Result<Option<Self>, StartupError> {
        if settings.ocr_delivery != OcrDeliveryKind::Servicebus {
            return Ok(None);
        }
        let queue = &settings.ocr_queue;
        if let Some(cs) = &settings.servicebus_connection_string {
            let key = SasKey::parse(cs).map_err(StartupError::ServiceBusConfig)?;
            // A connection string may name a local endpoint for contract tests (`Endpoint=http://…`).
            let namespace = if key.endpoint.starts_with("http") {
                key.endpoint.trim_end_matches('/').to_owned()
            } else {
                key.endpoint.trim_start_matches("sb://").trim_end_matches('/').to_owned()
            };
            let resource_uri = Self::resource_uri(&namespace, queue);
            return Ok(Some(Self::new(&namespace, queue, ServiceBusAuth::Sas { key, resource_uri })));
        }
        let Some(namespace) = &settings.servicebus_namespace else {
            return Err(StartupError::ServiceBusConfig("neither is set".into()));
        };
        let credential = identity.credential().map_err(StartupError::ServiceBusConfig)?;
        Ok(Some(Self::new(namespace, queue, ServiceBusAuth::Credential(credential))))
    }

    /// The queue's resource URI (what a SAS token is scoped to).
    pub fn resource_uri(namespace: &str, queue: &str) -> String {
        let host = namespace.split("://").last().unwrap_or(namespace).trim_end_matches('/');
        format!("https://{host}/{queue}")
    }

    pub async fn publish(&self, event: &OcrRequested, correlation_id: Option<&str>) -> Result<(), PublishError> {
        self.send(event, correlation_id, None).await
    }

    /// Sends `event`, to be enqueued at `scheduled` when given (`ScheduledEnqueueTimeUtc`, an
    /// RFC 1123 date in the `BrokerProperties` header); the message id is
    /// [`OcrRequested::queue_message_id`].
    pub async fn send(
        &self,
        event: &OcrRequested,
        correlation_id: Option<&str>,
        scheduled: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), PublishError> {
        let auth = self.auth.header().await.map_err(|e| PublishError::Rejected(format!("no credential: {e}")))?;
        let mut broker =
            serde_json::json!({ "MessageId": event.queue_message_id(), "ContentType": "application/json" });
        if let Some(c) = correlation_id {
            broker["CorrelationId"] = c.into();
        }
        if let Some(at) = scheduled {
            broker["ScheduledEnqueueTimeUtc"] = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string().into();
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

impl ServiceBusPublisher {
    /// Sends an event as the outbox and the OCR trigger need it: correlated with the
    /// registration's trace (or its own id), failures in the ports' terms.
    async fn send_event(
        &self,
        event: &OcrRequested,
        scheduled: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), crate::ports::DeliveryFailed> {
        let correlation = event.trace_id.clone().unwrap_or_else(|| event.message_id.clone());
        self.send(event, Some(&correlation), scheduled).await.map_err(|e| match e {
            PublishError::Transient { retry_after, detail } => {
                crate::ports::DeliveryFailed { reason: detail, retry_after }
            }
            other => crate::ports::DeliveryFailed { reason: other.to_string(), retry_after: None },
        })
    }
}

#[async_trait::async_trait]
impl crate::ports::OcrPublisher for ServiceBusPublisher {
    async fn deliver(&self, message: &crate::ports::OutboxMessage) -> Result<(), crate::ports::DeliveryFailed> {
        let event = message.event().map_err(|reason| crate::ports::DeliveryFailed { reason, retry_after: None })?;
        self.send_event(&event, None).await
    }
}

#[async_trait::async_trait]
impl crate::ports::OcrRequeue for ServiceBusPublisher {
    async fn requeue(
        &self,
        event: &OcrRequested,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), crate::ports::DeliveryFailed> {
        self.send_event(event, Some(at)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_tokens_follow_the_documented_format() {
        let key = SasKey::parse(&Secret::new(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0",
        ))
        .unwrap();
        assert!(!format!("{key:?}").contains("c2VjcmV0"), "the key never prints");
        let t = key.token("https://ns.servicebus.windows.net/invoice-ocr", 1_900_000_000);
        assert!(
            t.starts_with("SharedAccessSignature sr=https%3A%2F%2Fns.servicebus.windows.net%2Finvoice-ocr&sig="),
            "{t}"
        );
        assert!(t.ends_with("&se=1900000000&skn=send"), "{t}");
        assert!(SasKey::parse(&Secret::new("Endpoint=sb://x/")).is_err());
    }
}
