//! Where reminders go besides the in-app feed: push through Azure Notification Hubs, and a
//! user's own webhook.

pub mod hubs;
pub mod webhook;

use crate::ports::SendFailure;

/// A `Retry-After` in seconds, if the answer carried one.
fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
}

/// A request that did not get an answer: worth retrying.
fn unreachable(what: &str, e: reqwest::Error) -> SendFailure {
    // Without the URL: a webhook URL may carry a token in its path or query.
    SendFailure::Transient { reason: format!("{what} unreachable: {}", e.without_url()), retry_after: None }
}
