//! Coverages of a product: add, edit (merge patch with `If-Match`), remove. Every change is a
//! conditional write on the product's revision and leaves an audit entry.

use serde_json::Value;
use uuid::Uuid;

use super::intake::ReceivedInvoice;
use super::{Error, Services};
use crate::domain::coverage::{self, MAX_COVERAGES};
use crate::domain::{AuditEntry, Coverage, CoverageError, FieldChange, FieldError, ProductId, UserId};
use crate::domain::{CoverageView, InvoiceRef, ProductRecord};
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
/// defaults to the purchase date), with its proof document when one was received (then under
/// `coverage_id`, the id its file was named after). Returns it and the product's new revision.
/// Nothing is left behind when it is refused: the proof is removed.
pub async fn add(
    services: &Services,
    user: &UserId,
    id: ProductId,
    doc: &Value,
    proof: Option<ReceivedInvoice>,
    coverage_id: Uuid,
) -> Result<(CoverageView, u64), Error> {
    if doc.as_object().is_some_and(|o| !o.contains_key("kind")) {
        if let Some(p) = proof {
            p.abort().await;
        }
        return Err(Error::Invalid(vec![FieldError::new(
            "kind",
            "coverage_kind_invalid",
            "`kind` is required: manufacturer, statutory, retailer, extended, insurance or repair",
        )]));
    }
    // Without a proof, `store_new` checks every rule itself. With one, they are checked before
    // the file is committed, so a refused coverage never has a file to remove.
    let location = match proof {
        None => None,
        Some(p) => {
            if let Err(e) = check_new(services, user, id, doc, coverage_id).await {
                p.abort().await;
                return Err(e);
            }
            // A proof's intake is version 1 (`for_proof` keeps the default).
            Some(p.commit().await?)
        }
    };
    let result = store_new(services, user, id, doc, coverage_id, location.clone()).await;
    if let (Err(_), Some(proof)) = (&result, &location)
        && let Err(e) = services.invoices.delete(&proof.location).await
    {
        tracing::error!(location = %proof.location, error = %e, "could not remove the proof of a refused coverage");
    }
    result
}

fn new_coverage(product: &ProductRecord, coverage_id: Uuid) -> Coverage {
    Coverage::draft(coverage_id, product.purchase_date.date())
}

/// The rules `store_new` applies, before a proof document is committed.
async fn check_new(
    services: &Services,
    user: &UserId,
    id: ProductId,
    doc: &Value,
    coverage_id: Uuid,
) -> Result<(), Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    coverage::apply(&new_coverage(&product, coverage_id), doc, false).map_err(refused)?;
    if product.coverages().len() >= MAX_COVERAGES {
        return Err(Error::CoverageLimit);
    }
    Ok(())
}

async fn store_new(
    services: &Services,
    user: &UserId,
    id: ProductId,
    doc: &Value,
    coverage_id: Uuid,
    proof: Option<InvoiceRef>,
) -> Result<(CoverageView, u64), Error> {
    for _ in 0..MAX_RETRIES {
        let now = services.clock.now();
        let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
        let base = Coverage { proof: proof.clone(), ..new_coverage(&product, coverage_id) };
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
    // No record references the proof any more.
    if let Some(proof) = &gone.proof
        && let Err(e) = services.invoices.delete(&proof.location).await
    {
        tracing::error!(location = %proof.location, error = %e, "proof of a removed coverage not removed");
    }
    Ok(next.revision)
}

/// A coverage's proof document and its bytes.
pub async fn proof(
    services: &Services,
    user: &UserId,
    id: ProductId,
    coverage_id: Uuid,
) -> Result<(InvoiceRef, bytes::Bytes), Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    let proof = product
        .coverages()
        .iter()
        .find(|c| c.id == coverage_id)
        .and_then(|c| c.proof.clone())
        .ok_or(Error::NotFound)?;
    let bytes = services.invoices.read(&proof.location).await?.ok_or(Error::NotFound)?;
    Ok((proof, bytes))
}
