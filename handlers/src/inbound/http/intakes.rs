//! `/api/intakes`: an invoice uploaded alone, read, and its proposals for the registration form
//! (invoice-first registration; the registration itself is `POST /api/products` with
//! `intakeId`).

use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode, header};

use super::error::ApiError;
use super::multipart::{FileFor, read_form};
use super::products::{idempotency_key, json, path_id, upload_boundary};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::intakes::{self, Created};

/// `POST /api/intakes`: the invoice alone (multipart, field `invoice`, the rules of a
/// registration's) → `202` and `Location: /api/intakes/{id}`; its reading is queued.
pub async fn create(state: Arc<AppState>, req: Request, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let user = req.user(&state).await?;
    let key = idempotency_key(&req)?;
    let boundary = upload_boundary(&req)?;
    let task_state = state.clone();
    let trace_id = req.ctx.trace_id.clone();
    // As at registration: the work finishes (stored, or removed) even if the client leaves.
    let work = tokio::spawn(async move {
        let services = &task_state.services;
        let id = intakes::new_intake_id();
        let parsed = read_form(body, boundary, services.invoices.as_ref(), &user, FileFor::Intake(id)).await?;
        match intakes::create(services, &user, id, parsed.invoice, key.as_deref(), Some(&trace_id)).await? {
            Created::Created { view, location } => {
                tracing::info!(intake_id = %id, "intake stored");
                let mut resp = json(StatusCode::ACCEPTED, serde_json::to_vec(&view).expect("an intake serialises"));
                resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ascii path"));
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Ok(resp)
            }
            Created::Replayed(stored) => {
                let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
                let mut resp = json(status, stored.body.into_bytes());
                if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    resp.headers_mut().insert(header::LOCATION, loc);
                }
                resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
                Ok(resp)
            }
        }
    });
    match work.await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "intake task failed");
            Err(ApiError::Internal)
        }
    }
}

/// `GET /api/intakes/{id}`: its state and, once read, the proposals. While it is `reading`
/// the answer carries `Retry-After`. Another user's intake is 404, like a missing one.
pub async fn get(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let Some(view) = intakes::get(&state.services, &user, id).await? else {
        return Err(ApiError::NotFound);
    };
    let reading = view.status == "reading";
    let mut resp = json(StatusCode::OK, serde_json::to_vec(&view).expect("an intake serialises"));
    if reading {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(resp)
}
