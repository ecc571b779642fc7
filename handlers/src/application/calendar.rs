//! The calendar feed: a private URL a calendar app subscribes to (it cannot send a bearer
//! token), made, rotated and revoked by its owner.
//!
//! The feed token is the user id and a 32-byte random secret, base64url, joined by a dot; only
//! the secret's SHA-256 is stored. Making a new feed replaces the old one, whose URL then
//! answers 404 like a revoked or forged one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Error, Services};
use crate::application::sharing::mask_serial;
use crate::card::ics::Expiry;
use crate::domain::reminders;
use crate::domain::{FieldError, UserId};
use crate::ports::CalendarFeed;

/// The user record holding the feed.
pub const RECORD: &str = "calendar-feed";
/// Products read per page while building a feed.
const PAGE: usize = 100;

fn digest(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// Validated alarm lead times: 1 to 5 distinct values of 0–365 days, largest first; a month and
/// a week before when none are named.
pub fn lead_days(requested: Option<&[i64]>) -> Result<Vec<u32>, Error> {
    let Some(days) = requested else { return Ok(reminders::DEFAULT_LEAD_DAYS.to_vec()) };
    reminders::lead_days(days, 0).ok_or_else(|| {
        Error::Invalid(vec![FieldError::new(
            "leadDays",
            "lead_days_invalid",
            "give 1 to 5 lead times, each 0 to 365 days",
        )])
    })
}

/// Makes (or rotates) the user's feed; returns its token, shown once.
pub async fn create(services: &Services, user: &UserId, lead_days: Vec<u32>) -> Result<(String, CalendarFeed), Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| crate::ports::Unavailable::new("random source", e.to_string()))?;
    let feed = CalendarFeed { secret_sha256: digest(&secret), lead_days, created_at: services.clock.now() };
    let doc = serde_json::to_value(&feed).expect("a feed serialises");
    services.products.put_user_record(user, RECORD, &doc).await?;
    let token = format!("{}.{}", URL_SAFE_NO_PAD.encode(user.as_str()), URL_SAFE_NO_PAD.encode(secret));
    Ok((token, feed))
}

/// Revokes the user's feed.
pub async fn revoke(services: &Services, user: &UserId) -> Result<(), Error> {
    if services.products.delete_user_record(user, RECORD).await? { Ok(()) } else { Err(Error::NotFound) }
}

/// The feed behind `token` as iCalendar text; [`Error::NotFound`] for any token that is not the
/// current one of its user.
pub async fn feed(services: &Services, token: &str) -> Result<String, Error> {
    let (user, secret) = token.split_once('.').ok_or(Error::NotFound)?;
    let user = URL_SAFE_NO_PAD.decode(user).ok().and_then(|u| String::from_utf8(u).ok()).ok_or(Error::NotFound)?;
    let secret = URL_SAFE_NO_PAD.decode(secret).map_err(|_| Error::NotFound)?;
    let user = UserId(user);
    let stored = services.products.user_record(&user, RECORD).await?.ok_or(Error::NotFound)?;
    let stored: CalendarFeed = serde_json::from_value(stored).map_err(|e| {
        crate::ports::Unavailable::new("product store", format!("stored calendar feed is unreadable: {e}"))
    })?;
    // Constant-time comparison of the digests.
    let presented = digest(&secret);
    let same = presented.len() == stored.secret_sha256.len()
        && presented.bytes().zip(stored.secret_sha256.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(Error::NotFound);
    }
    let now: DateTime<Utc> = services.clock.now();
    let mut expiries = Vec::new();
    let mut after = None;
    loop {
        let page = services.products.list(&user, after.as_ref(), PAGE).await?;
        for p in &page {
            for c in p.coverages().iter() {
                if let Some(expires_on) = c.expires_on() {
                    expiries.push(Expiry {
                        uid: format!("{}-{}@warranty", p.id, c.id),
                        product: format!("{} {}", p.brand, p.model),
                        coverage: c.kind.label().to_owned(),
                        provider: c.provider.clone(),
                        serial_masked: mask_serial(p.serial_number.as_str()),
                        expires_on,
                    });
                }
            }
        }
        if page.len() < PAGE {
            break;
        }
        after = page.last().map(|p| crate::ports::ListCursor { created_at: p.created_at, id: p.id });
    }
    expiries.sort_by(|a, b| (a.expires_on, &a.uid).cmp(&(b.expires_on, &b.uid)));
    Ok(crate::card::ics::render(&expiries, &stored.lead_days, now))
}
