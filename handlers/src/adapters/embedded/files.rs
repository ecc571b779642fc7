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
//! network chunk. Blocks go to the disk with direct I/O (`O_DIRECT`) where the file system
//! takes it: the device reads them from the block itself, so the kernel neither copies each
//! invoice into the page cache nor walks those pages again to write them back — the largest
//! single cost of a registration once the hashing was halved (decision 0022). A tail shorter
//! than the alignment, and any file system that refuses direct I/O, take the buffered path; the
//! sync before the rename is the same on both. The layout is
//! flat on purpose: a directory per product made every registration pay for an ext4 directory
//! inode allocation, which was the largest single cost under load (see docs/benchmarks.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Alignment of direct I/O: the buffer's address, each write's length and the file offset are
/// multiples of it. 4 KiB covers the logical block sizes of current disks (512 B and 4 KiB).
pub const DIRECT_ALIGN: usize = 4096;

#[derive(Clone)]
pub struct FileInvoiceStore {
    root: PathBuf,
    /// The invoices directory's entries (the renames of committed uploads).
    names: Arc<super::durable::GroupSync>,
    /// Whether uploads are opened for direct I/O (off in tests that pin the buffered path).
    direct: bool,
    /// Bytes written with direct I/O so far.
    direct_bytes: Arc<AtomicU64>,
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
        Ok(Self { root: root.to_owned(), names: Arc::new(names), direct: true, direct_bytes: Arc::default() })
    }

    /// The same store writing every upload through the page cache (how a file system without
    /// direct I/O is served); for tests that compare both paths.
    pub fn buffered(mut self) -> Self {
        self.direct = false;
        self
    }

    /// Bytes of uploads written with direct I/O so far (the rest went through the page cache).
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes.load(Ordering::Relaxed)
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

/// An upload's unwritten bytes, kept at an address aligned for direct I/O.
///
/// The vector is allocated once with room for a block plus the alignment and never grows, so
/// its buffer does not move: the block starts `start` bytes in, at an aligned address.
struct Block {
    buf: Vec<u8>,
    start: usize,
}

impl Block {
    fn new() -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BLOCK + DIRECT_ALIGN);
        let start = (DIRECT_ALIGN - buf.as_ptr().addr() % DIRECT_ALIGN) % DIRECT_ALIGN;
        buf.resize(start, 0);
        Self { buf, start }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes as much of `chunk` as fits; returns the rest.
    fn fill<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let take = (WRITE_BLOCK - self.len()).min(chunk.len());
        self.buf.extend_from_slice(&chunk[..take]);
        &chunk[take..]
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn clear(&mut self) {
        self.buf.truncate(self.start);
    }
}

/// The file being written, and whether it is open for direct I/O.
struct Sink {
    file: std::fs::File,
    direct: bool,
    /// The store's count of bytes written directly.
    direct_bytes: Arc<AtomicU64>,
}

impl Sink {
    /// Opens a new file, for direct I/O when asked and the file system takes it.
    fn create(path: &Path, direct: bool, direct_bytes: Arc<AtomicU64>) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |flags| std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(flags).open(path);
        if direct {
            match open(libc::O_DIRECT) {
                Ok(file) => return Ok(Self { file, direct: true, direct_bytes }),
                // The file system does not do direct I/O (and did not create the file).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self { file: open(0)?, direct: false, direct_bytes })
    }

    /// Writes a block: its aligned part directly (when open so), the rest through the page cache.
    fn write_block(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let aligned = if self.direct { bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN } else { 0 };
        let rest = self.write_direct(&bytes[..aligned])?;
        let written = aligned - rest.len();
        self.direct_bytes.fetch_add(written as u64, Ordering::Relaxed);
        if written < bytes.len() {
            self.stop_direct()?;
            self.file.write_all(&bytes[written..])?;
        }
        Ok(())
    }

    /// Writes with direct I/O until done or the kernel refuses it (`EINVAL`: a file system that
    /// opened the file but cannot write this block directly); returns what is left to write.
    fn write_direct<'b>(&mut self, mut bytes: &'b [u8]) -> std::io::Result<&'b [u8]> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                // A short write leaves the rest unaligned: it goes through the page cache.
                Ok(n) if n % DIRECT_ALIGN != 0 => return Ok(&bytes[n..]),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(bytes),
                Err(e) => return Err(e),
            }
        }
        Ok(bytes)
    }

    /// Switches direct I/O off for the writes that follow (the tail, or after a short write).
    fn stop_direct(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if !self.direct {
            return Ok(());
        }
        let fd = self.file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor this value owns; results are checked.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.direct = false;
        Ok(())
    }
}

struct FileUpload {
    sink: Option<Sink>,
    /// Bytes not written yet (less than [`WRITE_BLOCK`] between writes); allocated on the first
    /// write.
    pending: Option<Block>,
    tmp: PathBuf,
    final_path: PathBuf,
    location: String,
    names: Arc<super::durable::GroupSync>,
    done: bool,
}

impl FileUpload {
    /// Writes the pending block on the blocking pool.
    async fn write_pending(&mut self) -> Result<(), Unavailable> {
        let mut sink = self.sink.take().ok_or_else(|| unavailable("upload already closed"))?;
        let Some(block) = self.pending.take() else {
            self.sink = Some(sink);
            return Ok(());
        };
        let (sink, mut block) =
            tokio::task::spawn_blocking(move || sink.write_block(block.bytes()).map(|()| (sink, block)))
                .await
                .map_err(unavailable)?
                .map_err(unavailable)?;
        block.clear();
        self.pending = Some(block);
        self.sink = Some(sink);
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
        if self.sink.is_none() {
            return Err(unavailable("upload already closed"));
        }
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let block = self.pending.get_or_insert_with(Block::new);
            chunk = block.fill(chunk);
            if block.len() == WRITE_BLOCK {
                self.write_pending().await?;
            }
        }
        Ok(())
    }

    /// The last block, the data synced and the rename in one trip to the blocking pool; then the
    /// rename made durable with the other uploads committed meanwhile.
    async fn commit(mut self: Box<Self>) -> Result<String, Unavailable> {
        let mut sink = self.sink.take().ok_or_else(|| unavailable("upload already closed"))?;
        let block = self.pending.take();
        let (tmp, final_path) = (self.tmp.clone(), self.final_path.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(block) = &block {
                sink.write_block(block.bytes())?;
            }
            // Direct writes reached the device, but perhaps only its volatile cache, and the
            // file's size and extents are metadata: the same sync as for buffered writes.
            sink.file.sync_data()?;
            drop(sink);
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
        self.sink.take();
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
        let (path, direct, counter) = (tmp.clone(), self.direct, self.direct_bytes.clone());
        let sink = tokio::task::spawn_blocking(move || Sink::create(&path, direct, counter))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(Box::new(FileUpload {
            sink: Some(sink),
            pending: None,
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

    /// A hard link: the product's name for the intake's bytes, no byte copied (the file is
    /// never changed in place, only replaced or removed by name). A file system without hard
    /// links gets a copy.
    async fn copy(&self, from: &str, owner: &UserId, stem: &str, ext: &str) -> Result<Option<String>, Unavailable> {
        let location = format!("{stem}.{ext}");
        let (source, target) = (self.path_of(from)?, self.path_of(&location)?);
        let linked =
            tokio::task::spawn_blocking(move || std::fs::hard_link(&source, &target)).await.map_err(unavailable)?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(unavailable(e)),
            Err(e) => {
                tracing::debug!(error = %e, "no hard link: the intake's invoice is copied");
                return crate::ports::copy_through(self, from, owner, stem, ext).await;
            }
        }
        // The new name made durable with the other names changed meanwhile.
        let ticket = self.names.changed();
        if let Err(e) = self.names.durable(ticket).await {
            let _ = tokio::fs::remove_file(self.path_of(&location)?).await;
            return Err(unavailable(e));
        }
        Ok(Some(location))
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

    /// Writes `body` in odd-sized chunks and commits it as `p1.v1.pdf`.
    async fn upload(store: &FileInvoiceStore, body: &[u8]) -> String {
        let mut upload = store.begin_named(&UserId("u1".to_owned()), "p1.v1", "pdf").await.unwrap();
        for chunk in body.chunks(7_777) {
            upload.write(chunk).await.unwrap();
        }
        assert_eq!(store.name_syncs(), 0);
        upload.commit().await.unwrap()
    }

    /// Pages of `path` in the page cache (`mincore` over a mapping, which faults nothing in).
    fn resident_pages(path: &Path) -> usize {
        let file = std::fs::File::open(path).unwrap();
        let map = Mapped::of(&file).unwrap().unwrap();
        let pages = map.len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: `map` is a live mapping of `map.len` bytes; `vec` has one byte per 4 KiB page.
        let rc = unsafe { libc::mincore(map.ptr.as_ptr().cast(), map.len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    /// Whether files in `dir` can be written with direct I/O and stay out of the page cache
    /// (not tmpfs, whose pages are its storage).
    fn takes_direct_io(dir: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let probe = dir.join("probe");
        let opened =
            std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_DIRECT).open(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs fills the zeroed struct for a NUL-terminated path; the result is checked.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let tmpfs = unsafe { libc::statfs(c.as_ptr(), &mut fs) } == 0 && fs.f_type == libc::TMPFS_MAGIC;
        opened && !tmpfs
    }

    /// An upload written across several blocks, with a tail shorter than the alignment, lands
    /// whole under its final name on both paths, and its rename is synced before `commit`
    /// returns (one directory sync for one upload). On the direct path the aligned blocks never
    /// enter the page cache (the point of it); only the tail's page does.
    #[tokio::test]
    async fn a_committed_upload_is_whole_and_its_name_synced() {
        let body: Vec<u8> = (0..WRITE_BLOCK * 2 + 1000).map(|i| (i % 251) as u8).collect();
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = FileInvoiceStore::open(dir.path()).unwrap();
            let store = if direct { store } else { store.buffered() };
            let location = upload(&store, &body).await;
            assert_eq!(location, "p1.v1.pdf");
            assert_eq!(store.name_syncs(), 1);
            let path = dir.path().join(&location);
            if direct && takes_direct_io(dir.path()) {
                assert_eq!(store.direct_bytes(), (WRITE_BLOCK * 2) as u64, "whole blocks go direct, the tail does not");
                assert!(resident_pages(&path) <= 1, "only the tail's page is cached: {}", resident_pages(&path));
            } else {
                assert_eq!(store.direct_bytes(), 0);
            }
            assert_eq!(std::fs::read(&path).unwrap(), body, "direct: {direct}");
            assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no partial file is left");
            // Read back (mapped), and still readable after the file's name is gone.
            let read = store.read(&location).await.unwrap().unwrap();
            store.delete(&location).await.unwrap();
            assert_eq!(&read[..], &body[..]);
            assert!(store.read(&location).await.unwrap().is_none());
        }
    }

    /// Sizes around the alignment and the block: each lands byte for byte (a block split into
    /// its aligned part and its tail, an exact block, one byte).
    #[tokio::test]
    async fn every_size_lands_byte_for_byte() {
        for size in [1, DIRECT_ALIGN - 1, DIRECT_ALIGN, DIRECT_ALIGN + 1, WRITE_BLOCK, WRITE_BLOCK + DIRECT_ALIGN + 3] {
            let dir = tempfile::tempdir().unwrap();
            let store = FileInvoiceStore::open(dir.path()).unwrap();
            let body: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
            let location = upload(&store, &body).await;
            assert_eq!(std::fs::read(dir.path().join(location)).unwrap(), body, "{size} bytes");
        }
    }
}
