//! The durable local queue standing in for Service Bus on the embedded default.
//!
//! Peek-lock semantics as Service Bus has them: receiving a message hides it for the lock
//! duration and counts a delivery; completing deletes it; abandoning makes it visible again
//! (here after an exponential backoff); a message whose lock expires (the process died while
//! handling it) becomes visible again by itself. After `max_delivery_count` deliveries it is
//! moved to the dead-letter table with the reason, from where an operator can requeue it.

use std::sync::Arc;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::db::{Db, ts, unavailable};
use crate::ports::{Outbox, OutboxMessage, Unavailable};

#[derive(Clone)]
pub struct SqliteOcrQueue {
    db: Arc<Db>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    pub message_id: String,
    pub product_id: String,
    pub enqueued_at: String,
    pub delivery_count: u32,
    pub visible_at: String,
    pub locked: bool,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub message_id: String,
    pub product_id: String,
    pub enqueued_at: String,
    pub delivery_count: u32,
    pub reason: String,
    pub dead_lettered_at: String,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms_to_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(ts).unwrap_or_default()
}

impl SqliteOcrQueue {
    /// The queue in the product database (the same writer: a queue write and a product write
    /// are never interleaved inside one transaction).
    pub fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    /// Opens the queue of the database at `path` (for the `warranty queue` commands).
    pub fn open(path: &std::path::Path) -> Result<Self, Unavailable> {
        Ok(Self { db: Arc::new(Db::open(path, std::time::Duration::from_secs(5), |_| Ok(()))?) })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.db.write(f).await?.map_err(unavailable)
    }

    /// A write whose loss in a power cut redelivery repairs (a claim, a completion, a retry
    /// time): committed, not waited for on the log's sync ([`Db::write_unsynced`]).
    async fn with_unsynced<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.db.write_unsynced(f).await?.map_err(unavailable)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.db.read(f).await?.map_err(unavailable)
    }

    /// Locks the next visible message for `lock_ms` and counts the delivery.
    pub async fn receive(&self, lock_ms: i64) -> Result<Option<OutboxMessage>, Unavailable> {
        self.with_unsynced(move |c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let next: Option<String> = tx
                .prepare_cached(
                    "SELECT message_id FROM ocr_queue WHERE visible_at_ms <= ?1 ORDER BY visible_at_ms, enqueued_at LIMIT 1",
                )?
                .query_row(params![now], |r| r.get(0))
                .optional()?;
            let Some(id) = next else { return Ok(None) };
            let token = uuid::Uuid::new_v4().to_string();
            let d = tx
                .prepare_cached(
                    "UPDATE ocr_queue SET visible_at_ms = ?1, delivery_count = delivery_count + 1, lock_token = ?2
                 WHERE message_id = ?3 RETURNING message_id, body, enqueued_at, delivery_count",
                )?
                .query_row(params![now + lock_ms, token, id], |r| {
                    Ok(OutboxMessage {
                        message_id: r.get(0)?,
                        body: r.get(1)?,
                        enqueued_at: r.get(2)?,
                        delivery_count: r.get(3)?,
                        lock_token: token.clone(),
                    })
                },
            )?;
            tx.commit()?;
            Ok(Some(d))
        })
        .await
    }

    /// Deletes a handled message. False when the lock was lost (it expired and another
    /// delivery holds the message now).
    pub async fn complete(&self, d: &OutboxMessage) -> Result<bool, Unavailable> {
        let (id, token) = (d.message_id.clone(), d.lock_token.clone());
        self.with_unsynced(move |c| {
            c.prepare_cached("DELETE FROM ocr_queue WHERE message_id = ?1 AND lock_token = ?2")?
                .execute(params![id, token])
        })
        .await
        .map(|n| n == 1)
    }

    /// Makes a message visible again at `retry_at_ms`.
    pub async fn abandon(&self, d: &OutboxMessage, retry_at_ms: i64, error: &str) -> Result<bool, Unavailable> {
        let (id, token, error) = (d.message_id.clone(), d.lock_token.clone(), error.to_owned());
        self.with_unsynced(move |c| {
            c.execute(
                "UPDATE ocr_queue SET visible_at_ms = ?1, lock_token = NULL, last_error = ?2 WHERE message_id = ?3 AND lock_token = ?4",
                params![retry_at_ms, error, id, token],
            )
        })
        .await
        .map(|n| n == 1)
    }

    /// Moves a message to the dead-letter table.
    pub async fn dead_letter(&self, d: &OutboxMessage, reason: &str) -> Result<bool, Unavailable> {
        let (id, token, reason) = (d.message_id.clone(), d.lock_token.clone(), reason.to_owned());
        self.with(move |c| {
            let tx = c.transaction()?;
            let moved = tx.execute(
                "INSERT OR REPLACE INTO ocr_dead_letters (message_id, product_id, body, enqueued_at, delivery_count, reason, dead_lettered_at)
                 SELECT message_id, product_id, body, enqueued_at, delivery_count, ?1, ?2 FROM ocr_queue
                 WHERE message_id = ?3 AND lock_token = ?4",
                params![reason, ts(Utc::now()), id, token],
            )?;
            tx.execute("DELETE FROM ocr_queue WHERE message_id = ?1 AND lock_token = ?2", params![id, token])?;
            tx.commit()?;
            Ok(moved == 1)
        })
        .await
    }

    /// Moves a dead-lettered message back to the queue with a fresh delivery count.
    pub async fn requeue(&self, message_id: &str) -> Result<bool, Unavailable> {
        let id = message_id.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            let moved = tx.execute(
                "INSERT OR REPLACE INTO ocr_queue (message_id, product_id, body, enqueued_at, visible_at_ms, delivery_count)
                 SELECT message_id, product_id, body, enqueued_at, ?1, 0 FROM ocr_dead_letters WHERE message_id = ?2",
                params![now_ms(), id],
            )?;
            tx.execute("DELETE FROM ocr_dead_letters WHERE message_id = ?1", params![id])?;
            tx.commit()?;
            Ok(moved == 1)
        })
        .await
    }

    /// When the earliest message becomes visible (ms since the epoch), if any is queued.
    pub async fn next_visible_ms(&self) -> Result<Option<i64>, Unavailable> {
        self.read(|c| {
            c.prepare_cached("SELECT MIN(visible_at_ms) FROM ocr_queue")?.query_row([], |r| r.get::<_, Option<i64>>(0))
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<QueueEntry>, Unavailable> {
        self.read(|c| {
            let now = now_ms();
            let mut stmt = c.prepare(
                "SELECT message_id, product_id, enqueued_at, delivery_count, visible_at_ms, lock_token, last_error
                 FROM ocr_queue ORDER BY visible_at_ms, enqueued_at",
            )?;
            stmt.query_map([], |r| {
                let visible: i64 = r.get(4)?;
                Ok(QueueEntry {
                    message_id: r.get(0)?,
                    product_id: r.get(1)?,
                    enqueued_at: r.get(2)?,
                    delivery_count: r.get(3)?,
                    visible_at: ms_to_ts(visible),
                    locked: r.get::<_, Option<String>>(5)?.is_some() && visible > now,
                    last_error: r.get(6)?,
                })
            })?
            .collect()
        })
        .await
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, Unavailable> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT message_id, product_id, enqueued_at, delivery_count, reason, dead_lettered_at
                 FROM ocr_dead_letters ORDER BY dead_lettered_at",
            )?;
            stmt.query_map([], |r| {
                Ok(DeadLetter {
                    message_id: r.get(0)?,
                    product_id: r.get(1)?,
                    enqueued_at: r.get(2)?,
                    delivery_count: r.get(3)?,
                    reason: r.get(4)?,
                    dead_lettered_at: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }
}

/// The queue is the embedded store's outbox: rows written with the product, delivered with
/// peek-lock semantics.
#[async_trait::async_trait]
impl Outbox for SqliteOcrQueue {
    async fn claim(
        &self,
        _min_age: std::time::Duration,
        lock: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, Unavailable> {
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            match self.receive(lock.as_millis() as i64).await? {
                Some(m) => claimed.push(m),
                None => break,
            }
        }
        Ok(claimed)
    }

    async fn delivered(&self, message: &OutboxMessage) -> Result<(), Unavailable> {
        // False when the lock was lost meanwhile: the other delivery settles it.
        self.complete(message).await.map(|_| ())
    }

    async fn retry_at(
        &self,
        message: &OutboxMessage,
        at: chrono::DateTime<Utc>,
        reason: &str,
    ) -> Result<(), Unavailable> {
        self.abandon(message, at.timestamp_millis(), reason).await.map(|_| ())
    }

    async fn dead_letter(&self, message: &OutboxMessage, reason: &str) -> Result<(), Unavailable> {
        SqliteOcrQueue::dead_letter(self, message, reason).await.map(|_| ())
    }

    async fn next_due(&self) -> Result<Option<chrono::DateTime<Utc>>, Unavailable> {
        Ok(self.next_visible_ms().await?.and_then(chrono::DateTime::from_timestamp_millis))
    }

    /// The earliest `visible_at_ms` of the table (a locked message's is its lock's expiry).
    fn knows_due_times(&self) -> bool {
        true
    }
}
