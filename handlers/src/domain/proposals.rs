//! What an invoice proposes for the registration form (invoice-first registration, issue 29).
//!
//! From a reading — its positioned lines and the fields extracted from them — one proposal per
//! product the invoice lists: the brand in the catalogue's spelling (found by its name or an
//! alias, "Hewlett-Packard" → "HP"), the model named after it, the serial number printed for it
//! (kept only if it fits the brand's serial rule), and its price; with the purchase date (the
//! invoice's date), the seller and the currency shared by all. Every value carries a confidence
//! and, where the reader gave positions, the page and box it was read from, so an app can
//! highlight it on the document. Nothing is guessed: a value without evidence is left out, and
//! the person confirms or corrects what is proposed.
//!
//! Which lines are products: a line that names a catalogue brand and carries an amount or is a
//! line item the extraction found (a brand in the letterhead or in a sentence without a price is
//! not a product). Without any branded line, every line item is one, without a brand.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::brand_catalog::BrandCatalog;
use super::extraction::{TextLine, dates_in, fold, parse_amount};
use super::ocr::{Amount, InvoiceFields, LineItem};

/// Where a value was read: its page (from 1) and its box from the page's top-left corner, in the
/// page's units as read (points for a PDF's text layer, pixels for an image).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Located {
    pub page: u32,
    pub left: f32,
    pub top: f32,
    pub width: f32,
    pub height: f32,
}

/// A proposed value, how sure the reading is of it (0 to 1) and where it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposed<T> {
    pub value: T,
    pub confidence: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Located>,
}

/// One product of the invoice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductProposal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Proposed<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Proposed<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<Proposed<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Proposed<Amount>>,
}

/// Everything an invoice proposes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_date: Option<Proposed<NaiveDate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller: Option<Proposed<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Proposed<String>>,
    pub products: Vec<ProductProposal>,
}

/// Products proposed from one invoice at most (a long receipt of groceries is not a list of
/// warranties).
pub const MAX_PRODUCTS: usize = 10;

/// Words in the longest brand name or alias looked for.
const MAX_BRAND_WORDS: usize = 3;

/// Words of a model at most.
const MAX_MODEL_WORDS: usize = 8;

/// Lines below a product's line searched for its serial number (before the next product).
const SERIAL_LINES_BELOW: usize = 2;

/// A serial number's label and the value after it.
static SERIAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:\bs/?n\b|\bserial(?:\s*(?:no\.?|nr\.?|number|#))?|\bseriennummer|\bserien-?nr\.?|\bn[°o]\s*de\s*s[ée]rie|\bimei)\s*[:#.]?\s*(?P<value>[a-z0-9][a-z0-9./-]{3,39})",
    )
    .expect("the serial label pattern compiles")
});

/// A word that ends a model: a quantity ("2x", "x2"), a serial label, a currency or a unit.
static MODEL_STOP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:\d{1,3}\s*[x×]|[x×]\s*\d{1,3}|s/?n:?|serial.*|seriennummer.*|serien-?nr\.?:?|n[°º]|imei.*|eur|usd|gbp|chf|€|£|\$|stk\.?|pcs\.?|qty.*|menge.*)$",
    )
    .expect("the model stop pattern compiles")
});

/// The rest of an amount grouped by spaces after its first group: "591,88" of "1 591,88".
static THOUSANDS_GROUP_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{3}(?:[.,]\d{2})?$").expect("the group pattern compiles"));

/// One word of a line with where it was read (if the reader gave positions).
struct Word<'a> {
    text: &'a str,
    /// The cell (column run) it belongs to; 0 on a line without positions.
    cell: usize,
    at: Option<Located>,
}

/// A line's words. Positions inside a cell are shared out by character: a reader gives boxes
/// for cells (runs of words), and a proposal points at a word or two of one.
fn words_of(line: &TextLine) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let positioned = line.height > 0.0 && !line.cells.is_empty();
    if !positioned {
        out.extend(line.text.split_whitespace().map(|text| Word { text, cell: 0, at: None }));
        return out;
    }
    for (index, cell) in line.cells.iter().enumerate() {
        let chars = cell.text.chars().count().max(1) as f32;
        let per_char = (cell.right - cell.left).max(0.0) / chars;
        // Characters of the cell before this piece.
        let mut before = 0usize;
        for piece in cell.text.split_inclusive(char::is_whitespace) {
            let start = before as f32;
            before += piece.chars().count();
            let text = piece.trim_end();
            if text.is_empty() {
                continue;
            }
            let len = text.chars().count() as f32;
            out.push(Word {
                text,
                cell: index,
                at: Some(Located {
                    page: line.page,
                    left: cell.left + start * per_char,
                    top: line.top,
                    width: len * per_char,
                    height: line.height,
                }),
            });
        }
    }
    out
}

/// The box around some words (of one line), if they have positions.
fn span(words: &[Word<'_>]) -> Option<Located> {
    let mut boxes = words.iter().filter_map(|w| w.at);
    let first = boxes.next()?;
    let (mut left, mut right) = (first.left, first.left + first.width);
    for b in boxes {
        left = left.min(b.left);
        right = right.max(b.left + b.width);
    }
    Some(Located { left, width: right - left, ..first })
}

/// A word without the punctuation around it.
fn bare(word: &str) -> &str {
    word.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '(' | ')' | '[' | ']' | '"' | '\'' | '*' | '·'))
}

/// The catalogue brand the line names: the longest run of words that is a brand's name or alias
/// (case and spacing ignored), with where it starts, how many words it takes and whether it was
/// written as the catalogue writes it.
fn brand_in<'c>(catalog: &'c BrandCatalog, words: &[Word<'_>]) -> Option<(&'c str, usize, usize, bool)> {
    for n in (1..=MAX_BRAND_WORDS).rev() {
        for start in 0..words.len().saturating_sub(n - 1) {
            let phrase: Vec<&str> = words[start..start + n].iter().map(|w| bare(w.text)).collect();
            if phrase.iter().any(|w| w.is_empty()) {
                continue;
            }
            let phrase = phrase.join(" ");
            if let Some(name) = catalog.canonical(&phrase) {
                let as_named = fold(&phrase) == fold(name);
                return Some((name, start, n, as_named));
            }
        }
    }
    None
}

/// The last amount on a line, with the word it was read from.
fn amount_on(words: &[Word<'_>]) -> Option<(Amount, usize)> {
    words.iter().enumerate().rev().find_map(|(i, w)| {
        let t = w.text.trim_start_matches(['€', '£', '$']).trim_end_matches(['€', '£', '$']);
        // An amount grouped by a space ("1 591,88") is one amount.
        let group = i.checked_sub(1).map(|p| &words[p]).filter(|p| {
            p.cell == w.cell
                && (1..=3).contains(&p.text.len())
                && p.text.bytes().all(|b| b.is_ascii_digit())
                && THOUSANDS_GROUP_RE.is_match(t)
        });
        match group {
            Some(first) => parse_amount(&format!("{}{t}", first.text)).map(|a| (a, i)),
            None => parse_amount(t).map(|a| (a, i)),
        }
    })
}

/// The model: the words after the brand in its cell (the next column is a quantity or a price),
/// up to an amount, a quantity, a serial label or a unit.
fn model_after(words: &[Word<'_>], from: usize, cell: usize) -> Option<(String, Option<Located>)> {
    let mut end = from;
    let next = |i: usize| words.get(i + 1).filter(|n| n.cell == cell).map(|n| bare(n.text));
    let times = |w: &str| matches!(w, "x" | "X" | "×");
    let count = |w: &str| (1..=3).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit());
    while end < words.len() && end - from < MAX_MODEL_WORDS && words[end].cell == cell {
        let w = bare(words[end].text);
        let t = w.trim_start_matches(['€', '£', '$']);
        let stop = w.is_empty()
            || MODEL_STOP_RE.is_match(w)
            || parse_amount(t).is_some()
            || w == "-"
            || w == "–"
            // A quantity written as two words: "1 x", "x 2" (an "X" in a model stays).
            || (count(w) && next(end).is_some_and(times))
            || (times(w) && next(end).is_some_and(count) && !next(end + 1).is_some_and(times))
            // An amount grouped by a space ("1 591,88"): its first group is not the model's.
            || (count(w) && next(end).is_some_and(|n| THOUSANDS_GROUP_RE.is_match(n)));
        if stop {
            break;
        }
        end += 1;
        // A comma or semicolon after a word ends the name ("Galaxy Tab S9, N° de série …").
        if words[end - 1].text.trim_end().ends_with([',', ';']) {
            break;
        }
    }
    let model: Vec<&str> = words[from..end].iter().map(|w| bare(w.text)).collect();
    let model = model.join(" ");
    let model = model.trim_matches(|c: char| c == '-' || c == ',' || c.is_whitespace()).to_owned();
    (!model.is_empty()).then(|| (model, span(&words[from..end])))
}

/// A serial number on `line` that fits the brand's rule (any rule at all when the brand is not
/// known): labelled ("S/N", "Serial No.", "Seriennummer", "N° de série", "IMEI").
fn serial_on(
    catalog: &BrandCatalog,
    brand: Option<&str>,
    model: &str,
    line: &TextLine,
) -> Option<(String, Option<Located>)> {
    let terms = catalog.terms(brand.unwrap_or(""), model);
    for m in SERIAL_RE.captures_iter(&line.text) {
        let raw = m.name("value")?.as_str();
        let value = raw.trim_end_matches(['.', '-', '/']).to_uppercase();
        if !terms.serial_matches(&value) {
            continue;
        }
        let words = words_of(line);
        let at = words.iter().position(|w| w.text.to_uppercase().contains(&value)).and_then(|i| span(&words[i..=i]));
        return Some((value, at));
    }
    None
}

/// The line item the line shows, if the extraction found one there.
fn item_on<'f>(items: &'f [LineItem], line: &TextLine) -> Option<&'f LineItem> {
    let text = fold(&line.text);
    items.iter().find(|i| {
        let d = fold(&i.description);
        !d.trim().is_empty() && text.contains(d.trim())
    })
}

/// Where a date was printed: the first line holding it, the words around its position.
fn date_at(lines: &[TextLine], date: NaiveDate) -> Option<Located> {
    lines.iter().find_map(|line| {
        let (offset, _) = [false, true]
            .into_iter()
            .flat_map(|month_first| dates_in(&line.text, month_first))
            .find(|(_, d)| *d == date)?;
        let words = words_of(line);
        // The word that starts at or just before the date's byte offset in the line's text.
        let mut pos = 0;
        let mut hit = None;
        for (i, w) in words.iter().enumerate() {
            let at = line.text[pos..].find(w.text).map_or(pos, |p| pos + p);
            if at <= offset {
                hit = Some(i);
            }
            pos = at + w.text.len();
        }
        hit.and_then(|i| span(&words[i..=i]))
    })
}

/// Where a name was printed: the words of the first line that holds it.
fn text_at(lines: &[TextLine], value: &str) -> Option<Located> {
    let wanted: Vec<String> = value.split_whitespace().map(|w| fold(bare(w))).collect();
    if wanted.is_empty() {
        return None;
    }
    let n = wanted.len();
    lines.iter().find_map(|line| {
        let words = words_of(line);
        let folded: Vec<String> = words.iter().map(|w| fold(bare(w.text))).collect();
        (0..folded.len().saturating_sub(n - 1))
            .find(|&i| folded[i..i + n] == wanted[..])
            .and_then(|i| span(&words[i..i + n]))
    })
}

/// A line item's description as a model: as the invoice wrote it, without a leading position
/// number ("3 Sturzflug-Geier" as the third item) or the punctuation around it.
fn item_model(item: &LineItem, position: usize) -> Option<String> {
    let d = item.description.trim();
    let d = d
        .strip_prefix(&position.to_string())
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map_or(d, str::trim_start);
    let d = d.trim_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-'));
    (!d.is_empty()).then(|| d.to_owned())
}

/// The proposals of a reading.
pub fn propose(lines: &[TextLine], fields: &InvoiceFields, catalog: &BrandCatalog) -> Proposals {
    let purchase_date = fields.invoice_date.as_ref().map(|d| Proposed {
        value: d.value,
        confidence: d.confidence,
        at: date_at(lines, d.value),
    });
    let seller = fields.seller.as_ref().map(|s| Proposed {
        value: s.value.clone(),
        confidence: s.confidence,
        at: text_at(lines, &s.value),
    });
    let currency =
        fields.currency.as_ref().map(|c| Proposed { value: c.value.clone(), confidence: c.confidence, at: None });

    // Branded lines first: a brand on a priced line or on a line item.
    let mut products: Vec<(usize, ProductProposal)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let words = words_of(line);
        let Some((brand, start, n, as_named)) = brand_in(catalog, &words) else { continue };
        let item = item_on(&fields.line_items, line);
        let amount = amount_on(&words).filter(|(_, i)| *i >= start + n);
        if item.is_none() && amount.is_none() {
            continue;
        }
        let brand_confidence = line.confidence * if as_named { 0.95 } else { 0.9 };
        let model = model_after(&words, start + n, words[start].cell);
        let price = match (item.and_then(|i| i.amount.map(|a| (a, i.confidence))), amount) {
            (Some((value, confidence)), found) => Some(Proposed {
                value,
                confidence,
                at: found.filter(|(a, _)| *a == value).and_then(|(_, i)| span(&words[i..=i])),
            }),
            (None, Some((value, i))) => {
                Some(Proposed { value, confidence: line.confidence * 0.8, at: span(&words[i..=i]) })
            }
            (None, None) => None,
        };
        products.push((
            index,
            ProductProposal {
                brand: Some(Proposed {
                    value: brand.to_owned(),
                    confidence: brand_confidence,
                    at: span(&words[start..start + n]),
                }),
                model: model.as_ref().map(|(value, at)| Proposed {
                    value: value.clone(),
                    confidence: line.confidence * 0.75,
                    at: *at,
                }),
                serial_number: None,
                price,
            },
        ));
        if products.len() == MAX_PRODUCTS {
            break;
        }
    }
    // Without a branded line, each line item is a product without a brand.
    if products.is_empty() {
        for (k, item) in fields.line_items.iter().enumerate().take(MAX_PRODUCTS) {
            let Some(index) = lines.iter().position(|l| item_on(std::slice::from_ref(item), l).is_some()) else {
                continue;
            };
            let words = words_of(&lines[index]);
            let model = item_model(item, k + 1).map(|value| {
                let at = text_at(std::slice::from_ref(&lines[index]), &value);
                Proposed { value, confidence: item.confidence * 0.5, at }
            });
            products.push((
                index,
                ProductProposal {
                    brand: None,
                    model,
                    serial_number: None,
                    price: item.amount.map(|value| Proposed {
                        value,
                        confidence: item.confidence,
                        at: amount_on(&words).filter(|(a, _)| *a == value).and_then(|(_, i)| span(&words[i..=i])),
                    }),
                },
            ));
        }
    }
    // Each product's serial: on its line or the few below it, before the next product's line.
    let starts: Vec<usize> = products.iter().map(|(i, _)| *i).collect();
    for (k, (index, product)) in products.iter_mut().enumerate() {
        let end =
            starts.get(k + 1).copied().unwrap_or(usize::MAX).min(*index + SERIAL_LINES_BELOW + 1).min(lines.len());
        let brand = product.brand.as_ref().map(|b| b.value.clone());
        let model = product.model.as_ref().map(|m| m.value.clone()).unwrap_or_default();
        for line in &lines[*index..end] {
            if line.page != lines[*index].page {
                break;
            }
            if let Some((value, at)) = serial_on(catalog, brand.as_deref(), &model, line) {
                // A serial that fits a brand's own rule is stronger evidence than one that only
                // fits the generic rule of a brand not in the catalogue.
                let weight = if brand.is_some() { 0.9 } else { 0.6 };
                product.serial_number = Some(Proposed { value, confidence: line.confidence * weight, at });
                break;
            }
        }
    }
    Proposals { purchase_date, seller, currency, products: products.into_iter().map(|(_, p)| p).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::extraction::Cell;
    use crate::domain::ocr::Field;

    fn catalog() -> BrandCatalog {
        BrandCatalog::bundled(24).unwrap()
    }

    /// A positioned line of cells given as (text, left); each character is 5 units wide.
    fn line(page: u32, top: f32, cells: &[(&str, f32)]) -> TextLine {
        let cells = cells
            .iter()
            .map(|(text, left)| Cell {
                text: (*text).to_owned(),
                left: *left,
                right: left + 5.0 * text.chars().count() as f32,
                confidence: 0.96,
            })
            .collect();
        TextLine::positioned(cells, page, top, 10.0, 0.96)
    }

    fn invoice() -> (Vec<TextLine>, InvoiceFields) {
        let lines = vec![
            line(1, 20.0, &[("Elektro Schmidt GmbH", 40.0)]),
            line(1, 40.0, &[("Rechnung", 40.0), ("Datum: 14.03.2026", 300.0)]),
            line(1, 80.0, &[("Beschreibung", 40.0), ("Menge", 300.0), ("Betrag", 400.0)]),
            line(1, 100.0, &[("Hewlett-Packard EliteBook 840 G10", 40.0), ("1", 300.0), ("1.299,00", 400.0)]),
            line(1, 112.0, &[("S/N: 5CD1234XYZ", 40.0)]),
            line(1, 130.0, &[("Apple iPhone 15 Pro", 40.0), ("1", 300.0), ("1.199,00", 400.0)]),
            line(1, 142.0, &[("Seriennummer: F2LXK0ABJGH", 40.0)]),
            line(1, 170.0, &[("Gesamtbetrag EUR", 40.0), ("2.498,00", 400.0)]),
        ];
        let fields = InvoiceFields {
            invoice_date: Some(Field::new(NaiveDate::from_ymd_opt(2026, 3, 14).unwrap(), 0.93)),
            seller: Some(Field::new("Elektro Schmidt GmbH".to_owned(), 0.88)),
            currency: Some(Field::new("EUR".to_owned(), 0.97)),
            ..Default::default()
        };
        (lines, fields)
    }

    /// Two products on one invoice, each with its brand in the catalogue's spelling (an alias
    /// read as its brand), its model, its labelled serial (checked against the brand's rule) and
    /// its price; the invoice's date, seller and currency; boxes on the words they came from.
    #[test]
    fn each_product_of_an_invoice_is_proposed_with_where_it_was_read() {
        let (lines, fields) = invoice();
        let p = propose(&lines, &fields, &catalog());
        assert_eq!(p.products.len(), 2, "{p:#?}");
        let hp = &p.products[0];
        assert_eq!(hp.brand.as_ref().unwrap().value, "HP");
        assert_eq!(hp.model.as_ref().unwrap().value, "EliteBook 840 G10");
        assert_eq!(hp.serial_number.as_ref().unwrap().value, "5CD1234XYZ");
        assert_eq!(hp.price.as_ref().unwrap().value, Amount(129_900));
        let apple = &p.products[1];
        assert_eq!(apple.brand.as_ref().unwrap().value, "Apple");
        assert_eq!(apple.model.as_ref().unwrap().value, "iPhone 15 Pro");
        assert_eq!(apple.serial_number.as_ref().unwrap().value, "F2LXK0ABJGH");
        assert_eq!(apple.price.as_ref().unwrap().value, Amount(119_900));
        // An alias is a little less sure than the brand's own name.
        assert!(hp.brand.as_ref().unwrap().confidence < apple.brand.as_ref().unwrap().confidence);

        // Boxes: the brand is the first word of its line, the serial the second word of the
        // line below, the price its last cell.
        let brand_at = hp.brand.as_ref().unwrap().at.unwrap();
        assert_eq!((brand_at.page, brand_at.top, brand_at.left), (1, 100.0, 40.0));
        assert_eq!(brand_at.width, 5.0 * "Hewlett-Packard".len() as f32);
        let serial_at = hp.serial_number.as_ref().unwrap().at.unwrap();
        assert_eq!((serial_at.top, serial_at.left), (112.0, 40.0 + 5.0 * "S/N: ".len() as f32));
        assert_eq!(hp.price.as_ref().unwrap().at.unwrap().left, 400.0);

        assert_eq!(p.purchase_date.as_ref().unwrap().value, NaiveDate::from_ymd_opt(2026, 3, 14).unwrap());
        let date_at = p.purchase_date.as_ref().unwrap().at.unwrap();
        assert_eq!((date_at.top, date_at.left), (40.0, 300.0 + 5.0 * "Datum: ".len() as f32));
        assert_eq!(p.seller.as_ref().unwrap().at.unwrap().top, 20.0);
        assert_eq!(p.currency.as_ref().unwrap().value, "EUR");
    }

    /// A labelled value that does not fit the brand's serial rule is not proposed (an HP serial
    /// has ten characters); the product still is.
    #[test]
    fn a_serial_that_breaks_the_brands_rule_is_left_out() {
        let (mut lines, fields) = invoice();
        lines[4] = line(1, 112.0, &[("S/N: 5CD12", 40.0)]);
        let p = propose(&lines, &fields, &catalog());
        assert_eq!(p.products[0].brand.as_ref().unwrap().value, "HP");
        assert_eq!(p.products[0].serial_number, None);
        assert!(p.products[1].serial_number.is_some(), "the next product's serial is its own");
    }

    /// A brand in the letterhead or a sentence without a price is not a product; a serial is
    /// not taken from below the next product's line.
    #[test]
    fn a_brand_without_a_price_is_not_a_product() {
        let lines = vec![
            line(1, 10.0, &[("Apple Store Rosenstraße", 40.0)]),
            line(1, 30.0, &[("Thank you for shopping at Apple", 40.0)]),
            line(1, 60.0, &[("Sony WH-1000XM5", 40.0), ("379,00", 400.0)]),
            line(1, 80.0, &[("Dell XPS 13", 40.0), ("999,00", 400.0)]),
            line(1, 92.0, &[("Serial No. 40123456", 40.0)]),
        ];
        let p = propose(&lines, &InvoiceFields::default(), &catalog());
        let brands: Vec<&str> = p.products.iter().map(|p| p.brand.as_ref().unwrap().value.as_str()).collect();
        assert_eq!(brands, ["Sony", "Dell"]);
        assert_eq!(p.products[0].model.as_ref().unwrap().value, "WH-1000XM5");
        assert_eq!(p.products[0].serial_number, None, "the serial below belongs to the Dell line");
        // 40123456 fits Sony's rule but is printed under the Dell, whose rule (seven
        // characters) it breaks.
        assert_eq!(p.products[1].serial_number, None);
    }

    /// A quantity written into the description ("2 x", "x 1") ends the model, as a separate
    /// quantity cell does; numbers that are part of a model stay.
    #[test]
    fn a_quantity_in_the_description_ends_the_model() {
        let lines = vec![
            line(1, 60.0, &[("Sony WH-1000XM5 2 x 379,00 EUR", 40.0)]),
            line(1, 80.0, &[("Nintendo Switch OLED x 1", 40.0), ("349,00", 400.0)]),
            line(1, 100.0, &[("Dell XPS 13 9340 1x", 40.0), ("999,00", 400.0)]),
            line(1, 120.0, &[("Microsoft Xbox Series X 1 x 549,00", 40.0)]),
            line(1, 140.0, &[("MIELE WWD320 WCS 1 591,88 €", 40.0)]),
            line(1, 160.0, &[("Samsung Galaxy Tab S9, N° de série R58N12ABCDE", 40.0), ("899,00", 400.0)]),
            line(1, 180.0, &[("Lenovo Yoga Slim 7 Serien-Nr. PF2ABCD1", 40.0), ("1.099,00", 400.0)]),
        ];
        let p = propose(&lines, &InvoiceFields::default(), &catalog());
        let models: Vec<&str> = p.products.iter().map(|p| p.model.as_ref().unwrap().value.as_str()).collect();
        assert_eq!(
            models,
            ["WH-1000XM5", "Switch OLED", "XPS 13 9340", "Xbox Series X", "WWD320 WCS", "Galaxy Tab S9", "Yoga Slim 7"]
        );
        assert_eq!(p.products[4].price.as_ref().unwrap().value, Amount(159_188), "the grouped amount is the price");
    }

    /// Without a catalogue brand, each line item is a product without a brand: its description
    /// as the model, its amount as the price.
    #[test]
    fn line_items_without_a_known_brand_are_products_without_a_brand() {
        let lines = vec![line(1, 50.0, &[("Kaffeevollautomat CM 5310", 40.0), ("649,00", 400.0)])];
        let fields = InvoiceFields {
            line_items: vec![LineItem {
                description: "Kaffeevollautomat CM 5310".into(),
                quantity: Some(1),
                amount: Some(Amount(64_900)),
                confidence: 0.9,
            }],
            ..Default::default()
        };
        let p = propose(&lines, &fields, &catalog());
        assert_eq!(p.products.len(), 1);
        assert_eq!(p.products[0].brand, None);
        assert_eq!(p.products[0].model.as_ref().unwrap().value, "Kaffeevollautomat CM 5310");
        assert_eq!(p.products[0].price.as_ref().unwrap().value, Amount(64_900));
        assert_eq!(p.products[0].model.as_ref().unwrap().at.unwrap().left, 40.0, "where the description was read");
    }

    /// An unbranded item's description is proposed as written, without its position number.
    #[test]
    fn a_line_items_position_number_is_not_part_of_its_model() {
        let item = |d: &str| LineItem { description: d.into(), quantity: None, amount: None, confidence: 0.9 };
        assert_eq!(item_model(&item("3 Sturzflug-Geier"), 3).as_deref(), Some("Sturzflug-Geier"));
        assert_eq!(item_model(&item("3 Series Mount"), 1).as_deref(), Some("3 Series Mount"));
        assert_eq!(item_model(&item("Luftballon: Bunt, ca. 500ml"), 2).as_deref(), Some("Luftballon: Bunt, ca. 500ml"));
    }
}
