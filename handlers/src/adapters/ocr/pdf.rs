//! PDF structure in pure Rust (lopdf): safety checks, embedded e-invoice attachments, and the
//! text layer with its layout (fragments grouped into lines by position).

use lopdf::content::Content;
use lopdf::{Document, Object};

use crate::domain::extraction::{Cell, TextLine};
use crate::ports::ReadError;

/// Cap on any one decompressed stream: a 10 MiB upload cannot inflate into gigabytes.
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// A loaded, readable PDF.
pub struct Pdf {
    doc: Document,
}

/// Page sizes in points (1/72 inch), for the raster-size limit.
pub struct PageSize {
    pub width: f32,
    pub height: f32,
}

impl Pdf {
    pub fn load(bytes: &[u8]) -> Result<Self, ReadError> {
        let doc = Document::load_mem(bytes).map_err(|e| {
            if memchr::memmem::find(bytes, b"/Encrypt").is_some() {
                ReadError::permanent("invoice_encrypted", format!("the PDF is encrypted: {e}"))
            } else {
                ReadError::permanent("invoice_unreadable", format!("not a readable PDF: {e}"))
            }
        })?;
        // An owner-password-only PDF (empty user password) opens and is fine; one that needs a
        // user password cannot be read by anyone but its owner.
        if doc.trailer.has(b"Encrypt") && doc.encryption_state.is_none() {
            return Err(ReadError::permanent("invoice_encrypted", "the PDF needs a password to open"));
        }
        let pages = doc.get_pages().len();
        if pages == 0 {
            return Err(ReadError::permanent("invoice_no_pages", "the PDF has no pages"));
        }
        Ok(Self { doc })
    }

    pub fn page_count(&self) -> usize {
        self.doc.get_pages().len()
    }

    pub fn page_sizes(&self) -> Vec<PageSize> {
        self.doc
            .get_pages()
            .values()
            .map(|id| {
                let media = self.inherited(*id, b"MediaBox");
                let nums: Vec<f32> = media
                    .and_then(|o| o.as_array().ok())
                    .map(|a| a.iter().filter_map(|v| self.number(v)).collect())
                    .unwrap_or_default();
                match nums.as_slice() {
                    [x0, y0, x1, y1] => PageSize { width: (x1 - x0).abs(), height: (y1 - y0).abs() },
                    _ => PageSize { width: 612.0, height: 792.0 },
                }
            })
            .collect()
    }

    fn number(&self, o: &Object) -> Option<f32> {
        let o = self.doc.dereference(o).ok()?.1;
        match o {
            Object::Integer(i) => Some(*i as f32),
            Object::Real(r) => Some(*r),
            _ => None,
        }
    }

    /// A page attribute, inherited from the page tree when the page does not set it.
    fn inherited(&self, mut id: lopdf::ObjectId, key: &[u8]) -> Option<&Object> {
        for _ in 0..32 {
            let dict = self.doc.get_dictionary(id).ok()?;
            if let Ok(v) = dict.get_deref(key, &self.doc) {
                return Some(v);
            }
            id = dict.get(b"Parent").ok()?.as_reference().ok()?;
        }
        None
    }

    /// Embedded files whose name ends in `.xml` (Factur-X names it `factur-x.xml`, ZUGFeRD
    /// `zugferd-invoice.xml`, XRechnung `xrechnung.xml`), from the catalog's EmbeddedFiles
    /// name tree and its associated files (/AF).
    pub fn xml_attachments(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let Ok(catalog) = self.doc.catalog() else { return out };
        let mut specs: Vec<&Object> = Vec::new();
        if let Ok(names) = catalog.get_deref(b"Names", &self.doc).and_then(Object::as_dict)
            && let Ok(tree) = names.get_deref(b"EmbeddedFiles", &self.doc).and_then(Object::as_dict)
        {
            self.collect_name_tree(tree, &mut specs, 0);
        }
        if let Ok(af) = catalog.get_deref(b"AF", &self.doc).and_then(Object::as_array) {
            specs.extend(af.iter());
        }
        for spec in specs {
            let Ok((_, spec)) = self.doc.dereference(spec) else { continue };
            let Ok(spec) = spec.as_dict() else { continue };
            let name = [b"UF".as_slice(), b"F"]
                .iter()
                .find_map(|k| spec.get_deref(k, &self.doc).ok().and_then(|o| o.as_str().ok()))
                .map(|b| {
                    lopdf::decode_text_string(&Object::String(b.to_vec(), lopdf::StringFormat::Literal))
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            if !name.to_ascii_lowercase().ends_with(".xml") || out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let Ok(ef) = spec.get_deref(b"EF", &self.doc).and_then(Object::as_dict) else { continue };
            let Some(stream) = [b"UF".as_slice(), b"F"]
                .iter()
                .find_map(|k| ef.get_deref(k, &self.doc).ok().and_then(|o| o.as_stream().ok()))
            else {
                continue;
            };
            let data = if stream.dict.has(b"Filter") {
                stream.decompressed_content_with_limit(MAX_DECOMPRESSED).ok()
            } else {
                Some(stream.content.clone())
            };
            if let Some(data) = data {
                out.push((name, data));
            }
        }
        out
    }

    fn collect_name_tree<'a>(&'a self, node: &'a lopdf::Dictionary, out: &mut Vec<&'a Object>, depth: u32) {
        if depth > 16 {
            return;
        }
        if let Ok(names) = node.get_deref(b"Names", &self.doc).and_then(Object::as_array) {
            out.extend(names.iter().skip(1).step_by(2));
        }
        if let Ok(kids) = node.get_deref(b"Kids", &self.doc).and_then(Object::as_array) {
            for kid in kids {
                if let Ok((_, Object::Dictionary(d))) = self.doc.dereference(kid) {
                    self.collect_name_tree(d, out, depth + 1);
                }
            }
        }
    }

    /// The text layer as lines, top to bottom, fragments left to right. Fragments are placed
    /// by the text matrix (Tm, Td, TD, T*, ', "); the current transformation matrix is not
    /// applied, which is right for the flat layouts invoice generators produce.
    pub fn text_lines(&self) -> Vec<TextLine> {
        let mut lines = Vec::new();
        for (_, page_id) in self.doc.get_pages() {
            let Ok(fonts) = self.doc.get_page_fonts(page_id) else { continue };
            let encodings: std::collections::BTreeMap<Vec<u8>, lopdf::Encoding> = fonts
                .into_iter()
                .filter_map(|(name, font)| {
                    font.get_font_encoding_with_limit(&self.doc, MAX_DECOMPRESSED).ok().map(|e| (name, e))
                })
                .collect();
            let Ok(data) = self.doc.get_page_content_with_limit(page_id, MAX_DECOMPRESSED) else { continue };
            let Ok(content) = Content::decode(&data) else { continue };
            let mut frags: Vec<Frag> = Vec::new();
            let mut size = 10.0f32;
            let (mut tm, mut tlm) = ([1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0], [1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0]);
            let mut leading = 0.0f32;
            let mut encoding = None;
            let num = |o: &Object| match o {
                Object::Integer(i) => *i as f32,
                Object::Real(r) => *r,
                _ => 0.0,
            };
            for op in &content.operations {
                let args = &op.operands;
                match op.operator.as_str() {
                    "BT" => {
                        tm = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
                        tlm = tm;
                    }
                    "Tf" => {
                        encoding = args.first().and_then(|n| n.as_name().ok()).and_then(|n| encodings.get(n));
                        size = args.get(1).map(num).unwrap_or(size);
                    }
                    "TL" => leading = args.first().map(num).unwrap_or(0.0),
                    "Tm" if args.len() == 6 => {
                        for (slot, a) in tm.iter_mut().zip(args) {
                            *slot = num(a);
                        }
                        tlm = tm;
                    }
                    "Td" | "TD" if args.len() == 2 => {
                        let (tx, ty) = (num(&args[0]), num(&args[1]));
                        if op.operator == "TD" {
                            leading = -ty;
                        }
                        tlm[4] += tx * tlm[0] + ty * tlm[2];
                        tlm[5] += tx * tlm[1] + ty * tlm[3];
                        tm = tlm;
                    }
                    "T*" | "'" | "\"" => {
                        tlm[4] -= leading * tlm[2];
                        tlm[5] -= leading * tlm[3];
                        tm = tlm;
                        if op.operator != "T*"
                            && let (Some(enc), Some(s)) = (encoding, args.last())
                        {
                            frags.push(Frag::new(&tm, size, decode(enc, s)));
                        }
                    }
                    "Tj" | "TJ" => {
                        if let (Some(enc), Some(arg)) = (encoding, args.first()) {
                            frags.push(Frag::new(&tm, size, decode(enc, arg)));
                        }
                    }
                    _ => {}
                }
            }
            let page = lines.last().map_or(1, |l: &TextLine| l.page + 1);
            lines.extend(group_lines(frags, page));
        }
        lines
    }
}

fn decode(enc: &lopdf::Encoding, o: &Object) -> String {
    match o {
        Object::String(bytes, _) => Document::decode_text(enc, bytes).unwrap_or_default(),
        Object::Array(items) => {
            let mut s = String::new();
            for item in items {
                match item {
                    Object::String(bytes, _) => s.push_str(&Document::decode_text(enc, bytes).unwrap_or_default()),
                    // A large negative adjustment is a visual gap: a word space.
                    Object::Integer(i) if *i < -200 => s.push(' '),
                    Object::Real(r) if *r < -200.0 => s.push(' '),
                    _ => {}
                }
            }
            s
        }
        _ => String::new(),
    }
}

/// A piece of text placed on the page: baseline start (x, y) and the font's rendered size.
struct Frag {
    x: f32,
    y: f32,
    size: f32,
    text: String,
}

impl Frag {
    fn new(tm: &[f32; 6], font_size: f32, text: String) -> Self {
        let scale = (tm[3].abs()).max(tm[0].abs()).max(0.01);
        Self { x: tm[4], y: tm[5], size: (font_size * scale).abs().max(1.0), text }
    }
}

/// Fragments on (nearly) the same baseline form a line; each fragment is a cell, its width
/// estimated from the font size (half an em per character, the average of Latin fonts).
fn group_lines(mut frags: Vec<Frag>, page: u32) -> Vec<TextLine> {
    frags.retain(|f| !f.text.trim().is_empty());
    frags.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x.total_cmp(&b.x)));
    let mut lines: Vec<(f32, Vec<Frag>)> = Vec::new();
    for f in frags {
        match lines.last_mut() {
            Some((ly, parts)) if (*ly - f.y).abs() <= 2.0 => parts.push(f),
            _ => lines.push((f.y, vec![f])),
        }
    }
    lines
        .into_iter()
        .map(|(y, mut parts)| {
            parts.sort_by(|a, b| a.x.total_cmp(&b.x));
            let height = parts.iter().map(|p| p.size).fold(0.0, f32::max);
            let cells = parts
                .into_iter()
                .map(|p| {
                    let text = p.text.trim().to_owned();
                    let right = p.x + text.chars().count() as f32 * p.size * 0.5;
                    Cell { text, left: p.x, right, confidence: 0.99 }
                })
                .collect();
            // PDF y grows upwards; lines are top-down, so the top is the negated baseline.
            TextLine::positioned(cells, page, -y - height, height, 0.99)
        })
        .collect()
}
