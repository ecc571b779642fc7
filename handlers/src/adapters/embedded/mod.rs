//! The embedded default: SQLite (WAL) for products, idempotent answers and the OCR outbox;
//! the local file system for invoices. No cloud account, no containers.

mod db;
pub(crate) mod durable;
mod files;
pub mod local_handler;
pub mod queue;
mod reminders;
mod sqlite;

pub use files::FileInvoiceStore;
pub use sqlite::SqliteProductRepository;

/// Bytes an unprivileged process may still write on the volume holding `path` (`statvfs`).
pub(crate) fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path; statvfs fills `st` when it returns 0.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
