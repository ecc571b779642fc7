//! The embedded default: SQLite (WAL) for products, idempotent answers and the OCR outbox;
//! the local file system for invoices. No cloud account, no containers.

mod db;
mod files;
pub mod local_handler;
pub mod queue;
mod sqlite;

pub use files::FileInvoiceStore;
pub use sqlite::SqliteProductRepository;
