//! Products, idempotent answers and the OCR queue in one SQLite database.
//!
//! The product row and its OCR event are written in the same transaction (the transactional
//! outbox), so a product never exists without the event that gets its invoice read. SQLite is
//! synchronous; every call runs on the blocking pool so it never stalls the async workers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::db::{Db, ts, unavailable};
use crate::domain::intake::{IntakeId, IntakeRecord};
use crate::domain::{OcrRequested, OcrState, ProductId, ProductRecord, UserId};
use crate::ports::{IdempotencyRecord, ListCursor, ProductRepository, StoreError, StoredResponse, Unavailable};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    brand_key     TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    doc           TEXT NOT NULL,
    -- When the next expiry reminder falls due; '' = written since the last sweep; NULL = never.
    next_reminder_at TEXT,
    CONSTRAINT products_user_brand_serial UNIQUE (user_id, brand_key, serial_number)
);
CREATE INDEX IF NOT EXISTS products_by_user_newest ON products (user_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS ocr_queue (
    message_id     TEXT PRIMARY KEY,
    product_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    enqueued_at    TEXT NOT NULL,
    visible_at_ms  INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token     TEXT,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS ocr_queue_visible ON ocr_queue (visible_at_ms);
CREATE TABLE IF NOT EXISTS ocr_dead_letters (
    message_id       TEXT PRIMARY KEY,
    product_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    enqueued_at      TEXT NOT NULL,
    delivery_count   INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    dead_lettered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_records (
    user_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE TABLE IF NOT EXISTS reminders (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    product_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    read_at    TEXT,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reminders_by_user_newest ON reminders (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS reminders_unread ON reminders (user_id) WHERE read_at IS NULL;
CREATE TABLE IF NOT EXISTS reminder_deliveries (
    reminder_id TEXT NOT NULL REFERENCES reminders (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      TEXT,
    last_error  TEXT,
    PRIMARY KEY (reminder_id, channel, target)
);
CREATE INDEX IF NOT EXISTS reminder_deliveries_due ON reminder_deliveries (due_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS intakes (
    id       TEXT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    -- When the sweep next has work with it (expiry, then the tombstone's end).
    sweep_at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    doc      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS intakes_by_user ON intakes (user_id, id);
CREATE INDEX IF NOT EXISTS intakes_sweep ON intakes (sweep_at);
CREATE TABLE IF NOT EXISTS idempotency (
    user_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER NOT NULL,
    location    TEXT,
    body        TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
";

#[derive(Clone)]
pub struct SqliteProductRepository {
    pub(super) db: Arc<Db>,
}

impl SqliteProductRepository {
    /// Opens (creating if needed) the database at `path`. `busy_timeout` bounds how long a
    /// write waits for a lock before the request fails with 503.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, Unavailable> {
        let db = Db::open(path, busy_timeout, |conn| {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // No sync inside the writer's turn: `Db::write` syncs the log after the turn, one
            // sync for every write that committed meanwhile (group commit), and returns only
            // then — a write acknowledged is a write a power cut keeps.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.execute_batch(SCHEMA)?;
            migrate(conn)
        })?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The OCR queue stored in the same database (it shares the connection, so a queue write
    /// and a product write are never interleaved inside one transaction).
    pub fn ocr_queue(&self) -> super::queue::SqliteOcrQueue {
        super::queue::SqliteOcrQueue::new(self.db.clone())
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.db.write(f).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        self.db.read(f).await
    }
}

/// Brings a database made by an earlier version up to this schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_schedule: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('products') WHERE name = 'next_reminder_at'",
        [],
        |r| r.get(0),
    )?;
    if has_schedule == 0 {
        // Products stored before reminders existed: all marked for the first sweep.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE products ADD COLUMN next_reminder_at TEXT;
             UPDATE products SET next_reminder_at = '';
             COMMIT;",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS products_next_reminder ON products (next_reminder_at)
         WHERE next_reminder_at IS NOT NULL;",
    )
}

/// Queues `event` (the transactional outbox), once per message id.
fn enqueue(tx: &rusqlite::Transaction<'_>, event: &OcrRequested) -> Result<(), String> {
    let body = serde_json::to_string(event).map_err(|e| e.to_string())?;
    tx.prepare_cached(
        "INSERT INTO ocr_queue (message_id, product_id, body, enqueued_at, visible_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (message_id) DO NOTHING",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            event.message_id,
            event.product_id.to_string(),
            body,
            ts(event.requested_at),
            event.requested_at.timestamp_millis()
        ])
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// After a conditional write touched no row: was the product gone, or changed?
fn missing_or_stale(tx: &rusqlite::Transaction<'_>, user: &UserId, id: ProductId) -> StoreError {
    match tx
        .query_row(
            "SELECT 1 FROM products WHERE id = ?1 AND user_id = ?2",
            params![id.to_string(), user.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    {
        Ok(Some(_)) => StoreError::Stale,
        Ok(None) => StoreError::Gone,
        Err(e) => unavailable(e).into(),
    }
}

fn existing_with_serial(tx: &rusqlite::Transaction<'_>, product: &ProductRecord) -> Option<ProductId> {
    tx.query_row(
        "SELECT id FROM products WHERE user_id = ?1 AND brand_key = ?2 AND serial_number = ?3",
        params![product.user_id.as_str(), product.brand_key, product.serial_number.as_str()],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .ok()
    .flatten()
    .and_then(|s| s.parse().ok())
}

/// Stores the first answer to an idempotency key (an expired one is replaced);
/// `IdempotencyKeyTaken` when a live one exists. Statements prepared once per connection.
fn remember(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
    rec: &IdempotencyRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let r = tx
        .prepare_cached(
            "INSERT INTO idempotency (user_id, key, fingerprint, status, location, body, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user_id, key) DO UPDATE SET
               fingerprint = excluded.fingerprint, status = excluded.status,
               location = excluded.location, body = excluded.body, expires_at = excluded.expires_at
             WHERE idempotency.expires_at <= ?8",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                user.as_str(),
                rec.key,
                rec.response.fingerprint,
                rec.response.status,
                rec.response.location,
                rec.response.body,
                ts(rec.expires_at),
                ts(now),
            ])
        });
    match r {
        Ok(0) => Err(StoreError::IdempotencyKeyTaken),
        Ok(_) => Ok(()),
        Err(e) => Err(unavailable(e).into()),
    }
}

/// Inserts a new product row, marked for the next reminder sweep.
fn insert_product(tx: &rusqlite::Transaction<'_>, product: &ProductRecord) -> Result<(), StoreError> {
    let doc = serde_json::to_string(product).map_err(unavailable)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO products (id, user_id, brand_key, serial_number, created_at, doc, next_reminder_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '')",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                product.id.to_string(),
                product.user_id.as_str(),
                product.brand_key,
                product.serial_number.as_str(),
                ts(product.created_at),
                doc
            ])
        });
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
            Err(StoreError::DuplicateProduct { existing: existing_with_serial(tx, product) })
        }
        Err(e) => Err(unavailable(e).into()),
    }
}

/// Replaces an intake's row if its revision is `expected`.
fn replace_intake(tx: &rusqlite::Transaction<'_>, intake: &IntakeRecord, expected: u64) -> Result<(), StoreError> {
    let doc = serde_json::to_string(intake).map_err(unavailable)?;
    let n = tx
        .prepare_cached(
            "UPDATE intakes SET doc = ?1, revision = ?2, sweep_at = ?3
             WHERE id = ?4 AND user_id = ?5 AND revision = ?6",
        )
        .and_then(|mut update| {
            update.execute(params![
                doc,
                intake.revision as i64,
                ts(intake.sweep_at()),
                intake.id.to_string(),
                intake.user_id.as_str(),
                expected as i64
            ])
        })
        .map_err(unavailable)?;
    if n == 1 {
        return Ok(());
    }
    Err(intake_gone_or_stale(tx, &intake.user_id, intake.id))
}

/// After a conditional write to an intake touched no row: was it gone, or changed?
fn intake_gone_or_stale(tx: &rusqlite::Transaction<'_>, user: &UserId, id: IntakeId) -> StoreError {
    match tx
        .query_row(
            "SELECT 1 FROM intakes WHERE id = ?1 AND user_id = ?2",
            params![id.to_string(), user.as_str()],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    {
        Ok(Some(_)) => StoreError::Stale,
        Ok(None) => StoreError::Gone,
        Err(e) => unavailable(e).into(),
    }
}

fn decode_intake(doc: &str) -> Result<IntakeRecord, Unavailable> {
    serde_json::from_str(doc).map_err(|e| unavailable(format!("stored intake is unreadable: {e}")))
}

fn decode(doc: &str) -> Result<ProductRecord, Unavailable> {
    serde_json::from_str(doc).map_err(|e| unavailable(format!("stored product is unreadable: {e}")))
}

#[async_trait]
impl ProductRepository for SqliteProductRepository {
    async fn insert_registration(
        &self,
        product: &ProductRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let product = product.clone();
        let event = event.clone();
        let idempotency = idempotency.cloned();
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            if let Some(rec) = &idempotency {
                remember(&tx, &product.user_id, rec, product.created_at)?;
            }
            insert_product(&tx, &product)?;
            enqueue(&tx, &event).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn get(&self, user: &UserId, id: ProductId) -> Result<Option<ProductRecord>, Unavailable> {
        let user = user.clone();
        let doc = self
            .read(move |c| {
                c.prepare_cached("SELECT doc FROM products WHERE id = ?1 AND user_id = ?2")?
                    .query_row(params![id.to_string(), user.as_str()], |r| r.get::<_, String>(0))
                    .optional()
            })
            .await?
            .map_err(unavailable)?;
        doc.as_deref().map(decode).transpose()
    }

    async fn list(
        &self,
        user: &UserId,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<ProductRecord>, Unavailable> {
        let user = user.clone();
        let after = after.cloned();
        let docs = self
            .read(move |c| -> rusqlite::Result<Vec<String>> {
                let limit = limit as i64;
                match after {
                    None => {
                        let mut stmt = c.prepare_cached(
                            "SELECT doc FROM products WHERE user_id = ?1
                             ORDER BY created_at DESC, id DESC LIMIT ?2",
                        )?;
                        stmt.query_map(params![user.as_str(), limit], |r| r.get(0))?.collect()
                    }
                    Some(cur) => {
                        let mut stmt = c.prepare_cached(
                            "SELECT doc FROM products WHERE user_id = ?1
                               AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))
                             ORDER BY created_at DESC, id DESC LIMIT ?4",
                        )?;
                        stmt.query_map(params![user.as_str(), ts(cur.created_at), cur.id.to_string(), limit], |r| {
                            r.get(0)
                        })?
                        .collect()
                    }
                }
            })
            .await?
            .map_err(unavailable)?;
        docs.iter().map(|d| decode(d)).collect()
    }

    async fn idempotent_response(
        &self,
        user: &UserId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredResponse>, Unavailable> {
        let user = user.clone();
        let key = key.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT fingerprint, status, location, body FROM idempotency
                 WHERE user_id = ?1 AND key = ?2 AND expires_at > ?3",
            )?
            .query_row(params![user.as_str(), key, ts(now)], |r| {
                Ok(StoredResponse { fingerprint: r.get(0)?, status: r.get(1)?, location: r.get(2)?, body: r.get(3)? })
            })
            .optional()
        })
        .await?
        .map_err(unavailable)
    }

    async fn invoice_location(&self, _: Option<&UserId>, id: ProductId) -> Result<Option<String>, Unavailable> {
        self.read(move |c| {
            c.query_row(
                "SELECT json_extract(doc, '$.invoice.location') FROM products WHERE id = ?1",
                params![id.to_string()],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
        })
        .await?
        .map(Option::flatten)
        .map_err(unavailable)
    }

    async fn user_record(&self, user: &UserId, key: &str) -> Result<Option<serde_json::Value>, Unavailable> {
        let (user, key) = (user.clone(), key.to_owned());
        let doc = self
            .read(move |c| {
                c.query_row(
                    "SELECT doc FROM user_records WHERE user_id = ?1 AND key = ?2",
                    params![user.as_str(), key],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .await?
            .map_err(unavailable)?;
        doc.map(|d| serde_json::from_str(&d).map_err(unavailable)).transpose()
    }

    async fn user_records(&self, users: &[UserId], key: &str) -> Result<Vec<Option<serde_json::Value>>, Unavailable> {
        let (users, key) = (users.to_vec(), key.to_owned());
        let docs = self
            .read(move |c| -> rusqlite::Result<Vec<Option<String>>> {
                let mut stmt = c.prepare_cached("SELECT doc FROM user_records WHERE user_id = ?1 AND key = ?2")?;
                users.iter().map(|u| stmt.query_row(params![u.as_str(), key], |r| r.get(0)).optional()).collect()
            })
            .await?
            .map_err(unavailable)?;
        docs.into_iter().map(|d| d.map(|d| serde_json::from_str(&d).map_err(unavailable)).transpose()).collect()
    }

    async fn put_user_record(&self, user: &UserId, key: &str, doc: &serde_json::Value) -> Result<(), Unavailable> {
        let (user, key, doc) = (user.clone(), key.to_owned(), doc.to_string());
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO user_records (user_id, key, doc) VALUES (?1, ?2, ?3) ON CONFLICT(user_id, key) DO UPDATE SET doc = excluded.doc",
                    params![user.as_str(), key, doc],
                )
            })
            .await?
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn delete_user_record(&self, user: &UserId, key: &str) -> Result<bool, Unavailable> {
        let (user, key) = (user.clone(), key.to_owned());
        self.db
            .write(move |c| {
                c.execute("DELETE FROM user_records WHERE user_id = ?1 AND key = ?2", params![user.as_str(), key])
            })
            .await?
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    async fn erase_user_data(&self, user: &UserId, keep: &str) -> Result<(), Unavailable> {
        let (user, keep) = (user.clone(), keep.to_owned());
        self.db
            .write(move |c| -> rusqlite::Result<()> {
                let tx = c.transaction()?;
                let u = user.as_str();
                tx.execute("DELETE FROM idempotency WHERE user_id = ?1", params![u])?;
                tx.execute("DELETE FROM intakes WHERE user_id = ?1", params![u])?;
                tx.execute("DELETE FROM user_records WHERE user_id = ?1 AND key <> ?2", params![u, keep])?;
                // Deliveries go with their reminders (ON DELETE CASCADE).
                tx.execute("DELETE FROM reminders WHERE user_id = ?1", params![u])?;
                tx.execute("DELETE FROM ocr_dead_letters WHERE json_extract(body, '$.userId') = ?1", params![u])?;
                tx.commit()
            })
            .await?
            .map_err(unavailable)
    }

    async fn users_with_record(&self, key: &str) -> Result<Vec<UserId>, Unavailable> {
        let key = key.to_owned();
        self.read(move |c| -> rusqlite::Result<Vec<UserId>> {
            c.prepare_cached("SELECT user_id FROM user_records WHERE key = ?1")?
                .query_map(params![key], |r| r.get::<_, String>(0).map(UserId))?
                .collect()
        })
        .await?
        .map_err(unavailable)
    }

    async fn find(&self, id: ProductId) -> Result<Option<ProductRecord>, Unavailable> {
        let doc = self
            .read(move |c| {
                c.query_row("SELECT doc FROM products WHERE id = ?1", params![id.to_string()], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
            })
            .await?
            .map_err(unavailable)?;
        doc.as_deref().map(decode).transpose()
    }

    async fn health(&self) -> Result<(), Unavailable> {
        // Fast either way: a read never waits for the writer, and the write probe does not wait.
        self.read(|c| c.prepare_cached("SELECT 1")?.query_row([], |r| r.get::<_, i64>(0)))
            .await?
            .map_err(unavailable)?;
        self.db.writable().await?;
        self.db.has_room()
    }

    async fn replace(
        &self,
        product: &ProductRecord,
        expected: u64,
        new_invoice: Option<&OcrRequested>,
    ) -> Result<(), StoreError> {
        let product = product.clone();
        let event = new_invoice.cloned();
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            let doc = serde_json::to_string(&product).map_err(unavailable)?;
            // Unless the invoice changed, the stored OCR state is kept: the OCR handler may have
            // written it meanwhile.
            let sql = if event.is_some() {
                "UPDATE products SET brand_key = ?1, serial_number = ?2, doc = ?3, next_reminder_at = ''
                 WHERE id = ?4 AND user_id = ?5 AND COALESCE(json_extract(doc, '$.revision'), 1) = ?6"
            } else {
                "UPDATE products SET brand_key = ?1, serial_number = ?2, next_reminder_at = '',
                        doc = json_set(?3, '$.ocr', json(json_extract(doc, '$.ocr')))
                 WHERE id = ?4 AND user_id = ?5 AND COALESCE(json_extract(doc, '$.revision'), 1) = ?6"
            };
            let updated = tx.execute(
                sql,
                params![
                    product.brand_key,
                    product.serial_number.as_str(),
                    doc,
                    product.id.to_string(),
                    product.user_id.as_str(),
                    expected as i64
                ],
            );
            match updated {
                Ok(1) => {}
                Ok(_) => return Err(missing_or_stale(&tx, &product.user_id, product.id)),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    let existing = existing_with_serial(&tx, &product);
                    return Err(StoreError::DuplicateProduct { existing });
                }
                Err(e) => return Err(unavailable(e).into()),
            }
            if let Some(event) = &event {
                enqueue(&tx, event).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn delete(&self, user: &UserId, id: ProductId, expected: u64) -> Result<(), StoreError> {
        let user = user.clone();
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            let deleted = tx
                .execute(
                    "DELETE FROM products WHERE id = ?1 AND user_id = ?2
                       AND COALESCE(json_extract(doc, '$.revision'), 1) = ?3",
                    params![id.to_string(), user.as_str(), expected as i64],
                )
                .map_err(unavailable)?;
            if deleted != 1 {
                return Err(missing_or_stale(&tx, &user, id));
            }
            // Queued OCR work goes with it (a message already on its way finds no product).
            tx.execute("DELETE FROM ocr_queue WHERE product_id = ?1", params![id.to_string()]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn update_ocr(&self, user: &UserId, id: ProductId, state: &OcrState) -> Result<bool, Unavailable> {
        let state_json = serde_json::to_string(state).map_err(unavailable)?;
        let version = state.invoice_version;
        let user = user.clone();
        // Not waiting for the log's sync: see the port (a lost reading is read again).
        self.db
            .write_unsynced(move |c| {
                c.prepare_cached(
                    "UPDATE products SET doc = json_set(doc, '$.ocr', json(?1))
                 WHERE id = ?2 AND user_id = ?3 AND json_extract(doc, '$.invoice.version') = ?4",
                )?
                .execute(params![state_json, id.to_string(), user.as_str(), version])
            })
            .await?
            .map(|n| n == 1)
            .map_err(unavailable)
    }

    async fn insert_intake(
        &self,
        intake: &IntakeRecord,
        event: &OcrRequested,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let (intake, event, idempotency) = (intake.clone(), event.clone(), idempotency.cloned());
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            if let Some(rec) = &idempotency {
                remember(&tx, &intake.user_id, rec, intake.created_at)?;
            }
            let doc = serde_json::to_string(&intake).map_err(unavailable)?;
            tx.prepare_cached("INSERT INTO intakes (id, user_id, sweep_at, revision, doc) VALUES (?1, ?2, ?3, ?4, ?5)")
                .and_then(|mut insert| {
                    insert.execute(params![
                        intake.id.to_string(),
                        intake.user_id.as_str(),
                        ts(intake.sweep_at()),
                        intake.revision as i64,
                        doc
                    ])
                })
                .map_err(unavailable)?;
            enqueue(&tx, &event).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn get_intake(&self, user: &UserId, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable> {
        let user = user.clone();
        let doc = self
            .read(move |c| {
                c.prepare_cached("SELECT doc FROM intakes WHERE id = ?1 AND user_id = ?2")?
                    .query_row(params![id.to_string(), user.as_str()], |r| r.get::<_, String>(0))
                    .optional()
            })
            .await?
            .map_err(unavailable)?;
        doc.as_deref().map(decode_intake).transpose()
    }

    async fn find_intake(&self, _: Option<&UserId>, id: IntakeId) -> Result<Option<IntakeRecord>, Unavailable> {
        let doc = self
            .read(move |c| {
                c.query_row("SELECT doc FROM intakes WHERE id = ?1", params![id.to_string()], |r| r.get::<_, String>(0))
                    .optional()
            })
            .await?
            .map_err(unavailable)?;
        doc.as_deref().map(decode_intake).transpose()
    }

    async fn update_intake(&self, intake: &IntakeRecord, expected: u64) -> Result<(), StoreError> {
        let intake = intake.clone();
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            replace_intake(&tx, &intake, expected)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn insert_from_intake(
        &self,
        product: &ProductRecord,
        intake: &IntakeRecord,
        expected: u64,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let (product, intake, idempotency) = (product.clone(), intake.clone(), idempotency.cloned());
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            if let Some(rec) = &idempotency {
                remember(&tx, &product.user_id, rec, product.created_at)?;
            }
            replace_intake(&tx, &intake, expected)?;
            insert_product(&tx, &product)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn delete_intake(&self, user: &UserId, id: IntakeId, expected: u64) -> Result<(), StoreError> {
        let user = user.clone();
        self.with_conn(move |c| -> Result<(), StoreError> {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .execute(
                    "DELETE FROM intakes WHERE id = ?1 AND user_id = ?2 AND revision = ?3",
                    params![id.to_string(), user.as_str(), expected as i64],
                )
                .map_err(unavailable)?;
            if n != 1 {
                return Err(intake_gone_or_stale(&tx, &user, id));
            }
            tx.execute("DELETE FROM ocr_queue WHERE product_id = ?1", params![id.to_string()]).map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(())
        })
        .await?
    }

    async fn intakes_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<IntakeRecord>, Unavailable> {
        let docs = self
            .read(move |c| -> rusqlite::Result<Vec<String>> {
                c.prepare_cached("SELECT doc FROM intakes WHERE sweep_at <= ?1 ORDER BY sweep_at LIMIT ?2")?
                    .query_map(params![ts(now), limit as i64], |r| r.get(0))?
                    .collect()
            })
            .await?
            .map_err(unavailable)?;
        docs.iter().map(|d| decode_intake(d)).collect()
    }

    async fn intakes_of(&self, user: &UserId) -> Result<Vec<IntakeRecord>, Unavailable> {
        let user = user.clone();
        let docs = self
            .read(move |c| -> rusqlite::Result<Vec<String>> {
                c.prepare_cached("SELECT doc FROM intakes WHERE user_id = ?1 ORDER BY id")?
                    .query_map(params![user.as_str()], |r| r.get(0))?
                    .collect()
            })
            .await?
            .map_err(unavailable)?;
        docs.iter().map(|d| decode_intake(d)).collect()
    }
}
