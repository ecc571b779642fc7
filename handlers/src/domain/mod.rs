//! Pure types and rules of the warranty domain. No I/O, no async.
//!
//! Each concept is a newtype obtained through `parse` (or read back from storage, where it was
//! stored valid), so code that holds a [`SerialNumber`] or a [`PurchaseDate`] holds a valid one.

pub mod brand_catalog;
pub mod coverage;
pub mod edit;
pub mod extraction;
pub mod intake;
pub mod invoice;
pub mod ocr;
pub mod product;
pub mod proposals;
pub mod purchase_date;
pub mod reminders;
pub mod serial_number;
pub mod text_field;
pub mod verification;
pub mod warranty;

pub use brand_catalog::{BrandCatalog, WarrantyTerms};
pub use coverage::{Coverage, CoverageError, CoverageKind, CoverageStatus, CoverageView};
pub use edit::{Change, EditError, PatchError, ProductField, ProductPatch};
pub use invoice::{INVOICE_MAX_BYTES, InvoiceKind, Sniffed};
pub use ocr::{OcrState, OcrStatus};
pub use product::{
    AuditEntry, FieldChange, InvoiceRef, OcrRequested, ProductId, ProductRecord, ServiceRequest, Subject, UserId,
    WarrantyCard,
};
pub use purchase_date::PurchaseDate;
pub use serial_number::SerialNumber;
pub use warranty::{WarrantyStatus, expiry_date};

/// Why one input field was refused. `code` is stable and documented; `detail` is for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub code: &'static str,
    pub detail: String,
}

impl FieldError {
    pub fn new(field: &'static str, code: &'static str, detail: impl Into<String>) -> Self {
        Self { field, code, detail: detail.into() }
    }
}
