//! Verification links: `/api/verify/{token}`, where the token names a product, the link epoch
//! it was issued in and when it expires, signed with HMAC-SHA256.
//!
//! 28 bytes of claims (product id, epoch, expiry in Unix seconds) and the first 16 bytes of
//! the MAC, in unpadded base64url: 59 characters, short enough for a small QR code. Anything
//! that does not verify — tampered, truncated, expired, from another key — reads as no token at
//! all, and the owner revokes every link of a product by bumping its epoch.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const CLAIMS: usize = 16 + 4 + 8;
const TAG: usize = 16;
const CONTEXT: &[u8] = b"warranty-verification-v1";

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub product: Uuid,
    pub epoch: u32,
    pub expires_at: DateTime<Utc>,
}

fn mac(key: &[u8], claims: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(CONTEXT);
    m.update(claims);
    m
}

/// A token for `product` in link epoch `epoch`, valid until `expires_at`.
pub fn issue(key: &[u8], product: Uuid, epoch: u32, expires_at: DateTime<Utc>) -> String {
    let mut raw = Vec::with_capacity(CLAIMS + TAG);
    raw.extend_from_slice(product.as_bytes());
    raw.extend_from_slice(&epoch.to_be_bytes());
    raw.extend_from_slice(&expires_at.timestamp().to_be_bytes());
    let tag = mac(key, &raw).finalize().into_bytes();
    raw.extend_from_slice(&tag[..TAG]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The claims of a genuine, unexpired token; `None` for anything else.
pub fn check(key: &[u8], token: &str, now: DateTime<Utc>) -> Option<Verified> {
    if token.len() > 128 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != CLAIMS + TAG {
        return None;
    }
    let (claims, tag) = raw.split_at(CLAIMS);
    // Constant-time comparison of the truncated tag.
    mac(key, claims).verify_truncated_left(tag).ok()?;
    let product = Uuid::from_slice(&claims[..16]).ok()?;
    let epoch = u32::from_be_bytes(claims[16..20].try_into().ok()?);
    let expires_at = DateTime::from_timestamp(i64::from_be_bytes(claims[20..28].try_into().ok()?), 0)?;
    (now <= expires_at).then_some(Verified { product, epoch, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_only_with_its_key() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let expires = now + chrono::Duration::days(90);
        let t = issue(b"key-1", id, 3, expires);
        assert_eq!(t.len(), 59);
        let v = check(b"key-1", &t, now).unwrap();
        assert_eq!((v.product, v.epoch, v.expires_at.timestamp()), (id, 3, expires.timestamp()));
        assert_eq!(check(b"key-2", &t, now), None, "another key");
        assert_eq!(check(b"key-1", &t, expires + chrono::Duration::seconds(1)), None, "expired");
    }

    #[test]
    fn any_changed_character_breaks_the_token() {
        let t = issue(b"k", Uuid::now_v7(), 0, Utc::now() + chrono::Duration::days(1));
        for i in 0..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(check(b"k", &changed, Utc::now()), None, "position {i}");
        }
        assert_eq!(check(b"k", &t[..58], Utc::now()), None);
        assert_eq!(check(b"k", "", Utc::now()), None);
        assert_eq!(check(b"k", "%%%", Utc::now()), None);
    }
}
