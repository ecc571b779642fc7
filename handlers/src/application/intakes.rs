//! Invoice-first registration (issue 29): upload the invoice alone, get the form proposed from
//! it, register the products it lists from the stored invoice.
//!
//! An intake is stored like a registration: the invoice streamed into the store (`{id}.intake.
//! {ext}`) and committed, then the intake, its reading event and the idempotent answer in one
//! atomic write (compensated by removing the file if that write fails). The event goes through
//! the same outbox, queue and readers as a registration's (`ocr::process` reads it), and the
//! reading's proposals are stored with the intake. A sweep removes the file of an intake past its
//! day and, a month later, the tombstone that answers `410`.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::intake::ReceivedInvoice;
use super::{Error, Services};
use crate::domain::intake::{IntakeId, IntakeRecord, IntakeStatus, IntakeView};
use crate::domain::{FieldError, OcrRequested, UserId};
use crate::ports::{IdempotencyRecord, StoreError, StoredResponse, Unavailable};

pub enum Created {
    Created {
        view: Box<IntakeView>,
        location: String,
    },
    /// An earlier answer to the same idempotency key.
    Replayed(StoredResponse),
}

/// A fresh intake id (time-ordered, like products').
pub fn new_intake_id() -> IntakeId {
    uuid::Uuid::now_v7()
}

/// Where an intake is read.
pub fn location_of(id: IntakeId) -> String {
    format!("/api/intakes/{id}")
}

/// Stores `invoice` as a new intake of `user` and queues its reading. Consumes the invoice: on
/// every path it is either committed and referenced by the stored intake, or removed.
pub async fn create(
    services: &Services,
    user: &UserId,
    id: IntakeId,
    invoice: Result<ReceivedInvoice, FieldError>,
    idempotency_key: Option<&str>,
    trace_id: Option<&str>,
) -> Result<Created, Error> {
    let now = services.clock.now();
    let invoice = invoice.map_err(|e| Error::Invalid(vec![e]))?;
    let print = {
        let mut h = Sha256::new();
        h.update(b"intake\0");
        h.update(invoice.sha256.as_bytes());
        hex::encode(h.finalize())
    };
    if let Some(key) = idempotency_key {
        match services.products.idempotent_response(user, key, now).await {
            Ok(Some(stored)) => {
                invoice.abort().await;
                return replay_or_refuse(stored, &print);
            }
            Ok(None) => {}
            Err(e) => {
                invoice.abort().await;
                return Err(e.into());
            }
        }
    }
    let invoice = invoice.commit().await?;
    let location = invoice.location.clone();
    let intake = IntakeRecord::new(id, user.clone(), invoice, now);
    let view = intake.view(now);
    let href = location_of(id);
    let idempotency = idempotency_key.map(|key| IdempotencyRecord {
        key: key.to_owned(),
        response: StoredResponse {
            fingerprint: print.clone(),
            status: 202,
            location: Some(href.clone()),
            body: serde_json::to_string(&view).expect("an intake serialises"),
        },
        expires_at: now + services.idempotency_ttl,
    });
    let event = OcrRequested { trace_id: trace_id.map(str::to_owned), ..intake.reading_event() };
    if let Err(e) = services.products.insert_intake(&intake, &event, idempotency.as_ref()).await {
        super::register::compensate(services, &location).await;
        return match e {
            StoreError::IdempotencyKeyTaken => {
                let stored = super::register::winning_response(services, user, idempotency_key, now).await?;
                replay_or_refuse(stored, &print)
            }
            other => Err(other.into()),
        };
    }
    services.outbox.written(&event).await;
    Ok(Created::Created { view: Box::new(view), location: href })
}

fn replay_or_refuse(stored: StoredResponse, print: &str) -> Result<Created, Error> {
    if stored.fingerprint == print { Ok(Created::Replayed(stored)) } else { Err(Error::IdempotencyKeyReused) }
}

/// One of the user's intakes as a client sees it.
pub async fn get(services: &Services, user: &UserId, id: IntakeId) -> Result<Option<IntakeView>, Unavailable> {
    let now = services.clock.now();
    Ok(services.products.get_intake(user, id).await?.map(|i| i.view(now)))
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Intakes past their day whose file was removed (a tombstone stays).
    pub expired: usize,
    /// Tombstones past their month, removed.
    pub purged: usize,
}

/// Intakes handled per store read.
const SWEEP_PAGE: usize = 100;

/// Removes the files of intakes past their day and the tombstones past their month. An intake
/// that changes meanwhile (a registration from it) is left to the next sweep.
pub async fn sweep(services: &Services, now: DateTime<Utc>) -> Result<Swept, Unavailable> {
    let mut done = Swept::default();
    loop {
        let due = services.products.intakes_due(now, SWEEP_PAGE).await?;
        let full = due.len() == SWEEP_PAGE;
        let mut progressed = false;
        for intake in due {
            if intake.status == IntakeStatus::Expired {
                match services.products.delete_intake(&intake.user_id, intake.id, intake.revision).await {
                    Ok(()) | Err(StoreError::Gone) => {
                        done.purged += 1;
                        progressed = true;
                    }
                    Err(StoreError::Stale) => {}
                    Err(StoreError::Unavailable(u)) => return Err(u),
                    Err(other) => return Err(Unavailable::new("product store", other)),
                }
                continue;
            }
            // The file first: a crash in between leaves an intake to expire again, never a
            // tombstone whose file stays.
            services.invoices.delete(&intake.invoice.location).await?;
            let mut expired = intake.clone();
            expired.status = IntakeStatus::Expired;
            expired.revision += 1;
            match services.products.update_intake(&expired, intake.revision).await {
                Ok(()) | Err(StoreError::Gone) => {
                    done.expired += 1;
                    progressed = true;
                }
                Err(StoreError::Stale) => {}
                Err(StoreError::Unavailable(u)) => return Err(u),
                Err(other) => return Err(Unavailable::new("product store", other)),
            }
        }
        if !full || !progressed {
            return Ok(done);
        }
    }
}

/// Removes every intake of the user with its file (erasure).
pub async fn erase(services: &Services, user: &UserId) -> Result<(), Unavailable> {
    for intake in services.products.intakes_of(user).await? {
        if intake.status != IntakeStatus::Expired {
            services.invoices.delete(&intake.invoice.location).await?;
        }
        let mut revision = intake.revision;
        loop {
            match services.products.delete_intake(user, intake.id, revision).await {
                Ok(()) | Err(StoreError::Gone) => break,
                Err(StoreError::Stale) => match services.products.get_intake(user, intake.id).await? {
                    Some(now) => revision = now.revision,
                    None => break,
                },
                Err(StoreError::Unavailable(u)) => return Err(u),
                Err(other) => return Err(Unavailable::new("product store", other)),
            }
        }
    }
    Ok(())
}
