//! Showing a warranty to someone else: the signed verification link printed on the card (and
//! the public view behind it), and its revocation.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::{Error, Services};
use crate::card::token;
use crate::domain::{AuditEntry, CoverageView, FieldChange, ProductId, ProductRecord, UserId};

/// Signing key and lifetime of verification links.
#[derive(Clone)]
pub struct LinkPolicy {
    pub key: Vec<u8>,
    pub lifetime: chrono::Duration,
}

impl std::fmt::Debug for LinkPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPolicy").field("key", &"<redacted>").field("lifetime", &self.lifetime).finish()
    }
}

/// What anyone holding a valid link sees: no owner, no invoice, the serial number masked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicView {
    pub brand: String,
    pub model: String,
    pub serial_number: String,
    pub covered_today: bool,
    pub covered_until: Option<NaiveDate>,
    pub checked_on: NaiveDate,
    pub coverages: Vec<PublicCoverage>,
    pub link_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicCoverage {
    pub kind: crate::domain::CoverageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub starts_on: NaiveDate,
    pub expires_on: Option<NaiveDate>,
    pub status: crate::domain::CoverageStatus,
}

impl From<&CoverageView> for PublicCoverage {
    fn from(c: &CoverageView) -> Self {
        Self {
            kind: c.kind,
            provider: c.provider.clone(),
            starts_on: c.starts_on,
            expires_on: c.expires_on,
            status: c.status,
        }
    }
}

/// All but the last four characters (at most half of them) masked.
pub fn mask_serial(serial: &str) -> String {
    let n = serial.chars().count();
    let shown = 4.min(n / 2);
    serial.chars().enumerate().map(|(i, c)| if i + shown < n { '•' } else { c }).collect()
}

/// The product and a fresh verification link token for it, with the link's expiry.
pub async fn issue_link(
    services: &Services,
    user: &UserId,
    id: ProductId,
) -> Result<(ProductRecord, String, DateTime<Utc>), Error> {
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    services.products.link_issued(&product).await?;
    let expires_at = services.clock.now() + services.links.lifetime;
    let token = token::issue(&services.links.key, product.id, product.verification_epoch, expires_at);
    Ok((product, token, expires_at))
}

/// The public view a valid link shows. Tampered, expired or revoked links, and products that
/// are gone, are all [`Error::NotFound`]: a link reveals nothing about why it fails.
pub async fn verify(services: &Services, token: &str) -> Result<PublicView, Error> {
    let now = services.clock.now();
    let claims = token::check(&services.links.key, token, now).ok_or(Error::NotFound)?;
    let product = services.products.find(claims.product).await?.ok_or(Error::NotFound)?;
    if product.verification_epoch != claims.epoch {
        return Err(Error::NotFound);
    }
    let today = now.date_naive();
    let card = product.card(today);
    Ok(PublicView {
        brand: card.brand,
        model: card.model,
        serial_number: mask_serial(&card.serial_number),
        covered_today: card.warranty_status == crate::domain::WarrantyStatus::Active,
        covered_until: card.covered_until,
        checked_on: today,
        coverages: card.coverages.iter().map(PublicCoverage::from).collect(),
        link_expires_at: claims.expires_at,
    })
}

/// Revokes every verification link issued so far for the product. Returns its new revision.
pub async fn revoke_links(services: &Services, user: &UserId, id: ProductId) -> Result<u64, Error> {
    let now = services.clock.now();
    let product = services.products.get(user, id).await?.ok_or(Error::NotFound)?;
    let mut next = product.clone();
    next.verification_epoch += 1;
    next.revision += 1;
    next.audit.push(AuditEntry {
        at: now,
        by: user.clone(),
        action: "verification_revoked".into(),
        changes: vec![FieldChange {
            field: "verificationEpoch".into(),
            from: Some(product.verification_epoch.to_string()),
            to: Some(next.verification_epoch.to_string()),
        }],
    });
    services.products.replace(&next, product.revision, None).await?;
    Ok(next.revision)
}

#[cfg(test)]
mod tests {
    use super::mask_serial;

    #[test]
    fn serials_show_at_most_their_last_four_characters() {
        assert_eq!(mask_serial("C02XK0ABJGH5"), "••••••••JGH5");
        assert_eq!(mask_serial("7XK9JH2"), "••••JH2");
        assert_eq!(mask_serial("AB"), "•B");
        assert_eq!(mask_serial("A"), "•");
    }
}
