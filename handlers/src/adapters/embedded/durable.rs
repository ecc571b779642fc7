//! Group commit: many writers' durability bought with one `fsync`.
//!
//! A write that must survive a power cut before it is acknowledged (a registration's record in
//! SQLite's log, an invoice's name in its directory) takes a ticket once its change is in the
//! page cache, then waits for a sync that started after that. One writer at a time syncs; the
//! writers that arrive meanwhile wait for it and are covered by the next sync, which covers all of
//! them at once. Under load, a burst of N registrations costs about two syncs instead of N, and
//! alone a write costs exactly one — the same as syncing it itself.
//!
//! The syncs run on the blocking pool; a waiting writer holds no thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one sync flushes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A file's data and the metadata needed to read it back (`fdatasync`): SQLite's `-wal`
    /// log, which holds every committed transaction not yet checkpointed. A missing file means
    /// nothing is in the log (it is created by the first write), so there is nothing to flush.
    Data(PathBuf),
    /// A directory's entries (`fsync` on the directory): the names renames created in it.
    Directory(PathBuf),
}

pub struct GroupSync {
    targets: Arc<[Target]>,
    /// Changes made so far (a ticket is the count when the change was made).
    changed: AtomicU64,
    /// Every change up to this ticket is durable.
    synced: AtomicU64,
    /// Held by the one writer syncing.
    turn: tokio::sync::Mutex<()>,
    /// Syncs run (for the tests and benchmarks: how many writes shared one).
    syncs: AtomicU64,
}

impl GroupSync {
    pub fn new(targets: Vec<Target>) -> Self {
        Self {
            targets: targets.into(),
            changed: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            turn: tokio::sync::Mutex::new(()),
            syncs: AtomicU64::new(0),
        }
    }

    /// Records a change that is now in the page cache; the returned ticket is what
    /// [`Self::durable`] waits for. Take it after the change, never before.
    pub fn changed(&self) -> u64 {
        self.changed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Returns once a sync that started after change `ticket` has finished.
    pub async fn durable(&self, ticket: u64) -> std::io::Result<()> {
        loop {
            if self.synced.load(Ordering::Acquire) >= ticket {
                return Ok(());
            }
            let _turn = self.turn.lock().await;
            if self.synced.load(Ordering::Acquire) >= ticket {
                return Ok(());
            }
            // Everything changed before this load is covered by the sync that follows it.
            let upto = self.changed.load(Ordering::Acquire);
            let targets = Arc::clone(&self.targets);
            tokio::task::spawn_blocking(move || sync_all(&targets)).await.map_err(std::io::Error::other)??;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced.fetch_max(upto, Ordering::AcqRel);
        }
    }

    /// Syncs run so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

fn sync_all(targets: &[Target]) -> std::io::Result<()> {
    for target in targets {
        match target {
            Target::Data(path) => match std::fs::File::open(path) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Target::Directory(path) => std::fs::File::open(path)?.sync_all()?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers waiting together share syncs, and no writer returns before a sync that began
    /// after its change: the first waits alone; the next 31, all changed before any of them
    /// waits, are covered by one sync between them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_writers_share_syncs_and_each_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(GroupSync::new(vec![Target::Directory(dir.path().to_owned())]));
        let first = sync.changed();
        sync.durable(first).await.unwrap();
        assert_eq!(sync.syncs(), 1, "a lone write costs exactly one sync");
        sync.durable(first).await.unwrap();
        assert_eq!(sync.syncs(), 1, "a covered ticket waits for nothing");

        let tickets: Vec<u64> = (0..31).map(|_| sync.changed()).collect();
        let waits: Vec<_> = tickets
            .iter()
            .map(|&t| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.durable(t).await })
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert_eq!(sync.syncs() - 1, 1, "31 writers waiting together share one sync");
        assert!(sync.synced.load(Ordering::Acquire) >= *tickets.last().unwrap());
    }

    /// A sync that cannot run fails every writer waiting for it, and a later sync still runs.
    #[tokio::test]
    async fn a_failed_sync_fails_its_writers() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let sync = GroupSync::new(vec![Target::Directory(gone.clone())]);
        let t = sync.changed();
        assert!(sync.durable(t).await.is_err(), "a directory that cannot be opened is an error");
        std::fs::create_dir(&gone).unwrap();
        sync.durable(t).await.unwrap();
        assert_eq!(sync.syncs(), 1);
    }
}
