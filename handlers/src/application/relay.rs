//! Gets OCR events from the product store to the queue where the two cannot share a
//! transaction (Cosmos DB and Service Bus).
//!
//! A registration writes the product with its OCR state `queued` and a pending-publication
//! marker holding the event, in one write. Then [`Relay::publish_now`] sends the event and
//! clears the marker. If the process dies, or the queue refuses, between the write and the
//! clearing, the marker stays; [`Relay::sweep`] (the `RepublishPendingOcr` timer) sends every
//! event whose marker is older than the threshold again. The message id is derived from the
//! product and the invoice version, so a second send of an event the queue already took is
//! absorbed by its duplicate detection, and the OCR handler is idempotent per invoice version
//! besides. An event is never lost, and one registration gives one effective OCR run.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::OcrRequested;
use crate::ports::{OcrPublisher, PendingOcrEvents, Unavailable};

/// How long a request waits for its own event's publication before leaving it to the sweeper.
pub const PUBLISH_NOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Events handled by one sweep at most; the next timer tick takes the rest.
pub const SWEEP_BATCH: usize = 500;

pub struct Relay {
    pub pending: Arc<dyn PendingOcrEvents>,
    pub publisher: Arc<dyn OcrPublisher>,
    /// A marker younger than this may still be published by the request that wrote it.
    pub republish_after: chrono::Duration,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub found: usize,
    pub published: usize,
    pub failed: usize,
}

impl Relay {
    /// Publishes `event` and clears its marker. Failures are logged, not returned: the event is
    /// durable in its marker and the sweeper sends it later.
    pub async fn publish_now(&self, event: &OcrRequested) {
        // The caller (a registration) waits for this; a slow queue must not hold it long.
        match tokio::time::timeout(PUBLISH_NOW_TIMEOUT, self.publisher.publish(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(message_id = %event.message_id, error = %e, "OCR event not published yet; the sweeper will retry");
                return;
            }
            Err(_) => {
                tracing::warn!(message_id = %event.message_id, "OCR event publication timed out; the sweeper will retry");
                return;
            }
        }
        if let Err(e) = self.pending.mark_published(event).await {
            // Published but still marked: the sweeper sends it again and the queue's duplicate
            // detection absorbs it.
            tracing::warn!(message_id = %event.message_id, error = %e, "OCR event published but its marker stays");
        }
    }

    /// Republishes every event whose marker is older than the threshold.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, Unavailable> {
        let events = self.pending.pending(now - self.republish_after, SWEEP_BATCH).await?;
        let mut report = SweepReport { found: events.len(), ..SweepReport::default() };
        for event in &events {
            match self.publisher.publish(event).await {
                Ok(()) => {
                    self.pending.mark_published(event).await?;
                    report.published += 1;
                }
                Err(e) => {
                    tracing::warn!(message_id = %event.message_id, error = %e, "republish failed");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}
