//! The reminder schedule, feed and delivery outbox in the products container.
//!
//! A reminder is one document in its owner's partition, id = the reminder id: creating it a
//! second time answers `409` and changes nothing, whoever computes it. Its deliveries live in
//! the same document (so they exist exactly when the reminder does), with `nextDeliveryAt`
//! (range-indexed) the earliest pending one. A claim moves the claimed deliveries' due time to
//! the lease's end with `If-Match`, so of two racing claimers one wins and the other skips.

use async_trait::async_trait;
use azure_core::http::StatusCode;
use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CosmosProductRepository, if_match, is, ts, unavailable};
use crate::domain::{ProductRecord, UserId};
use crate::ports::{
    DeliveryTarget, FeedCursor, Reminder, ReminderDelivery, ReminderStore, Schedule, Settlement, Unavailable,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReminderDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    serial_key: String,
    sort_key: String,
    reminder: Reminder,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unread: bool,
    #[serde(default)]
    deliveries: Vec<DeliveryState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_delivery_at: Option<String>,
    #[serde(default, rename = "_etag", skip_serializing)]
    etag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryState {
    channel: String,
    target: String,
    /// `pending` or `dead` (delivered ones are removed).
    state: String,
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

impl ReminderDoc {
    fn refresh_next(&mut self) {
        self.next_delivery_at =
            self.deliveries.iter().filter(|d| d.state == "pending").filter_map(|d| d.due_at.clone()).min();
    }
}

fn feed_key(created_at: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", ts(created_at))
}

impl super::Stored for ReminderDoc {
    const TYPE: &'static str = "reminder";

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl CosmosProductRepository {
    async fn create_one(&self, reminder: &Reminder, deliveries: &[DeliveryTarget]) -> Result<bool, Unavailable> {
        let due = ts(reminder.created_at);
        let mut doc = ReminderDoc {
            id: reminder.id.clone(),
            user_id: reminder.user_id.as_str().to_owned(),
            doc_type: "reminder".into(),
            serial_key: format!("reminder:{}", reminder.id),
            sort_key: feed_key(reminder.created_at, &reminder.id),
            reminder: reminder.clone(),
            unread: true,
            deliveries: deliveries
                .iter()
                .map(|d| DeliveryState {
                    channel: d.channel.clone(),
                    target: d.target.clone(),
                    state: "pending".into(),
                    attempts: 0,
                    due_at: Some(due.clone()),
                    last_error: None,
                })
                .collect(),
            next_delivery_at: None,
            etag: None,
        };
        doc.refresh_next();
        match self.container.create_item(reminder.user_id.as_str().to_owned(), &reminder.id, &doc, None).await {
            Ok(_) => Ok(true),
            Err(e) if is(&e, StatusCode::Conflict) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Requests a sweep keeps in flight at once.
const CONCURRENCY: usize = 16;

/// The id of the document asking the next sweep to reschedule its user's products.
const RESCHEDULE: &str = "~reschedule";

/// Users whose products one sweep round reschedules.
const RESCHEDULES_PER_ROUND: usize = 10;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RescheduleDoc {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    /// The unique key (`/serialKey`, per partition) counts a missing value as a value.
    serial_key: String,
    #[serde(default, rename = "_etag", skip_serializing)]
    etag: Option<String>,
}

impl CosmosProductRepository {
    /// Marks for the sweep every product of the users who asked for a reschedule (a change of
    /// their notification settings), a page at a time, then removes each request unless it was
    /// renewed meanwhile (its ETag changed): the work of a settings change is the sweep's, not
    /// the request's, however many products the user has.
    async fn run_reschedules(&self) -> Result<(), Unavailable> {
        let query = Query::from(format!("SELECT TOP {RESCHEDULES_PER_ROUND} * FROM c WHERE c.type = 'reschedule'"));
        let asked: Vec<RescheduleDoc> = self.query(query, FeedScope::full_container()).await?;
        for request in asked.into_iter().take(RESCHEDULES_PER_ROUND) {
            let user = request.user_id.clone();
            let query = Query::from(
                "SELECT c.id FROM c WHERE c.type = 'product' AND (NOT IS_DEFINED(c.nextReminderAt) OR c.nextReminderAt != '')",
            );
            let products: Vec<Owned> = self.query(query, FeedScope::partition(user.clone())).await?;
            for chunk in products.chunks(CONCURRENCY) {
                for marked in futures_util::future::join_all(chunk.iter().map(|p| {
                    self.update(&user, &p.id, |doc| {
                        doc.next_reminder_at = Some(String::new());
                        true
                    })
                }))
                .await
                {
                    marked?;
                }
            }
            let etag = request.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
            match self.container.delete_item(user, RESCHEDULE, Some(if_match(&etag))).await {
                Ok(_) => {}
                // Renewed (marked again next round) or already done by a racing sweep.
                Err(e) if is(&e, StatusCode::PreconditionFailed) || is(&e, StatusCode::NotFound) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Owned {
    id: String,
}

#[async_trait]
impl ReminderStore for CosmosProductRepository {
    async fn due_products(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ProductRecord>, Unavailable> {
        self.run_reschedules().await?;
        // Across partitions, through the range index on `nextReminderAt`: only products with
        // something due match.
        let query =
            Query::from(format!("SELECT TOP {limit} * FROM c WHERE c.type = 'product' AND c.nextReminderAt <= @now"))
                .with_parameter("@now", ts(now))
                .map_err(unavailable)?;
        let found: Vec<super::ProductDoc> = self.query(query, FeedScope::full_container()).await?;
        Ok(found.into_iter().take(limit).map(|d| d.product).collect())
    }

    async fn schedule(&self, entries: &[Schedule]) -> Result<usize, Unavailable> {
        let mut results = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(CONCURRENCY) {
            let ids: Vec<String> = chunk.iter().map(|e| e.id.to_string()).collect();
            results.extend(
                futures_util::future::join_all(chunk.iter().zip(&ids).map(|(e, id)| {
                    self.update(e.user.as_str(), id, move |doc| {
                        if doc.product.revision != e.revision {
                            return false;
                        }
                        doc.next_reminder_at = e.next.map(ts);
                        true
                    })
                }))
                .await,
            );
        }
        let mut stored = 0;
        for r in results {
            stored += usize::from(r?);
        }
        Ok(stored)
    }

    async fn reschedule_user(&self, user: &UserId) -> Result<(), Unavailable> {
        // One write whatever the user owns: the next sweep marks the products (above).
        let doc = RescheduleDoc {
            id: RESCHEDULE.into(),
            user_id: user.as_str().to_owned(),
            doc_type: "reschedule".into(),
            serial_key: RESCHEDULE.into(),
            etag: None,
        };
        self.container
            .upsert_item(user.as_str().to_owned(), RESCHEDULE, &doc, None)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create(&self, reminders: &[(Reminder, Vec<DeliveryTarget>)]) -> Result<Vec<bool>, Unavailable> {
        // Each in its owner's partition: no transaction spans them, and none is needed (each
        // document holds its reminder and its deliveries).
        let mut out = Vec::with_capacity(reminders.len());
        for chunk in reminders.chunks(CONCURRENCY) {
            for created in futures_util::future::join_all(chunk.iter().map(|(r, d)| self.create_one(r, d))).await {
                out.push(created?);
            }
        }
        Ok(out)
    }

    async fn feed(
        &self,
        user: &UserId,
        after: Option<&FeedCursor>,
        limit: usize,
    ) -> Result<Vec<Reminder>, Unavailable> {
        let before = after.map(|c| feed_key(c.created_at, &c.id)).unwrap_or_else(|| "~".into());
        let query = Query::from(format!(
            "SELECT TOP {limit} * FROM c WHERE c.type = 'reminder' AND c.sortKey < @before ORDER BY c.sortKey DESC"
        ))
        .with_parameter("@before", before)
        .map_err(unavailable)?;
        let docs: Vec<ReminderDoc> = self.query(query, FeedScope::partition(user.as_str().to_owned())).await?;
        Ok(docs.into_iter().take(limit).map(|d| d.reminder).collect())
    }

    async fn unread(&self, user: &UserId) -> Result<u64, Unavailable> {
        #[derive(Deserialize)]
        struct Id {
            #[allow(dead_code)]
            id: String,
        }
        // The unread ones of one partition (few): counted here rather than with an aggregate.
        let query = Query::from("SELECT c.id FROM c WHERE c.type = 'reminder' AND c.unread = true");
        let ids: Vec<Id> = self.query(query, FeedScope::partition(user.as_str().to_owned())).await?;
        Ok(ids.len() as u64)
    }

    async fn mark_read(&self, user: &UserId, id: &str, at: DateTime<Utc>) -> Result<bool, Unavailable> {
        // One read: the change is told whether the reminder exists.
        let mut found = false;
        self.update_typed::<ReminderDoc>(user.as_str(), id, |doc| {
            found = true;
            if doc.reminder.read_at.is_some() {
                return false;
            }
            doc.reminder.read_at = Some(at);
            doc.unread = false;
            true
        })
        .await?;
        Ok(found)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ReminderDelivery>, Unavailable> {
        let query =
            Query::from(format!("SELECT TOP {limit} * FROM c WHERE c.type = 'reminder' AND c.nextDeliveryAt <= @now"))
                .with_parameter("@now", ts(now))
                .map_err(unavailable)?;
        let docs: Vec<ReminderDoc> = self.query(query, FeedScope::full_container()).await?;
        let (now, lease) = (ts(now), ts(lease_until));
        // Each document's due deliveries, leased in memory; then stored 16 at a time, each with
        // `If-Match`: of two claimers of one document only one stores its lease.
        let mut leased = Vec::new();
        for mut doc in docs {
            let mut taken = Vec::new();
            for d in doc.deliveries.iter_mut() {
                if d.state == "pending" && d.due_at.as_deref().is_some_and(|t| t <= now.as_str()) {
                    d.attempts += 1;
                    d.due_at = Some(lease.clone());
                    taken.push(ReminderDelivery {
                        reminder: doc.reminder.clone(),
                        target: DeliveryTarget { channel: d.channel.clone(), target: d.target.clone() },
                        attempts: d.attempts,
                    });
                }
            }
            if !taken.is_empty() {
                doc.refresh_next();
                leased.push((doc, taken));
            }
        }
        let mut out = Vec::new();
        for chunk in leased.chunks(CONCURRENCY) {
            let stored = futures_util::future::join_all(chunk.iter().map(|(doc, _)| async move {
                let etag = doc.etag.clone().ok_or_else(|| unavailable("a stored document without an ETag"))?;
                match self.container.replace_item(doc.user_id.clone(), &doc.id, doc, Some(if_match(&etag))).await {
                    Ok(_) => Ok(true),
                    // Another claimer (or a read mark) changed it: this round leaves it.
                    Err(e) if is(&e, StatusCode::PreconditionFailed) || is(&e, StatusCode::NotFound) => Ok(false),
                    Err(e) => Err(unavailable(e)),
                }
            }))
            .await;
            for ((_, taken), stored) in chunk.iter().zip(stored) {
                if stored? {
                    out.extend(taken.iter().cloned());
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn settle(&self, delivery: &ReminderDelivery, how: &Settlement) -> Result<(), Unavailable> {
        let r = &delivery.reminder;
        let (channel, target) = (&delivery.target.channel, &delivery.target.target);
        self.update_typed::<ReminderDoc>(r.user_id.as_str(), &r.id, |doc| {
            let Some(i) = doc.deliveries.iter().position(|d| &d.channel == channel && &d.target == target) else {
                return false;
            };
            match how {
                Settlement::Done { .. } => {
                    doc.deliveries.remove(i);
                }
                Settlement::Retry { at, reason } => {
                    doc.deliveries[i].due_at = Some(ts(*at));
                    doc.deliveries[i].last_error = Some(reason.clone());
                }
                Settlement::DeadLetter { reason } => {
                    doc.deliveries[i].state = "dead".into();
                    doc.deliveries[i].due_at = None;
                    doc.deliveries[i].last_error = Some(reason.clone());
                }
            }
            doc.refresh_next();
            true
        })
        .await
        .map(|_| ())
    }
}
