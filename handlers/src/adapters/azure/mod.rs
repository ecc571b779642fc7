//! The Azure services: products in Cosmos DB, invoices in Blob Storage, OCR events on Service
//! Bus, and what they share — the app's identity and the connection-string format of local use.
//! (Document Intelligence is an invoice reader and sits with the other readers in
//! `adapters::ocr`; it takes its credential from here.)

pub mod blob;
pub mod connection_string;
pub mod cosmos;
pub mod identity;
pub mod servicebus;
