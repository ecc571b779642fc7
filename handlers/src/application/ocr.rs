//! Read a registered invoice and record the result on the product (the consumer of the OCR
//! event). Idempotent per (product, invoice version): a redelivered message for an invoice
//! already read does nothing.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Services;
use crate::domain::extraction::{self, Source, TextLine};
use crate::domain::intake::{IntakeReading, IntakeStatus};
use crate::domain::ocr::{Check, InvoiceFields, MatchResults, OcrEngineKind, OcrState, OcrStatus};
use crate::domain::verification::{self, Registered};
use crate::domain::{InvoiceKind, OcrRequested, ProductRecord, Subject};
use crate::ports::{EngineReading, ReadError, Reading, StoreError, Unavailable};

/// What handling one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcrOutcome {
    /// The reading (or its permanent failure) was recorded with this status.
    Recorded(OcrStatus),
    /// Nothing to do: `product_deleted`, `invoice_replaced`, `already_processed`.
    Skipped(&'static str),
}

/// Failures that should make the message come back later.
#[derive(Debug, thiserror::Error)]
pub enum OcrRetry {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// Recorded on the product as `failed` / `ocr_engine_unavailable`, and retried so that
    /// it dead-letters and can be replayed once the engine is installed.
    #[error("OCR engine unavailable: {0}")]
    EngineUnavailable(String),
    #[error("transient OCR failure: {0}")]
    Transient(String),
}

pub const ENGINE_UNAVAILABLE: &str = "ocr_engine_unavailable";

/// Failure reason of an invoice not read within `WARRANTY_OCR_DEADLINE_SECS`: permanent (the
/// same document would take as long again), so the message completes instead of coming back.
pub const DEADLINE_EXCEEDED: &str = "ocr_deadline_exceeded";

/// Whether a state is final for its invoice version (an engine that was missing is not final:
/// the invoice is read once the engine is there).
fn done(state: &OcrState, version: u32) -> bool {
    state.invoice_version == version
        && state.status.is_final()
        && state.failure_reason.as_deref() != Some(ENGINE_UNAVAILABLE)
}

pub async fn process(services: &Services, event: &OcrRequested) -> Result<OcrOutcome, OcrRetry> {
    if event.subject == Subject::Intake {
        return process_intake(services, event).await;
    }
    let Some(product) = services.products.get(&event.user_id, event.product_id).await? else {
        return Ok(OcrOutcome::Skipped("product_deleted"));
    };
    if product.invoice.version != event.invoice_version {
        return Ok(OcrOutcome::Skipped("invoice_replaced"));
    }
    if done(&product.ocr, event.invoice_version) {
        return Ok(OcrOutcome::Skipped("already_processed"));
    }
    let mut state = product.ocr.clone();
    state.invoice_version = event.invoice_version;
    state.status = OcrStatus::Processing;
    state.attempts += 1;
    state.failure_reason = None;
    state.uncertain_fields.clear();
    if !services.products.update_ocr(&product.user_id, product.id, &state).await? {
        return Ok(OcrOutcome::Skipped("product_deleted"));
    }

    let record = |mut state: OcrState, status: OcrStatus, reason: Option<String>| {
        state.status = status;
        state.failure_reason = reason;
        state.processed_at = Some(services.clock.now());
        state
    };

    let bytes = match services.invoices.read(&product.invoice.location).await? {
        Some(b) => b,
        None => {
            let s = record(state, OcrStatus::Failed, Some("invoice_missing".into()));
            services.products.update_ocr(&product.user_id, product.id, &s).await?;
            return Ok(OcrOutcome::Recorded(OcrStatus::Failed));
        }
    };
    if !intact(&product.invoice, &bytes) {
        let s = record(state, OcrStatus::Failed, Some("invoice_corrupt".into()));
        services.products.update_ocr(&product.user_id, product.id, &s).await?;
        return Ok(OcrOutcome::Recorded(OcrStatus::Failed));
    }

    let reading = match tokio::time::timeout(services.ocr_deadline, read_and_verify(services, &product, bytes)).await {
        Ok(r) => r,
        // Engines' processes are killed when their futures drop (`kill_on_drop`).
        Err(_) => Err(ReadError::Permanent {
            reason: DEADLINE_EXCEEDED,
            detail: format!("not read within {} s", services.ocr_deadline.as_secs()),
        }),
    };
    match reading {
        Ok((engine, fields, matches)) => {
            let Decision { status, uncertain } = decide(&fields, &matches);
            state.uncertain_fields = uncertain;
            state.engine = Some(engine);
            state.fields = Some(fields);
            state.matches = Some(matches);
            let s = record(state, status, None);
            services.products.update_ocr(&product.user_id, product.id, &s).await?;
            tracing::info!(product_id = %product.id, ?status, ?engine, "invoice read");
            Ok(OcrOutcome::Recorded(status))
        }
        Err(ReadError::Permanent { reason, detail }) => {
            tracing::warn!(product_id = %product.id, reason, detail, "invoice cannot be read");
            let s = record(state, OcrStatus::Failed, Some(reason.to_owned()));
            services.products.update_ocr(&product.user_id, product.id, &s).await?;
            Ok(OcrOutcome::Recorded(OcrStatus::Failed))
        }
        Err(ReadError::EngineUnavailable(e)) => {
            let s = record(state, OcrStatus::Failed, Some(ENGINE_UNAVAILABLE.to_owned()));
            services.products.update_ocr(&product.user_id, product.id, &s).await?;
            Err(OcrRetry::EngineUnavailable(e))
        }
        Err(ReadError::Transient(e)) => {
            state.status = OcrStatus::Queued;
            services.products.update_ocr(&product.user_id, product.id, &state).await?;
            Err(OcrRetry::Transient(e))
        }
    }
}

/// What reading one invoice gave: the engine that answered, the fields, the text the
/// verification searches, and the lines with their positions (what proposals are made from).
pub(crate) struct Read {
    pub engine: OcrEngineKind,
    pub fields: InvoiceFields,
    pub text: String,
    pub lines: Vec<TextLine>,
}

/// Reads an invoice's bytes with the configured engines, asking for a second opinion on a scan
/// or photo the local recognisers left uncertain. Registration and intakes both read here.
pub(crate) async fn read_document(services: &Services, kind: InvoiceKind, bytes: Bytes) -> Result<Read, ReadError> {
    let reading = services.reader.read(kind, bytes.clone()).await?;
    let mut engine = reading.engine;
    let mut lines = lines_of(&reading.reading);
    let (mut fields, mut text) = interpret(reading);
    // A scan or photo the local recognisers left uncertain gets a second opinion where one is
    // configured (Document Intelligence); its values are checked against the local ones.
    let local = matches!(engine, OcrEngineKind::Tesseract | OcrEngineKind::PpOcr | OcrEngineKind::PpOcrTesseract);
    if local && !certain(&fields) {
        let class = extraction::document_class(kind, &text);
        match services.reader.second_opinion(class, bytes).await {
            Some(Ok(second)) => {
                engine = second.engine;
                let second_lines = lines_of(&second.reading);
                let (other, other_text) = interpret(second);
                fields = extraction::agree::second_opinion(fields, &other);
                text.push('\n');
                text.push_str(&other_text);
                if lines.is_empty() {
                    lines = second_lines;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "the second opinion failed: the local reading stands"),
            None => {}
        }
    }
    Ok(Read { engine, fields, text, lines })
}

/// The positioned lines of a reading (the first engine's, where several read the image); an
/// e-invoice's text, line by line, without positions.
pub fn lines_of(reading: &Reading) -> Vec<TextLine> {
    match reading {
        Reading::Text { lines, .. } => lines.clone(),
        Reading::Checked { readings, .. } => readings.first().cloned().unwrap_or_default(),
        Reading::Structured { text, .. } => {
            text.lines().filter(|l| !l.trim().is_empty()).map(|l| TextLine::new(l, 1.0)).collect()
        }
    }
}

async fn read_and_verify(
    services: &Services,
    product: &ProductRecord,
    bytes: Bytes,
) -> Result<(OcrEngineKind, InvoiceFields, MatchResults), ReadError> {
    let Read { engine, fields, text, .. } = read_document(services, product.invoice.kind, bytes).await?;
    let matches = verify(services, product, &fields, &text);
    Ok((engine, fields, matches))
}

/// Checks a reading against what was registered.
pub(crate) fn verify(services: &Services, product: &ProductRecord, fields: &InvoiceFields, text: &str) -> MatchResults {
    let registered = Registered {
        brand: &product.brand,
        brand_aliases: services.catalog.names(&product.brand),
        model: &product.model,
        serial_number: product.serial_number.as_str(),
        purchase_date: product.purchase_date.date(),
    };
    verification::verify(&registered, fields, text, services.ocr_date_tolerance_days)
}

/// Whether stored bytes are the ones received: their CRC-32 (a tenth of a SHA-256 pass; the
/// SHA-256 for invoices stored before the CRC was kept).
fn intact(invoice: &crate::domain::InvoiceRef, bytes: &[u8]) -> bool {
    match invoice.crc32 {
        Some(crc) => bytes.len() as u64 == invoice.size_bytes && crc32fast::hash(bytes) == crc,
        None => hex::encode(Sha256::digest(bytes)) == invoice.sha256,
    }
}

/// Reads an intake's invoice and stores what it proposes (the consumer of an intake's event).
/// Idempotent: an intake already read is left alone.
async fn process_intake(services: &Services, event: &OcrRequested) -> Result<OcrOutcome, OcrRetry> {
    let Some(mut intake) = services.products.get_intake(&event.user_id, event.product_id).await? else {
        return Ok(OcrOutcome::Skipped("intake_deleted"));
    };
    let retrying =
        intake.status == IntakeStatus::Failed && intake.failure_reasons.iter().any(|r| r == ENGINE_UNAVAILABLE);
    if intake.status != IntakeStatus::Reading && !retrying {
        return Ok(OcrOutcome::Skipped("already_processed"));
    }
    // The attempt is recorded first, like a product's `processing`.
    let mut expected = intake.revision;
    intake.attempts += 1;
    intake.status = IntakeStatus::Reading;
    intake.failure_reasons.clear();
    intake.revision += 1;
    match services.products.update_intake(&intake, expected).await {
        Ok(()) => expected = intake.revision,
        Err(StoreError::Gone) => return Ok(OcrOutcome::Skipped("intake_deleted")),
        // Another delivery of the same event is reading it.
        Err(StoreError::Stale) => return Ok(OcrOutcome::Skipped("already_processing")),
        Err(e) => return Err(store_failure(e)),
    }
    let read = match services.invoices.read(&intake.invoice.location).await? {
        None => Err(ReadError::permanent("invoice_missing", "the intake's file is gone")),
        Some(bytes) if !intact(&intake.invoice, &bytes) => {
            Err(ReadError::permanent("invoice_corrupt", "the stored bytes are not the ones received"))
        }
        Some(bytes) => {
            match tokio::time::timeout(services.ocr_deadline, read_document(services, intake.invoice.kind, bytes)).await
            {
                Ok(r) => r,
                Err(_) => Err(ReadError::Permanent {
                    reason: DEADLINE_EXCEEDED,
                    detail: format!("not read within {} s", services.ocr_deadline.as_secs()),
                }),
            }
        }
    };
    let (outcome, retry) = match read {
        Ok(Read { engine, fields, mut text, lines }) => {
            let proposals = crate::domain::proposals::propose(&lines, &fields, &services.catalog);
            if let Some((cut, _)) = text.char_indices().nth(crate::domain::intake::TEXT_MAX_CHARS) {
                text.truncate(cut);
            }
            intake.status = IntakeStatus::Ready;
            intake.reading = Some(IntakeReading { engine, fields, text, proposals, read_at: services.clock.now() });
            (OcrOutcome::Recorded(OcrStatus::Completed), None)
        }
        Err(ReadError::Permanent { reason, detail }) => {
            tracing::warn!(intake_id = %intake.id, reason, detail, "an intake's invoice cannot be read");
            intake.status = IntakeStatus::Failed;
            intake.failure_reasons = vec![reason.to_owned()];
            (OcrOutcome::Recorded(OcrStatus::Failed), None)
        }
        Err(ReadError::EngineUnavailable(e)) => {
            intake.status = IntakeStatus::Failed;
            intake.failure_reasons = vec![ENGINE_UNAVAILABLE.to_owned()];
            (OcrOutcome::Recorded(OcrStatus::Failed), Some(OcrRetry::EngineUnavailable(e)))
        }
        Err(ReadError::Transient(e)) => (OcrOutcome::Skipped("retrying"), Some(OcrRetry::Transient(e))),
    };
    if retry.is_none() || intake.status == IntakeStatus::Failed {
        intake.revision += 1;
        match services.products.update_intake(&intake, expected).await {
            Ok(()) => {}
            Err(StoreError::Gone) => return Ok(OcrOutcome::Skipped("intake_deleted")),
            Err(StoreError::Stale) => return Ok(OcrOutcome::Skipped("already_processed")),
            Err(e) => return Err(store_failure(e)),
        }
    }
    match retry {
        Some(r) => Err(r),
        None => {
            tracing::info!(intake_id = %intake.id, status = ?intake.status, "intake read");
            Ok(outcome)
        }
    }
}

fn store_failure(e: StoreError) -> OcrRetry {
    match e {
        StoreError::Unavailable(u) => OcrRetry::Unavailable(u),
        other => OcrRetry::Unavailable(Unavailable::new("product store", other)),
    }
}

/// The fields an engine's reading yields, and the text the verification searches. The OCR
/// handler and `warranty ocr-eval` both go through here.
pub fn interpret(reading: EngineReading) -> (InvoiceFields, String) {
    // A PDF's text layer carries the issuer's characters; OCR may misread any of them.
    let source = if reading.engine == OcrEngineKind::PdfText { Source::Exact } else { Source::Ocr };
    match reading.reading {
        Reading::Structured { fields, text } => (fields, text),
        Reading::Text { lines, .. } => (extraction::extract_from(&lines, source), join(&lines)),
        Reading::Checked { readings, .. } => {
            // The first engine's fields, checked against each other engine's; the text the
            // verification searches is all of them.
            let mut texts = readings.iter().map(|lines| join(lines));
            let mut all = texts.next().unwrap_or_default();
            for t in texts {
                all.push('\n');
                all.push_str(&t);
            }
            let mut each = readings.iter().map(|lines| extraction::agree::EngineFields::from_lines(lines));
            let Some(first) = each.next() else { return (InvoiceFields::default(), all) };
            (each.fold(first, |acc, other| extraction::agree::agree(acc, &other)).ocr, all)
        }
    }
}

/// A field at or above this confidence is "supported" by its evidence.
pub const SUPPORTED: f32 = 0.8;

/// The invoice date and the total are both supported: nothing for a second opinion to add.
fn certain(fields: &InvoiceFields) -> bool {
    [fields.invoice_date.as_ref().map(|f| f.confidence), fields.total.as_ref().map(|f| f.confidence)]
        .iter()
        .all(|c| c.is_some_and(|c| c >= SUPPORTED))
}

/// The status of a reading and the fields a person should check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: OcrStatus,
    /// Why it is not `completed`: `invoiceDate`, `total` (missing or unsupported by evidence),
    /// `purchaseDate`, `serialNumber`, `brand`, `model` (the registration did not match).
    pub uncertain: Vec<String>,
}

/// `completed` only when the invoice date and the total are each supported by evidence and the
/// registration matched; otherwise `needs_review`, naming what is uncertain.
pub fn decide(fields: &InvoiceFields, matches: &MatchResults) -> Decision {
    let mut uncertain = Vec::new();
    if fields.invoice_date.as_ref().is_none_or(|f| f.confidence < SUPPORTED) {
        uncertain.push("invoiceDate".to_owned());
    }
    if fields.total.as_ref().is_none_or(|f| f.confidence < SUPPORTED) {
        uncertain.push("total".to_owned());
    }
    for (name, check) in [
        ("purchaseDate", matches.purchase_date),
        ("serialNumber", matches.serial_number),
        ("brand", matches.brand),
        ("model", matches.model),
    ] {
        if check != Check::Matched {
            uncertain.push(name.to_owned());
        }
    }
    let status = if uncertain.is_empty() { OcrStatus::Completed } else { OcrStatus::NeedsReview };
    Decision { status, uncertain }
}

fn join(lines: &[TextLine]) -> String {
    lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
}
