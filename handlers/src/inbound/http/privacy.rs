//! `GET /api/me/export`, `DELETE /api/me` and `GET /api/me/erasure`.

use std::sync::Arc;

use serde::Serialize;
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};

use super::error::ApiError;
use super::products::{bad_token, download_type, json, no_content, read_json};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::privacy::{self, CONFIRMATION};
use crate::application::products;

/// Chunks in flight between the archive writer and the connection: memory is a few of them.
const CHANNEL: usize = 4;

/// Where an export part starts: (part number, the last product of the part before).
#[derive(Serialize, serde::Deserialize)]
struct PartToken {
    part: u32,
    after: crate::ports::ListCursor,
}

fn part_token(req: &Request) -> Result<Option<PartToken>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&req.query).map_err(|_| bad_token())?;
    let Some((_, token)) = pairs.into_iter().find(|(k, _)| k == "continuationToken") else { return Ok(None) };
    match products::decode_token::<PartToken>(&token) {
        Ok(t) if t.part >= 2 => Ok(Some(t)),
        _ => Err(bad_token()),
    }
}

/// `GET /api/me/export[?continuationToken=…]`: the caller's data as a streamed ZIP, in parts of
/// at most `WARRANTY_EXPORT_PART_MIB` of files (the Functions host holds each answer whole);
/// `Link: <…>; rel="next"` names the next part while there is one.
pub async fn export(state: Arc<AppState>, req: &Request) -> Result<warp::reply::Response, ApiError> {
    let user = req.user(&state).await?;
    let token = part_token(req)?;
    let (number, after) = match token {
        Some(t) => (t.part, Some(t.after)),
        None => (1, None),
    };
    // Reads the records before the first byte: a store that is down gets a problem, not a
    // broken archive, and the next part's link goes in the headers.
    let part = privacy::plan_part(&state.services, &user, number, after, state.export_part_bytes).await?;
    let next = part.next.clone().map(|after| products::encode_token(&PartToken { part: number + 1, after }));
    let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL);
    let services = state.services.clone();
    let day = services.clock.now().date_naive();
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let started = std::time::Instant::now();
            let tx_err = tx.clone();
            match privacy::export(&services, &user, &part, tx).await {
                Ok(bytes) => tracing::info!(bytes, ms = started.elapsed().as_millis() as u64, "export sent"),
                Err(privacy::ExportStopped::Disconnected) => tracing::info!("export stopped: the client went away"),
                Err(privacy::ExportStopped::Store(e)) => {
                    tracing::error!(error = %e, "export cut short: a store failed");
                    // The transfer ends with an error: the client sees a failed download, never a
                    // short archive that looks whole.
                    let _ = tx_err.send(Err(std::io::Error::other("the export failed"))).await;
                }
            }
        },
        span,
    ));
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = warp::reply::stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(download_type(req, "application/zip")));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let name = match number {
        1 => privacy::file_name(day),
        n => privacy::file_name(day).replace(".zip", &format!("-part{n}.zip")),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&number.to_string()) {
        h.insert("x-export-part", v);
    }
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&format!("</api/me/export?continuationToken={next}>; rel=\"next\""))
    {
        h.insert(header::LINK, v);
    }
    Ok(resp)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    status: &'static str,
    started_at: chrono::DateTime<chrono::Utc>,
}

fn in_progress(started_at: chrono::DateTime<chrono::Utc>) -> HttpResponse {
    let mut resp = json(
        StatusCode::ACCEPTED,
        serde_json::to_vec(&Status { status: "in_progress", started_at }).expect("a status serialises"),
    );
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/api/me/erasure"));
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    resp
}

/// `DELETE /api/me` with `{"confirm": "delete my data"}`: erases everything of the caller.
/// `204` when done; `202` with `Location: /api/me/erasure` when it takes longer (it goes on).
pub async fn erase(state: &AppState, req: &Request, body: BodyStream) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let confirmed = match read_json(req, body, "application/json").await {
        Ok(doc) => doc.get("confirm").and_then(|c| c.as_str()) == Some(CONFIRMATION),
        Err(ApiError::BadRequest { .. } | ApiError::ContentTypeUnsupported { .. }) => false,
        Err(e) => return Err(e),
    };
    if !confirmed {
        return Err(ApiError::ConfirmationRequired);
    }
    let started = privacy::begin_erasure(&state.services, &user).await?;
    let services = state.services.clone();
    let work = tokio::spawn(async move { privacy::continue_erasure(&services, &user, None).await });
    match tokio::time::timeout(state.erasure_wait, work).await {
        Ok(Ok(Ok(true))) => Ok(no_content(None)),
        // Still going (or resumed later by the periodic pass).
        Ok(Ok(Ok(false))) | Err(_) => Ok(in_progress(started)),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(_)) => Err(ApiError::Internal),
    }
}

/// `GET /api/me/erasure`: `200` with the erasure in progress, `404` when there is none (it
/// finished, or never started).
pub async fn erasure_status(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    match privacy::erasure_status(&state.services, &user).await? {
        Some(started_at) => Ok(json(
            StatusCode::OK,
            serde_json::to_vec(&Status { status: "in_progress", started_at }).expect("a status serialises"),
        )),
        None => Err(ApiError::NotFound),
    }
}
