//! Use cases, written against the ports only. Ordering, idempotency and compensation live here.

pub mod intake;
pub mod products;
pub mod register;

use std::sync::Arc;

use crate::domain::BrandCatalog;
use crate::ports::{Clock, InvoiceStore, ProductRepository};

/// Everything a use case may touch.
#[derive(Clone)]
pub struct Services {
    pub products: Arc<dyn ProductRepository>,
    pub invoices: Arc<dyn InvoiceStore>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Arc<BrandCatalog>,
    /// How long an `Idempotency-Key` answer is remembered.
    pub idempotency_ttl: chrono::Duration,
}
