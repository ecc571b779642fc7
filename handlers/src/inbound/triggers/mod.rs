//! The custom-handler invocation protocol for non-HTTP triggers.
//!
//! The Functions host POSTs `/{FunctionName}` with `{"Data":{…},"Metadata":{…}}` (PascalCase,
//! often chunked) and expects `{"Outputs":{},"Logs":[…],"ReturnValue":null}`. Any non-2xx status
//! fails the invocation: for Service Bus the message is abandoned, redelivered, and
//! dead-lettered after `maxDeliveryCount`.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tracing::Instrument;
use warp::http::{HeaderValue, Response, StatusCode, header};

use crate::application::ocr::{self, OcrOutcome, OcrRetry};
use crate::application::outbox::Drive;
use crate::domain::OcrRequested;
use crate::inbound::state::{AppState, BodyStream, HttpResponse, Requeue};

/// Trigger functions this binary serves: (function name, path).
pub const TRIGGER_ROUTES: &[(&str, &str)] = &[
    ("ProcessInvoiceOcr", "/ProcessInvoiceOcr"),
    ("RepublishPendingOcr", "/RepublishPendingOcr"),
    ("SendExpiryReminders", "/SendExpiryReminders"),
    ("ReconcileInvoices", "/ReconcileInvoices"),
];

/// Largest invocation payload read (an OCR event is a few hundred bytes).
const MAX_PAYLOAD: usize = 1024 * 1024;

fn reply(status: StatusCode, logs: &[String]) -> HttpResponse {
    reply_with(status, logs, Value::Null)
}

fn reply_with(status: StatusCode, logs: &[String], return_value: Value) -> HttpResponse {
    let body = json!({ "Outputs": {}, "Logs": logs, "ReturnValue": return_value });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A metadata scalar: the host sends `"DeliveryCount":"1"` and `"MessageId":"\"abc\""`.
pub fn metadata_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => inner,
            Ok(Value::Number(n)) => n.to_string(),
            _ => s.clone(),
        }),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The message body from `Data`: a JSON object, a string holding JSON (encoded once or
/// twice), or base64 of the bytes (`dataType: binary`).
pub fn decode_message(v: &Value, depth: u8) -> Result<OcrRequested, String> {
    if depth > 3 {
        return Err("the message is encoded too many times".into());
    }
    match v {
        Value::Object(_) => serde_json::from_value(v.clone()).map_err(|e| format!("not an OCR request: {e}")),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner) => decode_message(&inner, depth + 1),
            Err(_) => {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|_| "the message is neither JSON nor base64".to_owned())?;
                let inner: Value = serde_json::from_slice(&raw).map_err(|e| format!("base64 body is not JSON: {e}"))?;
                decode_message(&inner, depth + 1)
            }
        },
        _ => Err("the message is not an object or a string".into()),
    }
}

async fn read_body(mut body: BodyStream) -> Result<Bytes, StatusCode> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if buf.len() + chunk.len() > MAX_PAYLOAD {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `POST /ProcessInvoiceOcr`: one Service Bus message from queue `invoice-ocr`. Served before
/// the stores answer too (`state` is then `None`): the message is put back for later.
pub async fn process_invoice_ocr(
    state: Option<&AppState>,
    requeue: Option<&Requeue>,
    body: BodyStream,
) -> HttpResponse {
    let raw = match read_body(body).await {
        Ok(b) => b,
        Err(status) => return reply(status, &["invocation payload unreadable or too large".into()]),
    };
    let invocation: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &[format!("invocation payload is not JSON: {e}")]),
    };
    let meta = &invocation["Metadata"];
    let delivery_count = metadata_scalar(&meta["DeliveryCount"]).and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    let message_id = metadata_scalar(&meta["MessageId"]).unwrap_or_default();
    let enqueued = metadata_scalar(&meta["EnqueuedTimeUtc"]).unwrap_or_default();
    // The binding is named `message`; accept a single binding of any name too.
    let data = &invocation["Data"];
    let message =
        data.get("message").or_else(|| data.as_object().filter(|o| o.len() == 1).and_then(|o| o.values().next()));
    let event = match message.map(|m| decode_message(m, 0)) {
        Some(Ok(e)) => e,
        // Not retryable, but not droppable either: fail so Service Bus dead-letters it where
        // an operator can see it.
        Some(Err(e)) => {
            tracing::error!(message_id, error = %e, "malformed OCR message");
            return reply(StatusCode::BAD_REQUEST, &[format!("malformed message: {e}")]);
        }
        None => return reply(StatusCode::BAD_REQUEST, &["no message in Data".into()]),
    };
    let span = tracing::info_span!("ocr", message_id = %message_id, product_id = %event.product_id, delivery_count, requeued = event.requeued, enqueued = %enqueued);
    // The span covers the whole processing, across its awaits.
    async {
        let Some(state) = state else {
            return put_back(requeue, &event, "the service is still connecting to its stores").await;
        };
        match handle_ocr(state, &event).await {
            Ok(resp) => resp,
            Err(why) => put_back(requeue, &event, &why).await,
        }
    }
    .instrument(span)
    .await
}

/// A transient failure: a copy of the event scheduled for later and the delivery completed, or
/// (no queue to put it on, past the give-up time, or the queue refusing) 503, which makes the
/// host abandon the message for Service Bus to redeliver.
async fn put_back(requeue: Option<&Requeue>, event: &OcrRequested, why: &str) -> HttpResponse {
    let now = chrono::Utc::now();
    let since = event.failing_since.unwrap_or(now);
    let Some(rq) = requeue.filter(|rq| now - since < rq.policy.give_up_after) else {
        tracing::error!(why, "OCR deferred: left to the queue's redelivery");
        return reply(StatusCode::SERVICE_UNAVAILABLE, &[format!("{why}; retry")]);
    };
    let next = OcrRequested { requeued: event.requeued + 1, failing_since: Some(since), ..event.clone() };
    let delay = crate::application::outbox::jittered_backoff(rq.policy.base, rq.policy.max, next.requeued);
    let at = now + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::seconds(60));
    match rq.queue.requeue(&next, at).await {
        Ok(()) => {
            tracing::warn!(
                why,
                copy = next.requeued,
                delay_ms = delay.as_millis() as u64,
                "OCR deferred: message put back for later"
            );
            reply(StatusCode::OK, &[format!("{why}; put back as copy {} for {} ms", next.requeued, delay.as_millis())])
        }
        Err(e) => {
            tracing::error!(why, error = %e.reason, "OCR deferred, and the queue refused the copy: left to its redelivery");
            reply(StatusCode::SERVICE_UNAVAILABLE, &[format!("{why}; retry")])
        }
    }
}

/// The reading's outcome as the invocation's answer, or why it should be tried again later.
async fn handle_ocr(state: &AppState, event: &OcrRequested) -> Result<HttpResponse, String> {
    match ocr::process(&state.services, event).await {
        Ok(OcrOutcome::Recorded(status)) => Ok(reply(StatusCode::OK, &[format!("invoice read: {status:?}")])),
        Ok(OcrOutcome::Skipped(why)) => {
            tracing::info!(why, "OCR message skipped");
            Ok(reply(StatusCode::OK, &[format!("skipped: {why}")]))
        }
        Err(OcrRetry::Unavailable(e)) => {
            tracing::error!(error = %e, "OCR deferred: storage unavailable");
            Err("storage unavailable".into())
        }
        // Kept as a failed delivery: it dead-letters, to be replayed once the engine is installed.
        Err(OcrRetry::EngineUnavailable(e)) => {
            tracing::error!(error = %e, "OCR engine unavailable");
            Ok(reply(StatusCode::SERVICE_UNAVAILABLE, &[format!("{}: {e}", ocr::ENGINE_UNAVAILABLE)]))
        }
        Err(OcrRetry::Transient(e)) => {
            tracing::warn!(error = %e, "OCR failed transiently");
            Err("transient OCR failure".into())
        }
    }
}

/// `POST /RepublishPendingOcr`: the timer (every 5 minutes) that sends again every OCR event
/// whose publication was not confirmed (see `application::outbox`). The timer payload
/// (`Data.timer` with `ScheduleStatus`, `IsPastDue`) carries nothing the sweep needs; it is read
/// only to refuse what is not an invocation. On the embedded store the dispatcher relays its
/// queue continuously, so there is nothing to sweep.
pub async fn republish_pending_ocr(state: &AppState, body: BodyStream) -> HttpResponse {
    if let Err(refused) = timer_payload(body).await {
        return refused;
    }
    let relay = &state.services.outbox;
    if relay.drive() == Drive::Worker {
        return reply(StatusCode::OK, &["nothing to sweep: the embedded store relays its own queue".into()]);
    }
    match relay.drain().await {
        Ok(report) => {
            tracing::info!(found = report.found, published = report.published, failed = report.failed, "OCR sweep");
            let log = format!("found {} published {} failed {}", report.found, report.published, report.failed);
            // Failed sends are retried on the next tick; the invocation itself succeeded.
            reply_with(StatusCode::OK, &[log], json!(report))
        }
        Err(e) => {
            tracing::error!(error = %e, "OCR sweep: product store unavailable");
            reply(StatusCode::SERVICE_UNAVAILABLE, &["product store unavailable; the next tick retries".into()])
        }
    }
}

/// Reads a timer invocation's payload, whose content the timers do not use (their time is the
/// service's clock): only an unreadable or non-JSON payload is refused.
async fn timer_payload(body: BodyStream) -> Result<(), HttpResponse> {
    let raw = read_body(body)
        .await
        .map_err(|status| reply(status, &["invocation payload unreadable or too large".into()]))?;
    if !raw.is_empty() && serde_json::from_slice::<Value>(&raw).is_err() {
        return Err(reply(StatusCode::BAD_REQUEST, &["invocation payload is not JSON".into()]));
    }
    Ok(())
}

/// `POST /SendExpiryReminders`: the hourly timer. Chooses the reminders due now and delivers
/// what is due (see `application::reminders`); the time is the service's clock, not the
/// payload's schedule (a late or repeated tick does the same work once). A failed invocation
/// is harmless: the next tick finds the same work.
pub async fn send_expiry_reminders(state: &AppState, body: BodyStream) -> HttpResponse {
    if let Err(refused) = timer_payload(body).await {
        return refused;
    }
    let now = state.services.clock.now();
    match crate::application::reminders::sweep(&state.services, now).await {
        Ok(report) => {
            tracing::info!(report = ?report, "reminder sweep");
            let log = format!(
                "products {} created {} delivered {} retried {} dead-lettered {}",
                report.products, report.created, report.delivered, report.retried, report.dead_lettered
            );
            reply_with(StatusCode::OK, &[log], json!(report))
        }
        Err(e) => {
            tracing::error!(error = %e, "reminder sweep: store unavailable");
            reply(StatusCode::SERVICE_UNAVAILABLE, &["store unavailable; the next tick retries".into()])
        }
    }
}

/// `POST /ReconcileInvoices`: the hourly timer. Removes the files of intakes past their day
/// (`application::intakes::sweep`) and the invoices written within the look-back window that no
/// product or intake references (`application::reconcile`): one run for all instances, where
/// each instance ran it before. A failed invocation is harmless: the next tick covers the same
/// window. (A timer trigger runs on one instance at a time under a lock in the host's storage,
/// keyed by the host id — the WebJobs timer extension, not in the host's repository; the host
/// keeps ids from colliding for that reason, azure-functions-host
/// `src/WebJobs.Script/Host/HostIdValidator.cs` lines 20–26. Each slot has its own host id, so
/// each slot reconciles its own container once.)
pub async fn reconcile_invoices(state: &AppState, body: BodyStream) -> HttpResponse {
    if let Err(refused) = timer_payload(body).await {
        return refused;
    }
    let now = state.services.clock.now();
    // Intakes past their day first: their files are then gone before the orphan pass looks. The
    // sweep queries across partitions and reconciliation does not: one failing does not hold the
    // other back, and the next tick retries what failed.
    let swept = match crate::application::intakes::sweep(&state.services, now).await {
        Ok(s) => {
            if s.expired + s.purged > 0 {
                tracing::info!(expired = s.expired, purged = s.purged, "intakes swept");
            }
            json!({ "intakesExpired": s.expired, "intakesPurged": s.purged })
        }
        Err(e) => {
            tracing::error!(error = %e, "intake sweep: store unavailable; the next tick retries");
            json!({ "intakeSweep": "failed" })
        }
    };
    match crate::application::reconcile::orphan_invoices(&state.services, now, state.reconcile).await {
        Ok(r) => {
            if r.removed > 0 {
                tracing::info!(checked = r.checked, removed = r.removed, "reconciled invoices");
            }
            let mut body = json!({ "checked": r.checked, "removed": r.removed });
            if let (Some(b), Some(s)) = (body.as_object_mut(), swept.as_object()) {
                b.extend(s.clone());
            }
            let log = format!("checked {} removed {}; intakes {}", r.checked, r.removed, swept);
            reply_with(StatusCode::OK, &[log], body)
        }
        Err(e) => {
            tracing::error!(error = %e, "invoice reconciliation: store unavailable");
            reply(StatusCode::SERVICE_UNAVAILABLE, &["store unavailable; the next tick retries".into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_scalars_are_unwrapped() {
        assert_eq!(metadata_scalar(&json!("1")).as_deref(), Some("1"));
        assert_eq!(metadata_scalar(&json!("\"abc\"")).as_deref(), Some("abc"));
        assert_eq!(metadata_scalar(&json!(3)).as_deref(), Some("3"));
        assert_eq!(metadata_scalar(&json!("plain")).as_deref(), Some("plain"));
        assert_eq!(metadata_scalar(&json!(null)), None);
    }
}
