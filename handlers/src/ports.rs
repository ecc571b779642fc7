//! What the application needs from the outside world. Adapters implement these traits; the
//! use cases in `application` are written against them only.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::extraction::TextLine;
use crate::domain::intake::{IntakeId, IntakeRecord};
use crate::domain::ocr::{InvoiceFields, OcrEngineKind};
use crate::domain::{InvoiceKind, OcrRequested, OcrState, ProductId, ProductRecord, UserId};

/// A backend is down, slow, refusing or full: nothing was stored. The message is for logs only
/// and never reaches a response body.
#[derive(Debug, thiserror::Error)]
#[error("{backend} unavailable: {message}")]
pub struct Unavailable {
    pub backend: &'static str,
    pub message: String,
    pub condition: Condition,
}

/// What state the backend is in, as far as the caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Down or failing: retry later (503).
    Down,
    /// Up but locked by someone else or over its limit (a write budget ran out): retry
    /// shortly (503).
    Busy,
    /// No space left to store anything (the disk, a quota, the database's size limit): retrying
    /// helps only after an operator frees space (507).
    Full,
}

impl Unavailable {
    pub fn new(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self { backend, message: message.to_string(), condition: Condition::Down }
    }

    /// Up, but over its limit right now: retry shortly.
    pub fn busy(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self { backend, message: message.to_string(), condition: Condition::Busy }
    }

    /// Out of space.
    pub fn full(backend: &'static str, message: impl std::fmt::Display) -> Self {
        Self { backend, message: message.to_string(), condition: Condition::Full }
    }

    /// From an adapter's failure: [`Condition::Full`] when the cause says so.
    pub fn from_cause(backend: &'static str, cause: impl Cause) -> Self {
        if cause.out_of_space() { Self::full(backend, cause) } else { Self::new(backend, cause) }
    }
}

/// A failure an adapter hands on: it can say whether it means "out of space".
pub trait Cause: std::fmt::Display {
    fn out_of_space(&self) -> bool {
        false
    }
}

impl Cause for std::io::Error {
    fn out_of_space(&self) -> bool {
        matches!(self.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    }
}

impl Cause for String {}
impl Cause for &str {}
impl Cause for tokio::task::JoinError {}
impl Cause for tokio::sync::AcquireError {}
impl Cause for serde_json::Error {}

/// Why a store did not write a product.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such product (for this user).
    #[error("product not found")]
    Gone,
    /// The stored revision is not the expected one: someone changed it meanwhile.
    #[error("product changed meanwhile")]
    Stale,
    /// The same user already registered this brand + serial number (as `existing`).
    #[error("product already registered as {existing:?}")]
    DuplicateProduct { existing: Option<ProductId> },
    /// Another request with the same idempotency key won the race.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// The first answer given to a request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Hash of the request's meaningful content, to refuse a key reused for another request.
    pub fingerprint: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A key under which a response is remembered.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub response: StoredResponse,
    pub expires_at: DateTime<Utc>,
}

/// A user's calendar feed: the hash of its secret (the secret itself is shown once, in the feed
/// URL) and the reminder lead times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarFeed {
    pub secret_sha256: String,
    pub lead_days: Vec<u32>,
    pub created_at: DateTime<Utc>,
}

/// Position in a newest-first listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: ProductId,
}

#[async_trait]
pub trait ProductRepository: Send + Sync {
    /// Stores the product, its OCR event and (optionally) the idempotent response in one
    /// atomic step: either all exist afterwards or none does.
    async fn insert_registration(
        &self,
        product: &ProductRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    async fn get(&self, user: &UserId, id: ProductId) -> Result<Option<ProductRecord>, Unavailable>;

    /// Up to `limit` of the user's products, newest first, strictly after `after`.
    async fn list(
        &self,
        user: &UserId,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<ProductRecord>, Unavailable>;

    async fn idempotent_response(
        &self,
        user: &UserId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredResponse>, Unavailable>;

    async fn health(&self) -> Result<(), Unavailable>;

    /// Replaces the stored product with `product` if the stored revision is `expected`, in one
    /// atomic step. Without `new_invoice` the stored OCR state is kept (the OCR handler owns
    /// it), whatever `product.ocr` says. With it (the invoice was replaced), `product.ocr` is
    /// stored and the event is queued in the same step, as at registration.
    async fn replace(
        &self,
        product: &ProductRecord,
        expected: u64,
        new_invoice: Option<&OcrRequested>,
    ) -> Result<(), StoreError>;

    /// Deletes the product and any OCR work still queued for it, if the stored revision is
    /// `expected`.
    async fn delete(&self, user: &UserId, id: ProductId, expected: u64) -> Result<(), StoreError>;

    /// The location of product `id`'s current invoice (reconciliation): read in `owner`'s
    /// partition when the file named its owner, else found whoever owns it.
    async fn invoice_location(&self, owner: Option<&UserId>, id: ProductId) -> Result<Option<String>, Unavailable>;

    /// One of the user's own records (`key`: `calendar-feed`, `notification-settings`, …), a
    /// JSON document the use case owns.
    async fn user_record(&self, user: &UserId, key: &str) -> Result<Option<serde_json::Value>, Unavailable>;

    /// Stores one of the user's records, replacing the earlier one.
    async fn put_user_record(&self, user: &UserId, key: &str, doc: &serde_json::Value) -> Result<(), Unavailable>;

    /// One record of each of `users` (the reminder sweep reads many at once).
    async fn user_records(&self, users: &[UserId], key: &str) -> Result<Vec<Option<serde_json::Value>>, Unavailable> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.user_record(user, key).await?);
        }
        Ok(out)
    }

    /// Removes one of the user's records; false when there was none.
    async fn delete_user_record(&self, user: &UserId, key: &str) -> Result<bool, Unavailable>;

    /// Removes everything of the user's but their products and their record `keep`: idempotent
    /// answers, user records, reminders and their deliveries, dead-lettered OCR events.
    async fn erase_user_data(&self, user: &UserId, keep: &str) -> Result<(), Unavailable>;

    /// The users who have a record `key` (erasures to resume).
    async fn users_with_record(&self, key: &str) -> Result<Vec<UserId>, Unavailable>;

    /// A product whoever owns it: the public verification page, which knows the product from a
    /// signed link and never the user.
    async fn find(&self, id: ProductId) -> Result<Option<ProductRecord>, Unavailable>;

    /// A verification link to `product` was issued: a store that cannot find a product by id
    /// alone records what [`find`](Self::find) needs.
    async fn link_issued(&self, _product: &ProductRecord) -> Result<(), Unavailable> {
        Ok(())
    }

    /// Stores `state` as the product's OCR state if its invoice is still `state.invoice_version`.
    /// Returns false when the product is gone or its invoice was replaced meanwhile. A store may
    /// return before the state is durable: a reading lost in a power cut is read again when its
    /// message comes back (the message is completed only after this returns).
    async fn update_ocr(&self, user: &UserId, id: ProductId, state: &OcrState) -> Result<bool, Unavailable>;

    /// Stores an intake, the event that reads its invoice and (optionally) the idempotent
    /// response in one atomic step.
    async fn insert_intake(
        &self,
        intake: &IntakeRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// One of the user's intakes (tombstones included).
    async fn get_intake(&self, user: &UserId, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable>;

    /// An intake whoever owns it (`owner` when known): reconciliation, from a file's name.
    async fn find_intake(&self, owner: Option<&UserId>, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable>;

    /// Replaces the stored intake with `intake` (its revision bumped by the caller) if the
    /// stored revision is `expected`. `Stale` when it changed meanwhile, `Gone` when it went.
    async fn update_intake(&self, intake: &IntakeRecord, expected: u64) -> Result<(), StoreError>;

    /// Stores a product registered from `intake` together with the intake as it is after it
    /// (its `products` grown, revision bumped; stored only if the stored revision is `expected`)
    /// and the idempotent response, in one atomic step. The product's OCR state is the intake's
    /// reading: no event is queued.
    async fn insert_from_intake(
        &self,
        product: &ProductRecord,
        intake: &IntakeRecord,
        expected: u64,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    /// Deletes the intake (and reading work still queued for it) if its revision is `expected`.
    async fn delete_intake(&self, user: &UserId, id: IntakeId, expected: u64) -> Result<(), StoreError>;

    /// Up to `limit` intakes, whoever owns them, whose sweep time ([`IntakeRecord::sweep_at`])
    /// is at or before `now`, oldest first.
    async fn intakes_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<IntakeRecord>, Unavailable>;

    /// Every intake of the user, oldest first (the export and the erasure; an intake lives a
    /// day, so a user has few).
    async fn intakes_of(&self, user: &UserId) -> Result<Vec<IntakeRecord>, Unavailable>;
}

/// One delivery of an OCR event held by an outbox: the row of the embedded store's queue, or
/// the pending-publication marker written with a Cosmos DB product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub message_id: String,
    /// The event as JSON (what the queue carries).
    pub body: String,
    pub enqueued_at: String,
    /// Deliveries so far, this one included (0 where the store does not count them).
    pub delivery_count: u32,
    /// Proves the lock on this delivery (empty where the store does not lock).
    pub lock_token: String,
}

impl OutboxMessage {
    /// A first delivery of `event`.
    pub fn for_event(event: &OcrRequested) -> Self {
        Self {
            message_id: event.message_id.clone(),
            body: serde_json::to_string(event).expect("an event serialises"),
            enqueued_at: event.requested_at.to_rfc3339(),
            delivery_count: 0,
            lock_token: String::new(),
        }
    }

    pub fn event(&self) -> Result<OcrRequested, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("unreadable event: {e}"))
    }
}

/// Where OCR events wait between the write that created them and their delivery. Written in
/// the same transaction (or document) as the product, so an event exists exactly when its
/// product does.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Up to `limit` messages due now and written at least `min_age` ago, each locked for
    /// `lock` (a store without locks ignores it: its messages stay until delivered).
    async fn claim(
        &self,
        min_age: std::time::Duration,
        lock: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, Unavailable>;
    /// The message reached its destination: remove it.
    async fn delivered(&self, message: &OutboxMessage) -> Result<(), Unavailable>;
    /// Delivery failed: make it due again at `at`.
    async fn retry_at(&self, message: &OutboxMessage, at: DateTime<Utc>, reason: &str) -> Result<(), Unavailable>;
    /// Delivery failed too often: set it aside for an operator.
    async fn dead_letter(&self, message: &OutboxMessage, reason: &str) -> Result<(), Unavailable>;
    /// When the next message becomes due, if the store knows.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, Unavailable>;
    /// Whether [`next_due`](Self::next_due) is exact (`None` then means nothing is queued), so
    /// an idle worker can look before it claims.
    fn knows_due_times(&self) -> bool {
        false
    }
}

/// Why a delivery did not go through, and when the destination asked to be tried again.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct DeliveryFailed {
    pub reason: String,
    pub retry_after: Option<std::time::Duration>,
}

/// Where outbox messages go: the Service Bus queue, or this process's own trigger endpoint.
#[async_trait]
pub trait OcrPublisher: Send + Sync {
    async fn deliver(&self, message: &OutboxMessage) -> Result<(), DeliveryFailed>;
}

/// Puts an OCR event back on the queue to be delivered again after a delay, as a new message.
///
/// Service Bus through the Functions host redelivers an abandoned message at once and
/// dead-letters it after `MaxDeliveryCount` (10) deliveries: a store outage of a minute would use
/// them all up. A transient failure is therefore answered 2xx (the delivery completes) after a
/// copy is scheduled for later (`ScheduledEnqueueTimeUtc`) under its own message id
/// (`{messageId}~r{n}`), which duplicate detection does not confuse with the original.
#[async_trait]
pub trait OcrRequeue: Send + Sync {
    async fn requeue(&self, event: &OcrRequested, at: chrono::DateTime<chrono::Utc>) -> Result<(), DeliveryFailed>;
}

/// A file read in chunks.
pub type ChunkStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, Unavailable>> + Send>>;

/// A committed file, as reconciliation finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub location: String,
    /// Whose it is, when the store keeps that with the file.
    pub owner: Option<UserId>,
}

/// An invoice being written. Dropping it without `commit` must leave nothing behind
/// (adapters abort in `Drop` as a last resort; callers call `abort` explicitly).
#[async_trait]
pub trait InvoiceUpload: Send {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), Unavailable>;
    /// Makes the upload durable under its final location and returns that location.
    async fn commit(self: Box<Self>) -> Result<String, Unavailable>;
    async fn abort(self: Box<Self>);
}

#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Starts writing the invoice of `owner`'s `product` (version `version`) with extension
    /// `ext`: `{product}.v{version}.{ext}`.
    async fn begin(
        &self,
        owner: &UserId,
        product: ProductId,
        version: u32,
        ext: &str,
    ) -> Result<Box<dyn InvoiceUpload>, Unavailable> {
        self.begin_named(owner, &format!("{product}.v{version}"), ext).await
    }

    /// Starts writing `owner`'s file `{stem}.{ext}`; stems start with the product id
    /// (reconciliation reads it back), for example `{product}.proof-{coverage}` for a
    /// coverage's proof. A store that can keep the owner with the file does, so reconciliation
    /// reads the product in its owner's partition.
    async fn begin_named(&self, owner: &UserId, stem: &str, ext: &str) -> Result<Box<dyn InvoiceUpload>, Unavailable>;

    /// Removes a committed invoice (compensation when the product could not be stored).
    async fn delete(&self, location: &str) -> Result<(), Unavailable>;

    /// The whole invoice (at most 10 MiB), or `None` when there is nothing at `location`.
    async fn read(&self, location: &str) -> Result<Option<bytes::Bytes>, Unavailable>;

    /// The invoice as a stream of chunks (the export sends files without holding one whole).
    /// By default the whole file as one chunk.
    async fn open(&self, location: &str) -> Result<Option<ChunkStream>, Unavailable> {
        Ok(self
            .read(location)
            .await?
            .map(|b| Box::pin(futures_util::stream::once(async move { Ok(b) })) as ChunkStream))
    }

    /// Copies the committed file at `from` to `owner`'s file `{stem}.{ext}` and returns its
    /// location (a product registered from an intake gets its own copy, so deleting one never
    /// takes another's). By default read and written again through [`open`](Self::open) and
    /// [`begin_named`](Self::begin_named); `Ok(None)` when there is nothing at `from`.
    async fn copy(&self, from: &str, owner: &UserId, stem: &str, ext: &str) -> Result<Option<String>, Unavailable> {
        copy_through(self, from, owner, stem, ext).await
    }

    /// Committed invoices last written between `from` and `to` (reconciliation).
    async fn written_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Written>, Unavailable>;

    async fn health(&self) -> Result<(), Unavailable>;
}

/// [`InvoiceStore::copy`] by reading the file and writing it again as a new upload.
pub async fn copy_through<S: InvoiceStore + ?Sized>(
    store: &S,
    from: &str,
    owner: &UserId,
    stem: &str,
    ext: &str,
) -> Result<Option<String>, Unavailable> {
    use futures_util::StreamExt;
    let Some(mut chunks) = store.open(from).await? else {
        return Ok(None);
    };
    let mut upload = store.begin_named(owner, stem, ext).await?;
    while let Some(chunk) = chunks.next().await {
        let written = match chunk {
            Ok(c) => upload.write(&c).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            upload.abort().await;
            return Err(e);
        }
    }
    upload.commit().await.map(Some)
}

/// A reminder: one per (coverage, expiry date, lead time), shown in the user's feed and sent
/// on their other channels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reminder {
    /// `domain::reminders::reminder_id` of the three.
    pub id: String,
    pub user_id: UserId,
    pub product_id: ProductId,
    pub coverage_id: uuid::Uuid,
    pub title: String,
    pub body: String,
    pub expires_on: chrono::NaiveDate,
    pub lead_days: u32,
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

/// Where one delivery of a reminder goes: a channel and, for push, one device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryTarget {
    /// `push` or `webhook`.
    pub channel: String,
    /// Push: the device's installation id in the hub; webhook: `webhook`.
    pub target: String,
}

/// One delivery taken from the reminder outbox, leased to the caller until it is settled.
#[derive(Debug, Clone)]
pub struct ReminderDelivery {
    pub reminder: Reminder,
    pub target: DeliveryTarget,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered (or no longer deliverable and dropped on purpose, `reason` says why).
    Done { reason: Option<String> },
    /// Try again at `at`.
    Retry { at: DateTime<Utc>, reason: String },
    /// Given up: kept for an operator.
    DeadLetter { reason: String },
}

/// When a product's next reminder falls due, as computed from `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub user: UserId,
    pub id: ProductId,
    pub revision: u64,
    pub next: Option<DateTime<Utc>>,
}

/// Position in a user's newest-first reminder feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedCursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

/// The reminder schedule, the reminders themselves (the feed) and their delivery outbox.
///
/// Every product write marks the product for the next sweep (in the same write); the sweep
/// computes the product's reminders and stores when the next one falls due, indexed, so a sweep
/// reads only products that have something due.
#[async_trait]
pub trait ReminderStore: Send + Sync {
    /// Up to `limit` products whose next reminder is due at `now` (or that changed since the
    /// last sweep), whoever owns them.
    async fn due_products(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ProductRecord>, Unavailable>;
    /// Records when each product's next reminder falls due (`None`: never), for each product
    /// still at the revision given (one that changed or went meanwhile stays marked). Returns
    /// how many were recorded.
    async fn schedule(&self, entries: &[Schedule]) -> Result<usize, Unavailable>;
    /// Marks every product of the user for the next sweep (their settings changed).
    async fn reschedule_user(&self, user: &UserId) -> Result<(), Unavailable>;
    /// Stores each reminder with its deliveries, due now, unless a reminder with its id exists:
    /// for each, true when this call created it.
    async fn create(&self, reminders: &[(Reminder, Vec<DeliveryTarget>)]) -> Result<Vec<bool>, Unavailable>;
    /// The user's reminders, newest first, strictly after `after`.
    async fn feed(&self, user: &UserId, after: Option<&FeedCursor>, limit: usize)
    -> Result<Vec<Reminder>, Unavailable>;
    /// How many of the user's reminders are unread.
    async fn unread(&self, user: &UserId) -> Result<u64, Unavailable>;
    /// Marks one of the user's reminders read (once; a second call keeps the first time);
    /// false when the user has no such reminder.
    async fn mark_read(&self, user: &UserId, id: &str, at: DateTime<Utc>) -> Result<bool, Unavailable>;
    /// Up to `limit` deliveries due at `now`, each leased until `lease_until` (a delivery whose
    /// lease runs out is due again) with its attempt count raised.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ReminderDelivery>, Unavailable>;
    /// Ends a claimed delivery.
    async fn settle(&self, delivery: &ReminderDelivery, how: &Settlement) -> Result<(), Unavailable>;
}

/// Why a reminder was not sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendFailure {
    /// Worth trying again (throttled, a 5xx, a timeout), no sooner than `retry_after` if given.
    #[error("{reason}")]
    Transient { reason: String, retry_after: Option<std::time::Duration> },
    /// Never deliverable as it is (refused credentials, a bad request, a forbidden address).
    #[error("{0}")]
    Permanent(String),
    /// The destination no longer exists (a device uninstalled the app): forget it.
    #[error("{0}")]
    Gone(String),
}

/// A device as the push service registers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installation {
    /// The id in the push service (derived from the user and the app's own id, so one user can
    /// never overwrite another's).
    pub id: String,
    pub user_id: UserId,
    /// `fcmv1` or `apns`.
    pub platform: String,
    pub push_channel: String,
}

/// Sends a reminder to one destination: a push installation (`to` = its id) or a webhook
/// (`to` = the URL, `secret` = the signing secret).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, to: &str, reminder: &Reminder, secret: Option<&str>) -> Result<(), SendFailure>;
}

/// Where devices are registered for push.
#[async_trait]
pub trait PushRegistry: Notifier {
    async fn install(&self, installation: &Installation) -> Result<(), SendFailure>;
    async fn uninstall(&self, id: &str) -> Result<(), SendFailure>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: tests and benchmarks set the time the sweep runs at.
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What an OCR engine read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Reading {
    /// Exact fields from structured data (an embedded e-invoice, Document Intelligence), with
    /// the text the verification searches.
    Structured { fields: InvoiceFields, text: String },
    /// Lines of text, to be parsed by `domain::extraction`.
    Text { lines: Vec<TextLine>, pages: u32 },
    /// The same image read by several engines, the first the stronger: their fields are
    /// extracted separately and checked against each other.
    Checked { readings: Vec<Vec<TextLine>>, pages: u32 },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EngineReading {
    pub engine: OcrEngineKind,
    pub reading: Reading,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The invoice itself can never be read (corrupt, encrypted, no pages, too big to render):
    /// record it and stop. `reason` is a stable code shown on the card.
    #[error("{reason}: {detail}")]
    Permanent { reason: &'static str, detail: String },
    /// The engine this invoice needs is not installed or not configured. Retried, then
    /// dead-lettered; replayable once the engine is there.
    #[error("OCR engine unavailable: {0}")]
    EngineUnavailable(String),
    /// Worth retrying (a timeout, a remote 5xx).
    #[error("transient OCR failure: {0}")]
    Transient(String),
}

impl ReadError {
    pub fn permanent(reason: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Permanent { reason, detail: detail.to_string() }
    }
}

/// One engine's availability, for `/api/health`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineHealth {
    pub name: &'static str,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[async_trait]
pub trait InvoiceReader: Send + Sync {
    async fn read(&self, kind: InvoiceKind, bytes: bytes::Bytes) -> Result<EngineReading, ReadError>;
    fn health(&self) -> Vec<EngineHealth>;
    /// A second opinion on an image or scan the local recognisers left uncertain (Document
    /// Intelligence, where configured, with its model for `class`); `None` where there is
    /// nobody else to ask.
    async fn second_opinion(
        &self,
        _class: crate::domain::ocr::DocumentClass,
        _bytes: bytes::Bytes,
    ) -> Option<Result<EngineReading, ReadError>> {
        None
    }
}
