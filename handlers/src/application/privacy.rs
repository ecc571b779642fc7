//! A user's data is theirs: all of it as one archive (GDPR art. 15 and 20), and all of it erased
//! (art. 17).
//!
//! **Export** streams a ZIP: the archive is produced entry by entry into a bounded channel the
//! HTTP body reads from, so memory holds a few chunks whatever the size; a client that goes away
//! closes the channel and the export stops (it writes nothing anywhere, so nothing is left).
//! The Functions host holds a forwarded answer whole before sending it on, so over HTTP the
//! archive comes in **parts** of at most a budget of files each ([`plan_part`]): the first part
//! has every record (products, notifications, settings) and the first products' files, each
//! later part the next products' files, continuing after the last product of the part before in
//! the list's stable order (products registered meanwhile are not in an export already begun).
//!
//! **Erasure** first records that it started (a user record `erasure`, the one record it keeps
//! until the end), then removes push installations, each product's files and then its record
//! (files first: a crash in between leaves a product to erase again, never a file without one),
//! then everything else of the user, and the marker last. Every step is idempotent; a crashed
//! erasure is found by its marker and resumed (`resume_pending`, run at start and periodically).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Services, notifications, reminders};
use crate::archive::{Method, ZipWriter};
use crate::domain::{ProductRecord, UserId};
use crate::ports::{ListCursor, Unavailable};

/// The user record marking an erasure in progress.
pub const ERASURE_RECORD: &str = "erasure";
/// What `DELETE /api/me` must be sent to go ahead.
pub const CONFIRMATION: &str = "delete my data";

/// Products read per page by the export and the erasure.
const PAGE: usize = 50;

/// The export stopped: the client went away, or a store failed mid-way (the archive is then cut
/// short, and the client sees the transfer fail).
#[derive(Debug, thiserror::Error)]
pub enum ExportStopped {
    #[error("the client went away")]
    Disconnected,
    #[error(transparent)]
    Store(#[from] Unavailable),
}

/// Where the archive's bytes go.
struct Sink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    zip: ZipWriter,
    sent: u64,
}

impl Sink {
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), ExportStopped> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.sent += bytes.len() as u64;
        self.tx.send(Ok(Bytes::from(bytes))).await.map_err(|_| ExportStopped::Disconnected)
    }

    async fn start(&mut self, name: &str, method: Method) -> Result<(), ExportStopped> {
        let h = self.zip.start(name, method);
        self.send(h).await
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ExportStopped> {
        let out = self.zip.write(data).map_err(|e| Unavailable::new("export", e))?;
        self.send(out).await
    }

    async fn finish(&mut self) -> Result<(), ExportStopped> {
        let out = self.zip.finish().map_err(|e| Unavailable::new("export", e))?;
        self.send(out).await
    }

    async fn entry(&mut self, name: &str, data: &[u8]) -> Result<(), ExportStopped> {
        self.start(name, Method::Deflated).await?;
        self.write(data).await?;
        self.finish().await
    }
}

const README: &str = "Your warranty data, exported on {date}.

products.json      every product in full: the card's fields, coverages, service requests,
                   the whole audit trail and what was read from the invoice (OCR)
products.csv       one row per product, for a spreadsheet
invoices/          each product's invoice: {purchase date}_{product id}_v{version}.{ext}
proofs/            each coverage's proof document: {product id}_{coverage id}.{ext}
intakes.json       invoices uploaded to have the registration form proposed (kept 24 hours,
                   then 30 days without their file): what was read and proposed, and the
                   products registered from each
intakes/           each intake's invoice while it is kept: {intake id}.{ext}
notifications.json your expiry reminders
settings.json      your reminder settings, calendar feed and push devices

Dates are ISO 8601 (UTC where a time is given). The SHA-256 of each invoice is in products.json
(invoice.sha256) and products.csv, so you can check the files.
";

const PART_README: &str = "Part {part} of your warranty data export of {date}: the invoices and proof
documents of the next products. products.json, products.csv, intakes.json, notifications.json and
settings.json are in part 1.
";

/// One part of the export: the files of the products after `after` up to and including `last`
/// (in the list's order); `next` is where the following part starts, if one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPart {
    pub number: u32,
    pub after: Option<ListCursor>,
    pub last: Option<ListCursor>,
    pub next: Option<ListCursor>,
}

impl ExportPart {
    /// The whole archive in one part (the support tool's export).
    pub fn whole() -> Self {
        Self { number: 1, after: None, last: None, next: None }
    }
}

/// Bytes of files a product brings to the archive: its invoice and its coverages' proofs.
fn files_size(p: &ProductRecord) -> u64 {
    p.invoice.size_bytes + p.coverages().iter().filter_map(|c| c.proof.as_ref()).map(|f| f.size_bytes).sum::<u64>()
}

/// The part that starts after `after`: products whose files add up to at most `budget` bytes
/// (always at least one product, whatever its size). Reads records only.
pub async fn plan_part(
    services: &Services,
    user: &UserId,
    number: u32,
    after: Option<ListCursor>,
    budget: u64,
) -> Result<ExportPart, Unavailable> {
    let mut pages = ProductPages::starting(services, user, after.clone());
    let (mut total, mut last, mut count) = (0u64, None, 0usize);
    while let Some(page) = pages.next().await? {
        for p in &page {
            let size = files_size(p);
            if count > 0 && total + size > budget {
                return Ok(ExportPart { number, after, next: last.clone(), last });
            }
            total += size;
            count += 1;
            last = Some(ListCursor { created_at: p.created_at, id: p.id });
        }
    }
    Ok(ExportPart { number, after, last, next: None })
}

/// The user's products a page at a time, newest first.
struct ProductPages<'a> {
    services: &'a Services,
    user: &'a UserId,
    after: Option<ListCursor>,
    done: bool,
}

impl<'a> ProductPages<'a> {
    fn new(services: &'a Services, user: &'a UserId) -> Self {
        Self::starting(services, user, None)
    }

    fn starting(services: &'a Services, user: &'a UserId, after: Option<ListCursor>) -> Self {
        Self { services, user, after, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<ProductRecord>>, Unavailable> {
        if self.done {
            return Ok(None);
        }
        let page = self.services.products.list(self.user, self.after.as_ref(), PAGE).await?;
        self.done = page.len() < PAGE;
        self.after = page.last().map(|p| ListCursor { created_at: p.created_at, id: p.id });
        Ok(Some(page))
    }
}

impl Sink {
    /// One element of a JSON array being written (`[` and `]` are the caller's).
    async fn element(&mut self, first: &mut bool, json: Vec<u8>) -> Result<(), ExportStopped> {
        self.write(if *first { b"\n" } else { b",\n" }).await?;
        *first = false;
        self.write(&json).await
    }
}

/// A product as the export shows it: everything stored, without the stores' own locations.
pub fn exported(product: &ProductRecord) -> Value {
    let mut v = serde_json::to_value(product).expect("a product serialises");
    if let Some(inv) = v.get_mut("invoice").and_then(Value::as_object_mut) {
        inv.remove("location");
    }
    if let Some(coverages) = v.get_mut("coverages").and_then(Value::as_array_mut) {
        for c in coverages {
            if let Some(proof) = c.get_mut("proof").and_then(Value::as_object_mut) {
                proof.remove("location");
            }
        }
    }
    v["coveredUntil"] = json!(crate::domain::coverage::covered_until(&product.coverages()));
    v
}

/// One CSV field (RFC 4180), with a leading `'` before what a spreadsheet would run as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

const CSV_COLUMNS: [&str; 15] = [
    "id",
    "brand",
    "model",
    "serialNumber",
    "purchaseDate",
    "warrantyMonths",
    "warrantyExpiresOn",
    "coveredUntil",
    "coverages",
    "serviceRequests",
    "ocrStatus",
    "invoiceFileName",
    "invoiceSha256",
    "createdAt",
    "notes",
];

fn csv_row(p: &ProductRecord) -> String {
    let v = serde_json::to_value(p).expect("a product serialises");
    let text = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let covered = crate::domain::coverage::covered_until(&p.coverages()).map(|d| d.to_string()).unwrap_or_default();
    let fields = [
        p.id.to_string(),
        p.brand.clone(),
        p.model.clone(),
        text("serialNumber"),
        text("purchaseDate"),
        p.warranty_months.to_string(),
        p.warranty_expires_on.to_string(),
        covered,
        p.coverages().len().to_string(),
        p.service_requests.len().to_string(),
        v["ocr"]["status"].as_str().unwrap_or_default().to_owned(),
        p.invoice.file_name.clone(),
        p.invoice.sha256.clone(),
        p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        p.notes.clone().unwrap_or_default(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// The archive's file name for `user` on `day`.
pub fn file_name(day: chrono::NaiveDate) -> String {
    format!("warranty-export-{day}.zip")
}

/// Streams the user's archive into `tx`. Returns the bytes sent.
pub async fn export(
    services: &Services,
    user: &UserId,
    part: &ExportPart,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<u64, ExportStopped> {
    let now = services.clock.now();
    let mut sink = Sink { tx, zip: ZipWriter::new(now), sent: 0 };
    // Every record is in the first part; later parts carry files only.
    let first = part.number == 1;
    let readme = if first { README.to_owned() } else { PART_README.replace("{part}", &part.number.to_string()) };
    sink.entry("README.txt", readme.replace("{date}", &now.date_naive().to_string()).as_bytes()).await?;
    if first {
        products(services, &mut sink, user).await?;
        intakes(services, &mut sink, user).await?;
    }
    // The files of this part's products, streamed chunk by chunk.
    files(services, &mut sink, user, part).await?;
    if first {
        notifications_and_settings(services, &mut sink, user).await?;
    }
    let tail = sink.zip.close();
    sink.send(tail).await?;
    Ok(sink.sent)
}

/// `products.json` and `products.csv`, a page of products at a time.
async fn products(services: &Services, sink: &mut Sink, user: &UserId) -> Result<(), ExportStopped> {
    // products.json, a page at a time.
    sink.start("products.json", Method::Deflated).await?;
    sink.write(b"[").await?;
    let (mut pages, mut first) = (ProductPages::new(services, user), true);
    while let Some(page) = pages.next().await? {
        for p in &page {
            sink.element(&mut first, serde_json::to_vec_pretty(&exported(p)).expect("a product serialises")).await?;
        }
    }
    sink.write(b"\n]\n").await?;
    sink.finish().await?;

    // products.csv.
    sink.start("products.csv", Method::Deflated).await?;
    sink.write(format!("{}\r\n", CSV_COLUMNS.join(",")).as_bytes()).await?;
    let mut pages = ProductPages::new(services, user);
    while let Some(page) = pages.next().await? {
        for p in &page {
            sink.write(csv_row(p).as_bytes()).await?;
        }
    }
    sink.finish().await
}

/// `intakes.json` (invoices uploaded for invoice-first registration, with what was read from
/// them) and their files, `intakes/{id}.{ext}`, while they are kept.
async fn intakes(services: &Services, sink: &mut Sink, user: &UserId) -> Result<(), ExportStopped> {
    let intakes = services.products.intakes_of(user).await?;
    let docs: Vec<Value> = intakes
        .iter()
        .map(|i| {
            let mut doc = serde_json::to_value(i).expect("an intake serialises");
            if let Some(o) = doc.as_object_mut() {
                // Store-internal, like a product's.
                o.remove("revision");
                if let Some(inv) = o.get_mut("invoice").and_then(Value::as_object_mut) {
                    inv.remove("location");
                }
            }
            doc
        })
        .collect();
    sink.entry("intakes.json", &serde_json::to_vec_pretty(&docs).expect("intakes serialise")).await?;
    for i in intakes.iter().filter(|i| i.status != crate::domain::intake::IntakeStatus::Expired) {
        let name = format!("intakes/{}.{}", i.id, i.invoice.kind.extension());
        copy_file(services, sink, &name, &i.invoice.location).await?;
    }
    Ok(())
}

/// `notifications.json` and `settings.json`.
async fn notifications_and_settings(services: &Services, sink: &mut Sink, user: &UserId) -> Result<(), ExportStopped> {
    // notifications.json.
    sink.start("notifications.json", Method::Deflated).await?;
    sink.write(b"[").await?;
    let (mut after, mut first) = (None, true);
    loop {
        let page = services.reminders.store.feed(user, after.as_ref(), PAGE).await?;
        for r in &page {
            sink.element(&mut first, serde_json::to_vec_pretty(r).expect("a reminder serialises")).await?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                after = Some(crate::ports::FeedCursor { created_at: last.created_at, id: last.id.clone() })
            }
            _ => break,
        }
    }
    sink.write(b"\n]\n").await?;
    sink.finish().await?;

    // settings.json: what the user chose; secrets (the webhook's, the calendar feed's) stay out.
    let settings = notifications::get(services, user).await?;
    let calendar = services.products.user_record(user, super::calendar::RECORD).await?.map(|mut feed| {
        if let Some(o) = feed.as_object_mut() {
            o.remove("secretSha256");
        }
        feed
    });
    let devices: Vec<Value> = reminders::devices(services, user)
        .await?
        .iter()
        .map(|d| json!({"installationId": d.installation_id, "platform": d.platform, "registeredAt": d.registered_at}))
        .collect();
    let doc = json!({"notificationSettings": settings, "calendarFeed": calendar, "devices": devices});
    sink.entry("settings.json", &serde_json::to_vec_pretty(&doc).expect("settings serialise")).await
}

/// The invoices and proofs of the part's products, in the list's order.
async fn files(services: &Services, sink: &mut Sink, user: &UserId, part: &ExportPart) -> Result<(), ExportStopped> {
    let mut pages = ProductPages::starting(services, user, part.after.clone());
    while let Some(page) = pages.next().await? {
        for p in &page {
            let ext = p.invoice.kind.extension();
            let name = format!("invoices/{}_{}_v{}.{ext}", p.purchase_date.date(), p.id, p.invoice.version);
            copy_file(services, sink, &name, &p.invoice.location).await?;
            for c in p.coverages().iter() {
                if let Some(proof) = &c.proof {
                    let name = format!("proofs/{}_{}.{}", p.id, c.id, proof.kind.extension());
                    copy_file(services, sink, &name, &proof.location).await?;
                }
            }
            if part.last.as_ref().is_some_and(|l| l.id == p.id) {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn copy_file(services: &Services, sink: &mut Sink, name: &str, location: &str) -> Result<(), ExportStopped> {
    let Some(mut chunks) = services.invoices.open(location).await? else {
        tracing::warn!(location, "a file the product names is missing; left out of the export");
        return Ok(());
    };
    sink.start(name, Method::Stored).await?;
    while let Some(chunk) = chunks.next().await {
        sink.write(&chunk?).await?;
    }
    sink.finish().await
}

/// Whether an erasure of the user is in progress, and since when.
pub async fn erasure_status(services: &Services, user: &UserId) -> Result<Option<DateTime<Utc>>, Unavailable> {
    Ok(services
        .products
        .user_record(user, ERASURE_RECORD)
        .await?
        .and_then(|doc| doc.get("startedAt").and_then(|t| t.as_str()).and_then(|t| t.parse().ok())))
}

/// Records that the user's erasure started (keeping the first start time).
pub async fn begin_erasure(services: &Services, user: &UserId) -> Result<DateTime<Utc>, Unavailable> {
    if let Some(started) = erasure_status(services, user).await? {
        return Ok(started);
    }
    let now = services.clock.now();
    services.products.put_user_record(user, ERASURE_RECORD, &json!({ "startedAt": now })).await?;
    Ok(now)
}

/// Erases the user's data, at most `product_budget` products this call (`None`: all). Returns
/// true when everything is gone (the marker included).
pub async fn continue_erasure(
    services: &Services,
    user: &UserId,
    product_budget: Option<usize>,
) -> Result<bool, Unavailable> {
    // Push installations first: the devices list is one of the records erased below.
    if let Some(hub) = &services.reminders.push {
        for d in reminders::devices(services, user).await? {
            match hub.uninstall(&d.hub_id).await {
                Ok(()) | Err(crate::ports::SendFailure::Gone(_)) => {}
                Err(e) => return Err(Unavailable::new("push service", e)),
            }
        }
    }
    let mut left = product_budget.unwrap_or(usize::MAX);
    loop {
        let page = services.products.list(user, None, PAGE).await?;
        if page.is_empty() {
            // Intakes with their files, then every other record.
            super::intakes::erase(services, user).await?;
            services.products.erase_user_data(user, ERASURE_RECORD).await?;
            // A registration that raced the erasure goes round again rather than staying.
            if services.products.list(user, None, 1).await?.is_empty() {
                services.products.delete_user_record(user, ERASURE_RECORD).await?;
                return Ok(true);
            }
            continue;
        }
        for p in page {
            if left == 0 {
                return Ok(false);
            }
            erase_product(services, &p).await?;
            left -= 1;
        }
    }
}

/// One product: its files, then its record (with its queued OCR work).
async fn erase_product(services: &Services, p: &ProductRecord) -> Result<(), Unavailable> {
    let proofs = p.coverages.iter().filter_map(|c| c.proof.as_ref()).map(|pr| pr.location.clone());
    for location in std::iter::once(p.invoice.location.clone()).chain(proofs) {
        services.invoices.delete(&location).await?;
    }
    let mut revision = p.revision;
    loop {
        match services.products.delete(&p.user_id, p.id, revision).await {
            Ok(()) | Err(crate::ports::StoreError::Gone) => return Ok(()),
            Err(crate::ports::StoreError::Stale) => {
                // Changed meanwhile (an OCR result, an edit): its files may have changed too.
                match services.products.get(&p.user_id, p.id).await? {
                    None => return Ok(()),
                    Some(now) => {
                        if now.invoice.location != p.invoice.location {
                            services.invoices.delete(&now.invoice.location).await?;
                        }
                        for proof in now.coverages.iter().filter_map(|c| c.proof.as_ref()) {
                            services.invoices.delete(&proof.location).await?;
                        }
                        revision = now.revision;
                    }
                }
            }
            Err(crate::ports::StoreError::Unavailable(u)) => return Err(u),
            Err(other) => return Err(Unavailable::new("product store", other)),
        }
    }
}

/// Finishes every erasure a crash interrupted. Returns how many were finished.
pub async fn resume_pending(services: &Services) -> Result<usize, Unavailable> {
    let mut done = 0;
    for user in services.products.users_with_record(ERASURE_RECORD).await? {
        if continue_erasure(services, &user, None).await? {
            tracing::info!("an interrupted erasure was finished");
            done += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_run_as_formulas() {
        assert_eq!(csv_field("Dell"), "Dell");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-5"), "'-5");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
