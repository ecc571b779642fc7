//! The embedded default's stand-in for the Functions host delivering a Service Bus message:
//! each outbox message is POSTed to this process's own `/ProcessInvoiceOcr` in the payload
//! shape the host uses for a Service Bus trigger, so local runs exercise the same protocol as
//! Azure. The outcome rules are the host's: a 2xx completes the message, anything else
//! abandons it.

use std::time::Duration;

use serde_json::json;

use crate::ports::{DeliveryFailed, OcrPublisher, OutboxMessage};

/// The Functions host's invocation payload for one Service Bus message. Metadata scalars are
/// JSON-serialised strings, as the host sends them.
pub fn host_payload(m: &OutboxMessage, binding: &str) -> serde_json::Value {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    json!({
        "Data": { binding: m.body },
        "Metadata": {
            "MessageId": q(&m.message_id),
            "DeliveryCount": m.delivery_count.to_string(),
            "EnqueuedTimeUtc": q(&m.enqueued_at),
            "ContentType": q("application/json"),
            "LockToken": q(&m.lock_token),
            "sys": {
                "MethodName": "ProcessInvoiceOcr",
                "UtcNow": chrono::Utc::now().to_rfc3339(),
                "RandGuid": uuid::Uuid::new_v4().to_string(),
            }
        }
    })
}

pub struct LocalHandler {
    url: String,
    /// Binding name of the message in `Data` (function.json `name`).
    binding: String,
    client: reqwest::Client,
}

impl LocalHandler {
    /// `/ProcessInvoiceOcr` on `port`; a delivery that takes longer than `lock` loses its lock
    /// anyway, so the request gives up then.
    pub fn new(port: u16, lock: Duration) -> Self {
        Self {
            url: format!("http://127.0.0.1:{port}/ProcessInvoiceOcr"),
            binding: "message".into(),
            client: reqwest::Client::builder().timeout(lock).build().expect("an HTTP client"),
        }
    }
}

#[async_trait::async_trait]
impl OcrPublisher for LocalHandler {
    async fn deliver(&self, m: &OutboxMessage) -> Result<(), DeliveryFailed> {
        match self.client.post(&self.url).json(&host_payload(m, &self.binding)).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => {
                Err(DeliveryFailed { reason: format!("handler answered {}", resp.status()), retry_after: None })
            }
            Err(e) => Err(DeliveryFailed { reason: format!("handler unreachable: {e}"), retry_after: None }),
        }
    }
}
