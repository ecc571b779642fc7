//! The warranty card as a one-page PDF: what the product is, each coverage with its expiry, and
//! a QR code with the verification link.
//!
//! Written with `pdf-writer` (see docs/decisions/0016): DejaVu Sans is embedded as a subset
//! holding only the glyphs the card uses (`subsetter`), as a CID font with a `ToUnicode` map, so
//! the text is selectable and extractable. The QR code is drawn as vector squares: sharp at any
//! zoom and in any print.

use std::sync::LazyLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};

static FONT: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");
static FACE: LazyLock<ttf_parser::Face<'static>> =
    LazyLock::new(|| ttf_parser::Face::parse(FONT, 0).expect("the embedded font parses"));

/// A5 portrait, in points.
const WIDTH: f32 = 420.0;
const HEIGHT: f32 = 595.0;
const MARGIN: f32 = 36.0;

/// One coverage line of the card.
pub struct CoverageLine {
    pub label: String,
    pub provider: Option<String>,
    /// "until 2027-03-14", "for life", …
    pub term: String,
    pub status: String,
}

/// Everything printed on the card.
pub struct CardSheet {
    pub brand: String,
    pub model: String,
    pub serial_number: String,
    pub purchase_date: String,
    pub coverages: Vec<CoverageLine>,
    /// "Covered today, until 2029-03-15" or "Not covered today".
    pub verdict: String,
    pub verify_url: String,
    pub issued_on: String,
    pub link_expires_on: String,
}

/// Glyphs used so far, in subset order, with their advance widths.
struct Glyphs {
    remapper: subsetter::GlyphRemapper,
    /// Old glyph id per new id, for widths and the ToUnicode map.
    chars: Vec<(u16, char)>,
}

impl Glyphs {
    fn new() -> Self {
        Self { remapper: subsetter::GlyphRemapper::new(), chars: vec![(0, '\u{fffd}')] }
    }

    /// The text as 2-byte CIDs of the subset, and its width at `size`.
    fn encode(&mut self, text: &str, size: f32) -> (Vec<u8>, f32) {
        let face = &*FACE;
        let scale = size / f32::from(face.units_per_em());
        let mut bytes = Vec::with_capacity(text.len() * 2);
        let mut width = 0.0;
        for c in text.chars() {
            let gid = face.glyph_index(c).or_else(|| face.glyph_index('?')).map(|g| g.0).unwrap_or(0);
            let new = self.remapper.remap(gid);
            if usize::from(new) == self.chars.len() {
                self.chars.push((gid, c));
            }
            bytes.extend_from_slice(&new.to_be_bytes());
            width += f32::from(face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0)) * scale;
        }
        (bytes, width)
    }

    /// Width of `text` at `size` without adding glyphs.
    fn measure(text: &str, size: f32) -> f32 {
        let face = &*FACE;
        let scale = size / f32::from(face.units_per_em());
        text.chars()
            .map(|c| {
                let gid = face.glyph_index(c).or_else(|| face.glyph_index('?')).unwrap_or(ttf_parser::GlyphId(0));
                f32::from(face.glyph_hor_advance(gid).unwrap_or(0)) * scale
            })
            .sum()
    }
}

/// `text` cut to fit `max` points at `size`, with an ellipsis when cut.
fn fit(text: &str, size: f32, max: f32) -> String {
    if Glyphs::measure(text, size) <= max {
        return text.to_owned();
    }
    let mut out: String = text.to_owned();
    while !out.is_empty() && Glyphs::measure(&format!("{out}…"), size) > max {
        out.pop();
    }
    format!("{}…", out.trim_end())
}

struct Writer {
    content: Content,
    glyphs: Glyphs,
}

impl Writer {
    fn text(&mut self, x: f32, y: f32, size: f32, gray: f32, text: &str) {
        let text = fit(text, size, WIDTH - MARGIN - x);
        let (bytes, _) = self.glyphs.encode(&text, size);
        self.content.set_fill_gray(gray);
        self.content.begin_text();
        self.content.set_font(Name(b"F1"), size);
        self.content.next_line(x, y);
        self.content.show(Str(&bytes));
        self.content.end_text();
    }

    fn rule(&mut self, y: f32) {
        self.content.set_stroke_gray(0.75).set_line_width(0.6);
        self.content.move_to(MARGIN, y).line_to(WIDTH - MARGIN, y).stroke();
    }

    /// The QR code of `data`, `size` points wide (quiet zone included), lower-left at (x, y).
    fn qr(&mut self, data: &str, x: f32, y: f32, size: f32) {
        let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
            .expect("a verification link fits a QR code");
        let n = code.width();
        let quiet = 4;
        let module = size / (n + 2 * quiet) as f32;
        self.content.set_fill_gray(0.0);
        for row in 0..n {
            for col in 0..n {
                if code[(col, row)] == qrcode::Color::Dark {
                    let left = x + (col + quiet) as f32 * module;
                    let top = y + size - (row + quiet) as f32 * module;
                    self.content.rect(left, top - module, module, module);
                }
            }
        }
        self.content.fill_nonzero();
    }
}

/// Height of one coverage (two lines) and of the QR block at the bottom.
const ROW: f32 = 29.0;
const QR_BLOCK: f32 = MARGIN + 132.0 + 12.0;

/// How many of `count` coverages fit between `top` and the QR block, keeping a line for
/// "+ N more" when not all do.
fn coverage_rows(top: f32, count: usize) -> usize {
    let room = ((top - QR_BLOCK - 14.0) / ROW).max(0.0) as usize;
    if count > room { room.saturating_sub(1) } else { count }
}

/// The card as PDF bytes.
pub fn render(sheet: &CardSheet) -> Vec<u8> {
    let mut w = Writer { content: Content::new(), glyphs: Glyphs::new() };
    let left = MARGIN;
    let mut y = HEIGHT - MARGIN - 14.0;
    w.text(left, y, 11.0, 0.35, "WARRANTY CARD");
    y -= 30.0;
    w.text(left, y, 22.0, 0.0, &sheet.brand);
    y -= 22.0;
    w.text(left, y, 14.0, 0.15, &sheet.model);
    y -= 26.0;
    w.text(left, y, 10.0, 0.35, "Serial number");
    w.text(left + 150.0, y, 10.0, 0.35, "Purchased");
    y -= 15.0;
    w.text(left, y, 13.0, 0.0, &sheet.serial_number);
    w.text(left + 150.0, y, 13.0, 0.0, &sheet.purchase_date);
    y -= 22.0;
    w.rule(y);
    y -= 22.0;
    w.text(left, y, 13.0, 0.0, &sheet.verdict);
    y -= 26.0;
    w.text(left, y, 10.0, 0.35, "Coverages");
    y -= 8.0;
    let shown = coverage_rows(y, sheet.coverages.len());
    for c in &sheet.coverages[..shown] {
        y -= 16.0;
        w.text(left, y, 11.0, 0.0, &c.label);
        w.text(left + 230.0, y, 10.0, 0.2, &c.status);
        y -= 13.0;
        let detail = match &c.provider {
            Some(p) => format!("{p} · {}", c.term),
            None => c.term.clone(),
        };
        w.text(left + 10.0, y, 9.5, 0.3, &detail);
    }
    if shown < sheet.coverages.len() {
        y -= 18.0;
        let more = sheet.coverages.len() - shown;
        w.text(
            left,
            y,
            10.0,
            0.3,
            &format!("+ {more} more coverage{} (see the app or the link)", if more == 1 { "" } else { "s" }),
        );
    }
    // The QR code and what it is, at the bottom.
    let qr_size = 132.0;
    w.rule(MARGIN + qr_size + 12.0);
    w.qr(&sheet.verify_url, WIDTH - MARGIN - qr_size, MARGIN, qr_size);
    let mut ty = MARGIN + qr_size - 22.0;
    for line in [
        "Scan to verify this card.".to_owned(),
        "A service desk sees the product and".to_owned(),
        "its coverages, never the owner.".to_owned(),
        String::new(),
        format!("Issued {}", sheet.issued_on),
        format!("Link valid until {}", sheet.link_expires_on),
    ] {
        if !line.is_empty() {
            w.text(left, ty, 9.0, 0.3, &line);
        }
        ty -= 13.0;
    }
    let url_size = 6.0;
    w.text(left, MARGIN + 4.0, url_size, 0.45, &fit(&sheet.verify_url, url_size, WIDTH - 2.0 * MARGIN - qr_size));

    finish(w)
}

fn finish(w: Writer) -> Vec<u8> {
    let Writer { content, glyphs } = w;
    let face = &*FACE;
    let (catalog, pages, page, font, cid_font, descriptor, file, cmap, contents) = (
        Ref::new(1),
        Ref::new(2),
        Ref::new(3),
        Ref::new(4),
        Ref::new(5),
        Ref::new(6),
        Ref::new(7),
        Ref::new(8),
        Ref::new(9),
    );
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut p = pdf.page(page);
    p.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT)).parent(pages).contents(contents);
    p.resources().fonts().pair(Name(b"F1"), font);
    p.finish();

    let base = Name(b"WARCRD+DejaVuSans");
    let system = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };
    pdf.type0_font(font)
        .base_font(base)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font)
        .to_unicode(cmap);
    let to_em = 1000.0 / f32::from(face.units_per_em());
    let widths: Vec<f32> = glyphs
        .chars
        .iter()
        .map(|(gid, _)| f32::from(face.glyph_hor_advance(ttf_parser::GlyphId(*gid)).unwrap_or(0)) * to_em)
        .collect();
    let mut cid = pdf.cid_font(cid_font);
    cid.subtype(CidFontType::Type2)
        .base_font(base)
        .system_info(system)
        .font_descriptor(descriptor)
        .default_width(0.0)
        .cid_to_gid_map_predefined(Name(b"Identity"));
    cid.widths().consecutive(0, widths);
    cid.finish();
    let bbox = face.global_bounding_box();
    pdf.font_descriptor(descriptor)
        .name(base)
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(
            f32::from(bbox.x_min) * to_em,
            f32::from(bbox.y_min) * to_em,
            f32::from(bbox.x_max) * to_em,
            f32::from(bbox.y_max) * to_em,
        ))
        .italic_angle(0.0)
        .ascent(f32::from(face.ascender()) * to_em)
        .descent(f32::from(face.descender()) * to_em)
        .cap_height(f32::from(face.capital_height().unwrap_or(face.ascender())) * to_em)
        .stem_v(80.0)
        .font_file2(file);

    let subset = subsetter::subset(FONT, 0, &glyphs.remapper).expect("the embedded font subsets");
    let compressed = deflate(&subset);
    pdf.stream(file, &compressed).filter(Filter::FlateDecode).pair(Name(b"Length1"), subset.len() as i32);

    let mut unicode = UnicodeCmap::new(Name(b"Warranty-UCS"), system);
    for (new, (_, c)) in glyphs.chars.iter().enumerate().skip(1) {
        unicode.pair(new as u16, *c);
    }
    let unicode = unicode.finish();
    pdf.cmap(cmap, &unicode);
    let body = deflate(&content.finish());
    pdf.stream(contents, &body).filter(Filter::FlateDecode);
    pdf.finish()
}

/// zlib-compressed `data` (the `FlateDecode` filter).
fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).expect("writing to memory");
    z.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sheet() -> CardSheet {
        CardSheet {
            brand: "Apple".into(),
            model: "MacBook Air 13 — Ünïcødé".into(),
            serial_number: "C02XK0ABJGH5".into(),
            purchase_date: "2026-03-14".into(),
            coverages: vec![CoverageLine {
                label: "Manufacturer warranty".into(),
                provider: Some("Apple".into()),
                term: "until 2027-03-14".into(),
                status: "active".into(),
            }],
            verdict: "Covered today, until 2027-03-14".into(),
            verify_url: "http://127.0.0.1:7071/api/verify/abc".into(),
            issued_on: "2026-11-27".into(),
            link_expires_on: "2027-02-25".into(),
        }
    }

    #[test]
    fn coverages_that_do_not_fit_above_the_qr_code_are_counted() {
        // The first coverage row starts 374 pt up the page (the header's height).
        let top = 374.0;
        let fit = coverage_rows(top, 100);
        let last_row_bottom = top - (fit as f32 + 1.0) * ROW;
        assert!(last_row_bottom >= QR_BLOCK, "the rows and the '+ N more' line stay above the QR code");
        assert_eq!(coverage_rows(top, 2), 2, "a few all fit");
        assert!(coverage_rows(top, 12) < 12, "twelve do not: the rest are counted");
    }

    #[test]
    fn a_card_is_a_small_pdf_with_a_subset_font() {
        let bytes = render(&sheet());
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.len() < 40_000, "{} bytes: the font is subset", bytes.len());
        if let Ok(dir) = std::env::var("WARRANTY_CARD_SAMPLE_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("card.pdf"), &bytes).unwrap();
        }
    }
}
