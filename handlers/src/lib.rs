//! Warranty registration backend: an Azure Functions custom handler.
//!
//! Layers (dependencies point down only): [`domain`] → [`ports`] → [`application`] →
//! [`adapters`] and the entry points ([`http`]); [`startup`] wires them.

pub mod adapters;
pub mod application;
pub mod archive;
pub mod build_info;
pub mod card;
pub mod config;
pub mod domain;
pub mod host;
pub mod inbound;
pub mod ocr_eval;
pub mod ops;
pub mod ports;
pub mod proposals_eval;
pub mod telemetry;
