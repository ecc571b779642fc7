//! A PDF's text layer read in process by PDFium (the PDF engine of Chromium), loaded at run time
//! from the `libpdfium.so` the pinned `pypdfium2` wheel ships (`tools/models/fetch` installs it
//! beside the PP-OCR models; decision 0022). It applies what poppler's `pdftotext` applies — the
//! fonts' ToUnicode maps, CID fonts, the text matrices and the page's rotation — without a process
//! per invoice: one reading costs about a tenth of `pdftotext`'s CPU (docs/benchmarks.md).
//!
//! Only PDFium's C API is used, through a handful of functions resolved once. PDFium is not
//! thread-safe and its state is global to the process: every call, whichever `Pdfium` makes it,
//! runs under one process-wide lock (a text layer takes about a millisecond), and the library is
//! never unloaded once initialised.

use crate::domain::extraction::TextLine;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::path::Path;
use std::sync::Mutex;

type Document = *mut c_void;
type Page = *mut c_void;
type TextPage = *mut c_void;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RectF {
    left: f32,
    top: f32,
    right: f32,
    bottom: f32,
}

/// The functions of PDFium's public C API this reader calls (`fpdfview.h`, `fpdf_text.h`,
/// `fpdf_attachment.h`).
struct Api {
    load_mem_document64: unsafe extern "C" fn(*const c_void, usize, *const c_char) -> Document,
    close_document: unsafe extern "C" fn(Document),
    get_page_count: unsafe extern "C" fn(Document) -> c_int,
    load_page: unsafe extern "C" fn(Document, c_int) -> Page,
    close_page: unsafe extern "C" fn(Page),
    page_width: unsafe extern "C" fn(Page) -> f32,
    page_height: unsafe extern "C" fn(Page) -> f32,
    #[allow(clippy::type_complexity)]
    page_to_device:
        unsafe extern "C" fn(Page, c_int, c_int, c_int, c_int, c_int, f64, f64, *mut c_int, *mut c_int) -> c_int,
    text_load_page: unsafe extern "C" fn(Page) -> TextPage,
    text_close_page: unsafe extern "C" fn(TextPage),
    text_count_chars: unsafe extern "C" fn(TextPage) -> c_int,
    text_get_unicode: unsafe extern "C" fn(TextPage, c_int) -> c_uint,
    text_get_loose_char_box: unsafe extern "C" fn(TextPage, c_int, *mut RectF) -> c_int,
    text_get_font_size: unsafe extern "C" fn(TextPage, c_int) -> f64,
    page_size_by_index: unsafe extern "C" fn(Document, c_int, *mut SizeF) -> c_int,
    attachment_count: unsafe extern "C" fn(Document) -> c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SizeF {
    width: f32,
    height: f32,
}

/// A document's text layer as PDFium read it, with what the reader checks before rendering.
pub struct Layer {
    /// Pages in the document (all of them were read).
    pub pages: usize,
    /// Each page's width and height in points, as displayed.
    pub sizes: Vec<(f32, f32)>,
    pub lines: Vec<TextLine>,
}

/// The loaded library's functions.
pub struct Pdfium {
    api: Api,
}

/// Held by every call into PDFium.
static CALLS: Mutex<()> = Mutex::new(());

/// The file name `tools/models/fetch` installs the library under, in the models folder.
pub const LIBRARY: &str = "libpdfium.so";

/// Device units per point when mapping boxes through the page's display matrix (which rounds to
/// whole device units): a hundredth of a point.
const SUBPOINT: f64 = 100.0;

impl Pdfium {
    /// Loads `libpdfium.so` and initialises the library. `Err` says why (reported once; the
    /// reader then uses poppler's `pdftotext`).
    pub fn load(path: &Path) -> Result<Self, String> {
        if !path.is_file() {
            return Err(format!("{} is missing (tools/models/fetch installs it)", path.display()));
        }
        // SAFETY: loading a shared library runs its initialisers; this is PDFium's own build, as
        // the wheel ships it, checked by SHA-256 when it was installed.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("{}: {e}", path.display()))?;
        let init: unsafe extern "C" fn() = symbol(&library, b"FPDF_InitLibrary\0")?;
        let api = Api {
            load_mem_document64: symbol(&library, b"FPDF_LoadMemDocument64\0")?,
            close_document: symbol(&library, b"FPDF_CloseDocument\0")?,
            get_page_count: symbol(&library, b"FPDF_GetPageCount\0")?,
            load_page: symbol(&library, b"FPDF_LoadPage\0")?,
            close_page: symbol(&library, b"FPDF_ClosePage\0")?,
            page_width: symbol(&library, b"FPDF_GetPageWidthF\0")?,
            page_height: symbol(&library, b"FPDF_GetPageHeightF\0")?,
            page_to_device: symbol(&library, b"FPDF_PageToDevice\0")?,
            text_load_page: symbol(&library, b"FPDFText_LoadPage\0")?,
            text_close_page: symbol(&library, b"FPDFText_ClosePage\0")?,
            text_count_chars: symbol(&library, b"FPDFText_CountChars\0")?,
            text_get_unicode: symbol(&library, b"FPDFText_GetUnicode\0")?,
            text_get_loose_char_box: symbol(&library, b"FPDFText_GetLooseCharBox\0")?,
            text_get_font_size: symbol(&library, b"FPDFText_GetFontSize\0")?,
            page_size_by_index: symbol(&library, b"FPDF_GetPageSizeByIndexF\0")?,
            attachment_count: symbol(&library, b"FPDFDoc_GetAttachmentCount\0")?,
        };
        let _calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: before any other PDFium function; a second call (another `Pdfium` on the same
        // library) returns at once.
        unsafe { init() };
        // Never unloaded: PDFium keeps process-wide state, and `api` points into it.
        std::mem::forget(library);
        Ok(Self { api })
    }

    /// The words of the first `pages` pages, with their boxes in points from the top-left corner
    /// of the page as displayed, joined into lines by [`super::tesseract::lines_from_words`].
    /// `Err` when PDFium cannot open the document.
    pub fn text_lines(&self, bytes: &[u8], pages: usize) -> Result<Vec<TextLine>, String> {
        let words = self.words(bytes, pages)?;
        Ok(super::tesseract::lines_from_words(words))
    }

    fn words(&self, bytes: &[u8], pages: usize) -> Result<Vec<super::tesseract::Word>, String> {
        // SAFETY: the document is open for the closure's call, under the lock.
        self.with_document(bytes, |api, doc| unsafe {
            let count = ((api.get_page_count)(doc).max(0) as usize).min(pages);
            doc_words(api, doc, count)
        })
    }

    /// Opens the document once and, if `wanted(pages, attachments)` agrees, reads its whole text
    /// layer and page sizes. PDFium parses lazily — the cross-reference table, the page tree, the
    /// names of embedded files — so a document it is not asked to read costs little, and one it
    /// reads is not copied: its streams are decoded where they lie. `Ok(None)` when `wanted`
    /// declined; `Err` when PDFium cannot open the document.
    pub fn read_document(
        &self,
        bytes: &[u8],
        wanted: impl FnOnce(usize, usize) -> bool,
    ) -> Result<Option<Layer>, String> {
        // SAFETY: the document is open for the closure's call, under the lock; the size
        // out-parameter is a live FS_SIZEF.
        self.with_document(bytes, |api, doc| unsafe {
            let pages = (api.get_page_count)(doc).max(0) as usize;
            let attachments = (api.attachment_count)(doc).max(0) as usize;
            wanted(pages, attachments).then(|| {
                let sizes = (0..pages)
                    .map(|i| {
                        let mut size = SizeF::default();
                        (api.page_size_by_index)(doc, i as c_int, &mut size);
                        (size.width, size.height)
                    })
                    .collect();
                let lines = super::tesseract::lines_from_words(doc_words(api, doc, pages));
                Layer { pages, sizes, lines }
            })
        })
    }

    /// Runs `f` on the document `bytes` holds, under the process-wide lock, and closes it after;
    /// `Err` when PDFium cannot open it.
    fn with_document<T>(&self, bytes: &[u8], f: impl FnOnce(&Api, Document) -> T) -> Result<T, String> {
        let _calls = CALLS.lock().unwrap_or_else(|p| p.into_inner());
        let api = &self.api;
        // SAFETY: `bytes` outlives the document, which is closed once, before this returns.
        unsafe {
            let doc = (api.load_mem_document64)(bytes.as_ptr().cast(), bytes.len(), std::ptr::null());
            if doc.is_null() {
                return Err("PDFium could not open the PDF".into());
            }
            let out = f(api, doc);
            (api.close_document)(doc);
            Ok(out)
        }
    }
}

/// The words of the first `count` pages of an open document.
///
/// # Safety
/// `doc` is an open document and the caller holds [`CALLS`].
unsafe fn doc_words(api: &Api, doc: Document, count: usize) -> Vec<super::tesseract::Word> {
    let mut words = Vec::new();
    for index in 0..count {
        // SAFETY: every handle is checked for null and closed once, in reverse order of opening.
        unsafe {
            let page = (api.load_page)(doc, index as c_int);
            if page.is_null() {
                continue;
            }
            let text = (api.text_load_page)(page);
            if !text.is_null() {
                page_words(api, page, text, index as u32 + 1, &mut words);
                (api.text_close_page)(text);
            }
            (api.close_page)(page);
        }
    }
    words
}

/// A function of the library, as the type the field it fills declares.
fn symbol<T: Copy>(library: &libloading::Library, name: &[u8]) -> Result<T, String> {
    // SAFETY: every caller's `T` is the function's declaration in PDFium's public headers
    // (`fpdfview.h`, `fpdf_text.h`); the pointer is used only while the library stays loaded.
    unsafe { library.get::<T>(name) }.map(|f| *f).map_err(|e| format!("libpdfium: {e}"))
}

/// Of the font size: a gap at least this wide between two characters of a line separates two
/// words, whether or not the PDF draws a space there (poppler's `minWordBreakSpace`).
const WORD_BREAK: f32 = 0.1;

/// The words of one page: runs of characters between whitespace (PDFium inserts the line breaks
/// and most of the spaces a layout implies) or across a gap of [`WORD_BREAK`] of the font size,
/// each with the union of its characters' boxes (the font's ascent to descent, as poppler's words
/// have).
///
/// # Safety
/// `page` and `text` are open handles of the same page.
unsafe fn page_words(api: &Api, page: Page, text: TextPage, number: u32, out: &mut Vec<super::tesseract::Word>) {
    // SAFETY: the caller's handles are open.
    let (width, height) = unsafe { ((api.page_width)(page), (api.page_height)(page)) };
    let (size_x, size_y) = ((f64::from(width) * SUBPOINT) as c_int, (f64::from(height) * SUBPOINT) as c_int);
    // A point of the page's own space → the displayed page, top-down, in points.
    let display = |x: f64, y: f64| -> (f32, f32) {
        let (mut dx, mut dy) = (0, 0);
        // SAFETY: the page is open; the outputs are two live integers.
        unsafe { (api.page_to_device)(page, 0, 0, size_x, size_y, 0, x, y, &mut dx, &mut dy) };
        ((f64::from(dx) / SUBPOINT) as f32, (f64::from(dy) / SUBPOINT) as f32)
    };
    let mut word = String::new();
    let mut bounds: Option<RectF> = None;
    let mut high_surrogate: Option<u16> = None;
    let mut flush = |word: &mut String, bounds: &mut Option<RectF>| {
        if let Some(b) = bounds.take().filter(|_| !word.is_empty()) {
            let (x0, y0) = display(f64::from(b.left), f64::from(b.top));
            let (x1, y1) = display(f64::from(b.right), f64::from(b.bottom));
            let (left, top) = (x0.min(x1), y0.min(y1));
            out.push(super::tesseract::Word {
                page: number,
                left,
                top,
                width: (x0.max(x1) - left).max(0.0),
                height: (y0.max(y1) - top).max(0.0),
                text: std::mem::take(word),
            });
        }
        word.clear();
    };
    // SAFETY: the text page is open.
    let count = unsafe { (api.text_count_chars)(text) }.max(0);
    for i in 0..count {
        // SAFETY: `i` is within the page's characters.
        let code = unsafe { (api.text_get_unicode)(text, i) };
        let ch = match code {
            0xD800..=0xDBFF => {
                high_surrogate = Some(code as u16);
                continue;
            }
            0xDC00..=0xDFFF => match high_surrogate.take() {
                Some(high) => char::decode_utf16([high, code as u16]).next().and_then(Result::ok),
                None => None,
            },
            _ => char::from_u32(code),
        };
        let Some(ch) = ch.filter(|c| *c != '\0' && *c != '\u{fffe}' && *c != '\u{2}') else {
            continue;
        };
        if ch.is_whitespace() {
            flush(&mut word, &mut bounds);
            continue;
        }
        let mut rect = RectF::default();
        // SAFETY: `i` is within the page's characters; `rect` is a live FS_RECTF.
        if unsafe { (api.text_get_loose_char_box)(text, i, &mut rect) } == 0 {
            continue;
        }
        // SAFETY: as above.
        let size = unsafe { (api.text_get_font_size)(text, i) } as f32;
        if let Some(b) = bounds {
            let gap = rect.left - b.right;
            let same_line = rect.bottom < b.top && rect.top > b.bottom;
            if !same_line || gap > WORD_BREAK * size.max(1.0) || rect.right < b.left {
                flush(&mut word, &mut bounds);
            }
        }
        // PDF space: y grows upwards, so a box's top is above its bottom.
        bounds = Some(match bounds {
            None => rect,
            Some(b) => RectF {
                left: b.left.min(rect.left),
                top: b.top.max(rect.top),
                right: b.right.max(rect.right),
                bottom: b.bottom.min(rect.bottom),
            },
        });
        word.push(ch);
    }
    flush(&mut word, &mut bounds);
}
