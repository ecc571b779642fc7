//! `warranty ocr-eval`: measures the invoice reader on documents with known truth.
//!
//! It runs exactly what the OCR handler runs — the same readers ([`InvoiceReaders`]), the same
//! interpretation ([`ocr::interpret`]) and the same decision ([`ocr::decide`]) — over a folder
//! with a `ground-truth.jsonl` (one JSON object per document: `file`, `kind`, and the truth
//! `seller`, `date_raw`, `total`, `currency`, optionally `invoice_number`), and reports per kind
//! and per field how many were read right, the status distribution, the precision of
//! `completed`, a confidence calibration table and the time per document.
//!
//! Normalisation (documented in docs/benchmarks.md, applied to truth and reading alike):
//! - date: the truth's `date_raw` is parsed with a fixed list of printed forms (ISO, compact
//!   `yyyymmdd`, day-first `dd/mm/yyyy`, `dd-mm-yy`, `dd.mm.yyyy`, `dd MMM yyyy`, …) and compared
//!   as a calendar date;
//! - total: digits, sign and decimal point of the truth, compared in cents;
//! - seller and invoice number: upper-cased, accents folded, only letters and digits kept;
//! - currency: the ISO 4217 code.
//!
//! The card's status needs a registration; the evaluation registers the document's own truth
//! (purchase date = invoice date, brand, model and serial number taken as present), so a
//! `completed` here is what the user would see for a correctly registered product.
//!
//! `--derive` adds kinds made from the PDFs without losing their truth: `+text-layer` (a hybrid
//! PDF read with its XML ignored) and `+scan` (its pages rendered and OCRed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use serde_json::Value;

use crate::adapters::ocr::einvoice;
use crate::adapters::ocr::{InvoiceReaders, ReadOptions};
use crate::application::ocr::{self, Decision};
use crate::domain::extraction::{TextLine, fold};
use crate::domain::ocr::{Amount, Check, DocumentClass, InvoiceFields, MatchResults, OcrEngineKind};
use crate::domain::{InvoiceKind, Sniffed};
use crate::ports::{EngineReading, Reading};

/// The fields scored, in report order.
pub const FIELDS: [&str; 5] = ["invoiceDate", "total", "seller", "currency", "invoiceNumber"];

/// One document's truth, normalised.
#[derive(Debug, Clone)]
pub struct Truth {
    pub file: String,
    pub kind: String,
    pub date: Option<NaiveDate>,
    pub total: Option<Amount>,
    pub seller: Option<String>,
    pub currency: Option<String>,
    pub invoice_number: Option<String>,
}

/// Upper-case, accents folded, letters and digits only.
pub fn normalise_text(s: &str) -> String {
    fold(s).chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).collect()
}

/// A printed date in one of the forms ground-truth files use (day first where ambiguous).
pub fn parse_truth_date(raw: &str) -> Option<NaiveDate> {
    // Day first before year first: chrono's %Y takes a two-digit year too, so "12/03/18" must
    // meet "%d/%m/%Y" (day 12) before "%Y/%m/%d" (year 12).
    const FORMS: [&str; 16] = [
        "%d/%m/%Y",
        "%d-%m-%Y",
        "%d.%m.%Y",
        "%d %b %Y",
        "%d-%b-%Y",
        "%d/%b/%Y",
        "%d %B %Y",
        "%B %d, %Y",
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y%m%d",
        "%d/%m/%y",
        "%d-%m-%y",
        "%d.%m.%y",
        "%d %b %y",
        "%d-%b-%y",
    ];
    let raw = raw.trim();
    // chrono's %Y also takes two digits: a two-digit year is 19xx or 20xx like on receipts.
    FORMS.iter().find_map(|f| NaiveDate::parse_from_str(raw, f).ok()).and_then(|d| match d.year() {
        0..=69 => d.with_year(d.year() + 2000),
        70..=99 => d.with_year(d.year() + 1900),
        _ => Some(d),
    })
}

/// A printed total ("RM 9.00", "$12.50", "-782179.43") in cents.
pub fn parse_truth_amount(raw: &str) -> Option<Amount> {
    let kept: String = raw.chars().filter(|c| c.is_ascii_digit() || matches!(c, '.' | '-')).collect();
    Amount::parse_decimal(&kept)
}

impl Truth {
    pub fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| v[k].as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        Some(Self {
            file: s("file")?,
            kind: s("kind").unwrap_or_else(|| "unknown".into()),
            date: s("date_raw").as_deref().and_then(parse_truth_date),
            total: s("total").as_deref().and_then(parse_truth_amount),
            seller: s("seller").map(|t| normalise_text(&t)).filter(|t| !t.is_empty()),
            currency: s("currency").map(|c| c.to_ascii_uppercase()),
            invoice_number: s("invoice_number").map(|t| normalise_text(&t)).filter(|t| !t.is_empty()),
        })
    }
}

/// One field of one document.
#[derive(Debug, Clone, Serialize)]
pub struct FieldScore {
    pub expected: Option<String>,
    pub got: Option<String>,
    pub confidence: Option<f32>,
    pub right: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentResult {
    pub file: String,
    pub kind: String,
    pub engine: Option<OcrEngineKind>,
    /// `completed`, `needs_review`, or `failed:{reason}`.
    pub status: String,
    pub uncertain: Vec<String>,
    pub fields: BTreeMap<&'static str, FieldScore>,
    pub seconds: f64,
    /// The model a second opinion would ask for (`receipt` or `invoice`), from the text read
    /// (none for stand-alone XML, which is never sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<DocumentClass>,
}

fn score_fields(truth: &Truth, got: &InvoiceFields) -> BTreeMap<&'static str, FieldScore> {
    let mut out = BTreeMap::new();
    let mut put = |name: &'static str, expected: Option<String>, got: Option<(String, f32)>| {
        if let Some(expected) = expected {
            let right = got.as_ref().is_some_and(|(g, _)| *g == expected);
            out.insert(
                name,
                FieldScore {
                    expected: Some(expected),
                    confidence: got.as_ref().map(|g| g.1),
                    got: got.map(|g| g.0),
                    right,
                },
            );
        }
    };
    put(
        "invoiceDate",
        truth.date.map(|d| d.to_string()),
        got.invoice_date.as_ref().map(|f| (f.value.to_string(), f.confidence)),
    );
    put(
        "total",
        truth.total.map(|a| a.to_decimal_string()),
        got.total.as_ref().map(|f| (f.value.to_decimal_string(), f.confidence)),
    );
    put("seller", truth.seller.clone(), got.seller.as_ref().map(|f| (normalise_text(&f.value), f.confidence)));
    put("currency", truth.currency.clone(), got.currency.as_ref().map(|f| (f.value.clone(), f.confidence)));
    put(
        "invoiceNumber",
        truth.invoice_number.clone(),
        got.invoice_number.as_ref().map(|f| (normalise_text(&f.value), f.confidence)),
    );
    out
}

/// What the card would say for a product registered with the document's own truth.
fn decide_for_truth(truth: &Truth, fields: &InvoiceFields, tolerance_days: u32) -> Decision {
    let purchase_date = match (&fields.invoice_date, truth.date) {
        (None, _) => Check::NotFound,
        (Some(d), Some(t)) if (d.value - t).num_days().unsigned_abs() <= u64::from(tolerance_days) => Check::Matched,
        (Some(_), _) => Check::Mismatch,
    };
    let matches =
        MatchResults { purchase_date, serial_number: Check::Matched, brand: Check::Matched, model: Check::Matched };
    ocr::decide(fields, &matches)
}

/// A variant of a document to read.
#[derive(Debug, Clone)]
struct Job {
    truth: Truth,
    path: PathBuf,
    kind: String,
    options: ReadOptions,
}

/// The document's reading, and its kind (none for stand-alone XML).
async fn read_one(readers: &InvoiceReaders, job: &Job) -> Result<(Option<InvoiceKind>, EngineReading), String> {
    let bytes = bytes::Bytes::from(tokio::fs::read(&job.path).await.map_err(|e| e.to_string())?);
    match InvoiceKind::sniff(&bytes[..bytes.len().min(16)]) {
        Sniffed::Kind(kind) => {
            readers.read_with(kind, bytes, job.options).await.map(|r| (Some(kind), r)).map_err(|e| match e {
                crate::ports::ReadError::Permanent { reason, .. } => reason.to_owned(),
                other => other.to_string(),
            })
        }
        // Stand-alone XML (XRechnung, UBL, CII): the parser the PDF path uses for attachments.
        _ => einvoice::parse(&bytes)
            .map(|(fields, text)| {
                (
                    None,
                    EngineReading { engine: OcrEngineKind::EmbeddedXml, reading: Reading::Structured { fields, text } },
                )
            })
            .ok_or_else(|| "not_an_einvoice".to_owned()),
    }
}

async fn evaluate(readers: &InvoiceReaders, job: Job, tolerance_days: u32, show: Option<&str>) -> DocumentResult {
    let start = Instant::now();
    let reading = read_one(readers, &job).await;
    let seconds = start.elapsed().as_secs_f64();
    let empty = InvoiceFields::default();
    let (engine, status, uncertain, fields, class) = match reading {
        Ok((kind, r)) => {
            let engine = r.engine;
            if show.is_some_and(|s| job.truth.file.contains(s)) {
                let readings: Vec<&Vec<TextLine>> = match &r.reading {
                    Reading::Text { lines, .. } => vec![lines],
                    Reading::Checked { readings, .. } => readings.iter().collect(),
                    Reading::Structured { .. } => Vec::new(),
                };
                eprintln!("== {} ({})", job.truth.file, job.kind);
                for (i, lines) in readings.into_iter().enumerate() {
                    let f = crate::domain::extraction::extract(lines);
                    eprintln!(
                        "-- reading {} of {:?}: date {:?}, total {:?}, seller {:?}",
                        i + 1,
                        r.engine,
                        f.invoice_date.map(|d| (d.value, d.confidence)),
                        f.total.map(|t| (t.value.to_decimal_string(), t.confidence)),
                        f.seller.map(|s| (s.value, s.confidence)),
                    );
                    for l in lines {
                        let cells: Vec<String> = l.cells.iter().map(|c| format!("{}@{:.0}", c.text, c.left)).collect();
                        eprintln!(
                            "{:>5.0} {:.2} | {}",
                            l.top,
                            l.confidence,
                            if cells.is_empty() { l.text.clone() } else { cells.join(" | ") }
                        );
                    }
                }
            }
            let (fields, text) = ocr::interpret(r);
            let d = decide_for_truth(&job.truth, &fields, tolerance_days);
            // The status as the card spells it.
            let status =
                serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let class = kind.map(|k| crate::domain::extraction::document_class(k, &text));
            (Some(engine), status, d.uncertain, score_fields(&job.truth, &fields), class)
        }
        Err(reason) => (None, format!("failed:{reason}"), Vec::new(), score_fields(&job.truth, &empty), None),
    };
    DocumentResult { file: job.truth.file.clone(), kind: job.kind, engine, status, uncertain, fields, seconds, class }
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub corpus: PathBuf,
    /// Also read the PDFs as text-layer PDFs and as scans.
    pub derive: bool,
    /// Only kinds whose name contains one of these.
    pub kinds: Vec<String>,
    /// At most this many documents per truth kind.
    pub limit: Option<usize>,
    /// Documents read at once.
    pub jobs: usize,
    pub date_tolerance_days: u32,
    /// Print the lines read from documents whose file name contains this (development).
    pub show: Option<String>,
}

fn jobs(opts: &EvalOptions) -> Result<Vec<Job>, String> {
    let gt = opts.corpus.join("ground-truth.jsonl");
    let text = std::fs::read_to_string(&gt).map_err(|e| format!("{}: {e}", gt.display()))?;
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", gt.display(), n + 1))?;
        let truth = Truth::from_json(&v).ok_or_else(|| format!("{}:{}: no `file`", gt.display(), n + 1))?;
        let count = per_kind.entry(truth.kind.clone()).or_default();
        if opts.limit.is_some_and(|l| *count >= l) {
            continue;
        }
        *count += 1;
        let path = opts.corpus.join(&truth.file);
        let is_pdf = truth.file.to_ascii_lowercase().ends_with(".pdf");
        let mut variants = vec![(truth.kind.clone(), ReadOptions::default())];
        if opts.derive && is_pdf {
            variants.push((
                format!("{}+text-layer", truth.kind),
                ReadOptions { skip_embedded_xml: true, skip_text_layer: false },
            ));
            variants
                .push((format!("{}+scan", truth.kind), ReadOptions { skip_embedded_xml: true, skip_text_layer: true }));
        }
        for (kind, options) in variants {
            if opts.kinds.is_empty() || opts.kinds.iter().any(|k| kind.contains(k.as_str())) {
                out.push(Job { truth: truth.clone(), path: path.clone(), kind, options });
            }
        }
    }
    Ok(out)
}

/// Per kind: fields right, statuses, precision of `completed`, calibration, time.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindSummary {
    pub documents: usize,
    /// field → (right, scored)
    pub fields: BTreeMap<&'static str, (usize, usize)>,
    pub statuses: BTreeMap<String, usize>,
    /// Completed cards whose date and total are both right / completed cards (among documents
    /// whose truth has both).
    pub completed_right: usize,
    pub completed: usize,
    /// Confidence band → (right, read) over the date and total fields.
    pub calibration: BTreeMap<&'static str, (usize, usize)>,
    pub seconds_mean: f64,
    pub seconds_max: f64,
}

const BANDS: [(f32, &str); 6] = [
    (0.0, "0.00-0.50"),
    (0.5, "0.50-0.70"),
    (0.7, "0.70-0.80"),
    (0.8, "0.80-0.90"),
    (0.9, "0.90-0.95"),
    (0.95, "0.95-1.00"),
];

fn band(c: f32) -> &'static str {
    BANDS.iter().rev().find(|(lo, _)| c >= *lo).map_or(BANDS[0].1, |(_, n)| n)
}

pub fn summarise(results: &[DocumentResult]) -> BTreeMap<String, KindSummary> {
    let mut out: BTreeMap<String, KindSummary> = BTreeMap::new();
    for r in results {
        let s = out.entry(r.kind.clone()).or_default();
        s.documents += 1;
        for (name, f) in &r.fields {
            let e = s.fields.entry(name).or_default();
            e.1 += 1;
            e.0 += usize::from(f.right);
            if matches!(*name, "invoiceDate" | "total")
                && let Some(c) = f.confidence
            {
                let b = s.calibration.entry(band(c)).or_default();
                b.1 += 1;
                b.0 += usize::from(f.right);
            }
        }
        let status = r.status.split(':').next().unwrap_or_default().to_owned();
        *s.statuses.entry(status).or_default() += 1;
        // Precision is judged where the truth has both a date and a total.
        let judged = r.fields.contains_key("invoiceDate") && r.fields.contains_key("total");
        if r.status == "completed" && judged {
            s.completed += 1;
            let right = |n: &str| r.fields.get(n).is_some_and(|f| f.right);
            s.completed_right += usize::from(right("invoiceDate") && right("total"));
        }
        s.seconds_mean += r.seconds;
        s.seconds_max = s.seconds_max.max(r.seconds);
    }
    for s in out.values_mut() {
        s.seconds_mean /= s.documents.max(1) as f64;
    }
    out
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 { "–".into() } else { format!("{:.1} %", 100.0 * a as f64 / b as f64) }
}

/// The report as Markdown tables (what `docs/benchmarks.md` records).
pub fn render(summary: &BTreeMap<String, KindSummary>) -> String {
    let mut o = String::new();
    o.push_str("| kind | docs | ");
    o.push_str(&FIELDS.join(" | "));
    o.push_str(" | completed | precision of completed | needs_review | failed | s/doc (mean, max) |\n|---|---|");
    o.push_str(&"---|".repeat(FIELDS.len() + 5));
    o.push('\n');
    for (kind, s) in summary {
        o.push_str(&format!("| {kind} | {} |", s.documents));
        for f in FIELDS {
            let (r, n) = s.fields.get(f).copied().unwrap_or_default();
            if n == 0 {
                o.push_str(" – |");
            } else {
                o.push_str(&format!(" {r}/{n} ({}) |", pct(r, n)));
            }
        }
        let st = |k: &str| s.statuses.get(k).copied().unwrap_or_default();
        o.push_str(&format!(
            " {} ({}) | {}/{} ({}) | {} | {} | {:.2}, {:.2} |\n",
            s.completed,
            pct(s.completed, s.documents),
            s.completed_right,
            s.completed,
            pct(s.completed_right, s.completed),
            st("needs_review"),
            st("failed"),
            s.seconds_mean,
            s.seconds_max
        ));
    }
    o.push_str("\nConfidence calibration (date and total fields; right / read per band):\n\n| kind |");
    for (_, b) in BANDS {
        o.push_str(&format!(" {b} |"));
    }
    o.push_str("\n|---|");
    o.push_str(&"---|".repeat(BANDS.len()));
    o.push('\n');
    for (kind, s) in summary {
        o.push_str(&format!("| {kind} |"));
        for (_, b) in BANDS {
            let (r, n) = s.calibration.get(b).copied().unwrap_or_default();
            o.push_str(&if n == 0 { " – |".to_owned() } else { format!(" {r}/{n} |") });
        }
        o.push('\n');
    }
    o
}

/// Runs the evaluation; results in corpus order.
pub async fn run(readers: Arc<InvoiceReaders>, opts: &EvalOptions) -> Result<Vec<DocumentResult>, String> {
    let jobs = jobs(opts)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let total = jobs.len();
    let mut handles = Vec::with_capacity(total);
    for job in jobs {
        let (readers, sem, tol, show) = (readers.clone(), sem.clone(), opts.date_tolerance_days, opts.show.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            evaluate(&readers, job, tol, show.as_deref()).await
        }));
    }
    let mut out = Vec::with_capacity(total);
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await.map_err(|e| format!("evaluation task failed: {e}"))?;
        eprintln!("[{}/{}] {} {} {}", i + 1, total, r.kind, r.status, r.file);
        out.push(r);
    }
    Ok(out)
}

/// Writes the JSON report (summary and every document).
pub fn write_json(path: &Path, summary: &BTreeMap<String, KindSummary>, docs: &[DocumentResult]) -> Result<(), String> {
    let v = serde_json::json!({ "summary": summary, "documents": docs });
    std::fs::write(path, serde_json::to_vec_pretty(&v).expect("json")).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_dates_in_every_printed_form() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day);
        for (raw, want) in [
            ("12/03/18", d(2018, 3, 12)),
            ("12-01-19", d(2019, 1, 12)),
            ("25/12/2018", d(2018, 12, 25)),
            ("2018-03-05", d(2018, 3, 5)),
            ("2018/03/05", d(2018, 3, 5)),
            ("20180305", d(2018, 3, 5)),
            ("05 MAR 2018", d(2018, 3, 5)),
            ("05 Mar 18", d(2018, 3, 5)),
            ("05-MAR-2018", d(2018, 3, 5)),
            ("05.03.18", d(2018, 3, 5)),
            ("August 3, 2014", d(2014, 8, 3)),
        ] {
            assert_eq!(parse_truth_date(raw), want, "{raw}");
        }
        assert_eq!(parse_truth_date("not a date"), None);
    }

    #[test]
    fn truth_totals_and_names_are_normalised() {
        assert_eq!(parse_truth_amount("RM 9.00"), Some(Amount(900)));
        assert_eq!(parse_truth_amount("$12.5"), Some(Amount(1250)));
        assert_eq!(parse_truth_amount("-782179.43"), Some(Amount(-78_217_943)));
        assert_eq!(normalise_text("MR D.I.Y. (JOHOR) SDN BHD"), "MRDIYJOHORSDNBHD");
        assert_eq!(normalise_text("Säljarnamnet"), "SALJARNAMNET");
    }

    #[test]
    fn the_summary_counts_precision_and_calibration() {
        let field = |right: bool, conf: f32| FieldScore {
            expected: Some("x".into()),
            got: Some("x".into()),
            confidence: Some(conf),
            right,
        };
        let doc = |status: &str, date_ok: bool, total_ok: bool| DocumentResult {
            file: "f".into(),
            kind: "k".into(),
            engine: None,
            status: status.into(),
            uncertain: vec![],
            fields: BTreeMap::from([("invoiceDate", field(date_ok, 0.96)), ("total", field(total_ok, 0.85))]),
            seconds: 1.0,
            class: None,
        };
        let s = summarise(&[
            doc("completed", true, true),
            doc("completed", true, false),
            doc("needs_review", false, false),
        ]);
        let k = &s["k"];
        assert_eq!((k.completed_right, k.completed), (1, 2));
        assert_eq!(k.fields["total"], (1, 3));
        assert_eq!(k.calibration["0.95-1.00"], (2, 3));
        assert_eq!(k.calibration["0.80-0.90"], (1, 3));
        assert_eq!(k.statuses["needs_review"], 1);
        assert!(render(&s).contains("| k | 3 |"));
    }
}
