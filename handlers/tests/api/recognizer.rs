//! The PP-OCR recogniser with the real models and ONNX Runtime (installed by tools/models/fetch,
//! which tools/test runs), alone and beside Tesseract.

use std::sync::Arc;

use bytes::Bytes;
use warranty::adapters::ocr::ppocr::{PpOcr, PpOcrConfig};
use warranty::adapters::ocr::tesseract::TesseractConfig;
use warranty::adapters::ocr::{DEFAULT_MODELS_DIR, InvoiceReaders, ReaderLimits, Recognizers};
use warranty::application::ocr::interpret;
use warranty::domain::InvoiceKind;
use warranty::domain::ocr::OcrEngineKind;
use warranty::ports::{InvoiceReader, ReadError, Reading};

use crate::support::fixture;

fn models() -> PpOcrConfig {
    PpOcrConfig::in_dir(std::path::Path::new(DEFAULT_MODELS_DIR), 1)
}

fn readers(scratch: &std::path::Path, recognizers: Recognizers, ppocr: PpOcrConfig) -> InvoiceReaders {
    InvoiceReaders::new(TesseractConfig::defaults(scratch.to_owned()), None, ReaderLimits::default())
        .with_recognizers(recognizers, ppocr)
}

#[tokio::test]
async fn pp_ocr_reads_each_word_with_its_box() {
    let pp = PpOcr::new(models()).expect("models installed");
    let lines = pp.image(Bytes::from(fixture("invoice.png")), 1).await.unwrap();
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let joined = text.join("\n");
    for expected in ["2026-0042", "C02XK0ABJGH5", "2026-03-15", "1199.00", "MacBook"] {
        assert!(joined.contains(expected), "{expected} in {joined}");
    }
    // Lines top to bottom; each word's box inside the 600×300 image and left of the next.
    let tops: Vec<f32> = lines.iter().map(|l| l.top).collect();
    assert!(tops.windows(2).all(|w| w[0] < w[1]), "{tops:?}");
    let total = lines.iter().find(|l| l.text.contains("1199.00")).unwrap();
    // The printed line runs from x≈20 to x≈104: the box comes from the characters' CTC columns,
    // not from the grown detection box or the padded strip.
    let cell = total.cells.iter().find(|c| c.text.contains("1199.00")).unwrap();
    assert!((15.0..30.0).contains(&cell.left) && (95.0..112.0).contains(&cell.right), "{total:?}");
    assert!(total.top > 80.0 && total.top < 100.0 && total.height > 5.0, "{total:?}");
    assert!(lines.iter().all(|l| l.confidence > 0.5 && l.confidence <= 1.0));
}

#[tokio::test]
async fn both_recognisers_read_a_photo_and_their_values_are_checked() {
    let scratch = tempfile::tempdir().unwrap();
    let r = readers(scratch.path(), Recognizers::Both, models());
    let reading = r.read(InvoiceKind::Png, Bytes::from(fixture("invoice.png"))).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::PpOcrTesseract);
    let Reading::Checked { readings, pages } = &reading.reading else { panic!("{reading:?}") };
    assert_eq!((readings.len(), *pages), (2, 1));
    let (fields, text) = interpret(reading);
    let date = fields.invoice_date.unwrap();
    assert_eq!(date.value.to_string(), "2026-03-15");
    // Both read the labelled date alike: supported.
    assert!(date.confidence >= 0.8, "{date:?}");
    assert!(text.contains("C02XK0ABJGH5"), "the verification searches every engine's text");
}

#[tokio::test]
async fn without_the_models_tesseract_reads_alone_and_health_says_why() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = PpOcrConfig::in_dir(&scratch.path().join("no-models"), 1);
    let r = readers(scratch.path(), Recognizers::Both, missing);
    r.probe().await;
    let health = r.health();
    let pp = health.iter().find(|e| e.name == "ppOcr").unwrap();
    assert!(!pp.available);
    assert!(pp.detail.as_deref().unwrap().contains("not found"), "{pp:?}");
    let reading = r.read(InvoiceKind::Png, Bytes::from(fixture("invoice.png"))).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::Tesseract);

    // PP-OCR alone and missing: the reading waits for an engine, it does not fail.
    let r = readers(scratch.path(), Recognizers::PpOcr, PpOcrConfig::in_dir(&scratch.path().join("no-models"), 1));
    let err = r.read(InvoiceKind::Png, Bytes::from(fixture("invoice.png"))).await.unwrap_err();
    assert!(matches!(err, ReadError::EngineUnavailable(_)), "{err:?}");
}

#[tokio::test]
async fn pp_ocr_alone_reads_a_scanned_pdf_page_by_page() {
    let scratch = tempfile::tempdir().unwrap();
    let r = readers(scratch.path(), Recognizers::PpOcr, models());
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus.join("ground-truth.json")).unwrap()).unwrap();
    let inv = truth["invoices"].as_array().unwrap().iter().find(|i| i["kind"] == "scanned").unwrap();
    let bytes = std::fs::read(corpus.join(inv["file"].as_str().unwrap())).unwrap();
    let reading = r.read(InvoiceKind::Pdf, Bytes::from(bytes)).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::PpOcr);
    let (fields, _) = interpret(reading);
    assert_eq!(fields.total.map(|t| t.value.to_decimal_string()), inv["fields"]["total"].as_str().map(str::to_owned));
}

#[tokio::test]
async fn a_damaged_image_is_a_permanent_failure_not_a_crash() {
    let scratch = tempfile::tempdir().unwrap();
    let r = readers(scratch.path(), Recognizers::PpOcr, models());
    // A PNG whose header says 600×300 and whose pixel data is cut off.
    let png = fixture("invoice.png");
    let cut = Bytes::copy_from_slice(&png[..png.len() / 3]);
    let err = r.read(InvoiceKind::Png, cut).await.unwrap_err();
    let ReadError::Permanent { reason, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*reason, "invoice_unreadable");
}

#[tokio::test]
async fn concurrent_readings_share_a_bounded_pool_of_model_instances() {
    let pp = Arc::new(PpOcr::new(models()).unwrap());
    let png = Bytes::from(fixture("invoice.png"));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pp, png) = (pp.clone(), png.clone());
            tokio::spawn(async move { pp.image(png, 1).await })
        })
        .collect();
    for t in tasks {
        let lines = t.await.unwrap().unwrap();
        assert!(lines.iter().any(|l| l.text.contains("1199.00")));
    }
    assert_eq!(pp.instances_loaded(), 1, "four readings, one instance: the pool is bounded");
}

/// The models load on the first image and are released once `keep_loaded` passes without a
/// reading; a reading within that time keeps them. (Paused clock: the release timer is the
/// feature under test, and the runtime's clock jumps to it instead of the test sleeping.)
#[tokio::test(start_paused = true)]
async fn the_models_load_on_the_first_image_and_are_released_at_rest() {
    let keep = std::time::Duration::from_secs(120);
    let pp = PpOcr::new(PpOcrConfig { keep_loaded: keep, ..models() }).unwrap();
    let png = Bytes::from(fixture("invoice.png"));
    assert_eq!(pp.instances_loaded(), 0, "nothing is loaded before an image comes");
    assert!(pp.status().unwrap().contains("load on the first image"), "{:?}", pp.status());

    assert!(pp.image(png.clone(), 1).await.unwrap().iter().any(|l| l.text.contains("1199.00")));
    assert_eq!(pp.instances_loaded(), 1);
    assert!(pp.status().unwrap().contains("1 instance(s) loaded"), "{:?}", pp.status());

    // A second reading comes before the first one's release is due: the models stay, and the
    // release waits for `keep` after the second.
    tokio::time::sleep(keep / 2).await;
    assert!(!pp.image(png.clone(), 1).await.unwrap().is_empty());
    tokio::time::sleep(keep - std::time::Duration::from_millis(1)).await;
    assert_eq!(pp.instances_loaded(), 1, "released while readings still come");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    assert_eq!(pp.instances_loaded(), 0, "kept after `keep` at rest");

    // The next image loads them again.
    assert!(pp.image(png, 1).await.unwrap().iter().any(|l| l.text.contains("1199.00")));
    assert_eq!(pp.instances_loaded(), 1);
}

/// OCR processes run below the server's priority (nice +10), so a reading takes what the HTTP
/// server leaves: a Tesseract stand-in records its own niceness, then runs the real one.
#[tokio::test]
async fn ocr_processes_run_below_the_servers_priority() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("nice");
    let script = dir.path().join("tesseract");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncut -d' ' -f19 /proc/$$/stat > '{}'\nexec tesseract \"$@\"\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tesseract = TesseractConfig { tesseract: script, ..TesseractConfig::defaults(dir.path().to_owned()) };
    let r = InvoiceReaders::new(tesseract, None, ReaderLimits::default());
    let reading = r.read(InvoiceKind::Png, Bytes::from(fixture("invoice.png"))).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::Tesseract);
    let own: i32 = std::fs::read_to_string("/proc/self/stat")
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    let child: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    assert_eq!(child, (own + 10).min(19), "the OCR process runs at nice +10");
}
