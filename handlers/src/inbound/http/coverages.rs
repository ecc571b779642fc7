//! `/api/products/{id}/coverages`: add, edit and remove a product's coverages.

use bytes::Bytes;
use warp::http::{HeaderValue, Response, StatusCode, header};

use super::error::ApiError;
use super::products::{if_match, json, product_id, read_json};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::coverages;

/// The coverage and the card's new `ETag` (every coverage change bumps the card's revision).
fn coverage_response(status: StatusCode, view: &crate::domain::CoverageView, revision: u64) -> HttpResponse {
    let mut resp = json(status, serde_json::to_vec(view).expect("a coverage serialises"));
    let etag = format!("\"r{revision}\"");
    resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    resp
}

fn coverage_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.parse::<uuid::Uuid>().map_err(|_| ApiError::NotFound)
}

/// `POST /api/products/{id}/coverages`: a coverage as JSON.
pub async fn add_coverage(
    state: &AppState,
    req: &Request,
    id: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = product_id(id)?;
    let doc = read_json(req, body, "application/json").await?;
    let (view, revision) = coverages::add(&state.services, &user, id, &doc).await?;
    tracing::info!(product_id = %id, coverage_id = %view.id, "coverage added");
    let mut resp = coverage_response(StatusCode::CREATED, &view, revision);
    let location = format!("/api/products/{id}/coverages/{}", view.id);
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii"));
    Ok(resp)
}

/// `PATCH /api/products/{id}/coverages/{coverageId}`: JSON merge patch with `If-Match`.
pub async fn edit_coverage(
    state: &AppState,
    req: &Request,
    id: &str,
    coverage: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let (id, coverage) = (product_id(id)?, coverage_id(coverage)?);
    let revision = if_match(req).ok_or(ApiError::PreconditionRequired)?.ok_or(ApiError::PreconditionFailed)?;
    let doc = read_json(req, body, "application/merge-patch+json").await?;
    let (view, revision) = coverages::edit(&state.services, &user, id, coverage, revision, &doc).await?;
    Ok(coverage_response(StatusCode::OK, &view, revision))
}

/// `DELETE /api/products/{id}/coverages/{coverageId}` (`If-Match` optional).
pub async fn remove_coverage(
    state: &AppState,
    req: &Request,
    id: &str,
    coverage: &str,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let (id, coverage) = (product_id(id)?, coverage_id(coverage)?);
    let revision = match if_match(req) {
        None => None,
        Some(r) => Some(r.ok_or(ApiError::PreconditionFailed)?),
    };
    let revision = coverages::remove(&state.services, &user, id, coverage, revision).await?;
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&format!("\"r{revision}\"")).expect("ascii"));
    Ok(resp)
}
