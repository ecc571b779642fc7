//! The in-app reminder feed and the caller's push devices.

use serde::Serialize;
use warp::http::StatusCode;

use super::error::ApiError;
use super::products::{bad_token, json, no_content, page_params, read_json};
use super::{AppState, BodyStream, HttpResponse, Request};
use crate::application::products;
use crate::application::reminders::{self, Device, DeviceError};
use crate::ports::{FeedCursor, Reminder};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    id: &'a str,
    product_id: uuid::Uuid,
    coverage_id: uuid::Uuid,
    title: &'a str,
    body: &'a str,
    expires_on: chrono::NaiveDate,
    lead_days: u32,
    due_at: chrono::DateTime<chrono::Utc>,
    created_at: chrono::DateTime<chrono::Utc>,
    read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> From<&'a Reminder> for Item<'a> {
    fn from(r: &'a Reminder) -> Self {
        Self {
            id: &r.id,
            product_id: r.product_id,
            coverage_id: r.coverage_id,
            title: &r.title,
            body: &r.body,
            expires_on: r.expires_on,
            lead_days: r.lead_days,
            due_at: r.due_at,
            created_at: r.created_at,
            read: r.read_at.is_some(),
            read_at: r.read_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FeedBody<'a> {
    items: Vec<Item<'a>>,
    unread_count: u64,
    continuation_token: Option<String>,
}

/// `GET /api/notifications?limit=&continuationToken=`: the caller's reminders, newest first,
/// with the number unread.
pub async fn feed(state: &AppState, req: &Request) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let (limit, token) = page_params(req)?;
    let cursor = token.map(|t| products::decode_token::<FeedCursor>(&t).map_err(|_| bad_token())).transpose()?;
    let page = reminders::feed(&state.services, &user, cursor.as_ref(), limit).await?;
    let body = FeedBody {
        items: page.items.iter().map(Item::from).collect(),
        unread_count: page.unread,
        continuation_token: page.next.map(|c| products::encode_token(&c)),
    };
    Ok(json(StatusCode::OK, serde_json::to_vec(&body).expect("a feed serialises")))
}

/// `POST /api/notifications/{id}/read`: marks one reminder read (again: no change).
pub async fn mark_read(state: &AppState, req: &Request, id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    if id.len() > 64 {
        return Err(ApiError::NotFound);
    }
    reminders::mark_read(&state.services, &user, id).await?;
    Ok(no_content(None))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceBody<'a> {
    installation_id: &'a str,
    platform: &'a str,
    registered_at: chrono::DateTime<chrono::Utc>,
}

fn device_error(e: DeviceError) -> ApiError {
    match e {
        DeviceError::Invalid(errors) => ApiError::Validation(errors),
        DeviceError::NotConfigured => ApiError::PushNotConfigured,
        DeviceError::NotFound => ApiError::NotFound,
        DeviceError::Hub(e) => {
            tracing::error!(error = %e, "Notification Hubs refused or failed an installation");
            ApiError::Unavailable { code: "push_unavailable" }
        }
        DeviceError::Store(e) => e.into(),
    }
}

/// `PUT /api/me/devices/{installationId}`: registers the device for push (201), or refreshes
/// its push channel (200).
pub async fn put_device(
    state: &AppState,
    req: &Request,
    installation_id: &str,
    body: BodyStream,
) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    let doc = read_json(req, body, "application/json").await?;
    let (device, new): (Device, bool) =
        reminders::register_device(&state.services, &user, installation_id, &doc).await.map_err(device_error)?;
    let body = DeviceBody {
        installation_id: &device.installation_id,
        platform: &device.platform,
        registered_at: device.registered_at,
    };
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, serde_json::to_vec(&body).expect("a device serialises")))
}

/// `DELETE /api/me/devices/{installationId}`: stops push to the device.
pub async fn delete_device(state: &AppState, req: &Request, installation_id: &str) -> Result<HttpResponse, ApiError> {
    let user = req.user(state).await?;
    reminders::remove_device(&state.services, &user, installation_id).await.map_err(device_error)?;
    Ok(no_content(None))
}
