//! Invoice readers behind the `InvoiceReader` port.
//!
//! Order for a PDF, whatever engine is configured: an embedded e-invoice XML (exact, no OCR) →
//! the PDF's text layer → the pages rendered and OCRed (Tesseract), or sent to Document
//! Intelligence when configured. Images go to Tesseract or Document Intelligence. So a configured
//! Document Intelligence sees (and bills) only what has no better source: scans and photos.

pub mod docintel;
pub mod einvoice;
pub mod pdf;
pub mod tesseract;

use crate::adapters::azure::identity::Identity;
use crate::config::{OcrEngineChoice, OcrSettings, StartupError};
use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::InvoiceKind;
use crate::domain::ocr::OcrEngineKind;
use crate::ports::{EngineHealth, EngineReading, InvoiceReader, ReadError, Reading};
use docintel::DocumentIntelligence;
use pdf::Pdf;
use tesseract::{Tesseract, TesseractConfig, image_dimensions};

#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    /// Pages read from one invoice; more is refused (`invoice_too_many_pages`).
    pub max_pages: usize,
    /// Pixels per rendered page or image; more is refused (`invoice_image_too_large`).
    pub max_pixels: u64,
    /// Resolution scanned PDFs are rendered at.
    pub dpi: u32,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        Self { max_pages: 5, max_pixels: 40_000_000, dpi: 200 }
    }
}

/// Paths the evaluation (`warranty ocr-eval --derive`) switches off to exercise the next reader
/// on documents whose truth comes from the first: a hybrid PDF without its XML is a text-layer
/// PDF, and without its text layer a scan. The service always reads with the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub skip_embedded_xml: bool,
    pub skip_text_layer: bool,
}

/// Fewer letters and digits than this in the text layer means "scanned": OCR instead.
const MIN_TEXT_LAYER_CHARS: usize = 30;

enum PdfStep {
    Done(Box<EngineReading>),
    /// No e-invoice: read the text layer, else render (unless a page is too large to).
    Text {
        pages: usize,
        /// The in-process text layer, decoded only where poppler is missing.
        fallback: Vec<crate::domain::extraction::TextLine>,
        too_large: Option<String>,
    },
}

pub struct InvoiceReaders {
    /// Probed once, in the background at start-up (so start-up stays fast) or on first use.
    tesseract: tokio::sync::OnceCell<Result<Tesseract, String>>,
    tesseract_config: TesseractConfig,
    docintel: Option<DocumentIntelligence>,
    limits: ReaderLimits,
}

impl InvoiceReaders {
    /// The readers the settings describe, with scratch space at `scratch` and (development
    /// only, for `warranty ocr-eval`) a cache of Tesseract's raw output.
    pub fn from_settings(
        settings: &OcrSettings,
        identity: &Identity,
        scratch: &std::path::Path,
        cache: Option<std::path::PathBuf>,
    ) -> Result<Self, StartupError> {
        let tesseract = TesseractConfig {
            tesseract: settings.tesseract_path.clone(),
            pdftoppm: settings.pdftoppm_path.clone(),
            languages: settings.ocr_languages.clone(),
            timeout: std::time::Duration::from_secs(settings.ocr_timeout_secs),
            dpi: settings.ocr_dpi,
            psm: settings.ocr_psm,
            scratch: scratch.to_owned(),
            cache,
        };
        let docintel = match settings.ocr_engine {
            OcrEngineChoice::Local => None,
            OcrEngineChoice::DocumentIntelligence => {
                let Some(endpoint) = &settings.docintel_endpoint else {
                    return Err(StartupError::DocIntelNeedsEndpoint);
                };
                let credential = match &settings.docintel_key {
                    // Local use only.
                    Some(key) => docintel::Credential::Key(key.clone()),
                    // In Azure: the app's managed identity (role Cognitive Services User).
                    None => docintel::Credential::Entra(identity.credential().map_err(StartupError::DocIntelIdentity)?),
                };
                Some(DocumentIntelligence::new(endpoint, credential, std::time::Duration::from_secs(120)))
            }
        };
        let limits = ReaderLimits {
            max_pages: settings.ocr_max_pages,
            max_pixels: settings.ocr_max_pixels,
            dpi: settings.ocr_dpi,
        };
        Ok(Self::new(tesseract, docintel, limits))
    }

    pub fn new(tesseract: TesseractConfig, docintel: Option<DocumentIntelligence>, limits: ReaderLimits) -> Self {
        Self { tesseract: tokio::sync::OnceCell::new(), tesseract_config: tesseract, docintel, limits }
    }

    /// Probes Tesseract now (idempotent).
    pub async fn probe(&self) {
        let _ = self.tesseract_probe().await;
    }

    async fn tesseract_probe(&self) -> &Result<Tesseract, String> {
        self.tesseract
            .get_or_init(|| async {
                let probed = Tesseract::probe(self.tesseract_config.clone()).await;
                if let Err(e) = &probed {
                    tracing::warn!(reason = %e, "tesseract unavailable: scanned and photographed invoices fail with ocr_engine_unavailable");
                }
                probed
            })
            .await
    }

    async fn tesseract(&self) -> Result<&Tesseract, ReadError> {
        self.tesseract_probe().await.as_ref().map_err(|e| ReadError::EngineUnavailable(e.clone()))
    }

    fn check_pixels(&self, w: u64, h: u64) -> Result<(), ReadError> {
        if w.saturating_mul(h) > self.limits.max_pixels {
            return Err(ReadError::permanent(
                "invoice_image_too_large",
                format!("{w}×{h} pixels is more than the {} allowed", self.limits.max_pixels),
            ));
        }
        Ok(())
    }

    async fn read_pdf(&self, bytes: Bytes, options: ReadOptions) -> Result<EngineReading, ReadError> {
        let limits = self.limits;
        let use_text_layer = !options.skip_text_layer;
        // The in-process text layer is decoded only where poppler's is not available.
        let decode_here = use_text_layer && self.tesseract().await.is_err();
        let b = bytes.clone();
        let step = tokio::task::spawn_blocking(move || -> Result<PdfStep, ReadError> {
            let pdf = Pdf::load(&b)?;
            let pages = pdf.page_count();
            if pages > limits.max_pages {
                return Err(ReadError::permanent(
                    "invoice_too_many_pages",
                    format!("{pages} pages; at most {} are read", limits.max_pages),
                ));
            }
            for (name, xml) in pdf.xml_attachments().into_iter().filter(|_| !options.skip_embedded_xml) {
                if let Some((fields, text)) = einvoice::parse(&xml) {
                    tracing::info!(attachment = %name, "read the embedded e-invoice");
                    return Ok(PdfStep::Done(Box::new(EngineReading {
                        engine: OcrEngineKind::EmbeddedXml,
                        reading: Reading::Structured { fields, text },
                    })));
                }
            }
            // The raster-size limit, checked before anything is rendered.
            let too_large = pdf.page_sizes().into_iter().find_map(|size| {
                let scale = f64::from(limits.dpi) / 72.0;
                let (w, h) = ((f64::from(size.width) * scale) as u64, (f64::from(size.height) * scale) as u64);
                (w.saturating_mul(h) > limits.max_pixels)
                    .then(|| format!("a page renders to {w}×{h} pixels, more than the {} allowed", limits.max_pixels))
            });
            let fallback = if decode_here { pdf.text_lines() } else { Vec::new() };
            Ok(PdfStep::Text { pages, fallback, too_large })
        })
        .await
        .map_err(|e| ReadError::Transient(format!("PDF reader task failed: {e}")))??;
        let (pages, fallback, too_large) = match step {
            PdfStep::Done(r) => return Ok(*r),
            PdfStep::Text { pages, fallback, too_large } => (pages, fallback, too_large),
        };
        if use_text_layer {
            // Poppler's text layer (the fonts' ToUnicode maps, CID fonts and transforms
            // applied), or the in-process reader where poppler is missing.
            let lines = match self.tesseract().await {
                Ok(t) => t.pdf_text(&bytes, pages).await?,
                Err(_) => fallback,
            };
            let chars: usize = lines.iter().map(|l| l.text.chars().filter(|c| c.is_alphanumeric()).count()).sum();
            if chars >= MIN_TEXT_LAYER_CHARS {
                return Ok(EngineReading {
                    engine: OcrEngineKind::PdfText,
                    reading: Reading::Text { lines, pages: pages as u32 },
                });
            }
        }
        if let Some(why) = too_large {
            return Err(ReadError::permanent("invoice_image_too_large", why));
        }
        if let Some(di) = &self.docintel {
            return di.analyze(bytes, "application/pdf").await;
        }
        let (lines, pages) = self.tesseract().await?.pdf(&bytes, pages).await?;
        Ok(EngineReading { engine: OcrEngineKind::Tesseract, reading: Reading::Text { lines, pages } })
    }

    /// [`InvoiceReader::read`] with some paths switched off (evaluation only).
    pub async fn read_with(
        &self,
        kind: InvoiceKind,
        bytes: Bytes,
        options: ReadOptions,
    ) -> Result<EngineReading, ReadError> {
        match kind {
            InvoiceKind::Pdf => self.read_pdf(bytes, options).await,
            InvoiceKind::Jpeg | InvoiceKind::Png => {
                let (w, h) = image_dimensions(&bytes)
                    .ok_or_else(|| ReadError::permanent("invoice_unreadable", "the image header is damaged"))?;
                if w == 0 || h == 0 {
                    return Err(ReadError::permanent("invoice_unreadable", "the image has no pixels"));
                }
                self.check_pixels(u64::from(w), u64::from(h))?;
                if let Some(di) = &self.docintel {
                    return di.analyze(bytes, kind.content_type()).await;
                }
                let lines = self.tesseract().await?.image(&bytes, kind.extension()).await?;
                Ok(EngineReading { engine: OcrEngineKind::Tesseract, reading: Reading::Text { lines, pages: 1 } })
            }
        }
    }
}

#[async_trait]
impl InvoiceReader for InvoiceReaders {
    async fn read(&self, kind: InvoiceKind, bytes: Bytes) -> Result<EngineReading, ReadError> {
        self.read_with(kind, bytes, ReadOptions::default()).await
    }

    fn health(&self) -> Vec<EngineHealth> {
        let mut out = vec![
            EngineHealth { name: "embeddedXml", available: true, detail: None },
            EngineHealth { name: "pdfText", available: true, detail: None },
            match self.tesseract.get() {
                Some(Ok(t)) => {
                    EngineHealth { name: "tesseract", available: true, detail: Some(t.version().to_owned()) }
                }
                Some(Err(e)) => EngineHealth { name: "tesseract", available: false, detail: Some(e.clone()) },
                None => EngineHealth { name: "tesseract", available: false, detail: Some("not probed yet".into()) },
            },
        ];
        if let Some(di) = &self.docintel {
            out.push(EngineHealth {
                name: "documentIntelligence",
                available: true,
                detail: Some(di.endpoint().to_owned()),
            });
        }
        out
    }
}
