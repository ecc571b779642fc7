//! `/` (the host's readiness probe), `/api/health`, `/api/brands` and `/api/openapi.json`.

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderValue, Response, StatusCode, header};

use super::{AppState, HttpResponse, Request};
use crate::domain::brand_catalog::GENERIC_SERIAL_PATTERN;

/// Answers at once: the Functions host polls `/` until the handler answers anything, so it
/// answers 200 from the moment the port is bound; the body says whether the stores are
/// connected yet (`/api/health` has the details).
pub fn root(ready: bool) -> HttpResponse {
    let text: &'static [u8] = if ready { b"warranty handler ready\n" } else { b"warranty handler starting\n" };
    let mut resp = Response::new(Bytes::from_static(text));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn check(result: Result<(), crate::ports::Unavailable>, started: Instant) -> (bool, serde_json::Value) {
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    match result {
        Ok(()) => (true, json!({"status": "up", "latencyMs": latency_ms})),
        Err(e) => {
            tracing::warn!(backend = e.backend, error = %e.message, "health check failed");
            let status = match e.condition {
                crate::ports::Condition::Down => "down",
                crate::ports::Condition::Busy => "busy",
                crate::ports::Condition::Full => "full",
            };
            (false, json!({"status": status, "latencyMs": latency_ms}))
        }
    }
}

/// Longest wait for one store in `/api/health`.
const HEALTH_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn bounded(
    name: &'static str,
    check: impl Future<Output = Result<(), crate::ports::Unavailable>>,
) -> Result<(), crate::ports::Unavailable> {
    bounded_by(HEALTH_CHECK_LIMIT, name, check).await
}

async fn bounded_by(
    limit: std::time::Duration,
    name: &'static str,
    check: impl Future<Output = Result<(), crate::ports::Unavailable>>,
) -> Result<(), crate::ports::Unavailable> {
    tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(crate::ports::Unavailable::new(name, "no answer within the health check's limit")))
}

/// Version and whether each backend answers. 503 when one does not, so a slot swap or a
/// load balancer can act on the status alone. Causes are logged, not exposed.
pub async fn health(state: &AppState) -> HttpResponse {
    let s = &state.services;
    // A store that hangs makes the answer 503 in bounded time rather than holding the probe
    // (the host's and the load balancer's) until the store's own timeouts.
    let t = Instant::now();
    let (products_ok, products) = check(bounded("product store", s.products.health()).await, t);
    let t = Instant::now();
    let (invoices_ok, invoices) = check(bounded("invoice store", s.invoices.health()).await, t);
    let healthy = products_ok && invoices_ok;
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "version": state.version,
        "revision": crate::build_info::revision(),
        "auth": state.auth.mode_name(),
        "authKeys": state.auth.key_status(),
        "checks": { "productStore": products, "invoiceStore": invoices },
        // OCR engines do not make the service unhealthy (registration works without them);
        // a missing one is reported here and invoices that need it fail with
        // `ocr_engine_unavailable` until it is installed.
        "ocrEngines": s.reader.health(),
    });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `/api/health` before the stores are connected: 503 with each store's progress, so the host's
/// health check and a slot swap's warm-up wait, and an operator sees which store is missing.
pub fn starting(gate: &crate::inbound::state::Gate) -> HttpResponse {
    let checks: serde_json::Map<String, serde_json::Value> = gate
        .progress()
        .into_iter()
        .map(|(store, p)| (store.to_owned(), serde_json::to_value(p).unwrap_or_default()))
        .collect();
    let body = json!({
        "status": "starting",
        "version": gate.version,
        "revision": crate::build_info::revision(),
        "uptimeMs": gate.started.elapsed().as_millis() as u64,
        "checks": checks,
    });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// The catalogue for the app's brand picker. Public, cacheable, with an ETag so the app can
/// revalidate cheaply.
pub fn brands(state: &AppState, req: &Request) -> HttpResponse {
    let catalog = &state.services.catalog;
    let etag = format!("\"brands-{}-{}\"", catalog.version(), catalog.default_months());
    let cache = |resp: &mut HttpResponse| {
        resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii etag"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    };
    if req.header("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        cache(&mut resp);
        return resp;
    }
    let body = json!({
        "version": catalog.version(),
        "brands": catalog.views(),
        "otherBrands": {
            "serialPattern": GENERIC_SERIAL_PATTERN,
            "warrantyMonths": catalog.default_months(),
        },
    });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    cache(&mut resp);
    resp
}

/// The OpenAPI document, byte for byte `docs/openapi.json` of the commit the binary was built
/// from. Public and revalidatable: its ETag is a hash of the bytes.
pub fn openapi(req: &Request) -> HttpResponse {
    static DOCUMENT: &[u8] = include_bytes!("../../../../docs/openapi.json");
    static ETAG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::Digest;
        format!("\"{}\"", &hex::encode(sha2::Sha256::digest(DOCUMENT))[..32])
    });
    let cache = |resp: &mut HttpResponse| {
        resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&ETAG).expect("hex etag"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    };
    if req.header("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == *ETAG || t.trim() == "*")) {
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        cache(&mut resp);
        return resp;
    }
    let mut resp = Response::new(Bytes::from_static(DOCUMENT));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    cache(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_that_never_answers_is_down_after_the_limit() {
        let limit = std::time::Duration::from_millis(50);
        let started = std::time::Instant::now();
        let e =
            bounded_by(limit, "product store", std::future::pending()).await.expect_err("a hanging store is not up");
        assert_eq!(e.condition, crate::ports::Condition::Down);
        assert!(started.elapsed() >= limit);
        assert!(bounded("invoice store", async { Ok(()) }).await.is_ok());
    }
}
