//! The registered product and its warranty card.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::coverage::{Coverage, CoverageStatus, CoverageView, covered_until};
pub use super::invoice::InvoiceRef;
use super::ocr::OcrState;
use super::{PurchaseDate, SerialNumber, WarrantyStatus};

/// Products are identified by UUIDv7: unguessable enough with auth in front, and time-ordered
/// so that storage indexes stay append-mostly.
pub type ProductId = Uuid;

/// The authenticated caller, from the token's user claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The stored document. Serialised as-is into the embedded store and into Cosmos DB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductRecord {
    pub id: ProductId,
    pub user_id: UserId,
    pub brand: String,
    /// Lower-cased, whitespace-collapsed brand: the uniqueness key with the serial number.
    pub brand_key: String,
    pub model: String,
    pub serial_number: SerialNumber,
    pub purchase_date: PurchaseDate,
    pub warranty_months: u32,
    pub warranty_expires_on: NaiveDate,
    pub invoice: InvoiceRef,
    pub ocr: OcrState,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change a user makes; the card's `ETag` (optimistic concurrency). The OCR
    /// handler's writes do not bump it: they change nothing a client can edit.
    #[serde(default = "first_revision")]
    pub revision: u64,
    /// Free text the owner may always edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Set by the first service request: from then on brand, model, serial number and purchase
    /// date are fixed (REQ-3.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub service_requests: Vec<ServiceRequest>,
    /// Who changed what and when, oldest first.
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
    /// The warranties the product has. Empty only in documents stored before coverages
    /// existed: read through [`ProductRecord::coverages`], which supplies the manufacturer's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverages: Vec<Coverage>,
    /// Verification links carry the epoch they were issued in; revoking them bumps it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verification_epoch: u32,
    /// The intake it was registered from (invoice-first registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake_id: Option<Uuid>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn first_revision() -> u64 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    pub id: Uuid,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_contact: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Whether the warranty was active on the day the request was raised (UTC).
    pub in_warranty: bool,
    /// The coverage the request relies on (the user's choice, or the first active one that
    /// day); `null` when none covered it.
    #[serde(default)]
    pub coverage_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub by: UserId,
    /// `registered`, `edited`, `service_request_raised`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What the mobile app sees.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarrantyCard {
    pub id: ProductId,
    pub brand: String,
    pub model: String,
    pub serial_number: String,
    pub purchase_date: NaiveDate,
    pub warranty_months: u32,
    pub warranty_expires_on: NaiveDate,
    /// `active` while any coverage is.
    pub warranty_status: WarrantyStatus,
    /// Every coverage, with its expiry and status today.
    pub coverages: Vec<CoverageView>,
    /// The last day any coverage covers; `null` when one is for life.
    pub covered_until: Option<NaiveDate>,
    pub invoice: InvoiceView,
    pub ocr: OcrState,
    pub created_at: DateTime<Utc>,
    pub revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Whether brand, model, serial number and purchase date are fixed (a service request exists).
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<DateTime<Utc>>,
    pub service_request_count: usize,
    /// The newest [`CARD_AUDIT_ENTRIES`] entries of the audit trail, oldest first; the whole
    /// trail pages through `GET /api/products/{id}/audit`.
    pub audit: Vec<AuditEntry>,
    /// Entries in the whole audit trail.
    pub audit_count: usize,
    /// The intake it was registered from, when it was registered invoice-first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_id: Option<Uuid>,
}

/// Audit entries a card carries: the card stays small however often the product is edited.
pub const CARD_AUDIT_ENTRIES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    pub file_name: String,
    pub content_type: &'static str,
    pub size_bytes: u64,
    pub sha256: String,
    pub version: u32,
}

/// The entity tag of a card at `revision`: `"r{revision}"`.
pub fn revision_etag(revision: u64) -> String {
    format!("\"r{revision}\"")
}

impl ProductRecord {
    /// The coverages, with the catalogue's manufacturer coverage for documents stored before
    /// coverages existed.
    pub fn coverages(&self) -> std::borrow::Cow<'_, [Coverage]> {
        if self.coverages.is_empty() {
            std::borrow::Cow::Owned(vec![self.catalogue_coverage()])
        } else {
            std::borrow::Cow::Borrowed(&self.coverages)
        }
    }

    /// The manufacturer coverage the catalogue gives this product.
    pub fn catalogue_coverage(&self) -> Coverage {
        Coverage::from_catalogue(self.id, &self.brand, self.purchase_date.date(), self.warranty_months)
    }

    /// The coverages as stored from now on (filled in for an older document before a change).
    pub fn coverages_mut(&mut self) -> &mut Vec<Coverage> {
        if self.coverages.is_empty() {
            self.coverages.push(self.catalogue_coverage());
        }
        &mut self.coverages
    }

    /// The card as of `today` (UTC): the status is computed, never stored, so it cannot go stale.
    pub fn card(&self, today: NaiveDate) -> WarrantyCard {
        let coverages = self.coverages();
        let views: Vec<CoverageView> = coverages.iter().map(|c| c.view(today)).collect();
        let covered = views.iter().any(|c| c.status == CoverageStatus::Active);
        WarrantyCard {
            id: self.id,
            brand: self.brand.clone(),
            model: self.model.clone(),
            serial_number: self.serial_number.as_str().to_owned(),
            purchase_date: self.purchase_date.date(),
            warranty_months: self.warranty_months,
            warranty_expires_on: self.warranty_expires_on,
            warranty_status: if covered { WarrantyStatus::Active } else { WarrantyStatus::Expired },
            coverages: views,
            covered_until: covered_until(&coverages),
            invoice: InvoiceView {
                file_name: self.invoice.file_name.clone(),
                content_type: self.invoice.kind.content_type(),
                size_bytes: self.invoice.size_bytes,
                sha256: self.invoice.sha256.clone(),
                version: self.invoice.version,
            },
            ocr: self.ocr.clone(),
            created_at: self.created_at,
            revision: self.revision,
            notes: self.notes.clone(),
            locked: self.locked_at.is_some(),
            locked_at: self.locked_at,
            service_request_count: self.service_requests.len(),
            audit: self.audit[self.audit.len().saturating_sub(CARD_AUDIT_ENTRIES)..].to_vec(),
            audit_count: self.audit.len(),
            intake_id: self.intake_id,
        }
    }

    /// What makes a product unique for its owner: the brand key and the serial number (the
    /// Cosmos DB unique key; the SQLite constraint uses the two columns).
    pub fn uniqueness_key(&self) -> String {
        format!("product\u{1f}{}\u{1f}{}", self.brand_key, self.serial_number)
    }

    /// The card's entity tag: changes whenever a user-visible, user-editable part changes.
    pub fn etag(&self) -> String {
        revision_etag(self.revision)
    }
}

/// The event that asks for the invoice to be read. Its `message_id` is derived from the product
/// and the invoice version, so publishing it twice is deduplicated by the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OcrRequested {
    pub message_id: String,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub invoice_location: String,
    pub invoice_content_type: String,
    pub invoice_sha256: String,
    pub invoice_version: u32,
    pub requested_at: DateTime<Utc>,
    /// W3C trace id of the registration request, carried as the message's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// How many times this event was put back on the queue after a transient failure (0 for
    /// the event a registration publishes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requeued: u32,
    /// When the first transient failure happened: the event is retried until
    /// `WARRANTY_OCR_REQUEUE_FOR_HOURS` after it, then left to the queue's own dead-lettering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// What is read: a product's invoice, or an intake's (then `product_id` is the intake's id).
    #[serde(default, skip_serializing_if = "Subject::is_product")]
    pub subject: Subject,
}

/// Whose invoice an OCR event asks to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    #[default]
    Product,
    Intake,
}

impl Subject {
    fn is_product(&self) -> bool {
        *self == Subject::Product
    }
}

impl OcrRequested {
    /// The Service Bus message id of this event: the event's own id, or `{id}~r{n}` for its
    /// n-th copy put back after a transient failure (a new id, so that duplicate detection
    /// keeps it; the event id stays the idempotency key of the reading).
    pub fn queue_message_id(&self) -> String {
        if self.requeued == 0 { self.message_id.clone() } else { format!("{}~r{}", self.message_id, self.requeued) }
    }

    pub fn for_product(p: &ProductRecord) -> Self {
        Self {
            message_id: format!("{}:invoice:{}", p.id, p.invoice.version),
            product_id: p.id,
            user_id: p.user_id.clone(),
            invoice_location: p.invoice.location.clone(),
            invoice_content_type: p.invoice.kind.content_type().to_owned(),
            invoice_sha256: p.invoice.sha256.clone(),
            invoice_version: p.invoice.version,
            requested_at: p.created_at,
            trace_id: None,
            requeued: 0,
            failing_since: None,
            subject: Subject::Product,
        }
    }
}
