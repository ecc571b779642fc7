//! What the entry points share: the services, the authenticator, and the shapes of a request
//! body and a response.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use warp::http::Response;

use crate::application::Services;
use crate::inbound::auth::Authenticator;

/// The request body as a stream of chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub type HttpResponse = Response<Bytes>;

/// Everything handlers share.
pub struct AppState {
    pub services: Services,
    pub auth: Authenticator,
    pub version: &'static str,
    /// Public base URL for links on cards and in calendars; `None`: from the request.
    pub public_base_url: Option<String>,
    /// How long `DELETE /api/me` waits for the erasure before answering `202`.
    pub erasure_wait: std::time::Duration,
}
