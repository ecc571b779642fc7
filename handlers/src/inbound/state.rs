//! What the entry points share: the services, the authenticator, and the shapes of a request
//! body and a response.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use warp::http::Response;

use crate::application::Services;
use crate::inbound::auth::Authenticator;

/// The request body as a stream of chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub type HttpResponse = Response<Bytes>;

/// Everything handlers share.
pub struct AppState {
    pub services: Services,
    pub auth: std::sync::Arc<Authenticator>,
    pub version: &'static str,
    /// Public base URL for links on cards and in calendars; `None`: from the request.
    pub public_base_url: Option<String>,
    /// How long `DELETE /api/me` waits for the erasure before answering `202`.
    pub erasure_wait: std::time::Duration,
    /// Most bytes of files in one part of the export.
    pub export_part_bytes: u64,
    /// What reconciliation looks at (the `ReconcileInvoices` timer and the local loop).
    pub reconcile: crate::application::reconcile::ReconcilePolicy,
}

/// One store's progress towards serving, as `/api/health` reports it before the service is
/// ready.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreProgress {
    /// `connecting` (not yet answered), `up`, or `down` (the last attempt failed).
    pub status: &'static str,
    pub attempts: u32,
    /// What went wrong last, in words that carry no secret (`unreachable`, `refused`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<&'static str>,
}

impl StoreProgress {
    pub const CONNECTING: Self = Self { status: "connecting", attempts: 0, last_error: None };
}

/// The service before and after its stores answer.
///
/// The Functions host polls `GET /` until the handler answers and restarts it after its
/// initialisation timeout, so the port is bound before any store is contacted: until the stores
/// answer, `/` says so, `/api/health` answers 503 with each store's progress, the OCR trigger
/// puts its message back on the queue for later (when it can), and every other request gets
/// 503 `service_starting` with `Retry-After`.
pub struct Gate {
    ready: std::sync::OnceLock<std::sync::Arc<AppState>>,
    progress: std::sync::Mutex<Vec<(&'static str, StoreProgress)>>,
    changed: tokio::sync::watch::Sender<bool>,
    pub version: &'static str,
    /// Where an OCR message that arrives before the stores answer is sent back to, later.
    pub requeue: Option<Requeue>,
    pub started: std::time::Instant,
}

impl Gate {
    pub fn new(version: &'static str, stores: &[&'static str], requeue: Option<Requeue>) -> Self {
        Self {
            ready: std::sync::OnceLock::new(),
            progress: std::sync::Mutex::new(stores.iter().map(|s| (*s, StoreProgress::CONNECTING)).collect()),
            changed: tokio::sync::watch::channel(false).0,
            version,
            requeue,
            started: std::time::Instant::now(),
        }
    }

    /// The running service, once every store has answered.
    pub fn state(&self) -> Option<&std::sync::Arc<AppState>> {
        self.ready.get()
    }

    pub fn open(&self, state: std::sync::Arc<AppState>) {
        let _ = self.ready.set(state);
        self.changed.send_replace(true);
    }

    /// Waits until the service is ready.
    pub async fn opened(&self) -> std::sync::Arc<AppState> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(s) = self.ready.get() {
                return s.clone();
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn record(&self, store: &'static str, progress: StoreProgress) {
        let mut all = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter_mut().find(|(s, _)| *s == store) {
            Some(slot) => slot.1 = progress,
            None => all.push((store, progress)),
        }
    }

    pub fn progress(&self) -> Vec<(&'static str, StoreProgress)> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How a transiently failed OCR message is put back on the queue (see [`crate::ports::OcrRequeue`]).
#[derive(Debug, Clone, Copy)]
pub struct RequeuePolicy {
    /// Delay before the first copy; doubled per copy, at most `max`, with ±20 % jitter so that a
    /// queue's worth of messages does not come back in one burst after an outage.
    pub base: std::time::Duration,
    pub max: std::time::Duration,
    /// How long after the first failure copies are still made; after that a failure is answered
    /// 503 and the queue's own redelivery and dead-lettering take over.
    pub give_up_after: chrono::Duration,
}

/// What the OCR trigger needs besides the services: where to put a message back.
pub struct Requeue {
    pub queue: std::sync::Arc<dyn crate::ports::OcrRequeue>,
    pub policy: RequeuePolicy,
}
