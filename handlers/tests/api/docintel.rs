//! The Document Intelligence adapter against the documented REST contract of
//! `prebuilt-invoice` and `prebuilt-receipt` (api-version 2024-11-30).
//!
//! No Document Intelligence service is reachable here. A loopback server plays it, answering
//! with the documented shapes: `202 Accepted` + `Operation-Location` + `Retry-After` on
//! analyze, then `running` and `succeeded` with `analyzeResult.documents[0].fields` on polls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use warp::Filter;
use warp::http::{Response, StatusCode};
use warranty::adapters::ocr::docintel::{Credential, DocumentIntelligence};
use warranty::domain::ocr::{Amount, DocumentClass, OcrEngineKind};
use warranty::ports::{ReadError, Reading};

fn succeeded() -> Value {
    json!({
        "status": "succeeded",
        "createdDateTime": "2026-11-24T10:00:00Z",
        "lastUpdatedDateTime": "2026-11-24T10:00:02Z",
        "analyzeResult": {
            "apiVersion": "2024-11-30",
            "modelId": "prebuilt-invoice",
            "content": "Elektro Becker GmbH\nRechnung RE-482913\nApple MacBook Air 13 S/N C02XK0ABJGH5\nGesamtbetrag 1.426,81 EUR",
            "documents": [{
                "docType": "invoice",
                "confidence": 0.99,
                "fields": {
                    "InvoiceId": {"type": "string", "valueString": "RE-482913", "content": "RE-482913", "confidence": 0.97},
                    "InvoiceDate": {"type": "date", "valueDate": "2026-03-15", "content": "15.03.2026", "confidence": 0.96},
                    "VendorName": {"type": "string", "valueString": "Elektro Becker GmbH", "confidence": 0.93},
                    "SubTotal": {"type": "currency", "valueCurrency": {"amount": 1199.0, "currencyCode": "EUR", "currencySymbol": "€"}, "confidence": 0.95},
                    "TotalTax": {"type": "currency", "valueCurrency": {"amount": 227.81, "currencyCode": "EUR"}, "confidence": 0.94},
                    "InvoiceTotal": {"type": "currency", "valueCurrency": {"amount": 1426.81, "currencyCode": "EUR"}, "confidence": 0.98},
                    "Items": {"type": "array", "valueArray": [{
                        "type": "object", "confidence": 0.9,
                        "valueObject": {
                            "Description": {"type": "string", "valueString": "Apple MacBook Air 13", "confidence": 0.9},
                            "Quantity": {"type": "number", "valueNumber": 1, "confidence": 0.9},
                            "Amount": {"type": "currency", "valueCurrency": {"amount": 1199.0, "currencyCode": "EUR"}, "confidence": 0.9}
                        }
                    }]}
                }
            }]
        }
    })
}

/// A `prebuilt-receipt` result in the documented shape (docType `receipt.retailMeal`).
fn receipt_succeeded() -> Value {
    json!({
        "status": "succeeded",
        "analyzeResult": {
            "apiVersion": "2024-11-30",
            "modelId": "prebuilt-receipt",
            "content": "KEDAI CONTOH SDN BHD\n25/12/2018\nTEH ICE 2 3.00\nTOTAL 9.00\nCASH 10.00\nCHANGE 1.00",
            "documents": [{
                "docType": "receipt.retailMeal",
                "confidence": 0.98,
                "fields": {
                    "MerchantName": {"type": "string", "valueString": "KEDAI CONTOH SDN BHD", "confidence": 0.95},
                    "TransactionDate": {"type": "date", "valueDate": "2018-12-25", "confidence": 0.97},
                    "Subtotal": {"type": "currency", "valueCurrency": {"amount": 8.49, "currencyCode": "MYR"}, "confidence": 0.9},
                    "TotalTax": {"type": "currency", "valueCurrency": {"amount": 0.51, "currencyCode": "MYR"}, "confidence": 0.9},
                    "Total": {"type": "currency", "valueCurrency": {"amount": 9.0, "currencySymbol": "RM", "currencyCode": "MYR"}, "confidence": 0.96},
                    "Items": {"type": "array", "valueArray": [{
                        "type": "object", "confidence": 0.9,
                        "valueObject": {
                            "Description": {"type": "string", "valueString": "TEH ICE", "confidence": 0.9},
                            "Quantity": {"type": "number", "valueNumber": 2, "confidence": 0.9},
                            "TotalPrice": {"type": "currency", "valueCurrency": {"amount": 3.0, "currencyCode": "MYR"}, "confidence": 0.9}
                        }
                    }]}
                }
            }]
        }
    })
}

struct FakeService {
    base: String,
    polls: Arc<AtomicUsize>,
    analyses: Arc<AtomicUsize>,
    /// The model of each analysis asked for, in order.
    models: Arc<std::sync::Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `analyze_status` is what the analyze call answers; polls answer `running` once, then
/// `final_body` (`prebuilt-invoice`) or [`receipt_succeeded`] (`prebuilt-receipt`).
async fn fake(analyze_status: u16, final_body: Value) -> FakeService {
    let polls = Arc::new(AtomicUsize::new(0));
    let analyses = Arc::new(AtomicUsize::new(0));
    let models = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, asked) = (analyses.clone(), models.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let op_base = base.clone();
    let analyze = warp::post()
        .and(warp::path!("documentintelligence" / "documentModels" / String))
        .and(warp::query::raw())
        .and(warp::header::optional::<String>("ocp-apim-subscription-key"))
        .and(warp::body::json())
        .map(move |model: String, query: String, key: Option<String>, body: Value| {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut r = Response::builder();
            let model = model.strip_suffix(":analyze").unwrap_or_default().to_owned();
            let ok = matches!(model.as_str(), "prebuilt-invoice" | "prebuilt-receipt")
                && query == "api-version=2024-11-30"
                && key.as_deref() == Some("test-key")
                && body["base64Source"].as_str().is_some_and(|b| !b.is_empty());
            if !ok {
                return r
                    .status(StatusCode::BAD_REQUEST)
                    .body(Bytes::from_static(b"{\"error\":{\"code\":\"InvalidRequest\"}}"))
                    .unwrap();
            }
            asked.lock().unwrap().push(model.clone());
            r = r.status(StatusCode::from_u16(analyze_status).unwrap());
            if analyze_status == 202 {
                let op = format!(
                    "{op_base}/documentintelligence/documentModels/{model}/analyzeResults/abc-123?api-version=2024-11-30"
                );
                r = r.header("operation-location", op).header("retry-after", "0");
            }
            let body = if analyze_status == 202 {
                Bytes::new()
            } else {
                Bytes::from(json!({"error": {"code": "Err", "innererror": {"code": "InvalidContent"}}}).to_string())
            };
            r.body(body).unwrap()
        });
    let p = polls.clone();
    let poll = warp::get()
        .and(warp::path!("documentintelligence" / "documentModels" / String / "analyzeResults" / String))
        .map(move |model: String, _id: String| {
            let n = p.fetch_add(1, Ordering::SeqCst);
            let body = match (n, model.as_str()) {
                (0, _) => json!({"status": "running"}),
                (_, "prebuilt-receipt") => receipt_succeeded(),
                _ => final_body.clone(),
            };
            Response::builder().status(200).header("retry-after", "0").body(Bytes::from(body.to_string())).unwrap()
        });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(analyze.or(poll))
            .incoming(listener)
            .graceful(async {
                let _ = rx.await;
            })
            .run(),
    );
    FakeService { base, polls, analyses, models, _stop: tx }
}

fn client(base: &str) -> DocumentIntelligence {
    DocumentIntelligence::new(base, Credential::Key("test-key".into()), Duration::from_secs(10))
}

#[tokio::test]
async fn a_prebuilt_invoice_analysis_maps_to_our_fields() {
    let svc = fake(202, succeeded()).await;
    let reading = client(&svc.base).analyze(Bytes::from_static(b"%PDF-1.7 ..."), DocumentClass::Invoice).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::DocumentIntelligence);
    assert_eq!(svc.polls.load(Ordering::SeqCst), 2, "polled until succeeded");
    let Reading::Structured { fields, text } = reading.reading else { panic!("structured") };
    assert_eq!(fields.invoice_number.as_ref().unwrap().value, "RE-482913");
    assert!((fields.invoice_number.unwrap().confidence - 0.97).abs() < 1e-6);
    assert_eq!(fields.invoice_date.unwrap().value.to_string(), "2026-03-15");
    assert_eq!(fields.seller.unwrap().value, "Elektro Becker GmbH");
    assert_eq!(fields.currency.unwrap().value, "EUR");
    assert_eq!(fields.total.unwrap().value, Amount(142_681));
    assert_eq!(fields.tax.unwrap().value, Amount(22_781));
    assert_eq!(fields.line_items.len(), 1);
    assert_eq!(fields.line_items[0].amount, Some(Amount(119_900)));
    assert!(text.contains("C02XK0ABJGH5"));
}

/// A receipt goes to `prebuilt-receipt`, whose fields have other names (MerchantName,
/// TransactionDate, Total, Items[].TotalPrice).
#[tokio::test]
async fn a_prebuilt_receipt_analysis_maps_to_our_fields() {
    let svc = fake(202, succeeded()).await;
    let reading = client(&svc.base).analyze(Bytes::from_static(b"\xff\xd8 ..."), DocumentClass::Receipt).await.unwrap();
    assert_eq!(*svc.models.lock().unwrap(), ["prebuilt-receipt"]);
    let Reading::Structured { fields, text } = reading.reading else { panic!("structured") };
    assert_eq!(fields.seller.unwrap().value, "KEDAI CONTOH SDN BHD");
    assert_eq!(fields.invoice_date.unwrap().value.to_string(), "2018-12-25");
    let total = fields.total.unwrap();
    assert_eq!((total.value, fields.currency.unwrap().value.as_str()), (Amount(900), "MYR"));
    assert!((total.confidence - 0.96).abs() < 1e-6);
    assert_eq!((fields.subtotal.unwrap().value, fields.tax.unwrap().value), (Amount(849), Amount(51)));
    assert_eq!(fields.invoice_number, None);
    assert_eq!(fields.line_items[0].amount, Some(Amount(300)));
    assert_eq!(fields.line_items[0].quantity, Some(2));
    assert!(text.contains("CHANGE 1.00"));
}

#[tokio::test]
async fn service_errors_are_classified_for_the_retry_rules() {
    // 429 (throttled) and 5xx: transient, the message comes back.
    let svc = fake(429, succeeded()).await;
    let e = client(&svc.base).analyze(Bytes::from_static(b"x"), DocumentClass::Invoice).await.unwrap_err();
    assert!(matches!(e, ReadError::Transient(_)), "{e}");
    // 400 InvalidContent: the file is the problem, permanent.
    let svc = fake(400, succeeded()).await;
    let e = client(&svc.base).analyze(Bytes::from_static(b"x"), DocumentClass::Invoice).await.unwrap_err();
    assert!(matches!(e, ReadError::Permanent { reason: "invoice_unreadable", .. }), "{e}");
    // 401: misconfiguration, the engine is unavailable.
    let svc = fake(401, succeeded()).await;
    let e = client(&svc.base).analyze(Bytes::from_static(b"x"), DocumentClass::Invoice).await.unwrap_err();
    assert!(matches!(e, ReadError::EngineUnavailable(_)), "{e}");
    // A failed analysis is permanent.
    let svc = fake(202, json!({"status": "failed", "error": {"code": "InternalServerError"}})).await;
    let e = client(&svc.base).analyze(Bytes::from_static(b"x"), DocumentClass::Invoice).await.unwrap_err();
    assert!(matches!(e, ReadError::Permanent { .. }), "{e}");
    // A wrong key is refused by the service: our adapter must send the configured one.
    let svc = fake(202, succeeded()).await;
    let wrong = DocumentIntelligence::new(&svc.base, Credential::Key("other".into()), Duration::from_secs(5));
    assert!(wrong.analyze(Bytes::from_static(b"x"), DocumentClass::Invoice).await.is_err());
}

/// Document Intelligence configured (as the Bicep does): a PDF with a text layer is still read
/// from its text layer, an e-invoice from its XML, and a photo by the local recognisers —
/// `read` sends nothing to the service; it is asked only as a second opinion (below), or when no
/// local recogniser is installed.
#[tokio::test]
async fn with_document_intelligence_configured_text_layers_and_xml_are_read_first() {
    use warranty::adapters::ocr::tesseract::TesseractConfig;
    use warranty::adapters::ocr::{InvoiceReaders, ReaderLimits};
    use warranty::domain::InvoiceKind;
    use warranty::ports::InvoiceReader;
    let svc = fake(202, succeeded()).await;
    let scratch = tempfile::tempdir().unwrap();
    let tesseract = TesseractConfig::defaults(scratch.path().to_owned());
    let readers = InvoiceReaders::new(tesseract, Some(client(&svc.base)), ReaderLimits::default());
    let fixture = |name: &str| {
        Bytes::from(
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap(),
        )
    };

    let reading = readers.read(InvoiceKind::Pdf, fixture("invoice.pdf")).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::PdfText);
    let einvoice = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/einvoices/zugferd1-hybrid.pdf");
    let reading = readers.read(InvoiceKind::Pdf, Bytes::from(std::fs::read(einvoice).unwrap())).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::EmbeddedXml);
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 0, "nothing with a better source was sent");

    let reading = readers.read(InvoiceKind::Png, fixture("invoice.png")).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::Tesseract, "the local recogniser first");
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 0);
    let second = readers.second_opinion(DocumentClass::Invoice, fixture("invoice.png")).await.unwrap().unwrap();
    assert_eq!(second.engine, OcrEngineKind::DocumentIntelligence);
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 1);

    // No local recogniser installed: the service reads instead of failing.
    let missing = TesseractConfig {
        tesseract: "/nonexistent/tesseract".into(),
        ..TesseractConfig::defaults(scratch.path().to_owned())
    };
    let readers = InvoiceReaders::new(missing, Some(client(&svc.base)), ReaderLimits::default());
    let reading = readers.read(InvoiceKind::Png, fixture("invoice.png")).await.unwrap();
    assert_eq!(reading.engine, OcrEngineKind::DocumentIntelligence);
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 2);
}

/// Through the OCR handler: a photo the local recognisers leave uncertain is sent for a second
/// opinion and the two readings are checked against each other; a scan they read with certainty
/// is not sent (and not billed).
#[tokio::test]
async fn only_what_the_local_readers_leave_uncertain_gets_a_second_opinion() {
    use crate::support::{Form, final_ocr, fixture, spawn_with};
    use warranty::config::{OcrEngineChoice, Secret};
    let svc = fake(202, succeeded()).await;
    let base = svc.base.clone();
    let app = spawn_with(move |s| {
        s.delivery.ocr_dispatcher = true;
        s.ocr.ocr_engine = OcrEngineChoice::DocumentIntelligence;
        s.ocr.docintel_endpoint = Some(base);
        s.ocr.docintel_key = Some(Secret::new("test-key"));
    })
    .await;

    // The generated scan: subtotal + tax = total, read alike by both recognisers.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let truth: Value = serde_json::from_slice(&std::fs::read(corpus.join("ground-truth.json")).unwrap()).unwrap();
    let inv = truth["invoices"].as_array().unwrap().iter().find(|i| i["kind"] == "scanned").unwrap();
    let r = &inv["registration"];
    let form = Form::registration(
        r["brand"].as_str().unwrap(),
        r["model"].as_str().unwrap(),
        r["serialNumber"].as_str().unwrap(),
        r["purchaseDate"].as_str().unwrap(),
        &std::fs::read(corpus.join(inv["file"].as_str().unwrap())).unwrap(),
    );
    let resp = app.post_form("alice", form).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let ocr = final_ocr(&app, "alice", &location).await;
    assert_eq!(
        (ocr["status"].as_str(), ocr["engine"].as_str()),
        (Some("completed"), Some("pp-ocr+tesseract")),
        "{ocr}"
    );
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 0, "certain: not sent");

    // The small PNG: the engines read its total differently, so it is uncertain.
    let resp = app
        .post_form(
            "alice",
            Form::registration("Apple", "MacBook Air", "C02XK0ABJGH5", "2026-03-15", &fixture("invoice.png")),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let ocr = final_ocr(&app, "alice", &location).await;
    assert_eq!(svc.analyses.load(Ordering::SeqCst), 1, "uncertain: one second opinion");
    assert_eq!(*svc.models.lock().unwrap(), ["prebuilt-invoice"], "titled INVOICE: the invoice model");
    assert_eq!(ocr["engine"], "document-intelligence", "{ocr}");
    // The service read the date alike (supported) and another total (disputed: review).
    assert!(ocr["fields"]["invoiceDate"]["confidence"].as_f64().unwrap() >= 0.8, "{ocr}");
    assert!(ocr["fields"]["total"]["confidence"].as_f64().unwrap() < 0.8, "{ocr}");
    assert_eq!(ocr["status"], "needs_review");
}
