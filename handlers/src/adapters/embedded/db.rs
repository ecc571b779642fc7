//! Helpers every SQLite table of the embedded store uses.

use chrono::{DateTime, Utc};

use crate::ports::{Cause, Unavailable};

/// The name failures of the product database carry.
pub const BACKEND: &str = "product store";

/// Timestamps are stored as fixed-width RFC 3339 UTC strings so text order is time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Free space below which the database reports itself `full` (a few hundred registrations'
/// worth of log pages).
pub const DB_SPACE_FLOOR: u64 = 1024 * 1024;

/// A SQLite failure as the port reports it.
pub fn unavailable(e: impl Cause) -> Unavailable {
    Unavailable::from_cause(BACKEND, e)
}

/// `SQLITE_FULL`: the disk (or the database's page limit) has no room for the write.
impl Cause for rusqlite::Error {
    fn out_of_space(&self) -> bool {
        self.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
    }
}

/// The embedded store's SQLite database: one writer connection behind an asynchronous gate, and
/// a pool of reader connections.
///
/// - Readers never wait behind a writer: in WAL mode a reader sees the last committed state
///   while another connection (or process) writes.
/// - Writers are serialised by the gate, which a waiting writer holds no thread and no lock for;
///   every write has one budget (`busy`) counted from when it asked: waiting for the gate and
///   then for the database lock (SQLite's `busy_timeout`, set to what is left). A write that
///   cannot get the lock within its budget fails as `busy`, which the API answers with
///   `503 storage_unavailable` and `Retry-After` — the Nth queued writer fails at its own
///   deadline, not after N budgets.
/// - A write returns once it is durable: the log is synced after the gate is released, shared by
///   every write that committed meanwhile (group commit, [`super::durable`]). SQLite itself runs
///   with `synchronous=NORMAL` (no sync inside the writer's turn), so the next write's turn
///   overlaps this one's sync.
pub struct Db {
    path: std::path::PathBuf,
    writer: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    gate: tokio::sync::Semaphore,
    readers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    busy: std::time::Duration,
    log: super::durable::GroupSync,
}

/// Readers kept open between reads.
const IDLE_READERS: usize = 8;

impl Db {
    /// Opens the database at `path` with `init` run once on the writer (schema, pragmas).
    pub fn open(
        path: &std::path::Path,
        busy: std::time::Duration,
        init: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, Unavailable> {
        let writer = rusqlite::Connection::open(path).map_err(unavailable)?;
        writer.busy_timeout(busy).map_err(unavailable)?;
        init(&writer).map_err(unavailable)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        // The log's name in its directory (created by the first write in WAL mode): synced once.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(unavailable)?;
        }
        Ok(Self {
            log: super::durable::GroupSync::new(vec![super::durable::Target::Data(wal.into())]),
            path: path.to_owned(),
            writer: std::sync::Arc::new(std::sync::Mutex::new(writer)),
            gate: tokio::sync::Semaphore::new(1),
            readers: std::sync::Mutex::new(Vec::new()),
            busy,
        })
    }

    fn reader(&self) -> Result<rusqlite::Connection, Unavailable> {
        if let Some(c) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        // A WAL reader only waits while a checkpoint restarts the log: briefly.
        c.busy_timeout(std::time::Duration::from_millis(500)).map_err(unavailable)?;
        Ok(c)
    }

    /// Runs `f` on a reader connection.
    pub async fn read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = me.reader()?;
            let out = f(&conn);
            let mut pool = me.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < IDLE_READERS {
                pool.push(conn);
            }
            Ok(out)
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs `f` on the writer, within the write budget, and returns once what it committed is
    /// durable (a power cut keeps it).
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let (out, ticket) = self.commit(f).await?;
        self.log.durable(ticket).await.map_err(unavailable)?;
        Ok(out)
    }

    /// Runs `f` on the writer like [`Self::write`] but returns once it has committed, without
    /// waiting for the log's sync. Only for bookkeeping that redoing repairs: the OCR queue's
    /// claims and completions and a reading's progress, which a power cut may roll back to a
    /// message delivered again and read again (the handler is idempotent). Nothing is lost out of
    /// order: the log is synced as a whole and SQLite replays it only up to its first incomplete
    /// frame, so once a later write is durable every earlier commit is too.
    pub async fn write_unsynced<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        Ok(self.commit(f).await?.0)
    }

    /// Runs `f` on the writer within the write budget; returns its result and the ticket whose
    /// sync makes the commit durable.
    async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<(T, u64), Unavailable> {
        let deadline = std::time::Instant::now() + self.busy;
        let turn = tokio::time::timeout(self.busy, self.gate.acquire())
            .await
            .map_err(|_| busy("the database is busy: other writes are waiting for its lock"))?
            .map_err(unavailable)?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let writer = self.writer.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            conn.busy_timeout(left.max(std::time::Duration::from_millis(1))).map_err(unavailable)?;
            Ok(f(&mut conn))
        })
        .await
        .map_err(unavailable)??;
        let ticket = self.log.changed();
        drop(turn);
        Ok((out, ticket))
    }

    /// Log syncs so far (each made one or more writes durable).
    pub fn log_syncs(&self) -> u64 {
        self.log.syncs()
    }

    /// `full` when the database's volume has less than [`DB_SPACE_FLOOR`] left: the next
    /// writes may fail with `SQLITE_FULL`.
    pub fn has_room(&self) -> Result<(), Unavailable> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let free = super::free_bytes(dir).map_err(unavailable)?;
        if free < DB_SPACE_FLOOR {
            return Err(Unavailable::full(BACKEND, format!("{free} bytes free on the database's volume")));
        }
        Ok(())
    }

    /// Whether a write could start now: the gate is free and no other process holds the
    /// database's write lock. Never waits.
    pub async fn writable(&self) -> Result<(), Unavailable> {
        let Ok(_turn) = self.gate.try_acquire() else {
            return Err(busy("a write is in progress or waiting for the lock"));
        };
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            conn.busy_timeout(std::time::Duration::ZERO).map_err(unavailable)?;
            let probe = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
            probe.map_err(|e| busy(format!("another process holds the write lock ({e})")))
        })
        .await
        .map_err(unavailable)?
    }
}

/// The database is locked by someone else: retry later.
pub fn busy(e: impl std::fmt::Display) -> Unavailable {
    Unavailable::busy(BACKEND, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `t.db` in `dir`, as the store runs it (WAL, `synchronous=NORMAL`), with one table `t`.
    fn table_t(dir: &std::path::Path) -> Db {
        Db::open(&dir.join("t.db"), std::time::Duration::from_secs(1), |c| {
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.execute_batch("CREATE TABLE t (v TEXT)")
        })
        .unwrap()
    }

    /// A write returns after a sync of the log that began after its commit: each of two
    /// writes made one after the other costs one sync, and what they wrote is in the log file
    /// (not only in SQLite's memory) when they return.
    #[tokio::test]
    async fn each_write_returns_after_its_log_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = table_t(dir.path());
        let before = db.log_syncs();
        for n in 1..=2u64 {
            db.write(|c| c.execute("INSERT INTO t VALUES ('durable-row-marker')", [])).await.unwrap().unwrap();
            assert_eq!(db.log_syncs() - before, n, "one sync per write made alone");
        }
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        assert!(wal.windows(18).any(|w| w == b"durable-row-marker"), "the row is in the log file");
    }

    /// An unsynced write commits (readers see it) without a sync of its own; the next durable
    /// write's sync covers it.
    #[tokio::test]
    async fn an_unsynced_write_commits_and_the_next_sync_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(table_t(dir.path()));
        let before = db.log_syncs();
        db.write_unsynced(|c| c.execute("INSERT INTO t VALUES ('a')", [])).await.unwrap().unwrap();
        assert_eq!(db.log_syncs(), before, "no sync for an unsynced write");
        let seen: i64 = db.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).await.unwrap().unwrap();
        assert_eq!(seen, 1, "committed: a reader sees it");
        db.write(|c| c.execute("INSERT INTO t VALUES ('b')", [])).await.unwrap().unwrap();
        assert_eq!(db.log_syncs(), before + 1, "the next durable write syncs the log, both commits in it");
    }
}
