//! Use cases, written against the ports only. Ordering, idempotency and compensation live here.

pub mod calendar;
pub mod coverages;
pub mod error;
pub mod intake;
pub mod intakes;
pub mod lifecycle;
pub mod notifications;
pub mod ocr;
pub mod outbox;
pub mod privacy;
pub mod products;
pub mod reconcile;
pub mod register;
pub mod reminders;
pub mod sharing;

use std::sync::Arc;

pub use error::Error;

use crate::domain::BrandCatalog;
use crate::ports::{Clock, InvoiceReader, InvoiceStore, ProductRepository};

/// Everything a use case may touch.
#[derive(Clone)]
pub struct Services {
    pub products: Arc<dyn ProductRepository>,
    pub invoices: Arc<dyn InvoiceStore>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<BrandCatalog>,
    /// How long an `Idempotency-Key` answer is remembered.
    pub idempotency_ttl: chrono::Duration,
    /// Reads invoices (e-invoice XML, PDF text, Tesseract, Document Intelligence).
    pub reader: Arc<dyn InvoiceReader>,
    /// How far the invoice date may be from the purchase date and still match.
    pub ocr_date_tolerance_days: u32,
    /// Longest time one invoice is read for (every engine and page together): it ends well
    /// inside the Functions host's `functionTimeout`, which would otherwise restart the
    /// handler process and abort everything in flight on the instance.
    pub ocr_deadline: std::time::Duration,
    /// Delivers the OCR events the product store's outbox holds; told of every new one.
    pub outbox: Arc<outbox::Relay>,
    /// Signing key and lifetime of the card's verification links.
    pub links: sharing::LinkPolicy,
    /// Expiry reminders: schedule, feed, outbox and the channels they go out on.
    pub reminders: reminders::Reminders,
}

/// One of a user's records (`ProductRepository::user_record`) read as `T`; `T`'s default when
/// the user has none.
pub fn record_or_default<T: serde::de::DeserializeOwned + Default>(
    key: &str,
    doc: Option<serde_json::Value>,
) -> Result<T, crate::ports::Unavailable> {
    match doc {
        None => Ok(T::default()),
        Some(doc) => serde_json::from_value(doc)
            .map_err(|e| crate::ports::Unavailable::new("product store", format!("stored {key} is unreadable: {e}"))),
    }
}
