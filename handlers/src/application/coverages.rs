//! Coverages of a product: add, edit (merge patch with `If-Match`), remove. Every change is a
//! conditional write on the product's revision and leaves an audit entry.

use serde_json::Value;
use uuid::Uuid;

use super::{Error, Services};
use crate::domain::coverage::{self, MAX_COVERAGES};
use crate::domain::{AuditEntry, Coverage, CoverageError, CoverageKind, FieldChange, FieldError, ProductId, UserId};
use crate::domain::{CoverageView, ProductRecord};
use crate::ports::{StoreError, Unavailable};

/// How often an addition is re-applied after losing a race before giving up.
const MAX_RETRIES: usize = 16;

fn refused(e: CoverageError) -> Error {
    match e {
        CoverageError::Malformed(detail) => Error::PatchInvalid(detail),
        CoverageError::Invalid(errors) => Error::Invalid(errors),
        CoverageError::Locked(fields) => Error::CoverageLocked { fields },
    }
}

/// Field-by-field differences of two versions of a coverage, for the audit trail.
fn changes(id: Uuid, from: Option<&Coverage>, to: Option<&Coverage>) -> Vec<FieldChange> {
    let field = |c: Option<&Coverage>, f: &str| -> Option<String> {
        let c = c?;
        match f {
            "kind" => Some(c.kind.name().to_owned()),
            "provider" => c.provider.clone(),
            "reference" => c.reference.clone(),
            "startsOn" => Some(c.starts_on.to_string()),
            "months" => c.months.map(|m| m.to_string()),
            "endsOn" => c.ends_on.map(|d| d.to_string()),
            _ => c.lifetime.then(|| "true".to_owned()),
        }
    };
    ["kind", "provider", "reference", "startsOn", "months", "endsOn", "lifetime"]
        .into_iter()
        .map(|f| (f, field(from, f), field(to, f)))
        .filter(|(_, a, b)| a != b)
        .map(|(f, from, to)| FieldChange { field: format!("coverages/{id}/{f}"), from, to })
        .collect()
}

/// The product after a change, with its revision bumped and the change recorded.
fn changed(
    mut next: ProductRecord,
    by: &UserId,
    now: chrono::DateTime<chrono::Utc>,
    action: &str,
    changes: Vec<FieldChange>,
) -> ProductRecord {
    next.revision += 1;
    next.audit.push(AuditEntry { at: now, by: by.clone(), action: action.into(), changes });
    next
}

/// Adds a coverage from a JSON object (`kind` and one duration form required; `startsOn`
/// defaults to the purchase date). Returns it and the product's new revision.
pub async fn add(services: &Services, user: &UserId, id: ProductId, doc: &Value) -> Result<(CoverageView, u64), Error> {
    if doc.as_object().is_some_and(|o| !o.contains_key("kind")) {
        return Err(Error::Invalid(vec![FieldError::new(
            "kind",
            "coverage_kind_invalid",
            "`kind` is required: manufacturer, statutory, retailer, extended, insurance or repair",
        )]));
    }
    for _ in 0..MAX_RETRIES {
        let now = services.clock.now();
        let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
        let base = Coverage {
            id: Uuid::now_v7(),
            kind: CoverageKind::Extended,
            provider: None,
            reference: None,
            starts_on: product.purchase_date.date(),
            months: None,
            ends_on: None,
            lifetime: false,
            locked_at: None,
            follows_product: false,
        };
        let new = coverage::apply(&base, doc, false).map_err(refused)?;
        let mut next = product.clone();
        if next.coverages_mut().len() >= MAX_COVERAGES {
            return Err(Error::CoverageLimit);
        }
        next.coverages_mut().push(new.clone());
        let next = changed(next, user, now, "coverage_added", changes(new.id, None, Some(&new)));
        match services.products.replace(&next, product.revision, None).await {
            Ok(()) => return Ok((new.view(now.date_naive()), next.revision)),
            Err(StoreError::Stale) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Unavailable::new("product store", "the product kept changing while a coverage was added").into())
}

/// Applies a merge patch to one coverage if `if_match_revision` is current.
pub async fn edit(
    services: &Services,
    user: &UserId,
    id: ProductId,
    coverage_id: Uuid,
    if_match_revision: u64,
    doc: &Value,
) -> Result<(CoverageView, u64), Error> {
    let now = services.clock.now();
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    if product.revision != if_match_revision {
        return Err(Error::PreconditionFailed);
    }
    let mut next = product.clone();
    let slot = next.coverages_mut().iter_mut().find(|c| c.id == coverage_id).ok_or(Error::NotFound)?;
    let before = slot.clone();
    let after = coverage::apply(&before, doc, before.locked_at.is_some()).map_err(refused)?;
    let diff = changes(coverage_id, Some(&before), Some(&after));
    if diff.is_empty() {
        return Ok((before.view(now.date_naive()), product.revision));
    }
    *slot = after.clone();
    let next = changed(next, user, now, "coverage_edited", diff);
    services.products.replace(&next, product.revision, None).await?;
    Ok((after.view(now.date_naive()), next.revision))
}

/// Removes a coverage no service request relied on. `if_match_revision`, when given, must be
/// current. Returns the product's new revision.
pub async fn remove(
    services: &Services,
    user: &UserId,
    id: ProductId,
    coverage_id: Uuid,
    if_match_revision: Option<u64>,
) -> Result<u64, Error> {
    let now = services.clock.now();
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    if if_match_revision.is_some_and(|r| r != product.revision) {
        return Err(Error::PreconditionFailed);
    }
    let mut next = product.clone();
    let coverages = next.coverages_mut();
    let at = coverages.iter().position(|c| c.id == coverage_id).ok_or(Error::NotFound)?;
    if coverages[at].locked_at.is_some() {
        return Err(Error::CoverageLocked { fields: vec!["coverage"] });
    }
    if coverages.len() == 1 {
        return Err(Error::LastCoverage);
    }
    let gone = coverages.remove(at);
    let next = changed(next, user, now, "coverage_removed", changes(coverage_id, Some(&gone), None));
    services.products.replace(&next, product.revision, None).await?;
    Ok(next.revision)
}
