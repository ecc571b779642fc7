//! Reading warranty cards.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Services;
use crate::domain::{ProductId, UserId, WarrantyCard};
use crate::ports::{ListCursor, Unavailable};

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

/// The card of one of the caller's products. Another user's product is "not found": its
/// existence is not revealed.
pub async fn card(services: &Services, user: &UserId, id: ProductId) -> Result<Option<WarrantyCard>, Unavailable> {
    let today = services.clock.now().date_naive();
    Ok(services.products.get(user, id).await?.map(|p| p.card(today)))
}

pub struct Page {
    pub items: Vec<WarrantyCard>,
    pub continuation_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("the continuation token is not one this service issued")]
pub struct BadToken;

/// A continuation token's position (a keyset cursor, an export part): base64url JSON, opaque to
/// clients.
pub fn decode_token<T: serde::de::DeserializeOwned>(token: &str) -> Result<T, BadToken> {
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| BadToken)?;
    serde_json::from_slice(&raw).map_err(|_| BadToken)
}

pub fn encode_token<T: serde::Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).expect("a position serialises"))
}

/// The caller's products, newest first. Keyset paging: a page is stable under inserts.
pub async fn list(
    services: &Services,
    user: &UserId,
    after: Option<&ListCursor>,
    limit: usize,
) -> Result<Page, Unavailable> {
    let today = services.clock.now().date_naive();
    // One extra row tells whether another page exists without a second query.
    let mut rows = services.products.list(user, after, limit + 1).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let continuation_token = more
        .then(|| rows.last())
        .flatten()
        .map(|last| encode_token(&ListCursor { created_at: last.created_at, id: last.id }));
    Ok(Page { items: rows.iter().map(|p| p.card(today)).collect(), continuation_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let c = ListCursor { created_at: chrono::Utc::now(), id: uuid::Uuid::now_v7() };
        assert_eq!(decode_token::<ListCursor>(&encode_token(&c)).unwrap(), c);
        assert!(decode_token::<ListCursor>("not a token").is_err());
        assert!(decode_token::<ListCursor>(&URL_SAFE_NO_PAD.encode(b"{\"x\":1}")).is_err());
    }
}
