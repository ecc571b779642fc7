//! Relays the durable OCR queue (the outbox written with each registration) to where the OCR
//! handler runs:
//! - [`Sink::Local`]: this process's own `/ProcessInvoiceOcr`, in the payload shape the
//!   Functions host uses for a Service Bus trigger, so local runs exercise the same protocol as
//!   Azure. The outcome rules are the host's: a 2xx completes the message, anything else
//!   abandons it (visible again after a backoff) until `max_delivery_count`, then it is
//!   dead-lettered.
//! - [`Sink::ServiceBus`]: the Service Bus queue, from which the Functions host delivers it.
//!   The row is completed only after Service Bus answered 201, so an event is never lost
//!   between the database and the broker; a crash after the send and before completion sends
//!   it again with the same message id, which duplicate detection absorbs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, watch};

use super::queue::{Delivery, SqliteOcrQueue};

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// How long a delivery is locked (Service Bus: LockDuration). Must exceed the slowest OCR.
    pub lock: Duration,
    pub max_delivery_count: u32,
    /// First retry delay; doubles per delivery up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Messages handled at once.
    pub workers: usize,
    /// Longest idle wait; a registration wakes the dispatcher at once (`Services::ocr_wake`).
    pub idle_poll: Duration,
    /// Binding name of the message in `Data` (function.json `name`).
    pub binding: String,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            lock: Duration::from_secs(300),
            max_delivery_count: 10,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            workers: 1,
            idle_poll: Duration::from_secs(1),
            binding: "message".into(),
        }
    }
}

/// The delay before delivery `n + 1` after `n` failed: base · 2^(n−1), capped, with ±20 %
/// jitter so a burst of failures does not retry in lockstep.
pub fn backoff(cfg: &DispatcherConfig, delivery_count: u32) -> Duration {
    let exp = delivery_count.saturating_sub(1).min(20);
    let raw = cfg.retry_base.saturating_mul(1u32 << exp).min(cfg.retry_max);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = 0.8 + 0.4 * (f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX));
    raw.mul_f64(jitter)
}

/// The Functions host's invocation payload for one Service Bus message. Metadata scalars are
/// JSON-serialised strings, as the host sends them.
pub fn host_payload(d: &Delivery, binding: &str) -> serde_json::Value {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    json!({
        "Data": { binding: d.body },
        "Metadata": {
            "MessageId": q(&d.message_id),
            "DeliveryCount": d.delivery_count.to_string(),
            "EnqueuedTimeUtc": q(&d.enqueued_at),
            "ContentType": q("application/json"),
            "LockToken": q(&d.lock_token),
            "sys": {
                "MethodName": "ProcessInvoiceOcr",
                "UtcNow": chrono::Utc::now().to_rfc3339(),
                "RandGuid": uuid::Uuid::new_v4().to_string(),
            }
        }
    })
}

/// Where queued OCR events go.
pub enum Sink {
    /// POST to this process's `/ProcessInvoiceOcr` on `port`.
    Local {
        port: u16,
    },
    ServiceBus(crate::adapters::azure::servicebus::ServiceBusPublisher),
}

pub struct Dispatcher {
    queue: SqliteOcrQueue,
    cfg: DispatcherConfig,
    sink: Sink,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(queue: SqliteOcrQueue, cfg: DispatcherConfig, sink: Sink, wake: Arc<Notify>) -> Self {
        let client = reqwest::Client::builder()
            // A handler that hangs longer than the lock loses it anyway.
            .timeout(cfg.lock)
            .build()
            .expect("an HTTP client");
        Self { queue, cfg, sink, client, wake }
    }

    /// Sends one delivery; `Err` carries the reason and, when the peer said, when to retry.
    async fn send(&self, d: &Delivery) -> Result<(), (String, Option<Duration>)> {
        match &self.sink {
            Sink::Local { port } => {
                let url = format!("http://127.0.0.1:{port}/ProcessInvoiceOcr");
                match self.client.post(url).json(&host_payload(d, &self.cfg.binding)).send().await {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err((format!("handler answered {}", resp.status()), None)),
                    Err(e) => Err((format!("handler unreachable: {e}"), None)),
                }
            }
            Sink::ServiceBus(publisher) => {
                let event: crate::domain::OcrRequested =
                    serde_json::from_str(&d.body).map_err(|e| (format!("unreadable event: {e}"), None))?;
                let correlation = event.trace_id.clone().unwrap_or_else(|| event.message_id.clone());
                publisher.publish(&event, Some(&correlation)).await.map_err(|e| match e {
                    crate::adapters::azure::servicebus::PublishError::Transient { retry_after, detail } => {
                        (detail, retry_after)
                    }
                    other => (other.to_string(), None),
                })
            }
        }
    }

    /// Runs `workers` delivery loops until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut loops = Vec::new();
        for _ in 0..this.cfg.workers.max(1) {
            let (me, stop) = (this.clone(), stop.clone());
            loops.push(tokio::spawn(async move { me.work(stop).await }));
        }
        for l in loops {
            let _ = l.await;
        }
    }

    async fn work(&self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match self.queue.receive(self.cfg.lock.as_millis() as i64).await {
                Ok(Some(d)) => self.deliver(d).await,
                Ok(None) => {
                    // Sleep until the next message becomes visible, a registration wakes us,
                    // or shutdown; never longer than `idle_poll` so lock expiries are noticed.
                    let next = self.queue.next_visible_ms().await.ok().flatten();
                    let wait = next
                        .map(|ms| Duration::from_millis((ms - chrono::Utc::now().timestamp_millis()).max(0) as u64))
                        .unwrap_or(self.cfg.idle_poll)
                        .min(self.cfg.idle_poll);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the OCR queue");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    async fn deliver(&self, d: Delivery) {
        let (failure, retry_after) = match self.send(&d).await {
            Ok(()) => (None, None),
            Err((reason, retry_after)) => (Some(reason), retry_after),
        };
        let result = match failure {
            None => self.queue.complete(&d).await.map(|_| ()),
            Some(reason) if d.delivery_count >= self.cfg.max_delivery_count => {
                tracing::warn!(message_id = %d.message_id, deliveries = d.delivery_count, reason, "dead-lettered");
                self.queue.dead_letter(&d, &format!("MaxDeliveryCountExceeded: {reason}")).await.map(|_| ())
            }
            Some(reason) => {
                // The peer's Retry-After wins when it asks for longer than our backoff.
                let delay = backoff(&self.cfg, d.delivery_count).max(retry_after.unwrap_or_default());
                tracing::info!(message_id = %d.message_id, deliveries = d.delivery_count, retry_in_ms = delay.as_millis() as u64, reason, "abandoned");
                let at = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
                self.queue.abandon(&d, at, &reason).await.map(|_| ())
            }
        };
        if let Err(e) = result {
            // The lock will expire and the message come back: nothing is lost.
            tracing::error!(message_id = %d.message_id, error = %e, "could not settle a delivery");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg = DispatcherConfig {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        let within = |d: Duration, secs: f64| {
            let s = d.as_secs_f64();
            s >= secs * 0.8 - 1e-9 && s <= secs * 1.2 + 1e-9
        };
        assert!(within(backoff(&cfg, 1), 2.0));
        assert!(within(backoff(&cfg, 2), 4.0));
        assert!(within(backoff(&cfg, 4), 16.0));
        assert!(within(backoff(&cfg, 9), 60.0));
        assert!(within(backoff(&cfg, 1000), 60.0));
    }
}
