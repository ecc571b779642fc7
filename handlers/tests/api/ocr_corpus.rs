//! The whole reading pipeline over the generated corpus (tools/invoice-corpus/generate.py),
//! with real Tesseract and poppler, scored field by field against the ground truth.
//!
//! Targets (issue 3): 100 % of fields on embedded-XML invoices, ≥ 98 % on digital PDFs,
//! ≥ 90 % on scans and photos. The per-kind table is printed (`--nocapture`) and recorded in
//! docs/benchmarks.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use warranty::adapters::ocr::tesseract::TesseractConfig;
use warranty::adapters::ocr::{InvoiceReaders, ReaderLimits};
use warranty::application::ocr::interpret;
use warranty::domain::InvoiceKind;
use warranty::domain::ocr::{InvoiceFields, OcrEngineKind};
use warranty::ocr_eval::{self, EvalOptions};
use warranty::ports::InvoiceReader;

fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn readers(scratch: &Path) -> InvoiceReaders {
    InvoiceReaders::new(TesseractConfig::defaults(scratch.to_owned()), None, ReaderLimits::default())
}

/// (field name, right?) for every ground-truth field.
fn score(truth: &Value, got: &InvoiceFields) -> Vec<(String, bool)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = vec![
        (
            "invoiceNumber".into(),
            got.invoice_number.as_ref().map(|f| f.value.clone()) == Some(s(&truth["invoiceNumber"])),
        ),
        (
            "invoiceDate".into(),
            got.invoice_date.as_ref().map(|f| f.value.to_string()) == Some(s(&truth["invoiceDate"])),
        ),
        ("seller".into(), got.seller.as_ref().map(|f| f.value.clone()) == Some(s(&truth["seller"]))),
        ("currency".into(), got.currency.as_ref().map(|f| f.value.clone()) == Some(s(&truth["currency"]))),
        ("subtotal".into(), got.subtotal.as_ref().map(|f| f.value.to_decimal_string()) == Some(s(&truth["subtotal"]))),
        ("tax".into(), got.tax.as_ref().map(|f| f.value.to_decimal_string()) == Some(s(&truth["tax"]))),
        ("total".into(), got.total.as_ref().map(|f| f.value.to_decimal_string()) == Some(s(&truth["total"]))),
    ];
    for (i, item) in truth["lineItems"].as_array().unwrap().iter().enumerate() {
        let g = got.line_items.get(i);
        // Descriptions from an e-invoice may carry the serial ("… S/N X"): compare the start.
        let desc_ok = g.is_some_and(|g| g.description.starts_with(&s(&item["description"])));
        out.push((format!("line{i}.description"), desc_ok));
        out.push((
            format!("line{i}.quantity"),
            g.and_then(|g| g.quantity) == item["quantity"].as_u64().map(|q| q as u32),
        ));
        out.push((
            format!("line{i}.amount"),
            g.and_then(|g| g.amount).map(|a| a.to_decimal_string()) == Some(s(&item["amount"])),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_is_read_to_the_accuracy_targets() {
    let scratch = tempfile::tempdir().unwrap();
    let readers = readers(scratch.path());
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("ground-truth.json")).unwrap()).unwrap();
    let invoices = truth["invoices"].as_array().unwrap();
    assert!(invoices.len() >= 24, "the corpus has at least 24 invoices");

    let mut per_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut latency: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut misses = Vec::new();
    for inv in invoices {
        let file = inv["file"].as_str().unwrap();
        let kind_name = inv["kind"].as_str().unwrap().to_owned();
        let bytes = bytes::Bytes::from(std::fs::read(corpus().join(file)).unwrap());
        let kind = match file.rsplit('.').next().unwrap() {
            "pdf" => InvoiceKind::Pdf,
            "jpg" => InvoiceKind::Jpeg,
            _ => InvoiceKind::Png,
        };
        let t = Instant::now();
        let reading = readers.read(kind, bytes).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        let took = t.elapsed();
        let expected_engine = match kind_name.as_str() {
            "facturx" => OcrEngineKind::EmbeddedXml,
            "digital" => OcrEngineKind::PdfText,
            _ => OcrEngineKind::Tesseract,
        };
        assert_eq!(reading.engine, expected_engine, "{file}");
        latency
            .entry(if kind_name == "digital" {
                "digital PDF page"
            } else if kind_name == "facturx" {
                "e-invoice XML"
            } else {
                "image page (Tesseract)"
            })
            .or_default()
            .push(took);
        let (fields, _) = interpret(reading);
        let scored = score(&inv["fields"], &fields);
        let entry = per_kind.entry(kind_name).or_default();
        for (name, ok) in scored {
            entry.1 += 1;
            if ok {
                entry.0 += 1;
            } else {
                misses.push(format!("{file}: {name}"));
            }
        }
    }
    println!("\nfield-level accuracy per kind (cargo test --test api ocr_corpus:: -- --nocapture):");
    for (kind, (ok, all)) in &per_kind {
        println!("  {kind:<8} {ok:>3}/{all:<3} = {:.1} %", 100.0 * *ok as f64 / *all as f64);
    }
    for (what, times) in &mut latency {
        times.sort();
        println!(
            "  latency {what}: median {:.0} ms, max {:.0} ms",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times.last().unwrap().as_secs_f64() * 1000.0
        );
    }
    if !misses.is_empty() {
        println!("  misses: {misses:#?}");
    }
    let rate = |k: &str| per_kind.get(k).map(|(ok, all)| *ok as f64 / *all as f64).unwrap_or(0.0);
    assert_eq!(rate("facturx"), 1.0, "embedded XML must be exact");
    assert!(rate("digital") >= 0.98, "digital PDFs: {:.3}", rate("digital"));
    for k in ["scanned", "photo", "png"] {
        assert!(rate(k) >= 0.90, "{k}: {:.3}", rate(k));
    }
}

fn einvoices() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/einvoices")
}

fn eval_options(kinds: &[&str], derive: bool) -> EvalOptions {
    EvalOptions {
        corpus: einvoices(),
        derive,
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        limit: None,
        jobs: 2,
        date_tolerance_days: 3,
        show: None,
    }
}

/// Real e-invoices (tests/einvoices, committed with attribution) through the evaluation
/// command's own code and the service's readers: ZUGFeRD 1.0 (root `CrossIndustryDocument`,
/// alone and embedded), ZUGFeRD 2 + Factur-X, UBL credit notes and negative invoices, a
/// trading name beside the legal name, a foreign currency. Every field is read exactly and every
/// card is `completed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_einvoices_are_read_exactly() {
    let scratch = tempfile::tempdir().unwrap();
    let readers = Arc::new(readers(scratch.path()));
    let docs = ocr_eval::run(readers, &eval_options(&["einvoice", "invoice-pdf"], false)).await.unwrap();
    assert_eq!(docs.len(), 8);
    for d in &docs {
        for (name, f) in &d.fields {
            assert!(f.right, "{}: {name} expected {:?}, read {:?}", d.file, f.expected, f.got);
        }
        assert_eq!(d.status, "completed", "{}: {:?}", d.file, d.uncertain);
        assert_eq!(d.fields.len(), 5, "{}: every field has a truth", d.file);
    }
    let engine = |file: &str| docs.iter().find(|d| d.file == file).unwrap().engine;
    assert_eq!(engine("zugferd1-hybrid.pdf"), Some(OcrEngineKind::EmbeddedXml), "ZUGFeRD 1.0 takes the XML path");
    assert_eq!(engine("zugferd2-and-facturx-hybrid.pdf"), Some(OcrEngineKind::EmbeddedXml));
    assert_eq!(engine("text-layer-only.pdf"), Some(OcrEngineKind::PdfText));
    let summary = ocr_eval::summarise(&docs);
    let xml = &summary["einvoice-xml"];
    assert_eq!((xml.completed_right, xml.completed), (5, 5));
    assert_eq!(xml.fields["total"], (5, 5));
}

/// A hybrid PDF with its XML ignored is a text-layer PDF whose truth is known: poppler's text
/// layer (subset fonts with ToUnicode maps, which the in-process reader could not decode) gives
/// every field; rendered and OCRed (`+scan`), the amount still matches the XML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_text_layer_and_scan_keep_the_xml_truth() {
    let scratch = tempfile::tempdir().unwrap();
    let readers = Arc::new(readers(scratch.path()));
    let docs = ocr_eval::run(readers, &eval_options(&["einvoice-pdf+"], true)).await.unwrap();
    let variant = |kind: &str| {
        docs.iter()
            .find(|d| d.file == "zugferd2-and-facturx-hybrid.pdf" && d.kind == kind)
            .unwrap_or_else(|| panic!("{kind}"))
    };
    let text = variant("einvoice-pdf+text-layer");
    assert_eq!(text.engine, Some(OcrEngineKind::PdfText));
    for (name, f) in &text.fields {
        assert!(f.right, "text layer: {name} expected {:?}, read {:?}", f.expected, f.got);
    }
    let scan = variant("einvoice-pdf+scan");
    assert_eq!(scan.engine, Some(OcrEngineKind::Tesseract));
    assert!(scan.fields["total"].right, "scan: {:?}", scan.fields["total"]);
}
