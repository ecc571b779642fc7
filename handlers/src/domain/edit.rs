//! Editing a registered product: the fields a user writes, the merge patch that carries the
//! changes, and the rule that only the fields that change are validated again.
//!
//! An edit of the notes must not fail because the catalogue's serial rule for the brand changed
//! since the product was registered: the stored serial was valid when it was stored and is not
//! being changed. A new brand or model brings its own terms, so then the serial (changed or not)
//! is checked against them and the warranty length follows them.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::text_field::BoundedText;
use super::{
    AuditEntry, BrandCatalog, FieldChange, FieldError, ProductRecord, PurchaseDate, SerialNumber, UserId, expiry_date,
};

pub const BRAND_MAX_CHARS: usize = 64;
pub const MODEL_MAX_CHARS: usize = 100;
pub const NOTES_MAX_CHARS: usize = 1000;

/// A card field a user may write: at registration (all but notes) or in an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProductField {
    Brand,
    Model,
    SerialNumber,
    PurchaseDate,
    Notes,
}

impl ProductField {
    /// In form order: errors are reported in this order.
    pub const ALL: [ProductField; 5] = [Self::Brand, Self::Model, Self::SerialNumber, Self::PurchaseDate, Self::Notes];
    /// The registration form's text fields, in form order.
    pub const REGISTRATION: [ProductField; 4] = [Self::Brand, Self::Model, Self::SerialNumber, Self::PurchaseDate];
    /// Fixed once a service request exists (REQ-3.2).
    pub const CRITICAL: [ProductField; 4] = Self::REGISTRATION;

    /// The name on the wire (multipart field, JSON member, problem `errors[].field`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Brand => "brand",
            Self::Model => "model",
            Self::SerialNumber => "serialNumber",
            Self::PurchaseDate => "purchaseDate",
            Self::Notes => "notes",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The error code for a missing value; `None` for the optional notes.
    pub const fn missing_code(self) -> Option<&'static str> {
        match self {
            Self::Brand => Some("brand_missing"),
            Self::Model => Some("model_missing"),
            Self::SerialNumber => Some("serial_number_missing"),
            Self::PurchaseDate => Some("purchase_date_missing"),
            Self::Notes => None,
        }
    }

    /// [`Self::missing_code`] of a field that is required.
    pub fn required_code(self) -> &'static str {
        self.missing_code().expect("only required fields are asked for their missing code")
    }

    pub fn is_critical(self) -> bool {
        Self::CRITICAL.contains(&self)
    }
}

/// Card members a client sees but cannot set.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "id",
    "warrantyMonths",
    "warrantyExpiresOn",
    "warrantyStatus",
    "invoice",
    "ocr",
    "createdAt",
    "revision",
    "locked",
    "lockedAt",
    "serviceRequestCount",
    "audit",
];

/// One member of a JSON merge patch (RFC 7396): absent, `null`, or a new value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change {
    #[default]
    Keep,
    Clear,
    Set(String),
}

impl Change {
    fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }

    fn value(&self) -> Option<&str> {
        match self {
            Self::Set(s) => Some(s),
            _ => None,
        }
    }
}

/// The changes a `PATCH` asks for, parsed at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductPatch {
    pub brand: Change,
    pub model: Change,
    pub serial_number: Change,
    pub purchase_date: Change,
    pub notes: Change,
}

/// Why a patch document cannot be applied at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// Not a JSON object, an unknown member, or a value that is not a string or null.
    Malformed(String),
    /// Members that exist on the card but cannot be set.
    ReadOnly(Vec<FieldError>),
}

impl ProductPatch {
    /// Reads an RFC 7396 merge patch of a warranty card.
    pub fn from_json(doc: &Value) -> Result<Self, PatchError> {
        let Value::Object(members) = doc else {
            return Err(PatchError::Malformed("the body must be a JSON object".into()));
        };
        let mut patch = Self::default();
        let mut read_only = Vec::new();
        let mut not_text = None;
        for (key, value) in members {
            if let Some(ro) = READ_ONLY_FIELDS.iter().find(|r| **r == key) {
                read_only.push(FieldError::new(ro, "field_read_only", format!("`{ro}` cannot be changed")));
                continue;
            }
            let Some(field) = ProductField::from_name(key) else {
                return Err(PatchError::Malformed(format!("unknown field `{key}`")));
            };
            let change = match value {
                Value::Null => Change::Clear,
                Value::String(s) => Change::Set(s.clone()),
                _ => {
                    not_text.get_or_insert_with(|| format!("`{key}` must be a string or null"));
                    continue;
                }
            };
            *patch.slot(field) = change;
        }
        if !read_only.is_empty() {
            return Err(PatchError::ReadOnly(read_only));
        }
        match not_text {
            Some(m) => Err(PatchError::Malformed(m)),
            None => Ok(patch),
        }
    }

    fn slot(&mut self, field: ProductField) -> &mut Change {
        match field {
            ProductField::Brand => &mut self.brand,
            ProductField::Model => &mut self.model,
            ProductField::SerialNumber => &mut self.serial_number,
            ProductField::PurchaseDate => &mut self.purchase_date,
            ProductField::Notes => &mut self.notes,
        }
    }
}

/// Why an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The changed fields, validated, in form order.
    Invalid(Vec<FieldError>),
    /// Critical fields that would change on a locked product.
    Locked(Vec<&'static str>),
}

fn required(field: ProductField, change: &Change, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    BoundedText::parse(field.name(), field.required_code(), change.value(), max)
        .map_err(|e| errors.push(e))
        .ok()
        .map(BoundedText::into_inner)
}

impl ProductRecord {
    /// Applies `patch` as `by` at `now`: only the fields that change are validated (a new brand
    /// or model re-checks the serial against its terms). `Ok(None)` when nothing changes.
    pub fn edit(
        &self,
        patch: &ProductPatch,
        catalog: &BrandCatalog,
        by: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<ProductRecord>, EditError> {
        let mut errors = Vec::new();
        let brand = match &patch.brand {
            Change::Keep => Some(self.brand.clone()),
            change => required(ProductField::Brand, change, BRAND_MAX_CHARS, &mut errors),
        };
        let model = match &patch.model {
            Change::Keep => Some(self.model.clone()),
            change => required(ProductField::Model, change, MODEL_MAX_CHARS, &mut errors),
        };
        let mut next = self.clone();
        if let (Some(brand), Some(model)) = (&brand, &model) {
            let terms = catalog.terms(brand, model);
            let canonical = terms.canonical_brand.map(str::to_owned).unwrap_or_else(|| brand.clone());
            // Sending the current brand or model again is no change: the terms stay those of
            // registration.
            let terms_change = canonical != self.brand || *model != self.model;
            if terms_change {
                next.brand = canonical;
                next.model = model.clone();
                next.warranty_months = terms.warranty_months;
            }
            if terms_change || !patch.serial_number.is_keep() {
                let raw = match &patch.serial_number {
                    Change::Keep => Some(self.serial_number.as_str()),
                    other => other.value(),
                };
                match SerialNumber::parse(raw, &terms) {
                    Ok(serial) => next.serial_number = serial,
                    Err(e) => errors.push(e),
                }
            }
        } else if !patch.serial_number.is_keep() && patch.serial_number.value().is_none_or(|s| s.trim().is_empty()) {
            // Without a brand no serial rule applies; still report a cleared serial.
            errors.push(FieldError::new(
                ProductField::SerialNumber.name(),
                ProductField::SerialNumber.required_code(),
                "`serialNumber` is required",
            ));
        }
        if !patch.purchase_date.is_keep() {
            match PurchaseDate::parse(patch.purchase_date.value(), now) {
                Ok(date) => next.purchase_date = date,
                Err(e) => errors.push(e),
            }
        }
        match &patch.notes {
            Change::Keep => {}
            Change::Clear => next.notes = None,
            Change::Set(text) => {
                match BoundedText::parse_optional(ProductField::Notes.name(), Some(text), NOTES_MAX_CHARS) {
                    Ok(notes) => next.notes = notes.map(BoundedText::into_inner),
                    Err(e) => errors.push(e),
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| ProductField::from_name(e.field));
            return Err(EditError::Invalid(errors));
        }
        next.brand_key = super::brand_catalog::brand_key(&next.brand);
        next.warranty_expires_on = expiry_date(next.purchase_date.date(), next.warranty_months);
        // The catalogue's coverage follows the product until its dates are edited on their own.
        if next.purchase_date != self.purchase_date || next.warranty_months != self.warranty_months {
            let (start, months) = (next.purchase_date.date(), next.warranty_months);
            for c in next.coverages_mut().iter_mut().filter(|c| c.follows_product) {
                c.starts_on = start;
                c.months = Some(months);
            }
        }

        let text = |s: &str| Some(s.to_owned());
        let pairs = [
            (ProductField::Brand.name(), text(&self.brand), text(&next.brand)),
            (ProductField::Model.name(), text(&self.model), text(&next.model)),
            (ProductField::SerialNumber.name(), text(self.serial_number.as_str()), text(next.serial_number.as_str())),
            (
                ProductField::PurchaseDate.name(),
                Some(self.purchase_date.to_string()),
                Some(next.purchase_date.to_string()),
            ),
            (
                "warrantyExpiresOn",
                Some(self.warranty_expires_on.to_string()),
                Some(next.warranty_expires_on.to_string()),
            ),
            (ProductField::Notes.name(), self.notes.clone(), next.notes.clone()),
        ];
        let changes: Vec<FieldChange> = pairs
            .into_iter()
            .filter(|(_, from, to)| from != to)
            .map(|(field, from, to)| FieldChange { field: field.into(), from, to })
            .collect();
        if self.locked_at.is_some() {
            let locked: Vec<&'static str> = ProductField::CRITICAL
                .into_iter()
                .map(ProductField::name)
                .filter(|f| changes.iter().any(|c| c.field == *f))
                .collect();
            if !locked.is_empty() {
                return Err(EditError::Locked(locked));
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        next.revision += 1;
        next.audit.push(AuditEntry { at: now, by: by.clone(), action: "edited".into(), changes });
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ocr::OcrState;
    use crate::domain::{InvoiceKind, InvoiceRef};
    use serde_json::json;

    fn record(brand: &str, serial: &str) -> ProductRecord {
        let json = json!({
            "id": "0193b6a0-0000-7000-8000-000000000001", "userId": "u1", "brand": brand,
            "brandKey": brand.to_lowercase(), "model": "MacBook Air", "serialNumber": serial,
            "purchaseDate": "2025-03-15", "warrantyMonths": 12, "warrantyExpiresOn": "2026-03-15",
            "invoice": {"fileName": "i.pdf", "kind": "pdf", "sizeBytes": 1, "sha256": "x", "location": "l", "version": 1},
            "ocr": serde_json::to_value(OcrState::queued(1)).unwrap(),
            "createdAt": "2025-03-16T10:00:00Z", "revision": 3,
        });
        let r: ProductRecord = serde_json::from_value(json).unwrap();
        assert_eq!(r.invoice.kind, InvoiceKind::Pdf);
        let _: &InvoiceRef = &r.invoice;
        r
    }

    fn patch(doc: serde_json::Value) -> ProductPatch {
        ProductPatch::from_json(&doc).unwrap()
    }

    const NOW: &str = "2026-11-27T12:00:00Z";

    #[test]
    fn notes_stay_editable_when_the_serial_rule_changed_since_registration() {
        let catalog = BrandCatalog::bundled(24).unwrap();
        // Stored when the rule accepted it; today's Apple rule refuses `ABC`.
        let product = record("Apple", "ABC");
        assert!(SerialNumber::parse(Some("ABC"), &catalog.terms("Apple", "MacBook Air")).is_err());
        let by = UserId("u1".into());
        let now = NOW.parse().unwrap();
        let edited =
            product.edit(&patch(json!({"notes": "bought at the airport"})), &catalog, &by, now).unwrap().unwrap();
        assert_eq!(edited.notes.as_deref(), Some("bought at the airport"));
        assert_eq!(edited.serial_number.as_str(), "ABC", "untouched");
        assert_eq!(edited.warranty_months, 12, "the terms of registration stay");
        assert_eq!(edited.revision, 4);
        let changes = &edited.audit.last().unwrap().changes;
        assert_eq!(changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["notes"]);
        // Changing the serial, or the brand, validates it against today's rule.
        let e = product.edit(&patch(json!({"serialNumber": "ABD"})), &catalog, &by, now).unwrap_err();
        assert!(matches!(&e, EditError::Invalid(v) if v[0].code == "serial_format_invalid"), "{e:?}");
        let e = product.edit(&patch(json!({"model": "MacBook Pro"})), &catalog, &by, now).unwrap_err();
        assert!(matches!(&e, EditError::Invalid(v) if v[0].field == "serialNumber"), "{e:?}");
    }

    #[test]
    fn a_new_brand_brings_its_terms_and_unchanged_values_are_no_change() {
        let catalog = BrandCatalog::bundled(24).unwrap();
        let product = record("Acme", "SN-1234");
        let by = UserId("u1".into());
        let now = NOW.parse().unwrap();
        assert_eq!(product.edit(&patch(json!({"brand": "Acme", "notes": null})), &catalog, &by, now).unwrap(), None);
        let e = product.edit(&patch(json!({"brand": null, "purchaseDate": "2999-01-01"})), &catalog, &by, now);
        let EditError::Invalid(errors) = e.unwrap_err() else { panic!() };
        let codes: Vec<_> = errors.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["brand_missing", "purchase_date_in_future"], "form order");
    }

    #[test]
    fn the_patch_document_is_checked_before_any_value() {
        assert!(matches!(ProductPatch::from_json(&json!([1])), Err(PatchError::Malformed(_))));
        assert!(
            matches!(ProductPatch::from_json(&json!({"colour": "red"})), Err(PatchError::Malformed(m)) if m.contains("colour"))
        );
        assert!(matches!(ProductPatch::from_json(&json!({"notes": 3})), Err(PatchError::Malformed(_))));
        let Err(PatchError::ReadOnly(e)) = ProductPatch::from_json(&json!({"revision": 9, "id": "x"})) else {
            panic!()
        };
        assert_eq!(e.len(), 2);
        assert_eq!(
            ProductPatch::from_json(&json!({"notes": null, "model": "X"})).unwrap(),
            ProductPatch { notes: Change::Clear, model: Change::Set("X".into()), ..Default::default() }
        );
        assert_eq!(ProductField::from_name("serialNumber"), Some(ProductField::SerialNumber));
        assert!(ProductField::ALL.iter().all(|f| ProductField::from_name(f.name()) == Some(*f)));
    }
}
