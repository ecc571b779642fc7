//! `/api/products/{id}/coverages`: add, edit and remove a product's coverages.

use warp::http::{HeaderValue, StatusCode, header};

use super::error::ApiError;
use super::products::{etag, if_match, is_form_data, json, no_content, optional_if_match, path_id, read_json};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::coverages;
use crate::application::intake::ReceivedInvoice;
use crate::domain::FieldError;

/// The coverage and the card's new `ETag` (every coverage change bumps the card's revision).
fn coverage_response(status: StatusCode, view: &crate::domain::CoverageView, revision: u64) -> HttpResponse {
    let mut resp = json(status, serde_json::to_vec(view).expect("a coverage serialises"));
    resp.headers_mut().insert(header::ETAG, etag(revision));
    resp
}

/// The fields of a coverage sent as a form, as the JSON object they stand for.
fn form_field(name: &str, value: &str) -> Option<(String, serde_json::Value)> {
    use serde_json::Value;
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let v = match name {
        // A number when it is one; otherwise the text, which the rules then refuse.
        "months" => value.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(value)),
        "lifetime" => match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::from(other),
        },
        _ => Value::from(value),
    };
    Some((name.to_owned(), v))
}

fn form_error(field: &'static str, code: &'static str, detail: String) -> ApiError {
    ApiError::Validation(vec![FieldError::new(field, code, detail)])
}

/// Reads a coverage form: its text fields, and the `proof` file streamed into the store.
async fn read_coverage_form(
    state: &AppState,
    body: BodyStream,
    boundary: String,
    owner: &crate::domain::UserId,
    product: uuid::Uuid,
    coverage: uuid::Uuid,
) -> Result<(serde_json::Value, Option<ReceivedInvoice>), ApiError> {
    use crate::application::intake::{Finished, InvoiceIntake};
    let (stream, too_large) = super::multipart::pump(body);
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut fields = serde_json::Map::new();
    let mut proof: Option<ReceivedInvoice> = None;
    let malformed = |e: multer::Error| super::multipart::malformed(e, &too_large);
    let result: Result<(), ApiError> = async {
        let mut parts = 0;
        while let Some(mut field) = mp.next_field().await.map_err(malformed)? {
            parts += 1;
            if parts > 16 {
                return Err(ApiError::BadRequest {
                    code: "multipart_malformed",
                    detail: "A coverage has at most 16 parts.".into(),
                });
            }
            let name = field.name().unwrap_or("").to_owned();
            if name == "proof" {
                if proof.is_some() {
                    return Err(form_error("proof", "field_duplicated", "send one `proof` file".into()));
                }
                let file_name = field.file_name().map(str::to_owned);
                let mut intake =
                    InvoiceIntake::new(state.services.invoices.as_ref(), owner, product, file_name).for_proof(coverage);
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => intake.push(&chunk).await.map_err(ApiError::from)?,
                        Ok(None) => break,
                        Err(e) => {
                            intake.discard().await;
                            return Err(malformed(e));
                        }
                    }
                }
                match intake.finish().await.map_err(ApiError::from)? {
                    Finished::Received(r) => proof = Some(r),
                    Finished::Empty => {
                        return Err(form_error("proof", "proof_empty", "the proof file is empty".into()));
                    }
                }
            } else {
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    text.extend_from_slice(&chunk);
                    if text.len() > 4096 {
                        return Err(form_error("coverage", "field_too_long", format!("`{name}` is too long")));
                    }
                }
                let text = String::from_utf8(text).map_err(|_| {
                    form_error("coverage", "field_invalid_encoding", format!("`{name}` is not UTF-8 text"))
                })?;
                if let Some((k, v)) = form_field(&name, &text) {
                    fields.insert(k, v);
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok((serde_json::Value::Object(fields), proof)),
        Err(e) => {
            if let Some(p) = proof {
                p.abort().await;
            }
            Err(e)
        }
    }
}

/// `POST /api/products/{id}/coverages`: a coverage as JSON, or as `multipart/form-data` with
/// its fields and a `proof` file.
pub async fn add_coverage(
    state: &AppState,
    req: &Request,
    id: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let coverage_id = uuid::Uuid::now_v7();
    let (doc, proof) = if is_form_data(req) {
        let boundary = super::products::upload_boundary(req)?;
        read_coverage_form(state, body, boundary, &user, id, coverage_id).await?
    } else {
        (read_json(req, body, "application/json").await?, None)
    };
    let (view, revision) = coverages::add(&state.services, &user, id, &doc, proof, coverage_id).await?;
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
    let (id, coverage) = (path_id(id)?, path_id(coverage)?);
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
    let (id, coverage) = (path_id(id)?, path_id(coverage)?);
    let revision = optional_if_match(req)?;
    let revision = coverages::remove(&state.services, &user, id, coverage, revision).await?;
    Ok(no_content(Some(revision)))
}

/// `GET /api/products/{id}/coverages/{coverageId}/proof`: the proof document.
pub async fn proof(state: &AppState, req: &Request, id: &str, coverage: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let (id, coverage) = (path_id(id)?, path_id(coverage)?);
    let (proof, bytes) = coverages::proof(&state.services, &user, id, coverage).await?;
    Ok(super::products::file_response(req, &proof, bytes))
}
