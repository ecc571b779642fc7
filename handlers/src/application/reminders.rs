//! Expiry reminders: the sweep that chooses them, the outbox that delivers them, the feed.
//!
//! **Choosing.** Every product write marks the product for the next sweep (in the same
//! write); the sweep reads only marked products and products whose stored next due time has
//! come (an index, never a scan). For each coverage still running in the user's zone it finds
//! the reminders due at the user's hour; the latest one due (the shortest lead time) is created
//! under its derived id — a second creation by a rerun, a racing instance or a redelivery is a
//! no-op — and earlier lead times that were missed are not sent late. It then stores when the
//! product's next reminder falls due, if the product did not change meanwhile (if it did, it
//! stays marked and the next sweep recomputes it).
//!
//! **Delivering.** The reminder and its deliveries (one per push device, one for the webhook)
//! are written together; the feed needs no delivery. Deliveries are claimed with a lease,
//! retried with exponential backoff (or the destination's `Retry-After`) and dead-lettered
//! after `max_attempts`. A crash after a claim leaves the delivery to be claimed again when its
//! lease ends. Every message carries the reminder id, so a receiver can drop the duplicate a
//! crash between sending and settling can cause.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Services, notifications, record_or_default};
use crate::domain::reminders::{Channel, NotificationSettings, due_at, reminder_id};
use crate::domain::{FieldError, ProductRecord, UserId};
use crate::ports::{
    DeliveryTarget, FeedCursor, Installation, Notifier, PushRegistry, Reminder, ReminderDelivery, ReminderStore,
    Schedule, SendFailure, Settlement, Unavailable,
};

/// How reminders are delivered.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts per delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a claimed delivery is left to its claimer before it is due again.
    pub lease: Duration,
    /// Products read, and deliveries claimed, per round.
    pub batch: usize,
    /// Deliveries in flight at once (each: a product read, a send, a settlement). Notification
    /// Hubs and webhook receivers that answer 429 are retried per their `Retry-After`, so this
    /// bounds what one instance asks of them, not what they accept.
    pub concurrency: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            lease: Duration::from_secs(300),
            batch: 500,
            concurrency: 64,
        }
    }
}

/// The reminder machinery the use cases share.
#[derive(Clone)]
pub struct Reminders {
    pub store: Arc<dyn ReminderStore>,
    /// Notification Hubs, when configured.
    pub push: Option<Arc<dyn PushRegistry>>,
    pub webhook: Arc<dyn Notifier>,
    pub policy: Policy,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Products whose reminders were computed.
    pub products: usize,
    /// Reminders created by this sweep.
    pub created: usize,
    pub delivered: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    /// Deliveries dropped on purpose (device gone, channel switched off, product deleted).
    pub dropped: usize,
}

/// The user record listing the user's push devices.
const DEVICES: &str = "devices";
/// Devices kept per user; registering another replaces the least recently registered.
pub const MAX_DEVICES: usize = 10;

/// One of the user's push devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The app's own id for the installation.
    pub installation_id: String,
    /// Its id in the hub.
    pub hub_id: String,
    pub platform: String,
    pub registered_at: DateTime<Utc>,
}

/// The hub's id for the user's installation `installation_id`: derived from both, so a client
/// can never address another user's installation.
pub fn hub_installation_id(user: &UserId, installation_id: &str) -> String {
    let digest = Sha256::digest(format!("installation\u{1f}{}\u{1f}{installation_id}", user.as_str()));
    hex::encode(&digest[..16])
}

/// The hub tag every installation of the user carries (tags allow only a few characters, and
/// the user id is not one to hand to a third party).
pub fn user_tag(user: &UserId) -> String {
    let digest = Sha256::digest(format!("user\u{1f}{}", user.as_str()));
    format!("user-{}", hex::encode(&digest[..16]))
}

/// Chooses due reminders, then delivers what is due: the work of one timer tick.
pub async fn sweep(services: &Services, now: DateTime<Utc>) -> Result<SweepReport, Unavailable> {
    let mut report = choose(services, now).await?;
    let delivered = deliver(services, now).await?;
    report.delivered = delivered.delivered;
    report.retried = delivered.retried;
    report.dead_lettered = delivered.dead_lettered;
    report.dropped = delivered.dropped;
    Ok(report)
}

/// Creates the reminders due at `now` and reschedules the products it read. Works in batches:
/// per batch one read of the due products, one of their owners' settings and devices, one
/// write of the new reminders and one of the schedules.
pub async fn choose(services: &Services, now: DateTime<Utc>) -> Result<SweepReport, Unavailable> {
    let r = &services.reminders;
    let mut report = SweepReport::default();
    let mut seen = HashSet::new();
    loop {
        let due = r.store.due_products(now, r.policy.batch).await?;
        let full = due.len() >= r.policy.batch;
        // Products that changed while this sweep read them come round again: the next sweep
        // takes those.
        let fresh: Vec<ProductRecord> = due.into_iter().filter(|p| seen.insert(p.id)).collect();
        if fresh.is_empty() {
            break;
        }
        let recipients = recipients(services, &fresh).await?;
        let mut new = Vec::new();
        let mut schedules = Vec::with_capacity(fresh.len());
        for product in &fresh {
            let (settings, devices) = &recipients[&product.user_id];
            let plan = plan(product, settings, now);
            let targets = targets(services, settings, devices);
            new.extend(plan.due.into_iter().map(|rem| (rem, targets.clone())));
            schedules.push(Schedule {
                user: product.user_id.clone(),
                id: product.id,
                revision: product.revision,
                next: plan.next,
            });
        }
        if !new.is_empty() {
            let created = r.store.create(&new).await?;
            for ((rem, _), created) in new.iter().zip(created) {
                if created {
                    report.created += 1;
                    tracing::info!(reminder_id = %rem.id, product_id = %rem.product_id, lead_days = rem.lead_days, "reminder created");
                }
            }
        }
        r.store.schedule(&schedules).await?;
        report.products += fresh.len();
        if !full {
            break;
        }
    }
    Ok(report)
}

/// The settings and push devices of each owner of `products`, read once per user.
async fn recipients(
    services: &Services,
    products: &[ProductRecord],
) -> Result<HashMap<UserId, (NotificationSettings, Vec<Device>)>, Unavailable> {
    let mut users: Vec<UserId> = products.iter().map(|p| p.user_id.clone()).collect();
    users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    users.dedup();
    let settings = services.products.user_records(&users, notifications::RECORD).await?;
    let devices = services.products.user_records(&users, DEVICES).await?;
    let mut out = HashMap::with_capacity(users.len());
    for ((user, settings), devices) in users.into_iter().zip(settings).zip(devices) {
        let settings = record_or_default(notifications::RECORD, settings)?;
        out.insert(user, (settings, record_or_default(DEVICES, devices)?));
    }
    Ok(out)
}

/// A product's reminders at `now`: those to create, and when the next one falls due.
#[derive(Debug)]
pub struct Plan {
    pub due: Vec<Reminder>,
    pub next: Option<DateTime<Utc>>,
}

/// For each coverage still running on the user's today: the reminder of the shortest lead time
/// already due (earlier ones missed are not sent late; an expired coverage gets none), and the
/// earliest one still to come.
pub fn plan(product: &ProductRecord, settings: &NotificationSettings, now: DateTime<Utc>) -> Plan {
    let zone = settings.zone();
    let today = now.with_timezone(&zone).date_naive();
    let mut plan = Plan { due: Vec::new(), next: None };
    for coverage in product.coverages().iter() {
        let Some(expires_on) = coverage.expires_on() else { continue };
        if expires_on < today {
            continue;
        }
        let mut latest_due = None;
        // Largest lead first: due times ascend.
        for &lead in &settings.lead_days {
            let at = due_at(expires_on, lead, zone, settings.hour);
            if at <= now {
                latest_due = Some((lead, at));
            } else if plan.next.is_none_or(|n| at < n) {
                plan.next = Some(at);
            }
        }
        if let Some((lead, at)) = latest_due {
            let days_left = (expires_on - today).num_days();
            let title = match days_left {
                0 => "Warranty ends today".to_owned(),
                1 => "Warranty ends tomorrow".to_owned(),
                n => format!("Warranty ends in {n} days"),
            };
            let body = format!(
                "{} {}: {} covers until {}.",
                product.brand,
                product.model,
                coverage.kind.label(),
                expires_on.format("%-d %B %Y")
            );
            plan.due.push(Reminder {
                id: reminder_id(coverage.id, expires_on, lead),
                user_id: product.user_id.clone(),
                product_id: product.id,
                coverage_id: coverage.id,
                title,
                body,
                expires_on,
                lead_days: lead,
                due_at: at,
                created_at: now,
                read_at: None,
            });
        }
    }
    plan
}

fn targets(services: &Services, settings: &NotificationSettings, devices: &[Device]) -> Vec<DeliveryTarget> {
    let mut out = Vec::new();
    if settings.channels.contains(&Channel::Push) && services.reminders.push.is_some() {
        out.extend(devices.iter().map(|d| DeliveryTarget { channel: "push".into(), target: d.hub_id.clone() }));
    }
    if settings.channels.contains(&Channel::Webhook) && settings.webhook_url.is_some() {
        out.push(DeliveryTarget { channel: "webhook".into(), target: "webhook".into() });
    }
    out
}

/// What one delivery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    pub dropped: usize,
}

/// Delivers every delivery due at `now`: claimed a batch at a time, each batch sent
/// `policy.concurrency` at a time, each delivery settled as soon as it is sent. A store failure
/// stops the round; the deliveries it claimed and did not settle come due again when their lease
/// ends.
pub async fn deliver(services: &Services, now: DateTime<Utc>) -> Result<DeliveryReport, Unavailable> {
    use futures_util::StreamExt;
    let r = &services.reminders;
    let mut report = DeliveryReport::default();
    let lease_until = now + chrono::Duration::from_std(r.policy.lease).unwrap_or(chrono::Duration::minutes(5));
    loop {
        let claimed = r.store.claim(now, lease_until, r.policy.batch).await?;
        if claimed.is_empty() {
            break;
        }
        let mut settled = futures_util::stream::iter(claimed.into_iter().map(|delivery| async move {
            let how = deliver_one(services, &delivery, now).await?;
            r.store.settle(&delivery, &how).await?;
            Ok::<_, Unavailable>((delivery, how))
        }))
        .buffer_unordered(r.policy.concurrency.max(1));
        while let Some(outcome) = settled.next().await {
            let (delivery, how) = outcome?;
            match &how {
                Settlement::Done { reason: None } => report.delivered += 1,
                Settlement::Done { reason: Some(why) } => {
                    tracing::info!(reminder_id = %delivery.reminder.id, channel = %delivery.target.channel, why, "reminder delivery dropped");
                    report.dropped += 1
                }
                Settlement::Retry { at, reason } => {
                    tracing::warn!(reminder_id = %delivery.reminder.id, channel = %delivery.target.channel, attempts = delivery.attempts, retry_at = %at, reason, "reminder delivery failed; retrying");
                    report.retried += 1
                }
                Settlement::DeadLetter { reason } => {
                    tracing::error!(reminder_id = %delivery.reminder.id, channel = %delivery.target.channel, attempts = delivery.attempts, reason, "reminder delivery dead-lettered");
                    report.dead_lettered += 1
                }
            }
        }
    }
    Ok(report)
}

async fn deliver_one(services: &Services, d: &ReminderDelivery, now: DateTime<Utc>) -> Result<Settlement, Unavailable> {
    let policy = services.reminders.policy;
    let reminder = &d.reminder;
    let user = &reminder.user_id;
    if services.products.get(user, reminder.product_id).await?.is_none() {
        return Ok(Settlement::Done { reason: Some("the product was deleted".into()) });
    }
    let sent = match d.target.channel.as_str() {
        "push" => match &services.reminders.push {
            None => return Ok(Settlement::Done { reason: Some("push is not configured".into()) }),
            Some(hub) => hub.send(&d.target.target, reminder, None).await,
        },
        "webhook" => {
            let settings = notifications::get(services, user).await?;
            let url = match (&settings.webhook_url, settings.channels.contains(&Channel::Webhook)) {
                (Some(url), true) => url.clone(),
                _ => return Ok(Settlement::Done { reason: Some("the webhook was switched off".into()) }),
            };
            let secret = notifications::webhook_secret(services, user, false).await?;
            services.reminders.webhook.send(&url, reminder, secret.as_deref()).await
        }
        other => Err(SendFailure::Permanent(format!("unknown channel {other}"))),
    };
    Ok(match sent {
        Ok(()) => Settlement::Done { reason: None },
        Err(SendFailure::Gone(why)) => {
            if d.target.channel == "push" {
                forget_device(services, user, &d.target.target).await?;
            }
            Settlement::Done { reason: Some(why) }
        }
        Err(SendFailure::Permanent(reason)) => Settlement::DeadLetter { reason },
        Err(SendFailure::Transient { reason, retry_after }) => {
            if d.attempts >= policy.max_attempts {
                Settlement::DeadLetter { reason: format!("{reason} (after {} attempts)", d.attempts) }
            } else {
                let backoff = backoff(policy, d.attempts).max(retry_after.unwrap_or_default());
                Settlement::Retry { at: now + chrono::Duration::from_std(backoff).unwrap_or_default(), reason }
            }
        }
    })
}

/// The wait after the `attempts`-th failed attempt: `retry_base` doubled each time, at most
/// `retry_max`.
pub fn backoff(policy: Policy, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
    policy.retry_base.saturating_mul(factor).min(policy.retry_max)
}

/// A page of the user's feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub items: Vec<Reminder>,
    pub unread: u64,
    pub next: Option<FeedCursor>,
}

pub async fn feed(
    services: &Services,
    user: &UserId,
    after: Option<&FeedCursor>,
    limit: usize,
) -> Result<FeedPage, Error> {
    let store = &services.reminders.store;
    let mut items = store.feed(user, after, limit + 1).await?;
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        let last = items.last().expect("a full page");
        FeedCursor { created_at: last.created_at, id: last.id.clone() }
    });
    let unread = store.unread(user).await?;
    Ok(FeedPage { items, unread, next })
}

pub async fn mark_read(services: &Services, user: &UserId, id: &str) -> Result<(), Error> {
    let now = services.clock.now();
    if services.reminders.store.mark_read(user, id, now).await? { Ok(()) } else { Err(Error::NotFound) }
}

/// The user's push devices.
pub async fn devices(services: &Services, user: &UserId) -> Result<Vec<Device>, Unavailable> {
    record_or_default(DEVICES, services.products.user_record(user, DEVICES).await?)
}

async fn store_devices(services: &Services, user: &UserId, devices: &[Device]) -> Result<(), Unavailable> {
    if devices.is_empty() {
        services.products.delete_user_record(user, DEVICES).await.map(|_| ())
    } else {
        let doc = serde_json::to_value(devices).expect("devices serialise");
        services.products.put_user_record(user, DEVICES, &doc).await
    }
}

async fn forget_device(services: &Services, user: &UserId, hub_id: &str) -> Result<(), Unavailable> {
    let mut list = devices(services, user).await?;
    let before = list.len();
    list.retain(|d| d.hub_id != hub_id);
    if list.len() != before {
        store_devices(services, user, &list).await?;
        tracing::info!(hub_id, "push device gone; removed");
    }
    // The hub may still hold the installation: it goes too (best effort, it cannot be sent to).
    if let Some(hub) = &services.reminders.push
        && let Err(e) = hub.uninstall(hub_id).await
    {
        tracing::warn!(hub_id, error = %e, "could not remove a gone installation from the hub");
    }
    Ok(())
}

/// Why a device was not registered.
#[derive(Debug)]
pub enum DeviceError {
    Invalid(Vec<FieldError>),
    /// No Notification Hub is configured.
    NotConfigured,
    /// The user has no such device.
    NotFound,
    /// The hub refused or failed.
    Hub(SendFailure),
    Store(Unavailable),
}

impl From<Unavailable> for DeviceError {
    fn from(e: Unavailable) -> Self {
        Self::Store(e)
    }
}

/// An installation id as apps make them (a UUID, a Firebase installation id): 1–64 of
/// `A–Z a–z 0–9 - _ .`.
fn valid_installation_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Registers (or refreshes) the user's device `installation_id` with the hub. True when it is
/// new.
pub async fn register_device(
    services: &Services,
    user: &UserId,
    installation_id: &str,
    doc: &serde_json::Value,
) -> Result<(Device, bool), DeviceError> {
    let mut errors = Vec::new();
    if !valid_installation_id(installation_id) {
        errors.push(FieldError::new(
            "installationId",
            "installation_id_invalid",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let platform = doc.get("platform").and_then(|p| p.as_str()).filter(|p| matches!(*p, "fcmv1" | "apns"));
    if platform.is_none() {
        errors.push(FieldError::new("platform", "platform_invalid", "fcmv1 (Firebase) or apns (Apple)"));
    }
    let channel = doc
        .get("pushChannel")
        .and_then(|c| c.as_str())
        .filter(|c| (1..=4096).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_graphic()));
    if channel.is_none() {
        errors.push(FieldError::new(
            "pushChannel",
            "push_channel_invalid",
            "the device token the platform gave, 1 to 4,096 printable characters",
        ));
    }
    let (Some(platform), Some(channel), true) = (platform, channel, errors.is_empty()) else {
        return Err(DeviceError::Invalid(errors));
    };
    let hub = services.reminders.push.as_ref().ok_or(DeviceError::NotConfigured)?;
    let hub_id = hub_installation_id(user, installation_id);
    let installation = Installation {
        id: hub_id.clone(),
        user_id: user.clone(),
        platform: platform.to_owned(),
        push_channel: channel.to_owned(),
    };
    hub.install(&installation).await.map_err(DeviceError::Hub)?;
    let mut list = devices(services, user).await?;
    let new = !list.iter().any(|d| d.hub_id == hub_id);
    list.retain(|d| d.hub_id != hub_id);
    let device = Device {
        installation_id: installation_id.to_owned(),
        hub_id,
        platform: platform.to_owned(),
        registered_at: services.clock.now(),
    };
    list.push(device.clone());
    while list.len() > MAX_DEVICES {
        let oldest = list.remove(0);
        if let Err(e) = hub.uninstall(&oldest.hub_id).await {
            tracing::warn!(error = %e, "could not remove a replaced installation from the hub");
        }
    }
    store_devices(services, user, &list).await?;
    Ok((device, new))
}

/// Removes the user's device from the hub and the list; `NotFound` when it is not theirs.
pub async fn remove_device(services: &Services, user: &UserId, installation_id: &str) -> Result<(), DeviceError> {
    let hub_id = hub_installation_id(user, installation_id);
    let mut list = devices(services, user).await?;
    if !list.iter().any(|d| d.hub_id == hub_id) {
        return Err(DeviceError::NotFound);
    }
    if let Some(hub) = &services.reminders.push {
        match hub.uninstall(&hub_id).await {
            Ok(()) | Err(SendFailure::Gone(_)) => {}
            Err(e) => return Err(DeviceError::Hub(e)),
        }
    }
    list.retain(|d| d.hub_id != hub_id);
    store_devices(services, user, &list).await?;
    Ok(())
}
