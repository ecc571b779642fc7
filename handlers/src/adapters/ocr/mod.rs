//! Invoice readers behind the `InvoiceReader` port.
//!
//! Order for a PDF, whatever engine is configured: an embedded e-invoice XML (exact, no OCR) →
//! the PDF's text layer → the pages rendered and read by the local recognisers (PP-OCR and
//! Tesseract, checked against each other). Images go to the local recognisers. Document
//! Intelligence, when configured, is a second opinion the OCR handler asks only for a scan or
//! photo the local reading left uncertain ([`InvoiceReader::second_opinion`]), or the reader
//! when no local recogniser is installed: it sees (and bills) only what nothing cheaper read.

pub mod docintel;
pub mod einvoice;
pub mod pdf;
pub mod pdfium;
pub mod ppocr;
pub mod tesseract;
pub mod worker;

use crate::adapters::azure::identity::Identity;
use crate::config::{OcrEngineChoice, OcrSettings, StartupError};
use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::InvoiceKind;
use crate::domain::ocr::{DocumentClass, OcrEngineKind};
use crate::ports::{EngineHealth, EngineReading, InvoiceReader, ReadError, Reading};
use docintel::DocumentIntelligence;
use pdf::Pdf;
use ppocr::{PpOcr, PpOcrConfig};
use tesseract::{Tesseract, TesseractConfig, image_dimensions};

pub use crate::config::{DEFAULT_MODELS_DIR, Recognizers};

impl Recognizers {
    fn pp_ocr(self) -> bool {
        matches!(self, Self::Both | Self::PpOcr)
    }
    fn tesseract(self) -> bool {
        matches!(self, Self::Both | Self::Tesseract)
    }
}

/// An image to recognise: the upload itself, or a rendered page of a scanned PDF.
enum Image<'a> {
    Upload(&'a Bytes, InvoiceKind),
    Pages(&'a tesseract::Rendered),
}

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

/// Whether the bytes hold the key `/AF` (associated files, where PDF/A-3 e-invoices reference
/// their XML): the name followed by a delimiter, so `/AFRelationship` and the odd `/AF` inside
/// compressed data do not count (a delimiter after it in random bytes: about one megabyte in
/// 700). A false positive costs the slower structural read, never a reading.
fn names_associated_files(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, b"/AF")
        .any(|at| matches!(bytes.get(at + 3), Some(b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0' | b'[')))
}

/// Whether the file ends as a PDF does: `startxref` (then the cross-reference's offset and
/// `%%EOF`) within its last 2 KiB (ISO 32000-1, 7.5.5; readers tolerate some bytes after the
/// marker, so the search is not anchored to the very end).
fn ends_like_a_pdf(bytes: &[u8]) -> bool {
    memchr::memmem::rfind(&bytes[bytes.len().saturating_sub(2048)..], b"startxref").is_some()
}

/// Why a page cannot be rendered within the pixel limit (sizes in points), if one cannot.
fn too_large(mut sizes: impl Iterator<Item = (f32, f32)>, limits: ReaderLimits) -> Option<String> {
    let scale = f64::from(limits.dpi) / 72.0;
    sizes.find_map(|(width, height)| {
        let (w, h) = ((f64::from(width) * scale) as u64, (f64::from(height) * scale) as u64);
        (w.saturating_mul(h) > limits.max_pixels)
            .then(|| format!("a page renders to {w}×{h} pixels, more than the {} allowed", limits.max_pixels))
    })
}

enum PdfStep {
    Done(Box<EngineReading>),
    /// No e-invoice: read the text layer, else render (unless a page is too large to).
    Text {
        pages: usize,
        /// The text layer read in process: by PDFium, or (where neither PDFium nor poppler is
        /// installed) by the crate's own decoder. `None`: ask poppler's `pdftotext`.
        layer: Option<Vec<crate::domain::extraction::TextLine>>,
        too_large: Option<String>,
    },
}

/// Document Intelligence as the settings configure it (`None` for local reading only).
pub fn document_intelligence(
    settings: &OcrSettings,
    identity: &Identity,
) -> Result<Option<DocumentIntelligence>, StartupError> {
    Ok(match settings.ocr_engine {
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
    })
}

pub struct InvoiceReaders {
    /// Probed once, in the background at start-up (so start-up stays fast) or on first use.
    tesseract: tokio::sync::OnceCell<Result<Tesseract, String>>,
    tesseract_config: TesseractConfig,
    /// Loaded once, in the background at start-up or on first use.
    ppocr: tokio::sync::OnceCell<Result<PpOcr, String>>,
    ppocr_config: PpOcrConfig,
    /// PDFium (`libpdfium.so`), loaded on the first PDF: a service at rest maps none of it.
    pdfium: std::sync::OnceLock<Result<std::sync::Arc<pdfium::Pdfium>, String>>,
    pdfium_path: std::path::PathBuf,
    recognizers: Recognizers,
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
        let docintel = document_intelligence(settings, identity)?;
        let limits = ReaderLimits {
            max_pages: settings.ocr_max_pages,
            max_pixels: settings.ocr_max_pixels,
            dpi: settings.ocr_dpi,
        };
        let ppocr = PpOcrConfig {
            cache: tesseract.cache.clone(),
            ..PpOcrConfig::in_dir(
                &settings.ocr_models_dir,
                settings.ocr_recognizer_instances.unwrap_or_else(PpOcrConfig::default_instances),
            )
        };
        Ok(Self::new(tesseract, docintel, limits)
            .with_recognizers(settings.ocr_recognizers, ppocr)
            .with_pdfium(settings.ocr_models_dir.join(pdfium::LIBRARY)))
    }

    /// Readers with Tesseract as the only local recogniser; see [`Self::with_recognizers`].
    pub fn new(tesseract: TesseractConfig, docintel: Option<DocumentIntelligence>, limits: ReaderLimits) -> Self {
        Self {
            tesseract: tokio::sync::OnceCell::new(),
            tesseract_config: tesseract,
            ppocr: tokio::sync::OnceCell::new(),
            ppocr_config: PpOcrConfig::in_dir(std::path::Path::new(DEFAULT_MODELS_DIR), 1),
            pdfium: std::sync::OnceLock::new(),
            pdfium_path: std::path::Path::new(DEFAULT_MODELS_DIR).join(pdfium::LIBRARY),
            recognizers: Recognizers::Tesseract,
            docintel,
            limits,
        }
    }

    pub fn with_recognizers(mut self, recognizers: Recognizers, ppocr: PpOcrConfig) -> Self {
        self.recognizers = recognizers;
        self.ppocr_config = ppocr;
        self
    }

    /// Where `libpdfium.so` is looked for (a missing file leaves text layers to `pdftotext`).
    pub fn with_pdfium(mut self, path: std::path::PathBuf) -> Self {
        self.pdfium_path = path;
        self
    }

    /// PDFium, loaded on first use; `None` (said once in the log) where it cannot be loaded.
    fn pdfium(&self) -> Option<std::sync::Arc<pdfium::Pdfium>> {
        let loaded = self.pdfium.get_or_init(|| {
            let loaded = pdfium::Pdfium::load(&self.pdfium_path).map(std::sync::Arc::new);
            if let Err(e) = &loaded {
                tracing::warn!(reason = %e, "PDFium unavailable: text layers are read by poppler's pdftotext");
            }
            loaded
        });
        loaded.as_ref().ok().cloned()
    }

    /// Probes Tesseract and checks the PP-OCR files now (idempotent). The models themselves load
    /// on the first image: a service at rest holds none of their memory.
    pub async fn probe(&self) {
        let _ = self.tesseract_probe().await;
        if self.recognizers.pp_ocr() {
            let _ = self.ppocr_loaded().await;
        }
    }

    async fn ppocr_loaded(&self) -> &Result<PpOcr, String> {
        self.ppocr
            .get_or_init(|| async {
                let found = PpOcr::new(self.ppocr_config.clone());
                if let Err(e) = &found {
                    tracing::warn!(reason = %e, "PP-OCR unavailable: scans and photos are read by Tesseract alone");
                }
                found
            })
            .await
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
        let pdfium = if use_text_layer { self.pdfium() } else { None };
        // The crate's own decoder reads the text layer only where neither PDFium nor poppler can.
        let poppler_missing = use_text_layer && self.tesseract().await.is_err();
        let b = bytes.clone();
        let step = tokio::task::spawn_blocking(move || -> Result<PdfStep, ReadError> {
            let mut pdfium = pdfium;
            // PDFium first: it opens a document lazily where lopdf parses every object and copies
            // every stream (for a 1 MB invoice that copy and its page faults cost more than the
            // reading; docs/benchmarks.md). lopdf stays the judge of what PDFium will not open or
            // count, of page limits, and of documents whose attachments may carry an e-invoice —
            // embedded files (PDFium's count) or associated files (`/AF`, which the count skips) —
            // and of files that do not end as a PDF ends, which PDFium would try to repair (12 MB
            // of heap spent failing on 10 MB of noise behind a `%PDF` header).
            if let Some(p) = pdfium.as_ref().filter(|_| ends_like_a_pdf(&b)) {
                let associated = !options.skip_embedded_xml && names_associated_files(&b);
                let plain = |pages: usize, attachments: usize| {
                    pages > 0
                        && pages <= limits.max_pages
                        && (options.skip_embedded_xml || (attachments == 0 && !associated))
                };
                match p.read_document(&b, plain) {
                    Ok(Some(layer)) => {
                        let too_large = too_large(layer.sizes.iter().copied(), limits);
                        return Ok(PdfStep::Text { pages: layer.pages, layer: Some(layer.lines), too_large });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Not asked again for the text layer of the same bytes below.
                        tracing::warn!(reason = %e, "PDFium could not open the PDF; lopdf judges it, poppler reads it");
                        pdfium = None;
                    }
                }
            }
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
            let too_large = too_large(pdf.page_sizes().into_iter().map(|s| (s.width, s.height)), limits);
            let layer = match &pdfium {
                Some(p) => match p.text_lines(&b, pages) {
                    Ok(lines) => Some(lines),
                    Err(e) => {
                        tracing::warn!(reason = %e, "PDFium could not read the text layer; trying the next reader");
                        poppler_missing.then(|| pdf.text_lines())
                    }
                },
                None => poppler_missing.then(|| pdf.text_lines()),
            };
            Ok(PdfStep::Text { pages, layer, too_large })
        })
        .await
        .map_err(|e| ReadError::Transient(format!("PDF reader task failed: {e}")))??;
        let (pages, layer, too_large) = match step {
            PdfStep::Done(r) => return Ok(*r),
            PdfStep::Text { pages, layer, too_large } => (pages, layer, too_large),
        };
        if use_text_layer {
            // The fonts' ToUnicode maps, CID fonts and transforms applied: PDFium's reading, else
            // poppler's `pdftotext` (a process per invoice).
            let lines = match layer {
                Some(lines) => lines,
                None => match self.tesseract().await {
                    Ok(t) => t.pdf_text(&bytes, pages).await?,
                    Err(_) => Vec::new(),
                },
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
        // The rendered pages (and their scratch directory) live until both recognisers are done.
        let local = match self.tesseract().await {
            Ok(t) => match t.render(&bytes, pages, self.limits.max_pixels).await {
                Ok(rendered) => self.recognise(Image::Pages(&rendered)).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        self.or_document_intelligence(local, bytes, InvoiceKind::Pdf).await
    }

    /// Without a local recogniser, Document Intelligence (where configured) reads instead.
    async fn or_document_intelligence(
        &self,
        local: Result<EngineReading, ReadError>,
        bytes: Bytes,
        kind: InvoiceKind,
    ) -> Result<EngineReading, ReadError> {
        match (local, &self.docintel) {
            // Nothing was read locally: the kind alone says which model (a photo is taken for a
            // receipt, a PDF for an invoice).
            (Err(ReadError::EngineUnavailable(_)), Some(di)) => {
                di.analyze(bytes, crate::domain::extraction::document_class(kind, "")).await
            }
            (local, _) => local,
        }
    }

    async fn ppocr_pages(
        p: &PpOcr,
        rendered: &tesseract::Rendered,
    ) -> Result<Vec<crate::domain::extraction::TextLine>, ReadError> {
        let mut lines = Vec::new();
        for (i, path) in rendered.pages.iter().enumerate() {
            let png = tokio::fs::read(path).await.map_err(|e| ReadError::Transient(e.to_string()))?;
            lines.extend(p.image(Bytes::from(png), i as u32 + 1).await?);
        }
        Ok(lines)
    }

    /// Reads an image with the configured local recognisers: both at once when both are
    /// configured and available (checked against each other), else whichever is.
    async fn recognise(&self, image: Image<'_>) -> Result<EngineReading, ReadError> {
        let pages = match &image {
            Image::Upload(..) => 1,
            Image::Pages(r) => r.pages.len() as u32,
        };
        let tesseract = async {
            if !self.recognizers.tesseract() {
                return None;
            }
            let t = match self.tesseract().await {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            Some(match &image {
                Image::Upload(bytes, kind) => t.image(bytes, kind.extension()).await,
                Image::Pages(r) => t.pages(r).await,
            })
        };
        let pp = async {
            if !self.recognizers.pp_ocr() {
                return None;
            }
            let p = match self.ppocr_loaded().await {
                Ok(p) => p,
                Err(e) => return Some(Err(ReadError::EngineUnavailable(e.clone()))),
            };
            Some(match &image {
                Image::Upload(bytes, _) => p.image((*bytes).clone(), 1).await,
                Image::Pages(r) => Self::ppocr_pages(p, r).await,
            })
        };
        let (t, p) = tokio::join!(tesseract, pp);
        // Whichever engines read the image are used; when none did, the failure that says most
        // about the invoice is the reading's (a permanent or transient one before "not installed").
        let mut failure: Option<ReadError> = None;
        let mut keep = |r: Option<Result<Vec<crate::domain::extraction::TextLine>, ReadError>>| match r {
            Some(Ok(lines)) => Some(lines),
            Some(Err(e)) => {
                if failure.as_ref().is_none_or(|f| matches!(f, ReadError::EngineUnavailable(_))) {
                    failure = Some(e);
                }
                None
            }
            None => None,
        };
        let (p, t) = (keep(p), keep(t));
        match (p, t) {
            (Some(pp), Some(tess)) => Ok(EngineReading {
                engine: OcrEngineKind::PpOcrTesseract,
                reading: Reading::Checked { readings: vec![pp, tess], pages },
            }),
            (Some(lines), None) => {
                Ok(EngineReading { engine: OcrEngineKind::PpOcr, reading: Reading::Text { lines, pages } })
            }
            (None, Some(lines)) => {
                Ok(EngineReading { engine: OcrEngineKind::Tesseract, reading: Reading::Text { lines, pages } })
            }
            (None, None) => {
                Err(failure.unwrap_or_else(|| ReadError::EngineUnavailable("no recogniser is configured".into())))
            }
        }
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
                let local = self.recognise(Image::Upload(&bytes, kind)).await;
                self.or_document_intelligence(local, bytes, kind).await
            }
        }
    }
}

#[async_trait]
impl InvoiceReader for InvoiceReaders {
    async fn read(&self, kind: InvoiceKind, bytes: Bytes) -> Result<EngineReading, ReadError> {
        self.read_with(kind, bytes, ReadOptions::default()).await
    }

    async fn second_opinion(&self, class: DocumentClass, bytes: Bytes) -> Option<Result<EngineReading, ReadError>> {
        let di = self.docintel.as_ref()?;
        Some(di.analyze(bytes, class).await)
    }

    fn health(&self) -> Vec<EngineHealth> {
        let mut out = vec![
            EngineHealth { name: "embeddedXml", available: true, detail: None },
            EngineHealth {
                name: "pdfText",
                available: true,
                detail: Some(match self.pdfium.get() {
                    Some(Ok(_)) => "PDFium".into(),
                    Some(Err(_)) => "pdftotext (PDFium unavailable)".into(),
                    None => "PDFium loads on the first PDF".into(),
                }),
            },
            match self.tesseract.get() {
                Some(Ok(t)) => {
                    EngineHealth { name: "tesseract", available: true, detail: Some(t.version().to_owned()) }
                }
                Some(Err(e)) => EngineHealth { name: "tesseract", available: false, detail: Some(e.clone()) },
                None => EngineHealth { name: "tesseract", available: false, detail: Some("not probed yet".into()) },
            },
        ];
        if self.recognizers.pp_ocr() {
            out.push(match self.ppocr.get().map(|p| p.as_ref().map_err(Clone::clone).and_then(PpOcr::status)) {
                Some(Ok(status)) => EngineHealth { name: "ppOcr", available: true, detail: Some(status) },
                Some(Err(e)) => EngineHealth { name: "ppOcr", available: false, detail: Some(e) },
                None => EngineHealth { name: "ppOcr", available: false, detail: Some("not checked yet".into()) },
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The key counts with a delimiter after it; a longer name or the letters inside data do not.
    #[test]
    fn associated_files_are_named_by_the_key_alone() {
        for yes in [&b"<< /AF [4 0 R] >>"[..], b"/AF 12 0 R", b"/AF[", b"x/AF\n"] {
            assert!(names_associated_files(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [&b"<< /AFRelationship /Data >>"[..], b"\x93/AFk\x01", b"/AF", b"/Af [1 0 R]"] {
            assert!(!names_associated_files(no), "{}", String::from_utf8_lossy(no));
        }
    }

    /// A file ends as a PDF with `startxref` near its end, whatever follows `%%EOF`; noise behind
    /// a `%PDF` header, or a file cut short, does not.
    #[test]
    fn a_pdf_ends_with_its_cross_reference_offset() {
        let mut pdf = b"%PDF-1.7\n".to_vec();
        pdf.extend(std::iter::repeat_n(b'x', 10_000));
        assert!(!ends_like_a_pdf(&pdf), "no trailer");
        pdf.extend_from_slice(b"trailer << >>\nstartxref\n116\n%%EOF\n");
        assert!(ends_like_a_pdf(&pdf));
        pdf.extend(std::iter::repeat_n(b'\0', 500));
        assert!(ends_like_a_pdf(&pdf), "bytes after the end marker");
        pdf.truncate(9_000);
        assert!(!ends_like_a_pdf(&pdf), "cut short");
        assert!(!ends_like_a_pdf(b""));
    }

    /// Pixels per page at the limits' resolution: the first page over the limit names its size.
    #[test]
    fn a_page_too_large_to_render_is_named() {
        let limits = ReaderLimits { max_pages: 5, max_pixels: 1_000_000, dpi: 72 };
        assert_eq!(too_large([(500.0, 500.0), (999.0, 1000.0)].into_iter(), limits), None);
        let why = too_large([(500.0, 500.0), (1001.0, 1000.0)].into_iter(), limits).unwrap();
        assert!(why.contains("1001×1000"), "{why}");
    }
}
