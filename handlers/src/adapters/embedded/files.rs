//! Invoices as files under the data directory.
//!
//! An upload is written to `invoices/tmp/{random}.part` and renamed into
//! `invoices/{productId}.v{version}.{ext}` on commit, so a reader never sees a half
//! file and a crash mid-upload leaves only a `.part` file, which the next start removes.
//! Names come from ids only; nothing the client sends reaches the file system. The layout is
//! flat on purpose: a directory per product made every registration pay for an ext4 directory
//! inode allocation, which was the largest single cost under load (see docs/benchmarks.md).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use chrono::{DateTime, Utc};

use crate::domain::UserId;
use crate::domain::invoice::INVOICE_MAX_BYTES;
use crate::ports::{Cause, InvoiceStore, InvoiceUpload, Unavailable, Written};

const BACKEND: &str = "invoice store";

fn unavailable(e: impl Cause) -> Unavailable {
    Unavailable::from_cause(BACKEND, e)
}

#[derive(Debug, Clone)]
pub struct FileInvoiceStore {
    root: PathBuf,
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
        Ok(Self { root: root.to_owned() })
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
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    final_path: PathBuf,
    location: String,
    done: bool,
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
        let file = self.file.as_mut().ok_or_else(|| unavailable("upload already closed"))?;
        file.write_all(chunk).await.map_err(unavailable)
    }

    async fn commit(mut self: Box<Self>) -> Result<String, Unavailable> {
        let mut file = self.file.take().ok_or_else(|| unavailable("upload already closed"))?;
        file.flush().await.map_err(unavailable)?;
        file.sync_data().await.map_err(unavailable)?;
        drop(file);
        tokio::fs::rename(&self.tmp, &self.final_path).await.map_err(unavailable)?;
        self.done = true;
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
        Ok(Box::new(FileUpload { file: Some(file), tmp, final_path, location, done: false }))
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

    async fn read(&self, location: &str) -> Result<Option<bytes::Bytes>, Unavailable> {
        match tokio::fs::read(self.path_of(location)?).await {
            Ok(data) => Ok(Some(bytes::Bytes::from(data))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
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
