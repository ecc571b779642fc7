//! The ways in: the HTTP API behind the Functions host's forwarding proxy (`http`), the
//! non-HTTP trigger invocations (`triggers`), and the state both share (`state`).

pub mod auth;
pub mod http;
pub mod jwks;
pub mod state;
pub mod triggers;
