//! `/api/products`: register a product, read one card, list the caller's cards.

use std::sync::Arc;

use bytes::Bytes;
use warp::http::{HeaderValue, Response, StatusCode, header};

use super::error::ApiError;
use super::multipart::{MAX_BODY, read_form};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::products::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::application::register::{self, RegisterError, Registered};

fn json(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters (a UUID is typical).
fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::BadRequest {
            code: "idempotency_key_invalid",
            detail: "Idempotency-Key must be 1 to 255 visible ASCII characters.".into(),
        }),
    }
}

/// `POST /api/products`.
pub async fn register(state: Arc<AppState>, req: Request, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let user = req.user(&state).await?;
    let key = idempotency_key(&req)?;
    let content_type = req.header("content-type").unwrap_or("").to_owned();
    let is_form_data =
        content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"));
    let boundary = is_form_data
        .then(|| multer::parse_boundary(&content_type).ok())
        .flatten()
        .ok_or_else(|| ApiError::ContentTypeUnsupported(content_type.clone()))?;
    // Refuse a declared oversize body before reading a byte of it: a client that sent
    // `Expect: 100-continue` never uploads at all.
    if let Some(len) = req.header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
        && len > MAX_BODY
    {
        return Err(ApiError::InvoiceTooLarge);
    }

    // The work runs in its own task: if the client disconnects and this future is dropped,
    // the registration still runs to a consistent end (stored, or compensated), never half.
    let task_state = state.clone();
    let trace_id = req.ctx.trace_id.clone();
    let work = tokio::spawn(async move {
        let services = &task_state.services;
        let product_id = register::new_product_id();
        let parsed = read_form(body, boundary, services.invoices.as_ref(), product_id).await?;
        let outcome = register::register(
            services,
            &user,
            product_id,
            &parsed.form,
            parsed.invoice,
            key.as_deref(),
            Some(&trace_id),
        )
        .await;
        match outcome {
            Ok(Registered::Created { card, location }) => {
                tracing::info!(product_id = %card.id, "product registered");
                let mut resp = json(StatusCode::CREATED, serde_json::to_vec(&card).expect("a card serialises"));
                resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii path"));
                Ok(resp)
            }
            Ok(Registered::Replayed(stored)) => {
                let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
                let mut resp = json(status, stored.body.into_bytes());
                if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    resp.headers_mut().insert(header::LOCATION, loc);
                }
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                Ok(resp)
            }
            Err(RegisterError::Invalid(errors)) => Err(ApiError::Validation(errors)),
            Err(RegisterError::Duplicate { existing }) => Err(ApiError::AlreadyRegistered { existing }),
            Err(RegisterError::IdempotencyKeyReused) => Err(ApiError::IdempotencyKeyReused),
            Err(RegisterError::Unavailable(u)) => Err(u.into()),
        }
    });
    match work.await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "registration task failed");
            Err(ApiError::Internal)
        }
    }
}

/// `GET /api/products/{id}`. An id that is not a UUID cannot exist: 404, like a missing one.
pub async fn get(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return Err(ApiError::NotFound);
    };
    match products::card(&state.services, &user, id).await? {
        Some(card) => Ok(json(StatusCode::OK, serde_json::to_vec(&card).expect("a card serialises"))),
        None => Err(ApiError::NotFound),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody {
    items: Vec<crate::domain::WarrantyCard>,
    continuation_token: Option<String>,
}

/// `GET /api/products?limit=&continuationToken=`.
pub async fn list(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(&req.query)
        .map_err(|_| ApiError::BadRequest { code: "query_invalid", detail: "The query string is malformed.".into() })?;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let limit = match param("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => {
            raw.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| ApiError::BadRequest {
                code: "limit_invalid",
                detail: format!("`limit` must be an integer from 1 to {MAX_PAGE}."),
            })?
        }
    };
    let cursor = match param("continuationToken").filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(products::decode_token(token).map_err(|_| ApiError::BadRequest {
            code: "continuation_token_invalid",
            detail: "The continuation token is not one this service issued.".into(),
        })?),
    };
    let page = products::list(&state.services, &user, cursor.as_ref(), limit).await?;
    let body = PageBody { items: page.items, continuation_token: page.continuation_token };
    Ok(json(StatusCode::OK, serde_json::to_vec(&body).expect("a page serialises")))
}
