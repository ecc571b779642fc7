//! The card a person shows: `GET /api/products/{id}/card.pdf`, the public
//! `GET /api/verify/{token}` behind its QR code, and `DELETE /api/products/{id}/verification`.

use bytes::Bytes;
use warp::http::{HeaderValue, Response, StatusCode, header};

use super::error::ApiError;
use super::products::{content_disposition, download_type, json, no_content, path_id};
use super::{AppState, HttpResponse, Request};
use crate::application::sharing::{self, PublicView};
use crate::card::page::{PageCoverage, PageView};
use crate::card::pdf::{CardSheet, CoverageLine};
use crate::domain::{CoverageKind, CoverageStatus};

/// The API's public base URL, the one the OpenAPI document's paths are relative to (`…/api`):
/// configured (`WARRANTY_PUBLIC_BASE_URL`, in Azure the gateway's `https://<gateway>/api`), or
/// what the request says it was sent to, followed by the host's route prefix.
pub(super) fn base_url(state: &AppState, req: &Request) -> String {
    if let Some(url) = &state.public_base_url {
        return url.clone();
    }
    let first = |h: &str| req.header(h).and_then(|v| v.split(',').next()).map(str::trim).filter(|v| !v.is_empty());
    let host = first("x-forwarded-host").or_else(|| first("host")).unwrap_or("127.0.0.1");
    let proto = first("x-forwarded-proto").filter(|p| *p == "https" || *p == "http").unwrap_or("http");
    // Only characters a host (and port) can have: nothing from a header reaches the card as-is.
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(*c)).collect();
    format!("{proto}://{host}/api")
}

fn status_name(s: CoverageStatus) -> &'static str {
    match s {
        CoverageStatus::Upcoming => "upcoming",
        CoverageStatus::Active => "active",
        CoverageStatus::Expired => "expired",
    }
}

fn label(kind: CoverageKind) -> &'static str {
    kind.label()
}

/// `GET /api/products/{id}/card.pdf`: the printable card with a fresh verification link.
pub async fn card_pdf(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let (product, token, expires_at) = sharing::issue_link(&state.services, &user, id).await?;
    let today = state.services.clock.now().date_naive();
    let card = product.card(today);
    let verdict = if card.warranty_status == crate::domain::WarrantyStatus::Active {
        match card.covered_until {
            Some(d) => format!("Covered today, until {d}"),
            None => "Covered today, for life".to_owned(),
        }
    } else {
        "Not covered today".to_owned()
    };
    let sheet = CardSheet {
        brand: card.brand.clone(),
        model: card.model.clone(),
        serial_number: card.serial_number.clone(),
        purchase_date: card.purchase_date.to_string(),
        coverages: card
            .coverages
            .iter()
            .map(|c| CoverageLine {
                label: label(c.kind).to_owned(),
                provider: c.provider.clone(),
                term: match c.expires_on {
                    Some(end) if c.starts_on > today => format!("from {} until {end}", c.starts_on),
                    Some(end) => format!("until {end}"),
                    None => format!("for life, from {}", c.starts_on),
                },
                status: status_name(c.status).to_owned(),
            })
            .collect(),
        verdict,
        verify_url: format!("{}/verify/{token}", base_url(state, req)),
        issued_on: today.to_string(),
        link_expires_on: expires_at.date_naive().to_string(),
    };
    let pdf = crate::card::pdf::render(&sheet);
    let mut resp = Response::new(Bytes::from(pdf));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(download_type(req, "application/pdf")));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    let name = format!("warranty-card-{}-{}.pdf", card.brand, card.serial_number);
    let disposition = content_disposition(&name).replacen("attachment", "inline", 1);
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).expect("only ASCII is produced"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// Whether the client reads HTML (a phone's browser after scanning) rather than JSON.
fn wants_html(req: &Request) -> bool {
    let accept = req.header("accept").unwrap_or("");
    let html = accept.find("text/html");
    let json = accept.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn page_view(v: &PublicView) -> PageView {
    PageView {
        brand: v.brand.clone(),
        model: v.model.clone(),
        masked_serial: v.serial_number.clone(),
        covered_today: v.covered_today,
        covered_until: v.covered_until,
        checked_on: v.checked_on,
        coverages: v
            .coverages
            .iter()
            .map(|c| PageCoverage {
                label: label(c.kind),
                provider: c.provider.clone(),
                starts_on: c.starts_on,
                expires_on: c.expires_on,
                status: status_name(c.status),
            })
            .collect(),
    }
}

/// `GET /api/verify/{token}`: public. JSON, or a page for a browser; 404 for any link that is
/// not valid.
pub async fn verify(state: &AppState, req: &Request, token: &str) -> Result<HttpResponse, ApiError> {
    let result = sharing::verify(&state.services, token).await;
    match (result, wants_html(req)) {
        (Ok(view), true) => Ok(html(StatusCode::OK, crate::card::page::render(&page_view(&view)))),
        (Ok(view), false) => {
            let mut resp = json(StatusCode::OK, serde_json::to_vec(&view).expect("a view serialises"));
            resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
            Ok(resp)
        }
        (Err(crate::application::Error::NotFound), true) => {
            Ok(html(StatusCode::NOT_FOUND, crate::card::page::not_valid()))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// `DELETE /api/products/{id}/verification`: every link printed so far stops working.
pub async fn revoke(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let id = path_id(id)?;
    let revision = sharing::revoke_links(&state.services, &user, id).await?;
    Ok(no_content(Some(revision)))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewCalendarFeed {
    lead_days: Option<Vec<i64>>,
}

/// `POST /api/me/calendar-feed`: makes (or rotates) the caller's feed. Body optional:
/// `{"leadDays": [30, 7]}`.
pub async fn create_calendar_feed(
    state: &AppState,
    req: &Request,
    body: super::BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let has_body =
        req.header("content-length").is_some_and(|l| l.trim() != "0") || req.header("transfer-encoding").is_some();
    let requested: NewCalendarFeed = if has_body {
        let value = super::products::read_json(req, body, "application/json").await?;
        serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
            code: "patch_invalid",
            detail: format!("The body must be {{\"leadDays\"?: [days, …]}}: {e}."),
        })?
    } else {
        NewCalendarFeed { lead_days: None }
    };
    let lead_days = crate::application::calendar::lead_days(requested.lead_days.as_deref())?;
    let (token, feed) = crate::application::calendar::create(&state.services, &user, lead_days).await?;
    let url = format!("{}/calendar/{token}.ics", base_url(state, req));
    let body = serde_json::json!({ "url": url, "leadDays": feed.lead_days, "createdAt": feed.created_at });
    let mut resp = json(StatusCode::CREATED, serde_json::to_vec(&body).expect("json"));
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&url).map_err(|_| ApiError::Internal)?);
    Ok(resp)
}

/// `DELETE /api/me/calendar-feed`: the feed URL stops working.
pub async fn revoke_calendar_feed(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    crate::application::calendar::revoke(&state.services, &user).await?;
    Ok(no_content(None))
}

/// `GET /api/calendar/{feedToken}.ics`: public (the token is the credential).
pub async fn calendar_feed(state: &AppState, file: &str) -> Result<HttpResponse, ApiError> {
    let token = file.strip_suffix(".ics").ok_or(ApiError::NotFound)?;
    let ics = crate::application::calendar::feed(&state.services, token).await?;
    let mut resp = Response::new(Bytes::from(ics));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/calendar; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(resp)
}

/// `GET /api/me/notification-settings`: the caller's reminder settings (defaults until set).
pub async fn notification_settings(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let settings = crate::application::notifications::view(&state.services, &user).await?;
    Ok(json(StatusCode::OK, serde_json::to_vec(&settings).expect("settings serialise")))
}

/// `PUT /api/me/notification-settings`: replaces them (absent fields take their defaults).
pub async fn put_notification_settings(
    state: &AppState,
    req: &Request,
    body: super::BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let doc = super::products::read_json(req, body, "application/json").await?;
    let settings = crate::application::notifications::put(&state.services, &user, &doc).await?;
    Ok(json(StatusCode::OK, serde_json::to_vec(&settings).expect("settings serialise")))
}
