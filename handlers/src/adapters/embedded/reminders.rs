//! The reminder schedule, feed and delivery outbox in the embedded store's SQLite database.
//!
//! - Schedule: `products.next_reminder_at`, under a partial index (rows with nothing to send
//!   are not in it). Every product write sets it to `''` (sorts before any time: due now).
//! - Reminders: one row per reminder id (the primary key makes a second creation a no-op); the
//!   feed reads them newest first through `reminders_by_user_newest`.
//! - Outbox: `reminder_deliveries`, written in the same transaction as its reminder; a claim is
//!   one `UPDATE … RETURNING` on the single writer, so two sweeps never take the same row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::db::{ts, unavailable};
use super::sqlite::SqliteProductRepository;
use crate::domain::{ProductRecord, UserId};
use crate::ports::{
    DeliveryTarget, FeedCursor, Reminder, ReminderDelivery, ReminderStore, Schedule, Settlement, Unavailable,
};

fn decode(doc: &str) -> rusqlite::Result<Reminder> {
    serde_json::from_str(doc).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

#[async_trait]
impl ReminderStore for SqliteProductRepository {
    async fn due_products(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ProductRecord>, Unavailable> {
        let docs = self
            .db
            .read(move |c| -> rusqlite::Result<Vec<String>> {
                let mut stmt = c.prepare_cached(
                    "SELECT doc FROM products
                     WHERE next_reminder_at IS NOT NULL AND next_reminder_at <= ?1
                     ORDER BY next_reminder_at LIMIT ?2",
                )?;
                stmt.query_map(params![ts(now), limit as i64], |r| r.get(0))?.collect()
            })
            .await?
            .map_err(unavailable)?;
        docs.iter().map(|d| serde_json::from_str(d).map_err(unavailable)).collect()
    }

    async fn schedule(&self, entries: &[Schedule]) -> Result<usize, Unavailable> {
        let entries = entries.to_vec();
        self.db
            .write(move |c| -> rusqlite::Result<usize> {
                let tx = c.transaction()?;
                let mut stored = 0;
                {
                    let mut update = tx.prepare_cached(
                        "UPDATE products SET next_reminder_at = ?1
                         WHERE id = ?2 AND user_id = ?3 AND COALESCE(json_extract(doc, '$.revision'), 1) = ?4",
                    )?;
                    for e in &entries {
                        stored += update.execute(params![
                            e.next.map(ts),
                            e.id.to_string(),
                            e.user.as_str(),
                            e.revision as i64
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(stored)
            })
            .await?
            .map_err(unavailable)
    }

    async fn reschedule_user(&self, user: &UserId) -> Result<(), Unavailable> {
        let user = user.clone();
        self.db
            .write(move |c| {
                c.execute("UPDATE products SET next_reminder_at = '' WHERE user_id = ?1", params![user.as_str()])
            })
            .await?
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create(&self, reminders: &[(Reminder, Vec<DeliveryTarget>)]) -> Result<Vec<bool>, Unavailable> {
        let docs: Vec<String> =
            reminders.iter().map(|(r, _)| serde_json::to_string(r)).collect::<Result<_, _>>().map_err(unavailable)?;
        let reminders = reminders.to_vec();
        self.db
            .write(move |c| -> rusqlite::Result<Vec<bool>> {
                let tx = c.transaction()?;
                let mut out = Vec::with_capacity(reminders.len());
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO reminders (id, user_id, product_id, created_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (id) DO NOTHING",
                    )?;
                    let mut delivery = tx.prepare_cached(
                        "INSERT INTO reminder_deliveries (reminder_id, channel, target, due_at) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for ((reminder, deliveries), doc) in reminders.iter().zip(&docs) {
                        let created = insert.execute(params![
                            reminder.id,
                            reminder.user_id.as_str(),
                            reminder.product_id.to_string(),
                            ts(reminder.created_at),
                            doc
                        ])? == 1;
                        if created {
                            for d in deliveries {
                                delivery.execute(params![reminder.id, d.channel, d.target, ts(reminder.created_at)])?;
                            }
                        }
                        out.push(created);
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?
            .map_err(unavailable)
    }

    async fn feed(
        &self,
        user: &UserId,
        after: Option<&FeedCursor>,
        limit: usize,
    ) -> Result<Vec<Reminder>, Unavailable> {
        let (user, after) = (user.clone(), after.cloned());
        self.db
            .read(move |c| -> rusqlite::Result<Vec<Reminder>> {
                let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Reminder> {
                    let mut rem = decode(&r.get::<_, String>(0)?)?;
                    rem.read_at = r.get::<_, Option<String>>(1)?.and_then(|t| t.parse().ok());
                    Ok(rem)
                };
                let (user, limit) = (user.as_str(), limit as i64);
                match after {
                    None => c
                        .prepare_cached(
                            "SELECT doc, read_at FROM reminders WHERE user_id = ?1
                             ORDER BY created_at DESC, id DESC LIMIT ?2",
                        )?
                        .query_map(params![user, limit], read)?
                        .collect(),
                    Some(cur) => c
                        .prepare_cached(
                            "SELECT doc, read_at FROM reminders WHERE user_id = ?1
                               AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))
                             ORDER BY created_at DESC, id DESC LIMIT ?4",
                        )?
                        .query_map(params![user, ts(cur.created_at), cur.id, limit], read)?
                        .collect(),
                }
            })
            .await?
            .map_err(unavailable)
    }

    async fn unread(&self, user: &UserId) -> Result<u64, Unavailable> {
        let user = user.clone();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM reminders WHERE user_id = ?1 AND read_at IS NULL",
                    params![user.as_str()],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await?
            .map(|n| n.max(0) as u64)
            .map_err(unavailable)
    }

    async fn mark_read(&self, user: &UserId, id: &str, at: DateTime<Utc>) -> Result<bool, Unavailable> {
        let (user, id) = (user.clone(), id.to_owned());
        self.db
            .write(move |c| -> rusqlite::Result<bool> {
                c.execute(
                    "UPDATE reminders SET read_at = COALESCE(read_at, ?1) WHERE id = ?2 AND user_id = ?3",
                    params![ts(at), id, user.as_str()],
                )
                .map(|n| n == 1)
            })
            .await?
            .map_err(unavailable)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ReminderDelivery>, Unavailable> {
        self.db
            .write(move |c| -> rusqlite::Result<Vec<ReminderDelivery>> {
                let tx = c.transaction()?;
                let claimed: Vec<(String, String, String, u32)> = tx
                    .prepare_cached(
                        "UPDATE reminder_deliveries SET attempts = attempts + 1, due_at = ?1
                         WHERE rowid IN (SELECT rowid FROM reminder_deliveries
                                         WHERE state = 'pending' AND due_at <= ?2 ORDER BY due_at LIMIT ?3)
                         RETURNING reminder_id, channel, target, attempts",
                    )?
                    .query_map(params![ts(lease_until), ts(now), limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut out = Vec::with_capacity(claimed.len());
                for (reminder_id, channel, target, attempts) in claimed {
                    let doc: Option<String> = tx
                        .query_row("SELECT doc FROM reminders WHERE id = ?1", params![reminder_id], |r| r.get(0))
                        .optional()?;
                    if let Some(doc) = doc {
                        out.push(ReminderDelivery {
                            reminder: decode(&doc)?,
                            target: DeliveryTarget { channel, target },
                            attempts,
                        });
                    }
                }
                tx.commit()?;
                Ok(out)
            })
            .await?
            .map_err(unavailable)
    }

    async fn settle(&self, delivery: &ReminderDelivery, how: &Settlement) -> Result<(), Unavailable> {
        let key = (delivery.reminder.id.clone(), delivery.target.channel.clone(), delivery.target.target.clone());
        let how = how.clone();
        self.db
            .write(move |c| {
                let (id, channel, target) = key;
                match how {
                    Settlement::Done { .. } => c.execute(
                        "DELETE FROM reminder_deliveries WHERE reminder_id = ?1 AND channel = ?2 AND target = ?3",
                        params![id, channel, target],
                    ),
                    Settlement::Retry { at, reason } => c.execute(
                        "UPDATE reminder_deliveries SET due_at = ?4, last_error = ?5
                         WHERE reminder_id = ?1 AND channel = ?2 AND target = ?3",
                        params![id, channel, target, ts(at), reason],
                    ),
                    Settlement::DeadLetter { reason } => c.execute(
                        "UPDATE reminder_deliveries SET state = 'dead', due_at = NULL, last_error = ?4
                         WHERE reminder_id = ?1 AND channel = ?2 AND target = ?3",
                        params![id, channel, target, reason],
                    ),
                }
            })
            .await?
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before reminders existed is brought up to date: the column and its index
    /// appear, and every product is marked for the first sweep.
    #[tokio::test]
    async fn an_older_database_gets_the_schedule_with_every_product_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warranty.sqlite3");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE products (
                    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, brand_key TEXT NOT NULL,
                    serial_number TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL,
                    CONSTRAINT products_user_brand_serial UNIQUE (user_id, brand_key, serial_number));
                 INSERT INTO products VALUES
                    ('0192f3a4-5b6c-7d8e-9f01-23456789abcd', 'u1', 'dell', 'ABC1234', '2026-01-01T00:00:00Z', '{}'),
                    ('0192f3a4-5b6c-7d8e-9f01-23456789abce', 'u2', 'dell', 'ABC1235', '2026-01-01T00:00:00Z', '{}');",
            )
            .unwrap();
        }
        let repo = SqliteProductRepository::open(&path, std::time::Duration::from_secs(1)).unwrap();
        let marked: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM products WHERE next_reminder_at = ''", [], |r| r.get(0))
            .unwrap();
        assert_eq!(marked, 2, "every product is due for the first sweep");
        let c = rusqlite::Connection::open(&path).unwrap();
        let index: i64 = c
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'products_next_reminder'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(index, 1);
        drop(repo);
        // Opening again changes nothing.
        let repo = SqliteProductRepository::open(&path, std::time::Duration::from_secs(1)).unwrap();
        let c = rusqlite::Connection::open(&path).unwrap();
        let marked: i64 =
            c.query_row("SELECT COUNT(*) FROM products WHERE next_reminder_at = ''", [], |r| r.get(0)).unwrap();
        assert_eq!(marked, 2);
        drop(repo);
    }
}
