//! A product after registration: edits (JSON merge patch with `If-Match`), service requests
//! and the edit lock they set (REQ-3.2), deletion, and the invoice download.
//!
//! Every change is a conditional write on the product's revision, so two writers never both
//! win: an edit that read revision r fails if a service request locked the product at r + 1.

use uuid::Uuid;

use super::{Error, Services};
use crate::domain::text_field::BoundedText;
use crate::domain::{
    AuditEntry, CoverageStatus, EditError, FieldChange, FieldError, PatchError, ProductId, ProductPatch, ProductRecord,
    ServiceRequest, UserId, WarrantyCard,
};
use crate::ports::{StoreError, Unavailable};

pub const DESCRIPTION_MAX_CHARS: usize = 2000;
pub const CONTACT_MAX_CHARS: usize = 200;
/// How often a service request is re-applied after losing a race before giving up.
const MAX_RETRIES: usize = 16;

/// Applies an edit to the product for `user`, if `if_match_revision` is current. Only the
/// fields that change are validated (`ProductRecord::edit`).
pub async fn patch(
    services: &Services,
    user: &UserId,
    id: ProductId,
    if_match_revision: u64,
    patch: Result<ProductPatch, PatchError>,
) -> Result<WarrantyCard, Error> {
    let now = services.clock.now();
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    if product.revision != if_match_revision {
        return Err(Error::PreconditionFailed);
    }
    let patch = patch.map_err(|e| match e {
        PatchError::Malformed(detail) => Error::PatchInvalid(detail),
        PatchError::ReadOnly(errors) => Error::Invalid(errors),
    })?;
    let updated = match product.edit(&patch, &services.catalog, user, now) {
        Ok(Some(updated)) => updated,
        Ok(None) => return Ok(product.card(now.date_naive())),
        Err(EditError::Invalid(errors)) => return Err(Error::Invalid(errors)),
        Err(EditError::Locked(fields)) => return Err(Error::Locked { fields }),
    };
    services.products.replace(&updated, product.revision, None).await?;
    Ok(updated.card(now.date_naive()))
}

/// A new service request; the first one locks the product's critical fields in the same write.
pub async fn raise_service_request(
    services: &Services,
    user: &UserId,
    id: ProductId,
    description: Option<&str>,
    preferred_contact: Option<&str>,
    coverage: Option<Uuid>,
) -> Result<ServiceRequest, Error> {
    let mut errors = Vec::new();
    let description = BoundedText::parse("description", "description_missing", description, DESCRIPTION_MAX_CHARS)
        .map_err(|e| errors.push(e))
        .ok();
    let contact = BoundedText::parse_optional("preferredContact", preferred_contact, CONTACT_MAX_CHARS)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten()
        .map(BoundedText::into_inner);
    let Some(description) = description.filter(|_| errors.is_empty()) else {
        return Err(Error::Invalid(errors));
    };
    for _ in 0..MAX_RETRIES {
        let now = services.clock.now();
        let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
        let day = now.date_naive();
        let coverages = product.coverages();
        let relied = crate::domain::coverage::relied_on(&coverages, coverage, day);
        if coverage.is_some() && relied.is_none() {
            return Err(Error::Invalid(vec![FieldError::new(
                "coverageId",
                "coverage_unknown",
                "`coverageId` names no coverage of this product",
            )]));
        }
        let request = ServiceRequest {
            id: Uuid::now_v7(),
            description: description.as_str().to_owned(),
            preferred_contact: contact.clone(),
            created_at: now,
            in_warranty: relied.is_some_and(|c| c.status(day) == CoverageStatus::Active),
            coverage_id: relied.map(|c| c.id),
        };
        let mut next = product.clone();
        let mut changes =
            vec![FieldChange { field: "serviceRequests".into(), from: None, to: Some(request.id.to_string()) }];
        // The coverage relied on keeps its dates from now on: no extending it to fit the claim.
        if let Some(cid) = request.coverage_id
            && let Some(c) = next.coverages_mut().iter_mut().find(|c| c.id == cid && c.locked_at.is_none())
        {
            c.locked_at = Some(now);
            changes.push(FieldChange {
                field: format!("coverages/{cid}/locked"),
                from: Some("false".into()),
                to: Some("true".into()),
            });
        }
        if next.locked_at.is_none() {
            next.locked_at = Some(now);
            changes.push(FieldChange { field: "locked".into(), from: Some("false".into()), to: Some("true".into()) });
        }
        next.service_requests.push(request.clone());
        next.revision += 1;
        next.audit.push(AuditEntry { at: now, by: user.clone(), action: "service_request_raised".into(), changes });
        match services.products.replace(&next, product.revision, None).await {
            Ok(()) => return Ok(request),
            // Someone changed the product meanwhile: apply the request to the new state.
            Err(StoreError::Stale) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Unavailable::new("product store", "the product kept changing while a service request was added").into())
}

pub async fn service_requests(services: &Services, user: &UserId, id: ProductId) -> Result<Vec<ServiceRequest>, Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    Ok(product.service_requests)
}

/// Deletes a product without service requests: the record (with its queued OCR work), then its
/// invoice. `if_match_revision`, when given, must be current.
pub async fn delete(
    services: &Services,
    user: &UserId,
    id: ProductId,
    if_match_revision: Option<u64>,
) -> Result<(), Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    if !product.service_requests.is_empty() {
        return Err(Error::HasServiceRequests);
    }
    if if_match_revision.is_some_and(|r| r != product.revision) {
        return Err(Error::PreconditionFailed);
    }
    match services.products.delete(user, id, product.revision).await {
        Ok(()) => {}
        // A service request (or an edit) came in between: look again.
        Err(StoreError::Stale) => {
            let now = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
            if !now.service_requests.is_empty() {
                return Err(Error::HasServiceRequests);
            }
            return Err(Error::PreconditionFailed);
        }
        Err(e) => return Err(e.into()),
    }
    // The record is gone, so nothing references the invoice any more. If removing it fails it
    // is logged for the operator: unreachable, but not lost silently.
    let proofs = product.coverages.iter().filter_map(|c| c.proof.as_ref()).map(|p| p.location.as_str());
    for location in std::iter::once(product.invoice.location.as_str()).chain(proofs) {
        if let Err(e) = services.invoices.delete(location).await {
            tracing::error!(product_id = %id, location, error = %e, "file of a deleted product not removed");
        }
    }
    Ok(())
}

/// The stored invoice and what it is.
pub async fn invoice(
    services: &Services,
    user: &UserId,
    id: ProductId,
) -> Result<(crate::domain::InvoiceRef, bytes::Bytes), Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    let bytes = services.invoices.read(&product.invoice.location).await?.ok_or_else(|| {
        tracing::error!(product_id = %id, location = %product.invoice.location, "invoice missing from the store");
        Error::NotFound
    })?;
    Ok((product.invoice, bytes))
}

/// Checks before a replacement invoice is read: the product exists, `if_match_revision` is
/// current and it is not locked. Returns the version the new invoice gets.
pub async fn prepare_invoice_replacement(
    services: &Services,
    user: &UserId,
    id: ProductId,
    if_match_revision: u64,
) -> Result<u32, Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    check_replaceable(&product, if_match_revision)?;
    Ok(product.invoice.version + 1)
}

fn check_replaceable(product: &ProductRecord, if_match_revision: u64) -> Result<(), Error> {
    if product.revision != if_match_revision {
        return Err(Error::PreconditionFailed);
    }
    if product.locked_at.is_some() {
        return Err(Error::Locked { fields: vec!["invoice"] });
    }
    Ok(())
}

/// Replaces the invoice with `received` (already streamed into the store, uncommitted) and
/// starts a new OCR run for it, in the same atomic write. Consumes the upload: on every path it
/// is either committed and referenced, or removed; the previous invoice is removed once the
/// product points at the new one.
pub async fn replace_invoice(
    services: &Services,
    user: &UserId,
    id: ProductId,
    if_match_revision: u64,
    received: crate::application::intake::ReceivedInvoice,
    trace_id: Option<&str>,
) -> Result<WarrantyCard, Error> {
    let now = services.clock.now();
    let product = match services.products.get(user, id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            received.abort().await;
            return Err(Error::NotFound);
        }
        Err(e) => {
            received.abort().await;
            return Err(e.into());
        }
    };
    if let Err(e) = check_replaceable(&product, if_match_revision).and_then(|()| {
        if received.version == product.invoice.version + 1 { Ok(()) } else { Err(Error::PreconditionFailed) }
    }) {
        received.abort().await;
        return Err(e);
    }
    let mut next = product.clone();
    next.invoice = received.commit().await?;
    let (location, version) = (next.invoice.location.clone(), next.invoice.version);
    next.ocr = crate::domain::OcrState::queued(version);
    next.revision += 1;
    next.audit.push(AuditEntry {
        at: now,
        by: user.clone(),
        action: "invoice_replaced".into(),
        changes: vec![
            FieldChange {
                field: "invoice.version".into(),
                from: Some(product.invoice.version.to_string()),
                to: Some(version.to_string()),
            },
            FieldChange {
                field: "invoice.sha256".into(),
                from: Some(product.invoice.sha256.clone()),
                to: Some(next.invoice.sha256.clone()),
            },
        ],
    });
    let event = crate::domain::OcrRequested {
        trace_id: trace_id.map(str::to_owned),
        requested_at: now,
        ..crate::domain::OcrRequested::for_product(&next)
    };
    if let Err(e) = services.products.replace(&next, product.revision, Some(&event)).await {
        if let Err(d) = services.invoices.delete(&location).await {
            tracing::error!(location, error = %d, "could not remove the invoice of a failed replacement");
        }
        return Err(e.into());
    }
    if let Err(e) = services.invoices.delete(&product.invoice.location).await {
        tracing::error!(product_id = %id, location = %product.invoice.location, error = %e, "replaced invoice not removed");
    }
    services.outbox.written(&event).await;
    Ok(next.card(now.date_naive()))
}

/// One page of a product's audit trail, oldest first, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next: Option<usize>,
}

/// The audit trail of the user's product from entry `from`, at most `limit` entries.
pub async fn audit(
    services: &Services,
    user: &UserId,
    id: ProductId,
    from: usize,
    limit: usize,
) -> Result<AuditPage, Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    let end = from.saturating_add(limit).min(product.audit.len());
    let items = product.audit.get(from..end).map(<[AuditEntry]>::to_vec).unwrap_or_default();
    Ok(AuditPage { items, next: (end < product.audit.len()).then_some(end) })
}
