//! Coverages: the warranties a product has — the manufacturer's, the statutory one, a
//! retailer's, an extended warranty, an insurance, a repair warranty.
//!
//! Each runs from `startsOn` for a number of months (the same month-end rule as the
//! manufacturer's warranty), to a fixed `endsOn`, or for life. Status is computed for a day,
//! never stored. A coverage a service request relied on is locked: its kind, start and duration
//! no longer change, so no one extends a warranty to fit a claim.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::FieldError;
use super::invoice::InvoiceRef;
use super::text_field::BoundedText;
use super::warranty::expiry_date;

/// Coverages one product may have.
pub const MAX_COVERAGES: usize = 12;
/// Longest duration in months (a century).
pub const MAX_MONTHS: u32 = 1200;
pub const PROVIDER_MAX_CHARS: usize = 200;
pub const REFERENCE_MAX_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageKind {
    // Declared in the order a service request looks for an active coverage.
    Manufacturer,
    Statutory,
    Retailer,
    Extended,
    Insurance,
    Repair,
}

impl CoverageKind {
    pub const ALL: [CoverageKind; 6] =
        [Self::Manufacturer, Self::Statutory, Self::Retailer, Self::Extended, Self::Insurance, Self::Repair];

    pub fn name(self) -> &'static str {
        match self {
            Self::Manufacturer => "manufacturer",
            Self::Statutory => "statutory",
            Self::Retailer => "retailer",
            Self::Extended => "extended",
            Self::Insurance => "insurance",
            Self::Repair => "repair",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Human label for the printed card and the verification page.
    pub fn label(self) -> &'static str {
        match self {
            Self::Manufacturer => "Manufacturer warranty",
            Self::Statutory => "Statutory warranty",
            Self::Retailer => "Retailer warranty",
            Self::Extended => "Extended warranty",
            Self::Insurance => "Insurance",
            Self::Repair => "Repair warranty",
        }
    }
}

/// How long a coverage runs: exactly one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    Months(u32),
    EndsOn(NaiveDate),
    Lifetime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageStatus {
    Upcoming,
    Active,
    Expired,
}

/// A stored coverage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub id: Uuid,
    pub kind: CoverageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub starts_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lifetime: bool,
    /// Set when a service request relied on it: kind, start and duration are fixed from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<DateTime<Utc>>,
    /// The catalogue's manufacturer coverage made at registration, never edited in its dates:
    /// it follows the product's purchase date and warranty term when those are edited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follows_product: bool,
    /// A document proving it (contract, policy, repair receipt): same rules as the invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<InvoiceRef>,
}

/// What clients see of a proof document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofView {
    pub file_name: String,
    pub content_type: &'static str,
    pub size_bytes: u64,
    pub sha256: String,
}

/// What clients see of a coverage on a given day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageView {
    pub id: Uuid,
    pub kind: CoverageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub starts_on: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<NaiveDate>,
    pub lifetime: bool,
    /// The last day covered (inclusive); `null` for a lifetime coverage.
    pub expires_on: Option<NaiveDate>,
    pub status: CoverageStatus,
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofView>,
}

impl Coverage {
    /// The manufacturer's coverage the catalogue gives at registration. Its id is the
    /// product's: products stored before coverages existed get the same one when read.
    pub fn from_catalogue(product: Uuid, brand: &str, purchase: NaiveDate, months: u32) -> Self {
        Self {
            id: product,
            kind: CoverageKind::Manufacturer,
            provider: Some(brand.to_owned()),
            reference: None,
            starts_on: purchase,
            months: Some(months),
            ends_on: None,
            lifetime: false,
            locked_at: None,
            follows_product: true,
            proof: None,
        }
    }

    /// A new coverage's starting point before the client's fields are applied: no duration
    /// yet (the rules require one), starting on `starts_on`.
    pub fn draft(id: Uuid, starts_on: NaiveDate) -> Self {
        Self {
            id,
            kind: CoverageKind::Extended,
            provider: None,
            reference: None,
            starts_on,
            months: None,
            ends_on: None,
            lifetime: false,
            locked_at: None,
            follows_product: false,
            proof: None,
        }
    }

    pub fn term(&self) -> Term {
        match (self.months, self.ends_on, self.lifetime) {
            (_, _, true) => Term::Lifetime,
            (_, Some(d), _) => Term::EndsOn(d),
            (Some(m), _, _) => Term::Months(m),
            // Stored valid; an impossible document reads as a zero-month coverage.
            (None, None, false) => Term::Months(0),
        }
    }

    /// The last day covered; `None` for life.
    pub fn expires_on(&self) -> Option<NaiveDate> {
        match self.term() {
            Term::Months(m) => Some(expiry_date(self.starts_on, m)),
            Term::EndsOn(d) => Some(d),
            Term::Lifetime => None,
        }
    }

    pub fn status(&self, today: NaiveDate) -> CoverageStatus {
        if today < self.starts_on {
            CoverageStatus::Upcoming
        } else if self.expires_on().is_none_or(|end| today <= end) {
            CoverageStatus::Active
        } else {
            CoverageStatus::Expired
        }
    }

    pub fn view(&self, today: NaiveDate) -> CoverageView {
        CoverageView {
            id: self.id,
            kind: self.kind,
            provider: self.provider.clone(),
            reference: self.reference.clone(),
            starts_on: self.starts_on,
            months: self.months,
            ends_on: self.ends_on,
            lifetime: self.lifetime,
            expires_on: self.expires_on(),
            status: self.status(today),
            locked: self.locked_at.is_some(),
            proof: self.proof.as_ref().map(|p| ProofView {
                file_name: p.file_name.clone(),
                content_type: p.kind.content_type(),
                size_bytes: p.size_bytes,
                sha256: p.sha256.clone(),
            }),
        }
    }

    /// One-line summary for the audit trail.
    pub fn describe(&self) -> String {
        let term = match self.term() {
            Term::Months(m) => format!("{m} months from {}", self.starts_on),
            Term::EndsOn(d) => format!("{} to {d}", self.starts_on),
            Term::Lifetime => format!("lifetime from {}", self.starts_on),
        };
        match &self.provider {
            Some(p) => format!("{} ({p}), {term}", self.kind.name()),
            None => format!("{}, {term}", self.kind.name()),
        }
    }
}

/// The coverage a service request relies on at `day`: `named` if given, else the first active
/// one in the order manufacturer → statutory → retailer → extended → insurance → repair.
pub fn relied_on(coverages: &[Coverage], named: Option<Uuid>, day: NaiveDate) -> Option<&Coverage> {
    if let Some(id) = named {
        return coverages.iter().find(|c| c.id == id);
    }
    coverages.iter().filter(|c| c.status(day) == CoverageStatus::Active).min_by_key(|c| (c.kind, c.starts_on, c.id))
}

/// The last day any coverage covers: `None` when one is for life (or there is none).
pub fn covered_until(coverages: &[Coverage]) -> Option<NaiveDate> {
    let mut last = None;
    for c in coverages {
        match c.expires_on() {
            None => return None,
            Some(d) => last = last.max(Some(d)),
        }
    }
    last
}

/// Why a coverage document was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CoverageError {
    /// 400: not a JSON object, or a field of the wrong JSON type.
    Malformed(String),
    /// 422: one entry per offending field.
    Invalid(Vec<FieldError>),
    /// 409: a locked coverage's kind, start or duration would change.
    Locked(Vec<&'static str>),
}

const FIELDS: [&str; 7] = ["kind", "provider", "reference", "startsOn", "months", "endsOn", "lifetime"];
const READ_ONLY: [&str; 5] = ["id", "expiresOn", "status", "locked", "proof"];

fn date(v: &Value, field: &'static str, errors: &mut Vec<FieldError>) -> Option<NaiveDate> {
    let parsed = v.as_str().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
    if parsed.is_none() {
        errors.push(FieldError::new(field, "coverage_date_invalid", format!("`{field}` must be a date, YYYY-MM-DD")));
    }
    parsed
}

fn text(v: &Value, field: &'static str, max: usize, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => match BoundedText::parse_optional(field, Some(s), max) {
            Ok(t) => Some(t.map(BoundedText::into_inner)),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        _ => {
            errors.push(FieldError::new(field, "field_invalid_characters", format!("`{field}` must be text")));
            None
        }
    }
}

/// Applies a JSON object to `base` (a merge patch; for a new coverage, `base` holds the
/// defaults) and validates the result: a known kind, valid dates, exactly one duration form,
/// `endsOn` after `startsOn`. `locked` refuses changes to kind, start and duration.
pub fn apply(base: &Coverage, doc: &Value, locked: bool) -> Result<Coverage, CoverageError> {
    let Some(obj) = doc.as_object() else {
        return Err(CoverageError::Malformed("The body must be a JSON object.".into()));
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            errors.push(FieldError::new(
                READ_ONLY.iter().find(|f| **f == key).copied().unwrap_or("id"),
                "field_read_only",
                format!("`{key}` is computed and cannot be set"),
            ));
        } else if !FIELDS.contains(&key.as_str()) {
            return Err(CoverageError::Malformed(format!("`{key}` is not a coverage field.")));
        }
    }
    let mut next = base.clone();
    if let Some(v) = obj.get("kind") {
        match v.as_str().and_then(CoverageKind::parse) {
            Some(k) => next.kind = k,
            None => errors.push(FieldError::new(
                "kind",
                "coverage_kind_invalid",
                "`kind` is one of manufacturer, statutory, retailer, extended, insurance, repair",
            )),
        }
    }
    if let Some(v) = obj.get("provider")
        && let Some(t) = text(v, "provider", PROVIDER_MAX_CHARS, &mut errors)
    {
        next.provider = t;
    }
    if let Some(v) = obj.get("reference")
        && let Some(t) = text(v, "reference", REFERENCE_MAX_CHARS, &mut errors)
    {
        next.reference = t;
    }
    if let Some(v) = obj.get("startsOn")
        && let Some(d) = date(v, "startsOn", &mut errors)
    {
        next.starts_on = d;
    }
    match obj.get("months") {
        None => {}
        Some(Value::Null) => next.months = None,
        Some(v) => match v.as_u64().filter(|m| (1..=MAX_MONTHS as u64).contains(m)) {
            Some(m) => next.months = Some(m as u32),
            None => errors.push(FieldError::new(
                "months",
                "coverage_months_invalid",
                format!("`months` is a whole number from 1 to {MAX_MONTHS}"),
            )),
        },
    }
    match obj.get("endsOn") {
        None => {}
        Some(Value::Null) => next.ends_on = None,
        Some(v) => next.ends_on = date(v, "endsOn", &mut errors).or(next.ends_on),
    }
    match obj.get("lifetime") {
        None => {}
        Some(Value::Null) | Some(Value::Bool(false)) => next.lifetime = false,
        Some(Value::Bool(true)) => next.lifetime = true,
        Some(_) => return Err(CoverageError::Malformed("`lifetime` is true, false or null.".into())),
    }
    if errors.is_empty() {
        let forms =
            usize::from(next.months.is_some()) + usize::from(next.ends_on.is_some()) + usize::from(next.lifetime);
        if forms != 1 {
            errors.push(FieldError::new(
                "duration",
                "coverage_duration_invalid",
                "give exactly one of `months`, `endsOn` or `lifetime: true` (set the others to null to switch)",
            ));
        } else if let Some(end) = next.ends_on
            && end <= next.starts_on
        {
            errors.push(FieldError::new("endsOn", "coverage_dates_out_of_order", "`endsOn` must be after `startsOn`"));
        }
    }
    if !errors.is_empty() {
        return Err(CoverageError::Invalid(errors));
    }
    let dates_changed = next.kind != base.kind
        || next.starts_on != base.starts_on
        || next.months != base.months
        || next.ends_on != base.ends_on
        || next.lifetime != base.lifetime;
    if locked && dates_changed {
        let fields: Vec<&'static str> = [
            ("kind", next.kind != base.kind),
            ("startsOn", next.starts_on != base.starts_on),
            ("months", next.months != base.months),
            ("endsOn", next.ends_on != base.ends_on),
            ("lifetime", next.lifetime != base.lifetime),
        ]
        .into_iter()
        .filter_map(|(f, changed)| changed.then_some(f))
        .collect();
        return Err(CoverageError::Locked(fields));
    }
    if dates_changed {
        next.follows_product = false;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn base() -> Coverage {
        Coverage::draft(Uuid::nil(), d(2026, 1, 31))
    }

    fn codes(r: Result<Coverage, CoverageError>) -> Vec<&'static str> {
        match r {
            Err(CoverageError::Invalid(e)) => e.iter().map(|e| e.code).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn months_use_the_month_end_rule_and_status_follows_the_day() {
        let c = apply(&base(), &json!({"months": 1}), false).unwrap();
        assert_eq!(c.expires_on(), Some(d(2026, 2, 28)));
        assert_eq!(c.status(d(2026, 1, 30)), CoverageStatus::Upcoming);
        assert_eq!(c.status(d(2026, 2, 28)), CoverageStatus::Active);
        assert_eq!(c.status(d(2026, 3, 1)), CoverageStatus::Expired);
        let life = apply(&base(), &json!({"lifetime": true}), false).unwrap();
        assert_eq!((life.expires_on(), life.status(d(2126, 1, 1))), (None, CoverageStatus::Active));
    }

    #[test]
    fn exactly_one_duration_form() {
        assert_eq!(codes(apply(&base(), &json!({}), false)), ["coverage_duration_invalid"]);
        assert_eq!(
            codes(apply(&base(), &json!({"months": 12, "lifetime": true}), false)),
            ["coverage_duration_invalid"]
        );
        let twelve = apply(&base(), &json!({"months": 12}), false).unwrap();
        // Switching form needs the old one cleared.
        assert_eq!(codes(apply(&twelve, &json!({"endsOn": "2030-01-01"}), false)), ["coverage_duration_invalid"]);
        let switched = apply(&twelve, &json!({"endsOn": "2030-01-01", "months": null}), false).unwrap();
        assert_eq!(switched.term(), Term::EndsOn(d(2030, 1, 1)));
    }

    #[test]
    fn every_field_is_checked() {
        assert_eq!(
            codes(apply(&base(), &json!({"kind": "gold", "months": 0, "startsOn": "2026-02-30"}), false)),
            ["coverage_kind_invalid", "coverage_date_invalid", "coverage_months_invalid"]
        );
        assert_eq!(codes(apply(&base(), &json!({"endsOn": "2026-01-31"}), false)), ["coverage_dates_out_of_order"]);
        assert_eq!(codes(apply(&base(), &json!({"months": 3, "expiresOn": "2030-01-01"}), false)), ["field_read_only"]);
        assert!(matches!(apply(&base(), &json!({"colour": "red"}), false), Err(CoverageError::Malformed(_))));
        assert!(matches!(apply(&base(), &json!([1]), false), Err(CoverageError::Malformed(_))));
    }

    #[test]
    fn a_locked_coverage_keeps_its_dates_but_not_its_provider() {
        let twelve = apply(&base(), &json!({"months": 12}), false).unwrap();
        assert_eq!(
            apply(&twelve, &json!({"months": 24, "kind": "insurance"}), true),
            Err(CoverageError::Locked(vec!["kind", "months"]))
        );
        let renamed = apply(&twelve, &json!({"provider": "Acme Care", "reference": "P-1"}), true).unwrap();
        assert_eq!(renamed.provider.as_deref(), Some("Acme Care"));
    }

    #[test]
    fn the_first_active_coverage_in_kind_order_is_relied_on() {
        let mk = |kind, months| Coverage { kind, months: Some(months), id: Uuid::now_v7(), ..base() };
        let covs =
            vec![mk(CoverageKind::Repair, 60), mk(CoverageKind::Retailer, 36), mk(CoverageKind::Manufacturer, 12)];
        let day = d(2026, 6, 1);
        assert_eq!(relied_on(&covs, None, day).unwrap().kind, CoverageKind::Manufacturer);
        assert_eq!(relied_on(&covs, None, d(2027, 6, 1)).unwrap().kind, CoverageKind::Retailer);
        assert_eq!(relied_on(&covs, None, d(2035, 6, 1)), None);
        assert_eq!(relied_on(&covs, Some(covs[0].id), day).unwrap().kind, CoverageKind::Repair);
        assert_eq!(covered_until(&covs), Some(d(2031, 1, 31)));
    }
}
