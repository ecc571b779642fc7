//! Invoice and receipt fields from positioned text, in English, German and French.
//!
//! Input is what an OCR engine or a PDF text layer gives: visual lines, top to bottom, each
//! with its cells (runs of words separated by a column gap) and their horizontal positions.
//! Every field is chosen among candidates by evidence, never by "first" or "last" line:
//!
//! - **labels** of a kind (an invoice-date label beats a bare date; a due-date label rules a
//!   date out; "Subtotal", "Total qty", "Cash" and "Change" are not totals);
//! - **position**: a label's value is in its cell, the next cell to its right, or the cell
//!   below it in the same column; the issuer's block is the letterhead, never the block after
//!   "Bill to" / "Rechnungsempfänger" / "Client";
//! - **arithmetic**: subtotal + tax = total, the rows' sum = subtotal, cash − change = total;
//! - **agreement**: the same value under several labels.
//!
//! Each field's confidence is computed from that evidence and the reader's own confidence in
//! the words; a field nothing supports is left out rather than guessed.
//!
//! One module per field: `dates`, `amounts` (subtotal, tax, total), `parties` (the seller),
//! `numbers`, `currency`, `rows` (line items); `agree` checks two engines' fields against each
//! other and `class` tells a receipt from an invoice. This module holds the lines and cells they
//! all read, and puts the fields together.

pub mod agree;
mod amounts;
mod class;
mod currency;
mod dates;
mod numbers;
mod parties;
mod rows;

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;

use super::ocr::{Amount, Field, InvoiceFields};
pub use amounts::parse_amount;
use amounts::*;
pub use class::document_class;
use currency::*;
use dates::*;
pub use dates::{dates_in, parse_date};
use numbers::*;
use parties::*;

/// A run of words on a line with no column gap inside, and its horizontal extent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cell {
    pub text: String,
    pub left: f32,
    pub right: f32,
    /// The reader's confidence in the cell's least certain word (0 to 1).
    pub confidence: f32,
}

/// One visual line and how sure the reader was of it (0 to 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextLine {
    /// The cells joined by two spaces (a column gap), or the text as given.
    pub text: String,
    pub confidence: f32,
    /// The line's cells with positions; empty when the reader gave none.
    pub cells: Vec<Cell>,
    pub page: u32,
    /// Top of the line and its height, in the reader's units, top-down; 0 when unknown.
    pub top: f32,
    pub height: f32,
}

impl TextLine {
    /// A line without positions: runs of two or more spaces separate its cells.
    pub fn new(text: impl Into<String>, confidence: f32) -> Self {
        Self { text: text.into(), confidence, cells: Vec::new(), page: 1, top: 0.0, height: 0.0 }
    }

    pub fn positioned(cells: Vec<Cell>, page: u32, top: f32, height: f32, confidence: f32) -> Self {
        let text = cells.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join("  ");
        Self { text, confidence, cells, page, top, height }
    }
}

pub(crate) fn re(p: &str) -> Regex {
    Regex::new(p).expect("extraction patterns compile")
}

/// An amount as printed: 1,199.00 / 1.199,00 / 1 199,00 / 1199.00 / 349,99.
pub(crate) const AMOUNT: &str = r"(?:\d{1,3}(?:[.,\u{a0}\u{202f} ']\d{3})+|\d+)[.,]\d{2}";

/// A document title: a date on its line ("Rechnung Nr. 5 vom 09.05.2017", "Invoice # 7 issued
/// at …") is the issue date.
static DOCUMENT_TITLE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:tax\s*)?(?:invoice|rechnung|facture|receipt|quittung|gutschrift|credit\s*note|avoir)\b")
});
/// Folds accents and case so "Février", "fevrier" and "FÉVRIER" compare equal.
pub fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ö' | 'ó' => 'o',
            'û' | 'ü' | 'ù' | 'ú' => 'u',
            'ç' => 'c',
            'ß' => 's',
            other => other,
        })
        .collect()
}

/// A normalised line: single spaces inside cells, cells with positions (synthetic ones, one
/// unit per character, for lines given without).
#[derive(Debug, Clone)]
struct Line {
    text: String,
    cells: Vec<Cell>,
    confidence: f32,
    /// The line's amounts with their byte positions in `text`, read once.
    amounts: Vec<(usize, Amount)>,
}

impl Line {
    fn from(l: &TextLine) -> Option<Self> {
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let cells: Vec<Cell> = if l.cells.is_empty() {
            let mut pos = 0usize;
            let mut out = Vec::new();
            for part in l.text.split("  ") {
                let t = squash(part);
                if !t.is_empty() {
                    let (left, right) = (pos as f32, (pos + part.len()) as f32);
                    out.push(Cell { text: t, left, right, confidence: l.confidence });
                }
                pos += part.len() + 2;
            }
            out
        } else {
            l.cells
                .iter()
                .map(|c| Cell { text: squash(&c.text), left: c.left, right: c.right, confidence: c.confidence })
                .filter(|c| !c.text.is_empty())
                .collect()
        };
        if cells.is_empty() {
            return None;
        }
        let text = cells.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
        let amounts = amounts(&text);
        Some(Self { text, cells, confidence: l.confidence.clamp(0.0, 1.0), amounts })
    }

    /// The cell holding byte `pos` of `text`.
    fn cell_at(&self, pos: usize) -> usize {
        let mut end = 0;
        for (i, c) in self.cells.iter().enumerate() {
            end += c.text.len() + 1;
            if pos < end {
                return i;
            }
        }
        self.cells.len() - 1
    }
}

fn overlaps(a: &Cell, b: &Cell) -> bool {
    a.left < b.right && b.left < a.right
}

/// The text found for a label: after it in its cell, else the next cell to the right, else
/// the cell below that overlaps it (a header row over a value row). With the confidence of the
/// line it came from and whether it was below.
fn value_for_label<'a>(lines: &'a [Line], i: usize, cell: usize, after: &'a str) -> Vec<(&'a str, f32, bool)> {
    let mut out = Vec::new();
    let after = after.trim_start_matches([':', ' ', '#', '.', '-']).trim();
    if !after.is_empty() {
        out.push((after, lines[i].confidence, false));
    }
    if let Some(next) = lines[i].cells.get(cell + 1) {
        out.push((next.text.as_str(), lines[i].confidence, false));
    }
    if let Some(below) = lines.get(i + 1) {
        let label = &lines[i].cells[cell];
        for c in below.cells.iter().filter(|c| overlaps(label, c)) {
            out.push((c.text.as_str(), below.confidence, true));
        }
    }
    out
}

/// Lines that hold header fields (number, date), which are never table rows.
pub(crate) fn is_header_field_line(text: &str) -> bool {
    NUMBER_LABEL_RE.is_match(text) || (INVOICE_DATE_LABEL_RE.is_match(text) && !dates_in(text, false).is_empty())
}

/// Summary lines (subtotal, tax, totals, payment) end the table.
pub(crate) fn is_summary_line(text: &str) -> bool {
    !matches!(role_of(text), AmountRole::Other) || GRAND_TOTAL_RE.is_match(text) || PLAIN_TOTAL_RE.is_match(text)
}

/// Where the characters came from: how far a single reading of a digit can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A PDF's text layer: the characters are the ones the issuer wrote.
    Exact,
    /// OCR: any digit may be misread ("80.90" read as "80.91"), so a value needs a second,
    /// independent support (arithmetic, or the same value printed twice) to be trusted.
    Ocr,
}

/// Reads the fields of text whose characters are exact (a PDF text layer).
pub fn extract(lines: &[TextLine]) -> InvoiceFields {
    extract_from(lines, Source::Exact)
}

/// Reads the fields and sets each one's confidence from its evidence and the source.
pub fn extract_from(lines: &[TextLine], source: Source) -> InvoiceFields {
    let lines: Vec<Line> = lines.iter().filter_map(Line::from).collect();
    if lines.is_empty() {
        return InvoiceFields::default();
    }
    let mut fields = InvoiceFields::default();
    let amounts = money(&lines, source);
    fields.currency = currency(&lines, amounts.total_line, source);
    let month_first = fields.currency.as_ref().is_some_and(|c| c.value == "USD" && c.confidence >= 0.9);
    fields.invoice_number = invoice_number(&lines);
    fields.invoice_date = invoice_date(&lines, month_first, source);
    fields.seller = seller(&lines);
    fields.subtotal = amounts.subtotal;
    fields.tax = amounts.tax;
    fields.total = amounts.total;
    let plain: Vec<TextLine> = lines.iter().map(|l| TextLine::new(l.text.clone(), l.confidence)).collect();
    fields.line_items = rows::line_items(&plain, fields.subtotal.as_ref().map(|s| s.value));
    cross_check(&mut fields);
    leave_out_guesses(&mut fields);
    fields
}

/// Below this confidence a value is a guess, not a reading: on the real receipts, fields under
/// it were right less than half the time (docs/benchmarks.md), so they are left out.
pub const MIN_REPORTED: f32 = 0.5;

fn leave_out_guesses(f: &mut InvoiceFields) {
    fn keep<T>(field: &mut Option<Field<T>>) {
        if field.as_ref().is_some_and(|x| x.confidence < MIN_REPORTED) {
            *field = None;
        }
    }
    keep(&mut f.invoice_number);
    keep(&mut f.invoice_date);
    keep(&mut f.seller);
    keep(&mut f.currency);
    keep(&mut f.subtotal);
    keep(&mut f.tax);
    keep(&mut f.total);
}

/// Rows that add up to the subtotal (or to the total without tax) are trusted; rows that do
/// not are suspect whatever the reader thought.
fn cross_check(f: &mut InvoiceFields) {
    let (sub, tax, total) =
        (f.subtotal.as_ref().map(|x| x.value), f.tax.as_ref().map(|x| x.value), f.total.as_ref().map(|x| x.value));
    let amounts: Option<Vec<i64>> = f.line_items.iter().map(|i| i.amount.map(|a| a.0)).collect();
    let reference = sub.or(if tax.is_none() { total } else { None });
    if let (Some(amounts), Some(reference)) = (amounts, reference)
        && !amounts.is_empty()
    {
        let ok = amounts.iter().sum::<i64>() == reference.0;
        for item in &mut f.line_items {
            item.confidence = if ok { item.confidence.max(0.98) } else { item.confidence * 0.6 };
        }
        // Rows that add up to the subtotal also support it (and the total through it).
        if ok && let Some(s) = f.subtotal.as_mut() {
            s.confidence = s.confidence.max(0.95);
        }
        if ok
            && sub.is_none()
            && let Some(t) = f.total.as_mut()
        {
            t.confidence = t.confidence.max(0.95);
        }
    }
}

#[cfg(test)]
mod tests;
