//! `/api/products`: register a product, read one card, list the caller's cards.

use std::sync::Arc;

use bytes::Bytes;
use warp::http::{HeaderValue, Response, StatusCode, header};

use super::error::ApiError;
use super::multipart::{FileFor, MAX_BODY, read_form};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::lifecycle;
use crate::application::products::{self, DEFAULT_PAGE, MAX_PAGE};
use crate::application::register::{self, Registered};
use crate::domain::ProductPatch;

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters (a UUID is typical).
pub(super) fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
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

/// The multipart boundary of an invoice upload. A declared oversize body is refused before a
/// byte of it is read: a client that sent `Expect: 100-continue` never uploads at all.
/// Whether the body is declared `multipart/form-data`.
pub(super) fn is_form_data(req: &Request) -> bool {
    let content_type = req.header("content-type").unwrap_or("");
    content_type.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
}

pub(super) fn upload_boundary(req: &Request) -> Result<String, ApiError> {
    let content_type = req.header("content-type").unwrap_or("");
    let boundary = is_form_data(req).then(|| multer::parse_boundary(content_type).ok()).flatten().ok_or_else(|| {
        ApiError::ContentTypeUnsupported {
            expected: "multipart/form-data with a boundary",
            got: content_type.to_owned(),
        }
    })?;
    if let Some(len) = req.header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
        && len > MAX_BODY
    {
        return Err(ApiError::InvoiceTooLarge);
    }
    Ok(boundary)
}

/// `POST /api/products`.
pub async fn register(state: Arc<AppState>, req: Request, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let user = req.user(&state).await?;
    let key = idempotency_key(&req)?;
    let boundary = upload_boundary(&req)?;

    // The work runs in its own task: if the client disconnects and this future is dropped,
    // the registration still runs to a consistent end (stored, or compensated), never half.
    let task_state = state.clone();
    let trace_id = req.ctx.trace_id.clone();
    let work = tokio::spawn(async move {
        let services = &task_state.services;
        let product_id = register::new_product_id();
        let target = FileFor::Product { id: product_id, version: 1 };
        let parsed = read_form(body, boundary, services.invoices.as_ref(), &user, target).await?;
        let outcome = match parsed.form.intake_id.clone() {
            // Invoice-first: the fields the person confirmed, with the intake's stored invoice.
            Some(intake) => {
                let missing = matches!(&parsed.invoice, Err(e) if e.code == "invoice_missing");
                if !missing {
                    if let Ok(received) = parsed.invoice {
                        received.abort().await;
                    }
                    let e = crate::domain::FieldError::new(
                        "invoice",
                        "invoice_with_intake",
                        "send either the invoice file or an `intakeId`, not both",
                    );
                    return Err(ApiError::Validation(vec![e]));
                }
                // An id that is not a UUID names no intake: 404, like a missing one.
                let Ok(intake) = intake.trim().parse::<uuid::Uuid>() else {
                    return Err(ApiError::NotFound);
                };
                register::register_from_intake(services, &user, product_id, &parsed.form, intake, key.as_deref()).await
            }
            None => {
                register::register(
                    services,
                    &user,
                    product_id,
                    &parsed.form,
                    parsed.invoice,
                    key.as_deref(),
                    Some(&trace_id),
                )
                .await
            }
        };
        match outcome {
            Ok(Registered::Created { card, location }) => {
                tracing::info!(product_id = %card.id, "product registered");
                // With the card's ETag, so an edit right after registering needs no GET first.
                let mut resp = card_response(StatusCode::CREATED, &card);
                resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii path"));
                Ok(resp)
            }
            Ok(Registered::Replayed(stored)) => {
                let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
                // The entity tag of the card as first answered (the body replayed).
                let revision = serde_json::from_str::<serde_json::Value>(&stored.body)
                    .ok()
                    .and_then(|card| card["revision"].as_u64());
                let mut resp = json(status, stored.body.into_bytes());
                if let Some(r) = revision {
                    resp.headers_mut().insert(header::ETAG, etag(r));
                }
                if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    resp.headers_mut().insert(header::LOCATION, loc);
                }
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                Ok(resp)
            }
            Err(e) => Err(e.into()),
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
        Some(card) => Ok(card_response(StatusCode::OK, &card)),
        None => Err(ApiError::NotFound),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody {
    items: Vec<crate::domain::WarrantyCard>,
    continuation_token: Option<String>,
}

/// `limit` (1..=`MAX_PAGE`, default `DEFAULT_PAGE`) and `continuationToken` of a paged read.
pub(super) fn page_params(req: &Request) -> Result<(usize, Option<String>), ApiError> {
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
    Ok((limit, param("continuationToken").filter(|t| !t.is_empty()).map(str::to_owned)))
}

pub(super) fn bad_token() -> ApiError {
    ApiError::BadRequest {
        code: "continuation_token_invalid",
        detail: "The continuation token is not one this service issued.".into(),
    }
}

/// `GET /api/products?limit=&continuationToken=`.
pub async fn list(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let (limit, token) = page_params(req)?;
    let cursor =
        token.map(|t| products::decode_token::<crate::ports::ListCursor>(&t).map_err(|_| bad_token())).transpose()?;
    let page = products::list(&state.services, &user, cursor.as_ref(), limit).await?;
    let body = PageBody { items: page.items, continuation_token: page.continuation_token };
    Ok(json(StatusCode::OK, serde_json::to_vec(&body).expect("a page serialises")))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditBody {
    items: Vec<crate::domain::AuditEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continuation_token: Option<String>,
}

/// `GET /api/products/{id}/audit?limit=&continuationToken=`: the whole audit trail, oldest
/// first, a page at a time (the card carries only the newest entries).
pub async fn audit(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let (limit, token) = page_params(req)?;
    let from = match token {
        None => 0,
        Some(token) => URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|t| t.strip_prefix("audit:").and_then(|n| n.parse::<usize>().ok()))
            .ok_or_else(bad_token)?,
    };
    let page = lifecycle::audit(&state.services, &user, id, from, limit).await?;
    let body = AuditBody {
        items: page.items,
        continuation_token: page.next.map(|n| URL_SAFE_NO_PAD.encode(format!("audit:{n}"))),
    };
    Ok(json(StatusCode::OK, serde_json::to_vec(&body).expect("a page serialises")))
}

/// Largest JSON body read for an edit or a service request.
const MAX_JSON_BODY: usize = 64 * 1024;

/// A path id (product, coverage) that is not a UUID cannot exist: 404, like a missing one.
pub(super) fn path_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse::<uuid::Uuid>().map_err(|_| ApiError::NotFound)
}

/// The revision named by `If-Match` (`"r3"`, weak or strong). `None` when absent or `*`;
/// an entity tag this service never issued names no revision (`Some(None)`: fails the match).
pub(super) fn if_match(req: &Request) -> Option<Option<u64>> {
    let raw = req.header("if-match")?.trim();
    if raw == "*" || raw.is_empty() {
        return None;
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    Some(tag.strip_prefix("\"r").and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse().ok()))
}

pub(super) async fn read_json(
    req: &Request,
    body: BodyStream,
    media: &'static str,
) -> Result<serde_json::Value, ApiError> {
    use futures_util::StreamExt;
    let content_type = req.header("content-type").unwrap_or("").to_owned();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != media && mime != "application/json" {
        return Err(ApiError::ContentTypeUnsupported { expected: media, got: content_type });
    }
    let mut buf = Vec::new();
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest {
            code: "patch_invalid",
            detail: "The body could not be read.".into(),
        })?;
        if buf.len() + chunk.len() > MAX_JSON_BODY {
            return Err(ApiError::BadRequest {
                code: "body_too_large",
                detail: format!("The JSON body must be at most {MAX_JSON_BODY} bytes."),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ApiError::BadRequest { code: "patch_invalid", detail: format!("The body is not JSON: {e}.") })
}

fn card_response(status: StatusCode, card: &crate::domain::WarrantyCard) -> HttpResponse {
    let mut resp = json(status, serde_json::to_vec(card).expect("a card serialises"));
    resp.headers_mut().insert(header::ETAG, etag(card.revision));
    resp
}

/// The card's `ETag` header at `revision`.
pub(super) fn etag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&crate::domain::product::revision_etag(revision)).expect("ascii")
}

/// `204 No Content`, with the card's new `ETag` when the change bumped its revision.
pub(super) fn no_content(revision: Option<u64>) -> HttpResponse {
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    if let Some(r) = revision {
        resp.headers_mut().insert(header::ETAG, etag(r));
    }
    resp
}

/// An optional `If-Match`: absent or `*` is no condition; a tag this service never issued
/// fails it.
pub(super) fn optional_if_match(req: &Request) -> Result<Option<u64>, ApiError> {
    match if_match(req) {
        None => Ok(None),
        Some(r) => r.map(Some).ok_or(ApiError::PreconditionFailed),
    }
}

/// `PATCH /api/products/{id}`: JSON merge patch (RFC 7396) with `If-Match`.
pub async fn patch(state: &AppState, req: &Request, id: &str, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let revision = if_match(req).ok_or(ApiError::PreconditionRequired)?;
    let patch = read_json(req, body, "application/merge-patch+json").await?;
    let Some(revision) = revision else {
        return Err(ApiError::PreconditionFailed);
    };
    // A document that is not an object is refused at once; what it asks for is judged against
    // the product (which must exist and be the revision the client read) first.
    if !patch.is_object() {
        return Err(ApiError::BadRequest { code: "patch_invalid", detail: "the body must be a JSON object".into() });
    }
    let card = lifecycle::patch(&state.services, &user, id, revision, ProductPatch::from_json(&patch)).await?;
    Ok(card_response(StatusCode::OK, &card))
}

/// `DELETE /api/products/{id}` (`If-Match` optional).
pub async fn delete(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let expected = optional_if_match(req)?;
    lifecycle::delete(&state.services, &user, id, expected).await?;
    tracing::info!(product_id = %id, "product deleted");
    Ok(no_content(None))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewServiceRequest {
    description: Option<String>,
    preferred_contact: Option<String>,
    coverage_id: Option<String>,
}

/// `POST /api/products/{id}/service-requests`.
pub async fn raise_service_request(
    state: &AppState,
    req: &Request,
    id: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let value = read_json(req, body, "application/json").await?;
    let new: NewServiceRequest = serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
        code: "patch_invalid",
        detail: format!(
            "The body must be {{\"description\": string, \"preferredContact\"?: string, \"coverageId\"?: string}}: {e}."
        ),
    })?;
    let coverage = match new.coverage_id.as_deref().map(str::parse::<uuid::Uuid>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            return Err(ApiError::Validation(vec![crate::domain::FieldError::new(
                "coverageId",
                "coverage_unknown",
                "`coverageId` names no coverage of this product",
            )]));
        }
    };
    let request = lifecycle::raise_service_request(
        &state.services,
        &user,
        id,
        new.description.as_deref(),
        new.preferred_contact.as_deref(),
        coverage,
    )
    .await?;
    tracing::info!(product_id = %id, service_request = %request.id, in_warranty = request.in_warranty, "service request raised");
    let mut resp = json(StatusCode::CREATED, serde_json::to_vec(&request).expect("a request serialises"));
    let location = format!("/api/products/{id}/service-requests/{}", request.id);
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii"));
    Ok(resp)
}

/// `GET /api/products/{id}/service-requests`.
pub async fn service_requests(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let items = lifecycle::service_requests(&state.services, &user, id).await?;
    Ok(json(StatusCode::OK, serde_json::to_vec(&serde_json::json!({ "items": items })).expect("json")))
}

/// `Content-Disposition` for a client-supplied file name: an ASCII fallback with only safe
/// characters, and the exact name in RFC 5987 `filename*`.
pub(super) fn content_disposition(file_name: &str) -> String {
    let fallback: String =
        file_name.chars().map(|c| if c.is_ascii_alphanumeric() || "._- ()".contains(c) { c } else { '_' }).collect();
    let fallback = fallback.trim();
    let fallback =
        if fallback.is_empty() || fallback.chars().all(|c| c == '.' || c == '_') { "invoice" } else { fallback };
    let mut encoded = String::new();
    for b in file_name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/products/{id}/invoice`: the original file.
pub async fn invoice(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let (invoice, bytes) = lifecycle::invoice(&state.services, &user, id).await?;
    Ok(file_response(req, &invoice, bytes))
}

/// A stored file (an invoice, a proof) as a download: its type (or `application/octet-stream`
/// for a client that accepts only that), a safe `Content-Disposition`, never sniffed or cached.
pub(super) fn file_response(req: &Request, invoice: &crate::domain::InvoiceRef, bytes: Bytes) -> HttpResponse {
    let mut resp = Response::new(bytes);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(download_type(req, invoice.kind.content_type())));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(&invoice.file_name)).expect("only ASCII is produced"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", invoice.sha256)).expect("hex"));
    resp
}

/// The type to label a download with: the file's own, unless the client asks for
/// `application/octet-stream` and does not accept the file's type (generated clients that
/// only know "bytes"); the bytes are the same either way.
pub(super) fn download_type(req: &Request, own: &'static str) -> &'static str {
    const OCTETS: &str = "application/octet-stream";
    let Some(accept) = req.header("accept") else { return own };
    let (major, _) = own.split_once('/').unwrap_or((own, ""));
    let mut wants_octets = false;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts.find_map(|p| p.trim().strip_prefix("q=").map(|q| q.trim().parse::<f32>().unwrap_or(0.0)));
        if q.is_some_and(|q| q <= 0.0) {
            continue;
        }
        if media == own || media == "*/*" || media == format!("{major}/*") {
            return own;
        }
        wants_octets |= media == OCTETS;
    }
    if wants_octets { OCTETS } else { own }
}

/// `PUT /api/products/{id}/invoice`: a new invoice (multipart, field `invoice`, the same rules
/// as at registration) with `If-Match`; starts a new OCR run for it.
pub async fn replace_invoice(
    state: Arc<AppState>,
    req: &Request,
    id: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(&state).await?;
    let id = path_id(id)?;
    let revision = if_match(req).ok_or(ApiError::PreconditionRequired)?.ok_or(ApiError::PreconditionFailed)?;
    let boundary = upload_boundary(req)?;
    // Refused before a byte of the file is read: missing, stale, locked.
    let version = lifecycle::prepare_invoice_replacement(&state.services, &user, id, revision).await?;
    // As at registration: the work finishes (committed or removed) even if the client leaves.
    let task_state = state.clone();
    let trace_id = req.ctx.trace_id.clone();
    let work = tokio::spawn(async move {
        let services = &task_state.services;
        let parsed =
            read_form(body, boundary, services.invoices.as_ref(), &user, FileFor::Product { id, version }).await?;
        let received = parsed.invoice.map_err(|e| ApiError::Validation(vec![e]))?;
        let card = lifecycle::replace_invoice(services, &user, id, revision, received, Some(&trace_id)).await?;
        tracing::info!(product_id = %id, version, "invoice replaced");
        Ok(card_response(StatusCode::OK, &card))
    });
    match work.await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "invoice replacement task failed");
            Err(ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn content_disposition_never_lets_a_file_name_break_the_header() {
        assert_eq!(
            content_disposition("Rechnung März.pdf"),
            "attachment; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"
        );
        let evil = content_disposition("..\\../a\"b\r\nSet-Cookie: x=1;.pdf");
        assert!(!evil.contains('\r') && !evil.contains('\n'), "{evil}");
        assert!(evil.starts_with("attachment; filename=\".._.._a_b__Set-Cookie_ x_1_.pdf\"; "), "{evil}");
        assert_eq!(evil.matches('"').count(), 2, "{evil}");
        assert_eq!(content_disposition("\"\""), "attachment; filename=\"invoice\"; filename*=UTF-8''%22%22");
    }
}
