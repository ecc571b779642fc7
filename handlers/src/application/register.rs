//! Register a product with its invoice (SEQ-UJ-001).
//!
//! Order: the invoice has been streamed into the store (uncommitted) by the caller → fields
//! are parsed into domain types → an earlier answer for the same `Idempotency-Key` is replayed
//! → the invoice is committed → product, OCR event and idempotent answer are stored in one
//! atomic write. If that write fails, the committed invoice is deleted again (compensation), so
//! no product exists without its invoice and OCR event, and no invoice without its product.

use super::Error;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Services;
use super::intake::ReceivedInvoice;
use crate::domain::text_field::BoundedText;
use crate::domain::{
    Coverage, FieldError, OcrRequested, OcrState, ProductField, ProductId, ProductRecord, PurchaseDate, SerialNumber,
    UserId, WarrantyCard, brand_catalog::brand_key, expiry_date,
};
use crate::ports::{IdempotencyRecord, StoreError, StoredResponse, Unavailable};

pub use crate::domain::edit::{BRAND_MAX_CHARS, MODEL_MAX_CHARS};

/// The text fields as the client sent them (already decoded from multipart).
#[derive(Debug, Default, Clone)]
pub struct RegistrationForm {
    pub brand: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub purchase_date: Option<String>,
    /// The intake to register from instead of an uploaded invoice (invoice-first registration).
    pub intake_id: Option<String>,
    /// Problems with fields found while reading the form (duplicated, too long, not UTF-8).
    pub transport_errors: Vec<FieldError>,
}

impl RegistrationForm {
    /// Where a registration field's value goes; `None` for a field the form does not take.
    pub fn slot(&mut self, field: ProductField) -> Option<&mut Option<String>> {
        match field {
            ProductField::Brand => Some(&mut self.brand),
            ProductField::Model => Some(&mut self.model),
            ProductField::SerialNumber => Some(&mut self.serial_number),
            ProductField::PurchaseDate => Some(&mut self.purchase_date),
            ProductField::Notes => None,
        }
    }
}

/// Keeps one error per field (the first reported) and sorts them in form order, so the
/// top-level `code` of a response is predictable.
pub fn normalize_field_errors(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert(e.field));
    // Form order: the text fields, then the invoice.
    errors.sort_by_key(|e| ProductField::from_name(e.field).map_or(usize::MAX, |f| f as usize));
    errors
}

/// A validated registration, ready to store.
#[derive(Clone)]
struct ValidRegistration {
    brand: String,
    model: String,
    serial: SerialNumber,
    purchase: PurchaseDate,
    warranty_months: u32,
}

impl ValidRegistration {
    /// The product it registers: the catalogue's coverage, the expiry, the first audit entry.
    fn into_product(
        self,
        id: ProductId,
        user: &UserId,
        invoice: crate::domain::InvoiceRef,
        ocr: OcrState,
        now: DateTime<Utc>,
    ) -> ProductRecord {
        let catalogue = Coverage::from_catalogue(id, &self.brand, self.purchase.date(), self.warranty_months);
        ProductRecord {
            id,
            user_id: user.clone(),
            brand_key: brand_key(&self.brand),
            brand: self.brand,
            model: self.model,
            serial_number: self.serial,
            purchase_date: self.purchase,
            warranty_months: self.warranty_months,
            warranty_expires_on: expiry_date(self.purchase.date(), self.warranty_months),
            invoice,
            ocr,
            created_at: now,
            revision: 1,
            notes: None,
            locked_at: None,
            service_requests: Vec::new(),
            coverages: vec![catalogue],
            verification_epoch: 0,
            audit: vec![crate::domain::AuditEntry {
                at: now,
                by: user.clone(),
                action: "registered".into(),
                changes: Vec::new(),
            }],
            intake_id: None,
        }
    }
}

pub enum Registered {
    Created {
        card: Box<WarrantyCard>,
        location: String,
    },
    /// An earlier answer to the same idempotency key.
    Replayed(StoredResponse),
}

/// Parses every field and reports every problem at once, in form order.
pub fn validate(
    services: &Services,
    form: &RegistrationForm,
    invoice_error: Option<FieldError>,
    now: DateTime<Utc>,
) -> Result<(String, String, SerialNumber, PurchaseDate, u32), Vec<FieldError>> {
    // Problems found while reading the form (duplicated, too long) come first so they win
    // over whatever parsing the surviving value says.
    let mut errors = form.transport_errors.clone();
    let (b, m) = (ProductField::Brand, ProductField::Model);
    let brand = BoundedText::parse(b.name(), b.required_code(), form.brand.as_deref(), BRAND_MAX_CHARS)
        .map_err(|e| errors.push(e))
        .ok();
    let model = BoundedText::parse(m.name(), m.required_code(), form.model.as_deref(), MODEL_MAX_CHARS)
        .map_err(|e| errors.push(e))
        .ok();
    let (canonical, serial, months) = match (&brand, &model) {
        (Some(b), m) => {
            let terms = services.catalog.terms(b.as_str(), m.as_ref().map(|m| m.as_str()).unwrap_or(""));
            let serial = SerialNumber::parse(form.serial_number.as_deref(), &terms).map_err(|e| errors.push(e)).ok();
            let name = terms.canonical_brand.map(str::to_owned).unwrap_or_else(|| b.as_str().to_owned());
            (Some(name), serial, terms.warranty_months)
        }
        (None, _) => {
            // Without a brand no serial rule applies; still report a missing serial.
            if form.serial_number.as_deref().is_none_or(|s| s.trim().is_empty()) {
                let s = ProductField::SerialNumber;
                errors.push(FieldError::new(s.name(), s.required_code(), "`serialNumber` is required"));
            }
            (None, None, 0)
        }
    };
    let purchase = PurchaseDate::parse(form.purchase_date.as_deref(), now).map_err(|e| errors.push(e)).ok();
    if let Some(e) = invoice_error {
        errors.push(e);
    }
    let errors = normalize_field_errors(errors);
    match (canonical, model, serial, purchase) {
        (Some(b), Some(m), Some(s), Some(p)) if errors.is_empty() => Ok((b, m.into_inner(), s, p, months)),
        _ => Err(errors),
    }
}

/// Hash of what makes two registrations "the same request" for idempotency.
fn fingerprint(v: &ValidRegistration, invoice_sha256: &str) -> String {
    let mut h = Sha256::new();
    for part in [v.brand.as_str(), v.model.as_str(), v.serial.as_str(), &v.purchase.date().to_string(), invoice_sha256]
    {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Registers `invoice` with `form` for `user`. Consumes the invoice: on every path it is
/// either committed and referenced by a stored product, or removed.
pub async fn register(
    services: &Services,
    user: &UserId,
    product_id: ProductId,
    form: &RegistrationForm,
    invoice: Result<ReceivedInvoice, FieldError>,
    idempotency_key: Option<&str>,
    trace_id: Option<&str>,
) -> Result<Registered, Error> {
    let now = services.clock.now();
    let (invoice, invoice_error) = match invoice {
        Ok(i) => (Some(i), None),
        Err(e) => (None, Some(e)),
    };
    let valid = match validate(services, form, invoice_error, now) {
        Ok((brand, model, serial, purchase, warranty_months)) => {
            ValidRegistration { brand, model, serial, purchase, warranty_months }
        }
        Err(errors) => {
            if let Some(i) = invoice {
                i.abort().await;
            }
            return Err(Error::Invalid(errors));
        }
    };
    let invoice = invoice.expect("validation fails without an invoice");
    let print = fingerprint(&valid, &invoice.sha256);

    if let Some(key) = idempotency_key {
        match services.products.idempotent_response(user, key, now).await {
            Ok(Some(stored)) => {
                invoice.abort().await;
                return replay_or_refuse(stored, &print);
            }
            Ok(None) => {}
            Err(e) => {
                invoice.abort().await;
                return Err(e.into());
            }
        }
    }

    let invoice = invoice.commit().await?;
    let (location, version) = (invoice.location.clone(), invoice.version);

    let product = valid.into_product(product_id, user, invoice, OcrState::queued(version), now);
    let card = product.card(now.date_naive());
    let href = format!("/api/products/{}", product.id);
    let idempotency = idempotency_key.map(|key| IdempotencyRecord {
        key: key.to_owned(),
        response: StoredResponse {
            fingerprint: print.clone(),
            status: 201,
            location: Some(href.clone()),
            body: serde_json::to_string(&card).expect("a card serialises"),
        },
        expires_at: now + services.idempotency_ttl,
    });
    let event = OcrRequested { trace_id: trace_id.map(str::to_owned), ..OcrRequested::for_product(&product) };
    let stored = services.products.insert_registration(&product, &event, idempotency.as_ref()).await;
    if let Err(e) = stored {
        compensate(services, &location).await;
        return match e {
            StoreError::IdempotencyKeyTaken => {
                replay_or_refuse(winning_response(services, user, idempotency_key, now).await?, &print)
            }
            other => Err(other.into()),
        };
    }
    // The event is in the outbox: deliver it now rather than at the next poll or timer tick.
    services.outbox.written(&event).await;
    Ok(Registered::Created { card: Box::new(card), location: href })
}

fn replay_or_refuse(stored: StoredResponse, print: &str) -> Result<Registered, Error> {
    if stored.fingerprint == print { Ok(Registered::Replayed(stored)) } else { Err(Error::IdempotencyKeyReused) }
}

/// The answer of the concurrent request that stored an answer under the same key first (the
/// write of this one was refused with `IdempotencyKeyTaken`).
pub(super) async fn winning_response(
    services: &Services,
    user: &UserId,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<StoredResponse, Error> {
    match services.products.idempotent_response(user, key.unwrap_or_default(), now).await? {
        Some(stored) => Ok(stored),
        None => Err(Unavailable::new("product store", "idempotency record vanished").into()),
    }
}

/// Removes an invoice whose product could not be stored. If even that fails, the invoice is
/// logged for the operator; it is unreachable (no product references it) but not lost silently.
pub(super) async fn compensate(services: &Services, location: &str) {
    if let Err(e) = services.invoices.delete(location).await {
        tracing::error!(location, error = %e, "could not remove the invoice of a failed registration");
    }
}

/// A fresh product id.
pub fn new_product_id() -> ProductId {
    Uuid::now_v7()
}

/// Registers a product from `intake_id`'s stored invoice (invoice-first registration): the
/// fields the person confirmed or corrected, the intake's file copied to the product's own, the
/// intake's reading checked against the fields by the same rules as a registration's reading,
/// and the intake's count of products raised in the same atomic write. No upload, no reading.
#[allow(clippy::too_many_arguments)]
pub async fn register_from_intake(
    services: &Services,
    user: &UserId,
    product_id: ProductId,
    form: &RegistrationForm,
    intake_id: uuid::Uuid,
    idempotency_key: Option<&str>,
) -> Result<Registered, Error> {
    use crate::domain::intake::Unusable;
    let now = services.clock.now();
    let (brand, model, serial, purchase, warranty_months) =
        validate(services, form, None, now).map_err(Error::Invalid)?;
    let valid = ValidRegistration { brand, model, serial, purchase, warranty_months };
    let print = fingerprint(&valid, &format!("intake:{intake_id}"));
    if let Some(key) = idempotency_key
        && let Some(stored) = services.products.idempotent_response(user, key, now).await?
    {
        return replay_or_refuse(stored, &print);
    }
    // A concurrent registration from the same intake makes the write stale: read it again.
    for _ in 0..8 {
        let Some(intake) = services.products.get_intake(user, intake_id).await? else {
            return Err(Error::NotFound);
        };
        match intake.usable(now) {
            Ok(()) => {}
            Err(Unusable::Reading) => return Err(Error::IntakeReading),
            Err(Unusable::Failed) => return Err(Error::IntakeFailed(intake.failure_reasons.clone())),
            Err(Unusable::UsedUp) => return Err(Error::IntakeUsed),
            Err(Unusable::Expired) => return Err(Error::IntakeExpired),
        }
        let Some(reading) = intake.reading.as_ref() else {
            return Err(Unavailable::new("product store", "a ready intake without its reading").into());
        };
        let ext = intake.invoice.kind.extension();
        let Some(location) =
            services.invoices.copy(&intake.invoice.location, user, &format!("{product_id}.v1"), ext).await?
        else {
            return Err(Error::IntakeExpired);
        };
        let invoice = crate::domain::InvoiceRef { location: location.clone(), version: 1, ..intake.invoice.clone() };
        let mut product = valid.clone().into_product(product_id, user, invoice, OcrState::queued(1), now);
        product.intake_id = Some(intake_id);
        // The intake's reading, checked against what the person confirmed.
        let matches = super::ocr::verify(services, &product, &reading.fields, &reading.text);
        let decision = super::ocr::decide(&reading.fields, &matches);
        product.ocr = OcrState {
            status: decision.status,
            invoice_version: 1,
            engine: Some(reading.engine),
            fields: Some(reading.fields.clone()),
            matches: Some(matches),
            uncertain_fields: decision.uncertain,
            failure_reason: None,
            attempts: intake.attempts,
            processed_at: Some(reading.read_at),
        };
        let card = product.card(now.date_naive());
        let href = format!("/api/products/{}", product.id);
        let idempotency = idempotency_key.map(|key| IdempotencyRecord {
            key: key.to_owned(),
            response: StoredResponse {
                fingerprint: print.clone(),
                status: 201,
                location: Some(href.clone()),
                body: serde_json::to_string(&card).expect("a card serialises"),
            },
            expires_at: now + services.idempotency_ttl,
        });
        let mut used = intake.clone();
        used.products.push(product_id);
        used.revision += 1;
        match services.products.insert_from_intake(&product, &used, intake.revision, idempotency.as_ref()).await {
            Ok(()) => return Ok(Registered::Created { card: Box::new(card), location: href }),
            Err(e) => {
                compensate(services, &location).await;
                match e {
                    StoreError::Stale => continue,
                    StoreError::Gone => return Err(Error::NotFound),
                    StoreError::IdempotencyKeyTaken => {
                        let stored = winning_response(services, user, idempotency_key, now).await?;
                        return replay_or_refuse(stored, &print);
                    }
                    other => return Err(other.into()),
                }
            }
        }
    }
    Err(Unavailable::busy("product store", "the intake kept changing").into())
}
