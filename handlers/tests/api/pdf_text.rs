//! PDF text layers read in process by PDFium (`libpdfium.so` from the pinned pypdfium2 wheel,
//! installed by `tools/models/fetch`), checked against poppler's `pdftotext` on the same files:
//! the generated corpus's digital invoices, the real e-invoices' printed pages, and the warranty
//! card (a CID font with a ToUnicode map, as pdf-writer embeds it).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use warranty::adapters::ocr::pdfium::{LIBRARY, Pdfium};
use warranty::adapters::ocr::tesseract::{Tesseract, TesseractConfig};
use warranty::adapters::ocr::{DEFAULT_MODELS_DIR, InvoiceReaders, ReaderLimits};
use warranty::domain::InvoiceKind;
use warranty::domain::extraction::TextLine;
use warranty::domain::ocr::OcrEngineKind;
use warranty::ports::{InvoiceReader, Reading};

fn pdfium() -> Pdfium {
    let path = Path::new(DEFAULT_MODELS_DIR).join(LIBRARY);
    Pdfium::load(&path).unwrap_or_else(|e| panic!("PDFium must be installed for these tests (tools/models/fetch): {e}"))
}

/// The warranty card as the service renders it: DejaVu Sans subset, embedded as a CID font with a
/// ToUnicode map (accents included).
fn card() -> Vec<u8> {
    use warranty::card::pdf::{CardSheet, CoverageLine, render};
    render(&CardSheet {
        brand: "Bosch".into(),
        model: "Kühl-Gefrierkombination KGN39 – Édition".into(),
        serial_number: "C02XK0ABJGH5".into(),
        purchase_date: "2026-03-14".into(),
        coverages: vec![CoverageLine {
            label: "Garantie légale".into(),
            provider: Some("Acme Care".into()),
            term: "until 2029-03-15".into(),
            status: "active".into(),
        }],
        verdict: "Covered today, until 2029-03-15".into(),
        verify_url: "https://api.example.com/api/verify/AaIcbT6Zd5SmZXpzFTp0qQ".into(),
        issued_on: "2026-11-27".into(),
        link_expires_on: "2027-02-25".into(),
    })
}

/// PDFs with a text layer: every PDF of the generated corpus that is not a scan, and the real
/// e-invoices' hybrid and text-only PDFs.
fn text_layer_pdfs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files: Vec<PathBuf> = ["corpus", "einvoices"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().contains("scanned"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the text-layer PDFs are in the repository: {files:?}");
    files
}

fn texts(lines: &[TextLine]) -> Vec<(u32, &str)> {
    lines.iter().map(|l| (l.page, l.text.as_str())).collect()
}

/// Both engines find the same lines, with the same text, at the same places (within a point:
/// poppler measures a word's box from the font's ascent and descent, PDFium from the glyphs'
/// loose boxes, which differ by rounding).
#[tokio::test]
async fn pdfium_reads_what_pdftotext_reads() {
    let scratch = tempfile::tempdir().unwrap();
    let poppler = Tesseract::probe(TesseractConfig::defaults(scratch.path().to_owned())).await.expect("poppler");
    let pdfium = pdfium();
    let card_path = scratch.path().join("card.pdf");
    std::fs::write(&card_path, card()).unwrap();
    for file in text_layer_pdfs().into_iter().chain([card_path]) {
        let bytes = std::fs::read(&file).unwrap();
        let ours = pdfium.text_lines(&bytes, 5).unwrap();
        let theirs = poppler.pdf_text(&bytes, 5).await.unwrap();
        assert!(theirs.len() >= 5, "{}: poppler read {} lines", file.display(), theirs.len());
        assert_eq!(texts(&ours), texts(&theirs), "{}: the same lines, in the same order", file.display());
        // Word boxes: poppler's top is the baseline less the font size times its ascent,
        // PDFium's the glyphs' loose box (the font's bounding box): tops differ by up to a quarter
        // of the line's height, the same for every line of a font; edges within two points.
        let (mut worst_top, mut worst_x) = (0f32, 0f32);
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.page, b.page);
            worst_top = worst_top.max((a.top - b.top).abs() / b.height.max(1.0));
            for (ca, cb) in a.cells.iter().zip(&b.cells) {
                worst_x = worst_x.max((ca.left - cb.left).abs()).max((ca.right - cb.right).abs());
            }
        }
        println!(
            "{}: {} lines, top within {:.0} % of a line's height, cells within {:.2} pt",
            file.display(),
            ours.len(),
            worst_top * 100.0,
            worst_x
        );
        assert!(
            worst_top <= 0.3,
            "{}: a line's top differs by {:.0} % of its height",
            file.display(),
            worst_top * 100.0
        );
        assert!(worst_x <= 2.0, "{}: a cell's edge differs by {worst_x:.2} pt", file.display());
    }
}

/// A document PDFium cannot open is an error, not an empty reading (the reader then tries the
/// next engine); a PDF without text has no lines.
#[test]
fn a_broken_pdf_is_an_error_and_an_empty_page_has_no_lines() {
    let pdfium = pdfium();
    assert!(pdfium.text_lines(b"%PDF-1.7\nnot a document", 5).is_err());
    let empty = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
    assert_eq!(pdfium.text_lines(empty, 5).unwrap().len(), 0);
}

/// The reader uses PDFium where it is installed and says so in its health; without it, the same
/// document is read by `pdftotext` to the same fields.
#[tokio::test]
async fn the_reader_uses_pdfium_and_falls_back_to_pdftotext() {
    let scratch = tempfile::tempdir().unwrap();
    let digital = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/00-digital-classic-en.pdf");
    let bytes = Bytes::from(std::fs::read(&digital).unwrap());
    let health = |r: &InvoiceReaders| {
        r.health().into_iter().find(|h| h.name == "pdfText").and_then(|h| h.detail).unwrap_or_default()
    };
    let mut readings = Vec::new();
    for library in [Path::new(DEFAULT_MODELS_DIR).join(LIBRARY), scratch.path().join("missing.so")] {
        let readers =
            InvoiceReaders::new(TesseractConfig::defaults(scratch.path().to_owned()), None, ReaderLimits::default())
                .with_pdfium(library.clone());
        assert_eq!(health(&readers), "PDFium loads on the first PDF");
        let reading = readers.read(InvoiceKind::Pdf, bytes.clone()).await.unwrap();
        assert_eq!(reading.engine, OcrEngineKind::PdfText);
        let Reading::Text { lines, .. } = reading.reading else { panic!("a text layer") };
        let expected = if library.exists() { "PDFium" } else { "pdftotext (PDFium unavailable)" };
        assert_eq!(health(&readers), expected);
        readings.push(lines.into_iter().map(|l| l.text).collect::<Vec<_>>());
    }
    assert!(readings[0].iter().any(|l| l.contains("Total")), "{:?}", readings[0]);
    assert_eq!(readings[0], readings[1], "PDFium and pdftotext give the reader the same lines");
}

/// PDFium opens a document once and reads all of it, or declines and reads nothing: the page
/// count and embedded files it reports, the page sizes in points, and the same lines as
/// `text_lines`.
#[test]
fn pdfium_surveys_a_document_before_reading_it() {
    let pdfium = pdfium();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let digital = std::fs::read(tests.join("corpus/00-digital-classic-en.pdf")).unwrap();
    let mut seen = None;
    let layer = pdfium
        .read_document(&digital, |pages, attachments| {
            seen = Some((pages, attachments));
            true
        })
        .unwrap()
        .expect("read when wanted");
    assert_eq!(seen, Some((1, 0)));
    assert_eq!(layer.pages, 1);
    let (w, h) = layer.sizes[0];
    assert!((w - 595.0).abs() < 1.0 && (h - 842.0).abs() < 1.0 || (w - 612.0).abs() < 1.0, "{w}×{h}");
    assert_eq!(texts(&layer.lines), texts(&pdfium.text_lines(&digital, 5).unwrap()));

    let hybrid = std::fs::read(tests.join("einvoices/zugferd2-and-facturx-hybrid.pdf")).unwrap();
    let mut attachments = 0;
    let declined = pdfium
        .read_document(&hybrid, |_, a| {
            attachments = a;
            false
        })
        .unwrap();
    assert!(declined.is_none(), "nothing is read when declined");
    assert!(attachments >= 1, "the hybrid's XML is an embedded file");
    assert!(pdfium.read_document(b"%PDF-1.7\nnot a document", |_, _| true).is_err());
}

/// The reader answers the same with PDFium as without it (lopdf judging every document) on what
/// it must refuse and on e-invoices: a corrupt file, no pages, a password, too many pages, and a
/// hybrid whose XML is read instead of its text layer.
#[tokio::test]
async fn the_reader_refuses_and_finds_e_invoices_alike_with_and_without_pdfium() {
    let scratch = tempfile::tempdir().unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut corrupt = b"%PDF-1.7\n".to_vec();
    corrupt.extend_from_slice(b"this is not a PDF body at all \x00\x01\x02");
    let zero_pages = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec();
    let encrypted = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n\
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >> endobj\n\
4 0 obj << /Filter /Standard /V 2 /R 3 /Length 128 /P -3904 /O <0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef> /U <fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210> >> endobj\n\
trailer << /Root 1 0 R /Encrypt 4 0 R /ID [<00112233445566778899aabbccddeeff><00112233445566778899aabbccddeeff>] >>\n%%EOF\n"
        .to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupt", corrupt, "invoice_unreadable"),
        ("no pages", zero_pages, "invoice_no_pages"),
        ("encrypted", encrypted, "invoice_encrypted"),
        ("six pages", crate::ocr_trigger::pdf_with_pages(6), "invoice_too_many_pages"),
        ("hybrid", std::fs::read(tests.join("einvoices/zugferd2-and-facturx-hybrid.pdf")).unwrap(), "EmbeddedXml"),
    ];
    for library in [Path::new(DEFAULT_MODELS_DIR).join(LIBRARY), scratch.path().join("missing.so")] {
        let readers =
            InvoiceReaders::new(TesseractConfig::defaults(scratch.path().to_owned()), None, ReaderLimits::default())
                .with_pdfium(library.clone());
        for (name, bytes, expected) in &cases {
            let outcome = match readers.read(InvoiceKind::Pdf, Bytes::from(bytes.clone())).await {
                Ok(reading) => format!("{:?}", reading.engine),
                Err(warranty::ports::ReadError::Permanent { reason, .. }) => reason.to_owned(),
                Err(e) => format!("{e}"),
            };
            assert_eq!(outcome, *expected, "{name}, PDFium installed: {}", library.exists());
        }
    }
}
