//! Reading a registration form from `multipart/form-data` without buffering the invoice.
//!
//! The body is pumped from the connection into a small bounded channel that the multipart
//! parser reads, so memory per upload is a few chunks whatever the file size. The pump also
//! enforces the overall body cap. When the handler stops early (too large, wrong type) the
//! pump keeps reading and discarding the rest of the body, up to a bound, so that the client,
//! still sending, gets to read our answer instead of a connection reset ("lingering close").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::BodyStream;
use super::error::ApiError;
use crate::application::intake::{Finished, InvoiceIntake, ReceivedInvoice};
use crate::application::register::RegistrationForm;
use crate::domain::ProductField;
use crate::domain::{FieldError, INVOICE_MAX_BYTES, ProductId};
use crate::ports::InvoiceStore;

/// Room for the text fields and multipart framing around a maximal invoice.
pub const BODY_OVERHEAD: u64 = 256 * 1024;
/// The largest body we read at all.
pub const MAX_BODY: u64 = INVOICE_MAX_BYTES + BODY_OVERHEAD;
/// After answering early, how much more we read and throw away before closing.
const DRAIN_LIMIT: u64 = 128 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(30);
/// Largest accepted text field.
const TEXT_FIELD_MAX: usize = 4 * 1024;
/// Most parts in one form (the five fields and some slack for extra fields clients add).
const MAX_PARTS: usize = 32;

/// Starts the pump and returns the stream the parser reads plus a flag raised when the body
/// exceeded [`MAX_BODY`].
pub fn pump(mut body: BodyStream) -> (BodyStream, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let too_large = Arc::new(AtomicBool::new(false));
    let flag = too_large.clone();
    tokio::spawn(async move {
        let mut total = 0u64;
        let mut forwarding = true;
        let deadline = tokio::time::Instant::now() + DRAIN_TIME;
        loop {
            let next = if forwarding {
                body.next().await
            } else {
                match tokio::time::timeout_at(deadline, body.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            };
            let Some(item) = next else { break };
            match item {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    if forwarding {
                        if total > MAX_BODY {
                            flag.store(true, Ordering::SeqCst);
                            let _ = tx.send(Err(std::io::Error::other("request body too large"))).await;
                            forwarding = false;
                        } else if tx.send(Ok(chunk)).await.is_err() {
                            // The handler is done with the body; drain the rest.
                            forwarding = false;
                        }
                    } else if total > DRAIN_LIMIT + MAX_BODY {
                        break;
                    }
                }
                Err(e) => {
                    if forwarding {
                        let _ = tx.send(Err(e)).await;
                    }
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    (Box::pin(stream), too_large)
}

/// A multipart error as the client should see it: 413 when the body outgrew the cap (the
/// parser only saw the stream end), 400 `multipart_malformed` otherwise.
pub fn malformed(e: multer::Error, too_large: &AtomicBool) -> ApiError {
    if too_large.load(Ordering::SeqCst) {
        ApiError::InvoiceTooLarge
    } else {
        ApiError::BadRequest { code: "multipart_malformed", detail: format!("The multipart body is malformed: {e}.") }
    }
}

/// What the form held.
pub struct ParsedForm {
    pub form: RegistrationForm,
    pub invoice: Result<ReceivedInvoice, FieldError>,
}

/// Whose file the `invoice` part becomes.
#[derive(Debug, Clone, Copy)]
pub enum FileFor {
    /// Version `version` of a product's invoice.
    Product { id: ProductId, version: u32 },
    /// An intake's invoice.
    Intake(ProductId),
}

/// Reads the whole form, streaming the `invoice` part into the store. Returns early with
/// 413/415/503 when the invoice cannot be accepted at all; nothing is left in the store then.
pub async fn read_form(
    body: BodyStream,
    boundary: String,
    store: &dyn InvoiceStore,
    owner: &crate::domain::UserId,
    target: FileFor,
) -> Result<ParsedForm, ApiError> {
    let (stream, too_large) = pump(body);
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut form = RegistrationForm::default();
    let mut field_errors = Vec::new();
    let mut invoice: Option<Result<ReceivedInvoice, FieldError>> = None;
    let mut parts = 0usize;

    let result: Result<(), ApiError> = async {
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(malformed(e, &too_large)),
            };
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::BadRequest {
                    code: "multipart_malformed",
                    detail: format!("A registration has at most {MAX_PARTS} parts."),
                });
            }
            let name = field.name().unwrap_or("").to_owned();
            match name.as_str() {
                "invoice" => {
                    if invoice.is_some() {
                        field_errors.push(FieldError::new(
                            "invoice",
                            "field_duplicated",
                            "send exactly one `invoice` file",
                        ));
                        continue;
                    }
                    let file_name = field.file_name().map(str::to_owned);
                    let mut intake = match target {
                        FileFor::Product { id, version } => {
                            InvoiceIntake::new(store, owner, id, file_name).with_version(version)
                        }
                        FileFor::Intake(id) => InvoiceIntake::new(store, owner, id, file_name).for_intake(),
                    };
                    let mut field = field;
                    loop {
                        match field.chunk().await {
                            Ok(Some(chunk)) => match intake.push(&chunk).await {
                                Ok(()) => {}
                                Err(e) => return Err(e.into()),
                            },
                            Ok(None) => break,
                            Err(e) => {
                                intake.discard().await;
                                return Err(malformed(e, &too_large));
                            }
                        }
                    }
                    invoice = Some(match intake.finish().await {
                        Ok(Finished::Received(r)) => Ok(r),
                        Ok(Finished::Empty) => {
                            Err(FieldError::new("invoice", "invoice_empty", "the invoice file is empty"))
                        }
                        Err(e) => return Err(e.into()),
                    });
                }
                text if ProductField::from_name(text).and_then(|f| form.slot(f)).is_some() => {
                    let product_field = ProductField::from_name(text).expect("checked above");
                    let field_name = product_field.name();
                    let slot = form.slot(product_field).expect("checked above");
                    let value = read_text(field, field_name, &too_large).await?;
                    match value {
                        Err(e) => field_errors.push(e),
                        Ok(_) if slot.is_some() => field_errors.push(FieldError::new(
                            field_name,
                            "field_duplicated",
                            format!("send `{field_name}` once"),
                        )),
                        Ok(v) => *slot = Some(v),
                    }
                }
                "intakeId" => {
                    let value = read_text(field, "intakeId", &too_large).await?;
                    match value {
                        Err(e) => field_errors.push(e),
                        Ok(_) if form.intake_id.is_some() => {
                            field_errors.push(FieldError::new("intakeId", "field_duplicated", "send `intakeId` once"))
                        }
                        Ok(v) => form.intake_id = Some(v),
                    }
                }
                // Unknown parts are skipped (multer discards their content on the next call).
                _ => {}
            }
        }
        Ok(())
    }
    .await;

    match result {
        Ok(()) => Ok(ParsedForm {
            form: RegistrationForm { transport_errors: field_errors, ..form },
            invoice: invoice.unwrap_or_else(|| {
                Err(FieldError::new("invoice", "invoice_missing", "attach the invoice as the file field `invoice`"))
            }),
        }),
        Err(e) => {
            if let Some(Ok(received)) = invoice {
                received.abort().await;
            }
            Err(e)
        }
    }
}

async fn read_text(
    mut field: multer::Field<'static>,
    name: &'static str,
    too_large: &AtomicBool,
) -> Result<Result<String, FieldError>, ApiError> {
    let mut buf = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > TEXT_FIELD_MAX {
                    return Ok(Err(FieldError::new(name, "field_too_long", format!("`{name}` is too long"))));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(if too_large.load(Ordering::SeqCst) {
                    ApiError::InvoiceTooLarge
                } else {
                    ApiError::BadRequest {
                        code: "multipart_malformed",
                        detail: format!("The multipart body is malformed: {e}."),
                    }
                });
            }
        }
    }
    Ok(String::from_utf8(buf)
        .map_err(|_| FieldError::new(name, "field_invalid_encoding", format!("`{name}` is not UTF-8 text"))))
}
