//! The integration tests, one binary (ADR 0001: one crate, linked once): the real server on a
//! loopback port with real HTTP, real SQLite, Azurite, the Cosmos emulator, Tesseract; the
//! release drills against a simulated control plane; the release artefacts read as files.
//! `cargo test --test api <module>::` runs one journey, e.g. `cargo test --test api drills::`.

#[macro_use]
mod support;

mod architecture;
mod auth;
mod azure;
mod binary;
mod calendar;
mod clients;
mod contract;
mod coverages;
mod crash;
mod deploy;
mod docintel;
mod drills;
mod full_disk;
mod gateway;
mod hostile;
mod intakes;
mod lifecycle;
mod notifications;
mod ocr_corpus;
mod ocr_dispatch;
mod ocr_trigger;
mod ops;
mod pdf_text;
mod platform;
mod privacy;
mod readers;
mod recognizer;
mod registration;
mod reminders;
mod servicebus;
mod sharing;
