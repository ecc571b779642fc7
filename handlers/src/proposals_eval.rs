//! `warranty proposals-eval`: measures invoice-first proposals on documents with known products.
//!
//! It runs what an intake runs — the same readers, [`ocr::interpret`], the same positioned
//! lines ([`ocr::lines_of`]) and [`proposals::propose`] with the bundled catalogue — over:
//! - a folder with a `proposals-truth.jsonl` (one JSON object per document: `file`, `kind`,
//!   `date` as YYYY-MM-DD, `products`: the catalogue products in the invoice's order, each
//!   `brand`, `model`, `serial` or null), such as `tools/proposals/write-invoices.py` writes;
//! - with `--einvoices CORPUS`, the hybrid e-invoice PDFs of a corpus with a `ground-truth.jsonl`
//!   (kind `einvoice-pdf`): the products are the line items of the embedded XML (their names,
//!   no brand, no serial) and the date the XML's; each PDF is read as uploaded (its XML read)
//!   and with its XML ignored (`+text-layer`, from its printed text, as an upload of the
//!   printout would be).
//!
//! Scoring, per truth product: the proposal for it is the first unused one with its brand (a
//! product without a brand: the first unused one whose model names the same thing); **brand**
//! right when one is found, **model** right when the proposal's model equals the truth's (upper-
//! cased, accents folded, letters and digits only), **serial** right when equal (no serial in
//! the truth: right when none is proposed), **date** right per document; **all four** when every
//! one is right. Proposals matched to no truth product are counted as extra.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::Value;

use crate::adapters::ocr::{InvoiceReaders, ReadOptions};
use crate::application::ocr;
use crate::domain::proposals::{Proposals, propose};
use crate::domain::{BrandCatalog, InvoiceKind, Sniffed};
use crate::ocr_eval::normalise_text;
use crate::ports::Reading;

#[derive(Debug, Clone)]
struct TruthProduct {
    brand: Option<String>,
    model: String,
    serial: Option<String>,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    kind: String,
    path: PathBuf,
    date: Option<NaiveDate>,
    products: Vec<TruthProduct>,
    options: ReadOptions,
}

/// One document's score.
#[derive(Debug, Clone, Default)]
pub struct CaseResult {
    pub name: String,
    pub kind: String,
    pub products: usize,
    pub brand: usize,
    pub model: usize,
    pub serial: usize,
    pub all: usize,
    pub extra: usize,
    pub date: Option<bool>,
    pub seconds: f64,
    pub failed: Option<String>,
    /// What was proposed where the truth differs (for the report's list of misses).
    pub misses: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ProposalsEvalOptions {
    pub folder: Option<PathBuf>,
    pub einvoices: Option<PathBuf>,
    pub jobs: usize,
    /// Print the proposals of documents whose name contains this (to stderr).
    pub show: Option<String>,
}

fn product(v: &Value) -> Option<TruthProduct> {
    Some(TruthProduct {
        brand: v["brand"].as_str().map(str::to_owned),
        model: v["model"].as_str()?.to_owned(),
        serial: v["serial"].as_str().map(str::to_owned),
    })
}

fn folder_cases(folder: &Path) -> Result<Vec<Case>, String> {
    let path = folder.join("proposals-truth.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let file = v["file"].as_str().ok_or_else(|| format!("{}:{}: no `file`", path.display(), n + 1))?;
        out.push(Case {
            name: file.to_owned(),
            kind: v["kind"].as_str().unwrap_or("written").to_owned(),
            path: folder.join(file),
            date: v["date"].as_str().and_then(|d| d.parse().ok()),
            products: v["products"].as_array().into_iter().flatten().filter_map(product).collect(),
            options: ReadOptions::default(),
        });
    }
    Ok(out)
}

/// The corpus's hybrid e-invoice PDFs, their products and date taken from the embedded XML.
async fn einvoice_cases(readers: &InvoiceReaders, corpus: &Path) -> Result<Vec<Case>, String> {
    let path = corpus.join("ground-truth.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(file), Some("einvoice-pdf")) = (v["file"].as_str(), v["kind"].as_str()) else { continue };
        let pdf = corpus.join(file);
        let bytes = bytes::Bytes::from(std::fs::read(&pdf).map_err(|e| format!("{}: {e}", pdf.display()))?);
        let Ok(reading) = readers.read_with(InvoiceKind::Pdf, bytes, ReadOptions::default()).await else { continue };
        let Reading::Structured { fields, .. } = reading.reading else { continue };
        let products: Vec<TruthProduct> = fields
            .line_items
            .iter()
            .filter(|i| !i.description.trim().is_empty())
            .map(|i| TruthProduct { brand: None, model: i.description.clone(), serial: None })
            .collect();
        if products.is_empty() {
            continue;
        }
        // As uploaded (its XML read), and as a printout of it would be (its text layer).
        let date = fields.invoice_date.map(|d| d.value);
        for (kind, skip_embedded_xml) in [("einvoice-pdf", false), ("einvoice-pdf+text-layer", true)] {
            out.push(Case {
                name: file.to_owned(),
                kind: kind.into(),
                path: pdf.clone(),
                date,
                products: products.clone(),
                options: ReadOptions { skip_embedded_xml, skip_text_layer: false },
            });
        }
    }
    Ok(out)
}

/// Whether a proposed model names the truth's product (for matching products without a brand).
fn same_thing(proposed: &str, truth: &str) -> bool {
    let (p, t) = (normalise_text(proposed), normalise_text(truth));
    !p.is_empty() && (p == t || t.contains(&p) || p.contains(&t))
}

pub fn score(case_products: &[(Option<String>, String, Option<String>)], proposals: &Proposals) -> CaseResult {
    let mut used = vec![false; proposals.products.len()];
    let mut r = CaseResult { products: case_products.len(), ..Default::default() };
    for (brand, model, serial) in case_products {
        let found = proposals.products.iter().enumerate().position(|(i, p)| {
            !used[i]
                && match brand {
                    Some(b) => p.brand.as_ref().is_some_and(|pb| pb.value == *b),
                    None => p.brand.is_none() && p.model.as_ref().is_some_and(|m| same_thing(&m.value, model)),
                }
        });
        let Some(i) = found else {
            r.misses.push(format!("not proposed: {brand:?} {model:?}"));
            continue;
        };
        used[i] = true;
        let p = &proposals.products[i];
        r.brand += 1;
        let model_right = p.model.as_ref().is_some_and(|m| normalise_text(&m.value) == normalise_text(model));
        let serial_right = p.serial_number.as_ref().map(|s| s.value.as_str()) == serial.as_deref();
        if !model_right {
            r.misses.push(format!("model: {model:?} proposed {:?}", p.model.as_ref().map(|m| &m.value)));
        }
        if !serial_right {
            let got = p.serial_number.as_ref().map(|s| &s.value);
            r.misses.push(format!("serial: {serial:?} proposed {got:?}"));
        }
        r.model += usize::from(model_right);
        r.serial += usize::from(serial_right);
        r.all += usize::from(model_right && serial_right);
    }
    r.extra = used.iter().filter(|u| !**u).count();
    for (p, _) in proposals.products.iter().zip(&used).filter(|(_, u)| !**u) {
        let (b, m) = (p.brand.as_ref().map(|b| &b.value), p.model.as_ref().map(|m| &m.value));
        r.misses.push(format!("extra: {b:?} {m:?}"));
    }
    r
}

async fn evaluate(readers: &InvoiceReaders, catalog: &BrandCatalog, case: Case, show: Option<&str>) -> CaseResult {
    let start = Instant::now();
    let fail = |reason: String| CaseResult {
        name: case.name.clone(),
        kind: case.kind.clone(),
        products: case.products.len(),
        failed: Some(reason),
        ..Default::default()
    };
    let bytes = match std::fs::read(&case.path) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => return fail(e.to_string()),
    };
    let Sniffed::Kind(kind) = InvoiceKind::sniff(&bytes[..bytes.len().min(16)]) else {
        return fail("not a PDF, JPEG or PNG".into());
    };
    let reading = match readers.read_with(kind, bytes, case.options).await {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let lines = ocr::lines_of(&reading.reading);
    let (fields, _) = ocr::interpret(reading);
    let proposals = propose(&lines, &fields, catalog);
    let seconds = start.elapsed().as_secs_f64();
    if show.is_some_and(|s| case.name.contains(s)) {
        eprintln!("== {} ({})\n{}", case.name, case.kind, serde_json::to_string_pretty(&proposals).unwrap_or_default());
        for l in &lines {
            eprintln!("{:>6.1} | {}", l.top, l.text);
        }
    }
    let truth: Vec<_> = case.products.iter().map(|p| (p.brand.clone(), p.model.clone(), p.serial.clone())).collect();
    let mut r = score(&truth, &proposals);
    r.name = case.name;
    r.kind = case.kind;
    r.seconds = seconds;
    r.date = case.date.map(|d| proposals.purchase_date.as_ref().is_some_and(|p| p.value == d));
    r
}

pub async fn run(
    readers: Arc<InvoiceReaders>,
    catalog: Arc<BrandCatalog>,
    opts: &ProposalsEvalOptions,
) -> Result<Vec<CaseResult>, String> {
    let mut cases = Vec::new();
    if let Some(folder) = &opts.folder {
        cases.extend(folder_cases(folder)?);
    }
    if let Some(corpus) = &opts.einvoices {
        cases.extend(einvoice_cases(&readers, corpus).await?);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut handles = Vec::new();
    for case in cases {
        let (readers, catalog, sem, show) = (readers.clone(), catalog.clone(), sem.clone(), opts.show.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            evaluate(&readers, &catalog, case, show.as_deref()).await
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.map_err(|e| format!("evaluation task failed: {e}"))?);
    }
    Ok(out)
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 { "n/a".into() } else { format!("{a}/{b} ({:.0} %)", 100.0 * a as f64 / b as f64) }
}

/// The report: per kind, documents, products, each field right, all four right, extra
/// proposals, and the reading + proposing time per document.
pub fn render(results: &[CaseResult]) -> String {
    let mut kinds: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        kinds.entry(r.kind.as_str()).or_default().push(r);
    }
    let mut o = String::from(
        "| kind | documents (failed) | products | brand | model | serial | all four (with date) | date (documents) | extra proposals | s/doc p50, p95 |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (kind, rs) in kinds {
        let sum = |f: fn(&CaseResult) -> usize| rs.iter().map(|r| f(r)).sum::<usize>();
        let products = sum(|r| r.products);
        let dated: Vec<_> = rs.iter().filter(|r| r.date.is_some()).collect();
        let dates_right = dated.iter().filter(|r| r.date == Some(true)).count();
        // All four: model and serial right, the brand found, and the document's date right.
        let all_with_date: usize = rs.iter().filter(|r| r.date != Some(false)).map(|r| r.all).sum();
        let mut secs: Vec<f64> = rs.iter().filter(|r| r.failed.is_none()).map(|r| r.seconds).collect();
        secs.sort_by(f64::total_cmp);
        let q = |p: f64| secs.get(((secs.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
        o.push_str(&format!(
            "| {kind} | {} ({}) | {products} | {} | {} | {} | {} | {} | {} | {:.3}, {:.3} |\n",
            rs.len(),
            rs.iter().filter(|r| r.failed.is_some()).count(),
            pct(sum(|r| r.brand), products),
            pct(sum(|r| r.model), products),
            pct(sum(|r| r.serial), products),
            pct(all_with_date, products),
            pct(dates_right, dated.len()),
            sum(|r| r.extra),
            q(0.5),
            q(0.95),
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::proposals::{ProductProposal, Proposed};

    fn proposed(v: &str) -> Option<Proposed<String>> {
        Some(Proposed { value: v.to_owned(), confidence: 0.9, at: None })
    }

    #[test]
    fn products_are_matched_by_brand_and_scored_field_by_field() {
        let proposals = Proposals {
            products: vec![
                ProductProposal { brand: proposed("Sony"), model: proposed("WH-1000XM5"), ..Default::default() },
                ProductProposal {
                    brand: proposed("HP"),
                    model: proposed("EliteBook 840 G9 1 x"),
                    serial_number: proposed("5CD1234XYZ"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let truth = vec![
            (Some("HP".to_owned()), "EliteBook 840 G9".to_owned(), Some("5CD1234XYZ".to_owned())),
            (Some("Dell".to_owned()), "XPS 13".to_owned(), None),
        ];
        let r = score(&truth, &proposals);
        assert_eq!((r.products, r.brand, r.model, r.serial, r.all, r.extra), (2, 1, 0, 1, 0, 1));
    }
}
