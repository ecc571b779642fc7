//! Invoices no product references are removed.
//!
//! A registration commits its invoice (file renamed into place, blob list committed) before the
//! product is written, and removes it again if the write fails. A crash between the two — a
//! SIGKILL, a power cut, an instance recycled mid-request — leaves an invoice without its
//! product. Its name is `{productId}.v{version}.{ext}`, so reconciliation asks the product store
//! whether that product's current invoice is that file and removes it if not, once it is older
//! than a grace period (longer than any registration in flight). It runs at start and then
//! periodically, over the invoices written within the look-back window.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Services;
use crate::ports::{Unavailable, Written};

#[derive(Debug, Clone, Copy)]
pub struct ReconcilePolicy {
    /// An invoice younger than this may belong to a registration still in flight.
    pub grace: Duration,
    /// How far back to look: orphans are found within this window after the crash.
    pub lookback: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub checked: usize,
    pub removed: usize,
}

/// The product id a location names (`{productId}.v{version}.{ext}`, possibly under a folder the
/// store chose, such as the blob store's hour).
fn product_of(location: &str) -> Option<uuid::Uuid> {
    location.rsplit('/').next()?.split('.').next()?.parse().ok()
}

/// Removes the invoices written in the window that no product references.
pub async fn orphan_invoices(
    services: &Services,
    now: DateTime<Utc>,
    policy: ReconcilePolicy,
) -> Result<Reconciled, Unavailable> {
    let to = now - chrono::Duration::from_std(policy.grace).unwrap_or(chrono::Duration::zero());
    let from = now - chrono::Duration::from_std(policy.lookback).unwrap_or(chrono::Duration::days(2));
    let mut done = Reconciled::default();
    for Written { location, owner } in services.invoices.written_between(from, to).await? {
        done.checked += 1;
        let Some(id) = product_of(&location) else {
            continue; // not an invoice this service named: leave it alone
        };
        let referenced = if location.contains(".intake.") {
            // An intake's invoice: referenced while its intake is stored and not yet expired.
            services.products.find_intake(owner.as_ref(), id).await?.is_some_and(|i| {
                i.status != crate::domain::intake::IntakeStatus::Expired && i.invoice.location == location
            })
        } else if location.contains(".proof-") {
            // A coverage's proof document: referenced when a coverage of the product holds it.
            let product = match &owner {
                Some(owner) => services.products.get(owner, id).await?,
                None => services.products.find(id).await?,
            };
            product.is_some_and(|p| {
                p.coverages.iter().any(|c| c.proof.as_ref().is_some_and(|proof| proof.location == location))
            })
        } else {
            services.products.invoice_location(owner.as_ref(), id).await?.is_some_and(|current| current == location)
        };
        if !referenced {
            services.invoices.delete(&location).await?;
            tracing::warn!(location, "removed an invoice no product references (left by an interrupted write)");
            done.removed += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_their_product() {
        let id = "0193b6a0-0000-7000-8000-000000000001";
        assert_eq!(product_of(&format!("{id}.v2.pdf")).unwrap().to_string(), id);
        assert_eq!(product_of(&format!("2026-12-06T05/{id}.proof-x.png")).unwrap().to_string(), id);
        assert_eq!(product_of("notes.txt"), None);
    }
}
