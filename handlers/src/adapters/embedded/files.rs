//! Invoices as files under the data directory.
//!
//! An upload is written to `invoices/tmp/{random}.part` and renamed into
//! `invoices/{productId}.v{version}.{ext}` on commit, so a reader never sees a half
//! file and a crash mid-upload leaves only a `.part` file, which the next start removes.
//! Names come from ids only; nothing the client sends reaches the file system.
//!
//! Durability: a committed invoice's data is synced before its rename, and the rename before
//! `commit` returns — the directory's sync is shared by every upload that committed meanwhile
//! (group commit, [`super::durable`]). The body is gathered into blocks of
//! [`WRITE_BLOCK`] and written one block per trip to the blocking pool, not one trip per
//! network chunk. The layout is
//! flat on purpose: a directory per product made every registration pay for an ext4 directory
//! inode allocation, which was the largest single cost under load (see docs/benchmarks.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use crate::domain::UserId;
use crate::domain::invoice::INVOICE_MAX_BYTES;
use crate::ports::{Cause, InvoiceStore, InvoiceUpload, Unavailable, Written};

const BACKEND: &str = "invoice store";

fn unavailable(e: impl Cause) -> Unavailable {
    Unavailable::from_cause(BACKEND, e)
}

/// Bytes gathered before a write: a 1 MB invoice is eight writes, 32 uploads at once hold at
/// most 4 MiB in these blocks, and a block stays below the allocator's mapping threshold
/// ([`crate::host::LARGE_ALLOCATION`]), so its memory is reused from upload to upload instead of
/// being mapped and faulted in each time.
pub const WRITE_BLOCK: usize = 128 * 1024;

#[derive(Clone)]
pub struct FileInvoiceStore {
    root: PathBuf,
    /// The invoices directory's entries (the renames of committed uploads).
    names: Arc<super::durable::GroupSync>,
}

impl FileInvoiceStore {
    /// Uses `root` (created if needed) and removes `.part` files left by an earlier crash.
    pub fn open(root: &Path) -> Result<Self, Unavailable> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(unavailable)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp).map_err(unavailable)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "part") && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed unfinished uploads left by an earlier run");
        }
        let names = super::durable::GroupSync::new(vec![super::durable::Target::Directory(root.to_owned())]);
        Ok(Self { root: root.to_owned(), names: Arc::new(names) })
    }

    /// Directory syncs so far (each made one or more committed uploads durable).
    pub fn name_syncs(&self) -> u64 {
        self.names.syncs()
    }

    /// Maps a location back to a path, refusing anything that could escape the root.
    fn path_of(&self, location: &str) -> Result<PathBuf, Unavailable> {
        let ok = !location.is_empty()
            && location.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        if !ok {
            return Err(unavailable(format!("not an invoice location: {location:?}")));
        }
        Ok(self.root.join(location))
    }
}

struct FileUpload {
    file: Option<std::fs::File>,
    /// Bytes not written yet (less than [`WRITE_BLOCK`] between writes).
    pending: Vec<u8>,
    tmp: PathBuf,
    final_path: PathBuf,
    location: String,
    names: Arc<super::durable::GroupSync>,
    done: bool,
}

impl FileUpload {
    /// Writes the pending block on the blocking pool.
    async fn write_pending(&mut self) -> Result<(), Unavailable> {
        let mut file = self.file.take().ok_or_else(|| unavailable("upload already closed"))?;
        let block = std::mem::take(&mut self.pending);
        let (file, mut block) = tokio::task::spawn_blocking(move || file.write_all(&block).map(|()| (file, block)))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        block.clear();
        self.pending = block;
        self.file = Some(file);
        Ok(())
    }
}

impl Drop for FileUpload {
    /// Last resort when an upload is dropped without commit or abort (a panic, a cancelled
    /// task): remove the partial file synchronously.
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[async_trait]
impl InvoiceUpload for FileUpload {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), Unavailable> {
        if self.file.is_none() {
            return Err(unavailable("upload already closed"));
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(WRITE_BLOCK);
        }
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let take = (WRITE_BLOCK - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.pending.len() == WRITE_BLOCK {
                self.write_pending().await?;
            }
        }
        Ok(())
    }

    /// The last block, the data synced and the rename in one trip to the blocking pool; then the
    /// rename made durable with the other uploads committed meanwhile.
    async fn commit(mut self: Box<Self>) -> Result<String, Unavailable> {
        let mut file = self.file.take().ok_or_else(|| unavailable("upload already closed"))?;
        let block = std::mem::take(&mut self.pending);
        let (tmp, final_path) = (self.tmp.clone(), self.final_path.clone());
        tokio::task::spawn_blocking(move || {
            file.write_all(&block)?;
            file.sync_data()?;
            drop(file);
            std::fs::rename(&tmp, &final_path)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        // Renamed: from here the file is the committed invoice, not a partial upload.
        self.done = true;
        let ticket = self.names.changed();
        if let Err(e) = self.names.durable(ticket).await {
            let _ = tokio::fs::remove_file(&self.final_path).await;
            return Err(unavailable(e));
        }
        Ok(std::mem::take(&mut self.location))
    }

    async fn abort(mut self: Box<Self>) {
        self.file.take();
        if let Err(e) = tokio::fs::remove_file(&self.tmp).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not remove a partial upload");
        }
        self.done = true;
    }
}

#[async_trait]
impl InvoiceStore for FileInvoiceStore {
    async fn begin_named(&self, _: &UserId, stem: &str, ext: &str) -> Result<Box<dyn InvoiceUpload>, Unavailable> {
        let location = format!("{stem}.{ext}");
        let final_path = self.path_of(&location)?;
        let tmp = self.root.join("tmp").join(format!("{}.part", uuid::Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).await.map_err(unavailable)?;
        Ok(Box::new(FileUpload {
            file: Some(file.into_std().await),
            pending: Vec::new(),
            tmp,
            final_path,
            location,
            names: self.names.clone(),
            done: false,
        }))
    }

    async fn written_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Written>, Unavailable> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&root).map_err(unavailable)?.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue; // `tmp/` holds unfinished uploads, swept at start
                }
                let Ok(modified) = meta.modified() else { continue };
                let modified = DateTime::<Utc>::from(modified);
                if modified >= from && modified <= to {
                    // The product index finds a product by id alone: no owner is kept.
                    found.push(Written { location: entry.file_name().to_string_lossy().into_owned(), owner: None });
                }
            }
            Ok(found)
        })
        .await
        .map_err(unavailable)?
    }

    async fn delete(&self, location: &str) -> Result<(), Unavailable> {
        let path = self.path_of(location)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn open(&self, location: &str) -> Result<Option<crate::ports::ChunkStream>, Unavailable> {
        let file = match tokio::fs::File::open(self.path_of(location)?).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        // 64 KiB at a time: the export holds one chunk of a file, never the file.
        let chunks = futures_util::stream::unfold(Some(file), |file| async move {
            use tokio::io::AsyncReadExt;
            let mut file = file?;
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(unavailable(e)), None)),
            }
        });
        Ok(Some(Box::pin(chunks)))
    }

    /// The file mapped read-only, not copied: the reader sees the page cache's pages, and a
    /// 10 MB invoice costs no heap and no page faults for a copy.
    async fn read(&self, location: &str) -> Result<Option<bytes::Bytes>, Unavailable> {
        let path = self.path_of(location)?;
        tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => Mapped::of(&file).map(|m| Some(m.map_or_else(bytes::Bytes::new, bytes::Bytes::from_owner))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)
    }

    /// Up when the upload directory exists and the volume can take one more invoice of the
    /// largest size accepted; `full` below that.
    async fn health(&self) -> Result<(), Unavailable> {
        let tmp = self.root.join("tmp");
        let meta = tokio::fs::metadata(&tmp).await.map_err(unavailable)?;
        if !meta.is_dir() {
            return Err(unavailable("the upload directory is not a directory"));
        }
        let free = super::free_bytes(&tmp).map_err(unavailable)?;
        if free < INVOICE_MAX_BYTES {
            return Err(Unavailable::full(BACKEND, format!("{free} bytes free, less than one largest invoice")));
        }
        Ok(())
    }
}

/// A committed invoice mapped read-only. Committed files are never written again (a replaced
/// invoice is a new file under a new version), so the mapping's bytes cannot change under it.
struct Mapped {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and private to this value; its pages can be read from any
// thread.
unsafe impl Send for Mapped {}
// SAFETY: as above: nothing writes through the mapping.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// `None` for an empty file (nothing to map).
    fn of(file: &std::fs::File) -> std::io::Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh read-only private mapping of an open descriptor; the result is checked.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(ptr.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Some(Self { ptr, len }))
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `of`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upload written across several blocks lands whole under its final name, and its rename
    /// is synced before `commit` returns (one directory sync for one upload).
    #[tokio::test]
    async fn a_committed_upload_is_whole_and_its_name_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileInvoiceStore::open(dir.path()).unwrap();
        let owner = UserId("u1".to_owned());
        let body: Vec<u8> = (0..WRITE_BLOCK * 2 + 1000).map(|i| (i % 251) as u8).collect();
        let mut upload = store.begin_named(&owner, "p1.v1", "pdf").await.unwrap();
        for chunk in body.chunks(7_777) {
            upload.write(chunk).await.unwrap();
        }
        assert_eq!(store.name_syncs(), 0);
        let location = upload.commit().await.unwrap();
        assert_eq!(location, "p1.v1.pdf");
        assert_eq!(std::fs::read(dir.path().join(&location)).unwrap(), body);
        assert_eq!(store.name_syncs(), 1);
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no partial file is left");
        // Read back (mapped), and still readable after the file's name is gone.
        let read = store.read(&location).await.unwrap().unwrap();
        store.delete(&location).await.unwrap();
        assert_eq!(&read[..], &body[..]);
        assert!(store.read(&location).await.unwrap().is_none());
    }
}
