//! An intake: an invoice uploaded before the product is known (invoice-first registration).
//!
//! The invoice is stored and read like a registration's; the reading proposes the form
//! ([`Proposals`]); the person confirms or corrects it and registers one product, or as many
//! as the invoice lists, from the stored invoice. An intake lives [`INTAKE_LIFETIME_HOURS`]:
//! afterwards its file is removed and a small tombstone answers `410` for
//! [`TOMBSTONE_DAYS`] more, then the record goes too.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ocr::{InvoiceFields, OcrEngineKind};
use super::product::{InvoiceRef, OcrRequested, ProductId, Subject, UserId};
use super::proposals::Proposals;

pub type IntakeId = Uuid;

/// How long an intake can be used after its upload.
pub const INTAKE_LIFETIME_HOURS: i64 = 24;

/// How long an expired or used-up intake still answers `410` rather than `404`.
pub const TOMBSTONE_DAYS: i64 = 30;

/// Characters of a reading's text kept with the intake (what a registration's verification
/// searches for the confirmed brand, model and serial). A text layer past this is cut: the
/// products of an invoice are on its first pages.
pub const TEXT_MAX_CHARS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntakeStatus {
    /// Waiting for its reading (queued, or being read).
    Reading,
    /// Read: the proposals are there.
    Ready,
    /// The invoice cannot be read; `failure_reasons` says why.
    Failed,
    /// Past its lifetime: the file is gone.
    Expired,
}

/// What the reading of an intake's invoice gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeReading {
    pub engine: OcrEngineKind,
    pub fields: InvoiceFields,
    /// The text the registration's verification searches (at most [`TEXT_MAX_CHARS`]).
    pub text: String,
    pub proposals: Proposals,
    pub read_at: DateTime<Utc>,
}

/// The stored intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeRecord {
    pub id: IntakeId,
    pub user_id: UserId,
    /// The uploaded invoice (`{id}.intake.{ext}`); its file is gone once `Expired`.
    pub invoice: InvoiceRef,
    pub status: IntakeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<IntakeReading>,
    /// With `failed`: the reader's stable reasons (`invoice_encrypted`, `ocr_deadline_exceeded`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_reasons: Vec<String>,
    /// Readings begun (a reading cut short by a crash is begun again).
    #[serde(default)]
    pub attempts: u32,
    /// Products registered from it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ProductId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Bumped by every write: the stores' optimistic concurrency.
    pub revision: u64,
}

/// Why an intake cannot register a product now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Still being read: try again shortly.
    Reading,
    /// The reading failed.
    Failed,
    /// As many products were registered from it as its invoice lists.
    UsedUp,
    /// Past its lifetime.
    Expired,
}

impl IntakeRecord {
    pub fn new(id: IntakeId, user_id: UserId, invoice: InvoiceRef, now: DateTime<Utc>) -> Self {
        Self {
            id,
            user_id,
            invoice,
            status: IntakeStatus::Reading,
            reading: None,
            failure_reasons: Vec::new(),
            attempts: 0,
            products: Vec::new(),
            created_at: now,
            expires_at: now + Duration::hours(INTAKE_LIFETIME_HOURS),
            revision: 1,
        }
    }

    /// The event that reads its invoice (one per intake: its file never changes).
    pub fn reading_event(&self) -> OcrRequested {
        OcrRequested {
            message_id: format!("{}:intake", self.id),
            product_id: self.id,
            user_id: self.user_id.clone(),
            invoice_location: self.invoice.location.clone(),
            invoice_content_type: self.invoice.kind.content_type().to_owned(),
            invoice_sha256: self.invoice.sha256.clone(),
            invoice_version: self.invoice.version,
            requested_at: self.created_at,
            trace_id: None,
            requeued: 0,
            failing_since: None,
            subject: Subject::Intake,
        }
    }

    /// Products this intake can register in all: one per product line its invoice lists, at
    /// least one (an invoice whose lines named no product still proves one purchase).
    pub fn capacity(&self) -> usize {
        self.reading.as_ref().map_or(1, |r| r.proposals.products.len().max(1))
    }

    /// When the sweep next has work with it: removing the file at expiry, then the tombstone.
    pub fn sweep_at(&self) -> DateTime<Utc> {
        if self.status == IntakeStatus::Expired {
            self.expires_at + Duration::days(TOMBSTONE_DAYS)
        } else {
            self.expires_at
        }
    }

    /// Whether a product can be registered from it at `now`.
    pub fn usable(&self, now: DateTime<Utc>) -> Result<(), Unusable> {
        if self.status == IntakeStatus::Expired || now >= self.expires_at {
            // A used-up intake says so even after its lifetime: that is the more useful answer.
            return Err(if self.products.len() >= self.capacity() && !self.products.is_empty() {
                Unusable::UsedUp
            } else {
                Unusable::Expired
            });
        }
        match self.status {
            IntakeStatus::Reading => Err(Unusable::Reading),
            IntakeStatus::Failed => Err(Unusable::Failed),
            _ if self.products.len() >= self.capacity() => Err(Unusable::UsedUp),
            _ => Ok(()),
        }
    }

    /// The state a client sees.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        match self.usable(now) {
            Err(Unusable::UsedUp) => "used",
            Err(Unusable::Expired) => "expired",
            _ => match self.status {
                IntakeStatus::Reading => "reading",
                IntakeStatus::Ready => "ready",
                IntakeStatus::Failed => "failed",
                IntakeStatus::Expired => "expired",
            },
        }
    }

    /// The answer to `GET /api/intakes/{id}`.
    pub fn view(&self, now: DateTime<Utc>) -> IntakeView {
        let reading = self.reading.as_ref();
        IntakeView {
            id: self.id,
            status: self.state(now),
            failure_reasons: self.failure_reasons.clone(),
            invoice: (self.status != IntakeStatus::Expired).then(|| IntakeInvoice {
                file_name: self.invoice.file_name.clone(),
                content_type: self.invoice.kind.content_type(),
                size_bytes: self.invoice.size_bytes,
                sha256: self.invoice.sha256.clone(),
            }),
            engine: reading.map(|r| r.engine),
            proposals: reading.map(|r| r.proposals.clone()),
            products: self.products.clone(),
            products_left: self.capacity().saturating_sub(self.products.len()),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeInvoice {
    pub file_name: String,
    pub content_type: &'static str,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeView {
    pub id: IntakeId,
    /// `reading`, `ready`, `failed`, `used` or `expired`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failure_reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice: Option<IntakeInvoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<OcrEngineKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposals: Option<Proposals>,
    /// Products registered from it.
    pub products: Vec<ProductId>,
    /// How many more products it can register.
    pub products_left: usize,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvoiceKind;
    use crate::domain::proposals::ProductProposal;

    fn intake(now: DateTime<Utc>) -> IntakeRecord {
        let invoice = InvoiceRef {
            file_name: "invoice.pdf".into(),
            kind: InvoiceKind::Pdf,
            size_bytes: 10,
            sha256: "00".into(),
            crc32: Some(0),
            location: "x.intake.pdf".into(),
            version: 1,
        };
        IntakeRecord::new(Uuid::from_u128(1), UserId("u".into()), invoice, now)
    }

    fn ready(mut i: IntakeRecord, products: usize, now: DateTime<Utc>) -> IntakeRecord {
        i.status = IntakeStatus::Ready;
        i.reading = Some(IntakeReading {
            engine: OcrEngineKind::PdfText,
            fields: InvoiceFields::default(),
            text: String::new(),
            proposals: Proposals { products: vec![ProductProposal::default(); products], ..Proposals::default() },
            read_at: now,
        });
        i
    }

    #[test]
    fn an_intake_registers_as_many_products_as_its_invoice_lists_within_its_lifetime() {
        let now = Utc::now();
        let i = intake(now);
        assert_eq!(i.usable(now), Err(Unusable::Reading));
        let mut i = ready(i, 2, now);
        assert_eq!(i.usable(now), Ok(()));
        i.products.push(Uuid::from_u128(7));
        assert_eq!(i.usable(now), Ok(()));
        assert_eq!(i.view(now).products_left, 1);
        i.products.push(Uuid::from_u128(8));
        assert_eq!(i.usable(now), Err(Unusable::UsedUp));
        assert_eq!(i.state(now), "used");
        assert_eq!(i.usable(now + Duration::hours(25)), Err(Unusable::UsedUp));

        let unused = ready(intake(now), 0, now);
        assert_eq!(unused.capacity(), 1, "an invoice without product lines still proves one purchase");
        assert_eq!(unused.usable(now + Duration::hours(24)), Err(Unusable::Expired));
        assert_eq!(unused.state(now + Duration::hours(24)), "expired");
        assert_eq!(unused.sweep_at(), now + Duration::hours(24));
        let mut failed = intake(now);
        failed.status = IntakeStatus::Failed;
        assert_eq!(failed.usable(now), Err(Unusable::Failed));
    }
}
