//! What the application needs from the outside world. Adapters implement these traits; the
//! use cases in `application` are written against them only.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{OcrRequested, ProductId, ProductRecord, UserId};

/// A backend is down, slow or refusing: the client may retry (503). The message is for logs
/// only and never reaches a response body.
#[derive(Debug, thiserror::Error)]
#[error("{backend} unavailable: {message}")]
pub struct Unavailable {
    pub backend: &'static str,
    pub message: String,
}

impl Unavailable {
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            backend,
            message: message.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The same user already registered this brand + serial number.
    #[error("product already registered as {existing:?}")]
    DuplicateProduct { existing: Option<ProductId> },
    /// Another request with the same idempotency key won the race.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The first answer given to a request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Hash of the request's meaningful content, to refuse a key reused for another request.
    pub fingerprint: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A key under which a response is remembered.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub response: StoredResponse,
    pub expires_at: DateTime<Utc>,
}

/// Position in a newest-first listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: ProductId,
}

#[async_trait]
pub trait ProductRepository: Send + Sync {
    /// Stores the product, its OCR event and (optionally) the idempotent response in one
    /// atomic step: either all exist afterwards or none does.
    async fn insert_registration(
        &self,
        product: &ProductRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), InsertError>;

    async fn get(&self, user: &UserId, id: ProductId)
    -> Result<Option<ProductRecord>, Unavailable>;

    /// Up to `limit` of the user's products, newest first, strictly after `after`.
    async fn list(
        &self,
        user: &UserId,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<ProductRecord>, Unavailable>;

    async fn idempotent_response(
        &self,
        user: &UserId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredResponse>, Unavailable>;

    async fn health(&self) -> Result<(), Unavailable>;
}

/// An invoice being written. Dropping it without `commit` must leave nothing behind
/// (adapters abort in `Drop` as a last resort; callers call `abort` explicitly).
#[async_trait]
pub trait InvoiceUpload: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), Unavailable>;
    /// Makes the upload durable under its final location and returns that location.
    async fn commit(self: Box<Self>) -> Result<String, Unavailable>;
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Starts writing the invoice of `product` (version `version`) with extension `ext`.
    async fn begin(
        &self,
        product: ProductId,
        version: u32,
        ext: &str,
    ) -> Result<Box<dyn InvoiceUpload>, Unavailable>;

    /// Removes a committed invoice (compensation when the product could not be stored).
    async fn delete(&self, location: &str) -> Result<(), Unavailable>;

    async fn exists(&self, location: &str) -> Result<bool, Unavailable>;

    async fn health(&self) -> Result<(), Unavailable>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
