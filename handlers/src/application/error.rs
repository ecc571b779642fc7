//! The one error of the use cases. Each variant is a reason a request cannot be served as asked;
//! the HTTP entry point maps them to problem+json in one place (`inbound/http/error.rs`).

use crate::domain::{FieldError, INVOICE_MAX_BYTES, ProductId};
use crate::ports::{StoreError, Unavailable};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more fields are missing or invalid, all reported.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// No such product for this user.
    #[error("not found")]
    NotFound,
    /// This user already registered this brand + serial number (as `existing`).
    #[error("product already registered")]
    AlreadyRegistered { existing: Option<ProductId> },
    /// An idempotency key reused with a different request.
    #[error("the idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// A patch that is not a JSON object of card fields.
    #[error("the patch is not a JSON object of card fields: {0}")]
    PatchInvalid(String),
    /// The revision the client read is not the current one.
    #[error("the product changed since it was read")]
    PreconditionFailed,
    /// These fields cannot change after the first service request (REQ-3.2).
    #[error("the product is locked by a service request")]
    Locked { fields: Vec<&'static str> },
    /// A product with service requests is kept.
    #[error("the product has service requests")]
    HasServiceRequests,
    /// A coverage a service request relied on keeps its kind, start and duration.
    #[error("the coverage is locked by a service request")]
    CoverageLocked { fields: Vec<&'static str> },
    /// The product already has the most coverages allowed.
    #[error("the product has the most coverages allowed")]
    CoverageLimit,
    /// A product keeps at least one coverage.
    #[error("the product's last coverage cannot be removed")]
    LastCoverage,
    #[error("the invoice must be smaller than {INVOICE_MAX_BYTES} bytes")]
    InvoiceTooLarge,
    #[error("the invoice is not a PDF, JPEG or PNG file")]
    InvoiceUnsupported,
    /// The intake's invoice is still being read.
    #[error("the intake is still being read")]
    IntakeReading,
    /// The intake's invoice could not be read, for these reasons.
    #[error("the intake's invoice could not be read")]
    IntakeFailed(Vec<String>),
    /// As many products were registered from the intake as its invoice lists.
    #[error("the intake was used")]
    IntakeUsed,
    /// The intake is past its lifetime.
    #[error("the intake expired")]
    IntakeExpired,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Gone => Self::NotFound,
            StoreError::Stale => Self::PreconditionFailed,
            StoreError::DuplicateProduct { existing } => Self::AlreadyRegistered { existing },
            StoreError::IdempotencyKeyTaken => Self::IdempotencyKeyReused,
            StoreError::Unavailable(u) => Self::Unavailable(u),
        }
    }
}
