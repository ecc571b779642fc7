//! The HTTP entry point: the mobile API behind the Functions host's forwarding proxy.
//!
//! One warp filter captures the whole request and hands it to [`dispatch`], which matches the
//! route table below. Keeping routing in one table (rather than a tree of warp filters) gives
//! every failure the same problem+json shape, makes 404 vs 405 exact, and lets tests compare
//! the table with `function.json` files and the OpenAPI document.

mod coverages;
pub mod error;
mod intakes;
mod meta;
mod multipart;
mod notifications;
mod privacy;
mod products;
pub mod server;
mod sharing;

use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use tracing::Instrument;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, Method};

use crate::domain::UserId;
use error::ApiError;

pub use crate::inbound::state::{AppState, BodyStream, HttpResponse};

/// Per-request facts: ids for logs and responses.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace_id: String,
    pub path: String,
}

/// The request without its body (shareable across awaits).
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub ctx: RequestContext,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The caller, or the 401/503 to send.
    pub async fn user(&self, state: &AppState) -> Result<UserId, ApiError> {
        let authorization = self.header("authorization");
        state.auth.authenticate(authorization).await.map_err(|e| ApiError::from_auth(e, authorization.is_some()))
    }
}

/// The routes this binary serves: method, path template, and the Functions function that
/// forwards it (`None` for the host's readiness probe on `/`).
pub const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/", None),
    ("GET", "/api/health", Some("Health")),
    ("GET", "/api/brands", Some("Brands")),
    ("GET", "/api/openapi.json", Some("OpenApi")),
    ("GET", "/api/products", Some("Products")),
    ("POST", "/api/products", Some("Products")),
    ("POST", "/api/intakes", Some("Intakes")),
    ("GET", "/api/intakes/{id}", Some("IntakeById")),
    ("GET", "/api/products/{id}", Some("ProductById")),
    ("PATCH", "/api/products/{id}", Some("ProductById")),
    ("DELETE", "/api/products/{id}", Some("ProductById")),
    ("GET", "/api/products/{id}/invoice", Some("ProductInvoice")),
    ("PUT", "/api/products/{id}/invoice", Some("ProductInvoice")),
    ("GET", "/api/products/{id}/audit", Some("ProductAudit")),
    ("GET", "/api/products/{id}/service-requests", Some("ServiceRequests")),
    ("POST", "/api/products/{id}/service-requests", Some("ServiceRequests")),
    ("POST", "/api/products/{id}/coverages", Some("Coverages")),
    ("PATCH", "/api/products/{id}/coverages/{coverageId}", Some("CoverageById")),
    ("DELETE", "/api/products/{id}/coverages/{coverageId}", Some("CoverageById")),
    ("GET", "/api/products/{id}/coverages/{coverageId}/proof", Some("CoverageProof")),
    ("GET", "/api/products/{id}/card.pdf", Some("ProductCard")),
    ("DELETE", "/api/products/{id}/verification", Some("ProductVerification")),
    ("GET", "/api/verify/{token}", Some("Verify")),
    ("POST", "/api/me/calendar-feed", Some("CalendarFeed")),
    ("DELETE", "/api/me/calendar-feed", Some("CalendarFeed")),
    ("GET", "/api/calendar/{feedToken}.ics", Some("CalendarIcs")),
    ("GET", "/api/me/notification-settings", Some("NotificationSettings")),
    ("PUT", "/api/me/notification-settings", Some("NotificationSettings")),
    ("GET", "/api/notifications", Some("Notifications")),
    ("POST", "/api/notifications/{id}/read", Some("NotificationRead")),
    ("PUT", "/api/me/devices/{installationId}", Some("Devices")),
    ("DELETE", "/api/me/devices/{installationId}", Some("Devices")),
    ("GET", "/api/me/export", Some("Export")),
    ("DELETE", "/api/me", Some("Me")),
    ("GET", "/api/me/erasure", Some("Erasure")),
];

/// Routes the request. The export is the one answer streamed rather than held whole; every
/// other route answers whole.
async fn dispatch(state: Arc<AppState>, req: Request, body: BodyStream) -> Result<warp::reply::Response, ApiError> {
    if req.method == Method::GET && req.path == "/api/me/export" {
        return privacy::export(state, &req).await;
    }
    route(state, req, body).await.map(warp::Reply::into_response)
}

async fn route(state: Arc<AppState>, req: Request, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match (segments.as_slice(), &req.method) {
        ([""], &Method::GET) => Ok(meta::root(true)),
        ([""], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "health"], &Method::GET) => Ok(meta::health(&state).await),
        (["api", "health"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "brands"], &Method::GET) => Ok(meta::brands(&state, &req)),
        (["api", "brands"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "openapi.json"], &Method::GET) => Ok(meta::openapi(&req)),
        (["api", "openapi.json"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "products"], &Method::GET) => products::list(&state, &req).await,
        (["api", "products"], &Method::POST) => products::register(state.clone(), req, body).await,
        (["api", "intakes"], &Method::POST) => intakes::create(state.clone(), req, body).await,
        (["api", "intakes"], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (["api", "intakes", id], &Method::GET) => intakes::get(&state, &req, id).await,
        (["api", "intakes", _], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "products"], _) => Err(ApiError::MethodNotAllowed { allow: "GET, POST" }),
        (["api", "products", id], &Method::GET) if !id.is_empty() => products::get(&state, &req, id).await,
        (["api", "products", id], &Method::PATCH) if !id.is_empty() => products::patch(&state, &req, id, body).await,
        (["api", "products", id], &Method::DELETE) if !id.is_empty() => products::delete(&state, &req, id).await,
        (["api", "products", id], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "GET, PATCH, DELETE" })
        }
        (["api", "products", id, "invoice"], &Method::GET) if !id.is_empty() => {
            products::invoice(&state, &req, id).await
        }
        (["api", "products", id, "invoice"], &Method::PUT) if !id.is_empty() => {
            products::replace_invoice(state.clone(), &req, id, body).await
        }
        (["api", "products", id, "invoice"], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "GET, PUT" })
        }
        (["api", "products", id, "audit"], &Method::GET) if !id.is_empty() => products::audit(&state, &req, id).await,
        (["api", "products", id, "audit"], _) if !id.is_empty() => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "products", id, "service-requests"], &Method::GET) if !id.is_empty() => {
            products::service_requests(&state, &req, id).await
        }
        (["api", "products", id, "service-requests"], &Method::POST) if !id.is_empty() => {
            products::raise_service_request(&state, &req, id, body).await
        }
        (["api", "products", id, "service-requests"], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "GET, POST" })
        }
        (["api", "products", id, "coverages"], &Method::POST) if !id.is_empty() => {
            coverages::add_coverage(&state, &req, id, body).await
        }
        (["api", "products", id, "coverages"], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        }
        (["api", "products", id, "coverages", cid], &Method::PATCH) if !id.is_empty() && !cid.is_empty() => {
            coverages::edit_coverage(&state, &req, id, cid, body).await
        }
        (["api", "products", id, "coverages", cid], &Method::DELETE) if !id.is_empty() && !cid.is_empty() => {
            coverages::remove_coverage(&state, &req, id, cid).await
        }
        (["api", "products", id, "coverages", cid], _) if !id.is_empty() && !cid.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "PATCH, DELETE" })
        }
        (["api", "products", id, "coverages", cid, "proof"], &Method::GET) if !id.is_empty() && !cid.is_empty() => {
            coverages::proof(&state, &req, id, cid).await
        }
        (["api", "products", id, "coverages", cid, "proof"], _) if !id.is_empty() && !cid.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "GET" })
        }
        (["api", "products", id, "card.pdf"], &Method::GET) if !id.is_empty() => {
            sharing::card_pdf(&state, &req, id).await
        }
        (["api", "products", id, "card.pdf"], _) if !id.is_empty() => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "products", id, "verification"], &Method::DELETE) if !id.is_empty() => {
            sharing::revoke(&state, &req, id).await
        }
        (["api", "products", id, "verification"], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "DELETE" })
        }
        (["api", "verify", token], &Method::GET) if !token.is_empty() => sharing::verify(&state, &req, token).await,
        (["api", "verify", token], _) if !token.is_empty() => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "me", "calendar-feed"], &Method::POST) => sharing::create_calendar_feed(&state, &req, body).await,
        (["api", "me", "calendar-feed"], &Method::DELETE) => sharing::revoke_calendar_feed(&state, &req).await,
        (["api", "me", "notification-settings"], &Method::GET) => sharing::notification_settings(&state, &req).await,
        (["api", "me", "notification-settings"], &Method::PUT) => {
            sharing::put_notification_settings(&state, &req, body).await
        }
        (["api", "me", "notification-settings"], _) => Err(ApiError::MethodNotAllowed { allow: "GET, PUT" }),
        // GET is streamed by `dispatch`.
        (["api", "me", "export"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "me"], &Method::DELETE) => privacy::erase(&state, &req, body).await,
        (["api", "me"], _) => Err(ApiError::MethodNotAllowed { allow: "DELETE" }),
        (["api", "me", "erasure"], &Method::GET) => privacy::erasure_status(&state, &req).await,
        (["api", "me", "erasure"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "notifications"], &Method::GET) => notifications::feed(&state, &req).await,
        (["api", "notifications"], _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (["api", "notifications", id, "read"], &Method::POST) if !id.is_empty() => {
            notifications::mark_read(&state, &req, id).await
        }
        (["api", "notifications", id, "read"], _) if !id.is_empty() => {
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        }
        (["api", "me", "devices", id], &Method::PUT) if !id.is_empty() => {
            notifications::put_device(&state, &req, id, body).await
        }
        (["api", "me", "devices", id], &Method::DELETE) if !id.is_empty() => {
            notifications::delete_device(&state, &req, id).await
        }
        (["api", "me", "devices", id], _) if !id.is_empty() => Err(ApiError::MethodNotAllowed { allow: "PUT, DELETE" }),
        (["api", "me", "calendar-feed"], _) => Err(ApiError::MethodNotAllowed { allow: "POST, DELETE" }),
        (["api", "calendar", file], &Method::GET) if file.ends_with(".ics") => {
            sharing::calendar_feed(&state, file).await
        }
        (["api", "calendar", file], _) if file.ends_with(".ics") => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        // Trigger invocations from the Functions host (loopback only; not part of the API).
        (["ProcessInvoiceOcr"], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (["RepublishPendingOcr"], &Method::POST) => {
            Ok(crate::inbound::triggers::republish_pending_ocr(&state, body).await)
        }
        (["RepublishPendingOcr"], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (["SendExpiryReminders"], &Method::POST) => {
            Ok(crate::inbound::triggers::send_expiry_reminders(&state, body).await)
        }
        (["SendExpiryReminders"], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        (["ReconcileInvoices"], &Method::POST) => Ok(crate::inbound::triggers::reconcile_invoices(&state, body).await),
        (["ReconcileInvoices"], _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        _ => Err(ApiError::NotFound),
    }
}

/// A W3C `traceparent` trace id, if the header is well-formed and not all zeros.
pub fn trace_id_from(traceparent: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = traceparent?.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok = hex(version, 2)
        && *version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    ok.then(|| trace.to_string())
}

fn request_id_from(header: Option<&str>) -> String {
    header
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The path with its fixed segments in the route table's spelling: the Functions host matches
/// routes without regard to case (ASP.NET Core routing) and forwards the path as the client
/// wrote it, so `/API/Products` reaches the handler and must mean `/api/products`. Ids and
/// tokens keep their case.
pub fn canonical_path(path: &str) -> String {
    static WORDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let words = WORDS.get_or_init(|| {
        let mut w: Vec<&'static str> = ROUTES
            .iter()
            .flat_map(|(_, template, _)| template.split('/'))
            .filter(|seg| !seg.is_empty() && !seg.contains('{'))
            .collect();
        w.extend(crate::inbound::triggers::TRIGGER_ROUTES.iter().map(|(name, _)| *name));
        w.sort_unstable();
        w.dedup();
        w
    });
    // ASP.NET Core routing, which the host's routes use, ignores one trailing slash
    // (`PathTokenizer`): `/api/products/` is `/api/products` there, and so it is here.
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match words.iter().find(|w| w.eq_ignore_ascii_case(seg)) {
            Some(w) => out.push_str(w),
            None if seg.len() > 4 && seg[seg.len() - 4..].eq_ignore_ascii_case(".ics") => {
                out.push_str(&seg[..seg.len() - 4]);
                out.push_str(".ics");
            }
            None => out.push_str(seg),
        }
    }
    out
}

/// Whether an API request may carry a body of unknown length: no `Content-Length` on a method
/// with a body (POST, PUT, PATCH), or on any request that says it is chunked. Behind the Functions
/// host such a body never arrives (it forwards a body only when `Content-Length` > 0,
/// `HttpRequestExtensions.cs:169-178`), so it is refused with 411 everywhere, before a byte is
/// read: the same answer locally as in Azure, and the gateway's policy applies the same rule.
/// Over HTTP/2 there is no `Transfer-Encoding` (RFC 9113 §8.2.2): a body's length is its
/// `Content-Length` or unknown, so the method decides there.
///
/// Over HTTP/1.1 the framing is known: a request with neither header has no body (RFC 9112 §6.3),
/// which the host forwards as it is, so only a chunked one is refused there. The gateway cannot
/// see the framing and applies the method rule to both (a body-less POST sends `Content-Length:
/// 0` there, as browsers and the phones' HTTP stacks do).
fn body_without_length(method: &Method, path: &str, headers: &HeaderMap, wire: Wire) -> bool {
    let has_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    let chunked = headers
        .get_all(warp::http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("chunked")));
    let unknown = chunked || (wire == Wire::Http2 && has_body);
    path.starts_with("/api/") && unknown && !headers.contains_key(warp::http::header::CONTENT_LENGTH)
}

/// The protocol a request came over, set by [`server::serve`] on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    #[default]
    Http1,
    Http2,
}

/// The answer before the stores are connected (see [`crate::inbound::state::Gate`]).
fn before_ready(gate: &crate::inbound::state::Gate, req: &Request) -> Result<warp::reply::Response, ApiError> {
    use warp::Reply;
    match (req.path.as_str(), &req.method) {
        ("/", &Method::GET) => Ok(meta::root(false).into_response()),
        ("/api/health", &Method::GET) => Ok(meta::starting(gate).into_response()),
        ("/api/openapi.json", &Method::GET) => Ok(meta::openapi(req).into_response()),
        _ => Err(ApiError::Unavailable { code: "service_starting" }),
    }
}

/// Requests begun since start, and requests in flight: what tells the host the service is at
/// rest ([`crate::host`] releases the code pages serving mapped once it has been quiet).
static REQUESTS_BEGUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static REQUESTS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// (requests begun since start, requests in flight now).
pub fn request_activity() -> (u64, usize) {
    use std::sync::atomic::Ordering::Relaxed;
    (REQUESTS_BEGUN.load(Relaxed), REQUESTS_IN_FLIGHT.load(Relaxed))
}

/// Counts a request in flight until dropped.
struct InFlight;

impl InFlight {
    fn begin() -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        REQUESTS_BEGUN.fetch_add(1, Relaxed);
        REQUESTS_IN_FLIGHT.fetch_add(1, Relaxed);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        REQUESTS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn handle(
    gate: Arc<crate::inbound::state::Gate>,
    wire: Wire,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: BodyStream,
) -> warp::reply::Response {
    use warp::Reply;
    let _in_flight = InFlight::begin();
    let started = Instant::now();
    let path = canonical_path(&path);
    let request_id = request_id_from(headers.get("x-request-id").and_then(|v| v.to_str().ok()));
    let trace_id = trace_id_from(headers.get("traceparent").and_then(|v| v.to_str().ok()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span =
        tracing::info_span!("request", request_id = %request_id, trace_id = %trace_id, method = %method, path = %path);
    let ctx = RequestContext { request_id: request_id.clone(), trace_id, path: path.clone() };
    let req = Request { method, path: path.clone(), query, headers, ctx };
    async move {
        let answer = if body_without_length(&req.method, &req.path, &req.headers, wire) {
            Err(ApiError::LengthRequired)
        } else if req.method == Method::POST && req.path == "/ProcessInvoiceOcr" {
            // Served before the stores answer too: the message is then put back for later.
            let state = gate.state().map(|s| &**s);
            Ok(crate::inbound::triggers::process_invoice_ocr(state, gate.requeue.as_ref(), body).await.into_response())
        } else {
            match gate.state() {
                Some(state) => dispatch(state.clone(), req, body).await,
                None => before_ready(&gate, &req),
            }
        };
        let mut resp = match answer {
            Ok(resp) => resp,
            Err(err) => err.to_response(&path, &request_id).into_response(),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else if path != "/" {
            tracing::info!(status, latency_ms, "request");
        }
        resp
    }
    .instrument(span)
    .await
}

/// The warp filter for the whole service.
pub fn routes(
    gate: Arc<crate::inbound::state::Gate>,
    body_idle: std::time::Duration,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::ext::optional::<Wire>())
        .then(move |method, full: warp::path::FullPath, query, headers, body, wire: Option<Wire>| {
            let gate = gate.clone();
            let body = body_stream(body, body_idle);
            handle(gate, wire.unwrap_or_default(), method, full.as_str().to_owned(), query, headers, body)
        })
        .recover(|_| async {
            Ok::<_, std::convert::Infallible>(warp::Reply::into_response(ApiError::Internal.to_response("", "")))
        })
        .unify()
}

/// The request body as chunks; a client that sends no byte for `idle` ends it with an error
/// (the upload in progress is then removed like any failed one).
fn body_stream<S, B>(s: S, idle: std::time::Duration) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send,
{
    let chunks = Box::pin(s.map(|r| r.map(|mut b| b.copy_to_bytes(b.remaining())).map_err(std::io::Error::other)));
    Box::pin(futures_util::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(idle, chunks.next()).await {
            Ok(Some(item)) => Some((item, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client sent no byte for too long")),
                None,
            )),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_honoured_only_when_well_formed() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_from(Some(tp)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id_from(Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")), None);
        assert_eq!(trace_id_from(Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")), None);
        assert_eq!(trace_id_from(Some("garbage")), None);
        assert_eq!(trace_id_from(None), None);
    }

    #[test]
    fn fixed_segments_match_in_any_case_and_ids_keep_theirs() {
        assert_eq!(canonical_path("/API/Products"), "/api/products");
        assert_eq!(canonical_path("/api/PRODUCTS/AbC-123/Invoice"), "/api/products/AbC-123/invoice");
        assert_eq!(canonical_path("/processinvoiceocr"), "/ProcessInvoiceOcr");
        assert_eq!(canonical_path("/api/calendar/TokEn.ICS"), "/api/calendar/TokEn.ics");
        assert_eq!(canonical_path("/"), "/");
        // One trailing slash is ignored, as the host's routing ignores it; an empty segment
        // in the middle is not a route and stays.
        assert_eq!(canonical_path("/api/products/"), "/api/products");
        assert_eq!(canonical_path("/API/Products/AbC-123/"), "/api/products/AbC-123");
        assert_eq!(canonical_path("/api/products//"), "/api/products/");
    }

    #[test]
    fn request_ids_are_taken_only_when_safe() {
        assert_eq!(request_id_from(Some("abc-123")), "abc-123");
        assert_ne!(request_id_from(Some("has space")), "has space");
        assert_ne!(request_id_from(Some(&"x".repeat(200))).len(), 200);
    }
}
