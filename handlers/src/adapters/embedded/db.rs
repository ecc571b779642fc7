//! Helpers every SQLite table of the embedded store uses.

use chrono::{DateTime, Utc};

use crate::ports::Unavailable;

/// The name failures of the product database carry.
pub const BACKEND: &str = "product store";

/// Timestamps are stored as fixed-width RFC 3339 UTC strings so text order is time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A SQLite failure as the port reports it.
pub fn unavailable(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::new(BACKEND, e)
}
