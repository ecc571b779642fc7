//! Invoice fields from text lines, in English, German and French, with locale-aware dates and
//! amounts, and arithmetic cross-checks that set the confidence of the numbers.
//!
//! Input is text as an OCR engine or a PDF text layer gives it: one entry per visual line,
//! columns separated by spaces, with a per-line confidence. The rules look for labelled values
//! ("Invoice No.", "Rechnungsdatum", "Total TTC", …), so they work across layouts.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;

use super::ocr::{Amount, Field, InvoiceFields, LineItem};

/// One line of text and how sure the reader was of it (0 to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    pub confidence: f32,
}

impl TextLine {
    pub fn new(text: impl Into<String>, confidence: f32) -> Self {
        Self { text: text.into(), confidence }
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("extraction patterns compile")
}

/// An amount as printed: 1,199.00 / 1.199,00 / 1 199,00 / 1199.00 / 349,99.
const AMOUNT: &str = r"(?:\d{1,3}(?:[.,\u{a0}\u{202f} ']\d{3})+|\d+)[.,]\d{2}";

static AMOUNT_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"(?:^|[^\d.,])(?P<a>{AMOUNT})(?:$|[^\d])")));
static NUMBER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:invoice\s*(?:no\.?|number|nr\.?|#)|rechnungs\s*-?\s*(?:nummer|nr\.?)|rechnung\s*nr\.?|n[°o]\.?\s*de\s*facture|num[ée]ro\s*de\s*facture|facture\s*n[°o]\.?)\s*[:#]?\s*(?P<v>[A-Z0-9][A-Z0-9/.\-]*[A-Z0-9])",
    )
});
static DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:invoice\s*date|date\s*of\s*issue|rechnungsdatum|datum|date\s*de\s*(?:la\s*)?facture|date)\s*:?\s*(?P<v>.*)$",
    )
});
static ISO_DATE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b"));
static NUMERIC_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?P<a>\d{1,2})(?P<sep>[./])(?P<b>\d{1,2})[./](?P<y>\d{4})\b"));
static WORD_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?P<d>\d{1,2})\.?\s+(?P<mon>[a-zäéûô]{3,10})\.?\s+(?P<y>\d{4})\b"));
static US_WORD_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?P<mon>[a-z]{3,9})\.?\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{4})\b"));
static SUBTOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:sub\s*-?\s*total|zwischensumme|nettobetrag|summe\s*netto|total\s*h\.?\s*t\.?|sous\s*-?\s*total|montant\s*h\.?\s*t\.?)",
    )
});
static TAX_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(?:vat|tax|mwst|ust|tva)\b"));
static TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:grand\s*total|total\s*t\.?t\.?c\.?|total\s*due|amount\s*due|gesamtbetrag|gesamtsumme|rechnungsbetrag|endbetrag|net\s*[àa]\s*payer|total)\b",
    )
});
static CURRENCY_CODE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|JPY|CAD|AUD)\b"));
static LEGAL_FORM_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:GmbH(?:\s*&\s*Co\.?\s*KG)?|KG|AG|Ltd\.?|Limited|Inc\.?|LLC|plc|SAS|SARL|SA|S\.A\.|BV|B\.V\.|Srl|S\.r\.l\.|e\.K\.)(?:$|[\s,])",
    )
});
static SELLER_LABEL_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^(?:seller|sold\s*by|vendor|verk[äa]ufer|vendeur)\s*:?\s*(?P<v>.+)$"));
static HEADER_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:description|item|beschreibung|bezeichnung|artikel|d[ée]signation|article)\b"));
static RECEIPT_ROW_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"^(?P<qty>\d{{1,3}})\s*[x×X*]\s*(?P<unit>{AMOUNT})\s+(?P<amt>{AMOUNT})\s*(?:[€£$])?$"))
});
static SERIAL_NOTE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\s*[(\[]?\s*(?:serial\s*(?:no\.?|number)?|s/n|seriennummer|n[°o]\s*de\s*s[ée]rie)\b[^)\]]*[)\]]?\s*$")
});
static TITLE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^(?:invoice|rechnung|facture)\s+"));

/// Parses a printed amount: the last `.` or `,` followed by exactly two digits is the decimal
/// separator; every other separator groups thousands.
pub fn parse_amount(s: &str) -> Option<Amount> {
    let s = s.trim();
    let (int, frac) = s.split_at(s.len().checked_sub(3)?);
    if !frac.starts_with(['.', ',']) || !frac[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = int.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let cents: i64 = digits.parse::<i64>().ok()?.checked_mul(100)? + frac[1..].parse::<i64>().ok()?;
    Some(Amount(cents))
}

fn last_amount(line: &str) -> Option<Amount> {
    AMOUNT_RE.captures_iter(line).filter_map(|c| parse_amount(&c["a"])).last()
}

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

fn month_number(name: &str) -> Option<u32> {
    let n = fold(name);
    const MONTHS: [&[&str]; 12] = [
        &["jan", "january", "januar", "janvier", "janv"],
        &["feb", "february", "februar", "fevrier", "fevr", "fev"],
        &["mar", "march", "marz", "maerz", "mars"],
        &["apr", "april", "avril", "avr"],
        &["may", "mai"],
        &["jun", "june", "juni", "juin"],
        &["jul", "july", "juli", "juillet", "juil"],
        &["aug", "august", "aout"],
        &["sep", "sept", "september", "septembre"],
        &["oct", "october", "oktober", "okt", "octobre"],
        &["nov", "november", "novembre"],
        &["dec", "december", "dezember", "dez", "decembre"],
    ];
    MONTHS.iter().position(|names| names.contains(&n.as_str())).map(|i| i as u32 + 1)
}

/// The first date in `s`. `month_first` decides ambiguous `a/b/yyyy` (US invoices).
pub fn parse_date(s: &str, month_first: bool) -> Option<NaiveDate> {
    let mut found: Vec<(usize, NaiveDate)> = Vec::new();
    if let Some(c) = ISO_DATE_RE.captures(s)
        && let Some(d) = NaiveDate::from_ymd_opt(c["y"].parse().ok()?, c["m"].parse().ok()?, c["d"].parse().ok()?)
    {
        found.push((c.get(0).map_or(0, |m| m.start()), d));
    }
    if let Some(c) = NUMERIC_DATE_RE.captures(s) {
        let (a, b, y): (u32, u32, i32) = (c["a"].parse().ok()?, c["b"].parse().ok()?, c["y"].parse().ok()?);
        // A dot is always day.month; a slash is ambiguous unless one side is above 12.
        let (day, month) = if &c["sep"] == "." || a > 12 || (!month_first && b <= 12) { (a, b) } else { (b, a) };
        if let Some(d) = NaiveDate::from_ymd_opt(y, month, day) {
            found.push((c.get(0).map_or(0, |m| m.start()), d));
        }
    }
    for c in WORD_DATE_RE.captures_iter(s) {
        if let (Some(m), Ok(day), Ok(y)) = (month_number(&c["mon"]), c["d"].parse(), c["y"].parse())
            && let Some(d) = NaiveDate::from_ymd_opt(y, m, day)
        {
            found.push((c.get(0).map_or(0, |m| m.start()), d));
            break;
        }
    }
    for c in US_WORD_DATE_RE.captures_iter(s) {
        if let (Some(m), Ok(day), Ok(y)) = (month_number(&c["mon"]), c["d"].parse(), c["y"].parse())
            && let Some(d) = NaiveDate::from_ymd_opt(y, m, day)
        {
            found.push((c.get(0).map_or(0, |m| m.start()), d));
            break;
        }
    }
    found.into_iter().min_by_key(|(pos, _)| *pos).map(|(_, d)| d)
}

fn currency_of(text: &str) -> Option<String> {
    if let Some(c) = CURRENCY_CODE_RE.captures(text) {
        return Some(c[1].to_owned());
    }
    if text.contains('€') {
        Some("EUR".into())
    } else if text.contains('£') {
        Some("GBP".into())
    } else if text.contains('$') {
        Some("USD".into())
    } else {
        None
    }
}

/// A seller name: the line's text up to and including its legal form ("… GmbH"), without a
/// leading document title.
fn seller_from(line: &str) -> Option<String> {
    let m = LEGAL_FORM_RE.find(line)?;
    let head = line[..m.end()].trim_end_matches([',', ' ']);
    // Columns are separated by runs of spaces; take the column holding the legal form.
    let column = head.rsplit("  ").next().unwrap_or(head).trim();
    let column = TITLE_RE.replace(column, "");
    let name = column.split(" - ").next().unwrap_or(&column).trim();
    (name.len() >= 3).then(|| name.to_owned())
}

fn clean_description(desc: &str) -> String {
    let d = SERIAL_NOTE_RE.replace(desc, "");
    d.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_summary_line(line: &str) -> bool {
    SUBTOTAL_RE.is_match(line) || TAX_RE.is_match(line) || TOTAL_RE.is_match(line)
}

/// Reads the fields and sets their confidence from the reader's line confidence and from the
/// arithmetic: line sum = subtotal, subtotal + tax = total.
pub fn extract(lines: &[TextLine]) -> InvoiceFields {
    let lines: Vec<TextLine> = lines
        .iter()
        .map(|l| TextLine::new(l.text.split_whitespace().collect::<Vec<_>>().join(" "), l.confidence))
        .filter(|l| !l.text.is_empty())
        .collect();
    let all_text: String = lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
    let mut fields = InvoiceFields::default();

    let currency = lines
        .iter()
        .rev()
        .find(|l| TOTAL_RE.is_match(&l.text) && currency_of(&l.text).is_some())
        .and_then(|l| currency_of(&l.text).map(|c| Field::new(c, l.confidence)))
        .or_else(|| currency_of(&all_text).map(|c| Field::new(c, 0.8)));
    let month_first = currency.as_ref().is_some_and(|c| c.value == "USD");
    fields.currency = currency;

    for l in &lines {
        if fields.invoice_number.is_none()
            && let Some(c) = NUMBER_RE.captures(&l.text)
            && c["v"].bytes().any(|b| b.is_ascii_digit())
        {
            fields.invoice_number = Some(Field::new(c["v"].to_owned(), l.confidence));
        }
        if fields.invoice_date.is_none()
            && let Some(c) = DATE_LABEL_RE.captures(&l.text)
            && let Some(d) = parse_date(&c["v"], month_first)
        {
            fields.invoice_date = Some(Field::new(d, l.confidence));
        }
    }
    if fields.invoice_date.is_none() {
        fields.invoice_date =
            lines.iter().find_map(|l| parse_date(&l.text, month_first).map(|d| Field::new(d, l.confidence * 0.7)));
    }

    fields.seller = lines
        .iter()
        .find_map(|l| SELLER_LABEL_RE.captures(&l.text).map(|c| Field::new(c["v"].trim().to_owned(), l.confidence)))
        .or_else(|| {
            lines.iter().take(12).find_map(|l| seller_from(&l.text).map(|s| Field::new(s, l.confidence * 0.95)))
        });

    for l in &lines {
        let Some(amount) = last_amount(&l.text) else { continue };
        if SUBTOTAL_RE.is_match(&l.text) {
            fields.subtotal.get_or_insert(Field::new(amount, l.confidence));
        } else if TAX_RE.is_match(&l.text) && !TOTAL_RE.is_match(&l.text) {
            fields.tax.get_or_insert(Field::new(amount, l.confidence));
        } else if TOTAL_RE.is_match(&l.text) {
            // The last total on the page is the grand total.
            fields.total = Some(Field::new(amount, l.confidence));
        }
    }

    fields.line_items = line_items(&lines);
    cross_check(&mut fields);
    fields
}

/// One way to read a table row: description, quantity, unit price, line amount.
#[derive(Debug, Clone, PartialEq)]
struct RowParse {
    description: String,
    quantity: Option<u32>,
    amount: Amount,
    /// How well the numbers agree (quantity × unit = amount scores highest).
    score: i32,
}

fn is_plain_amount(t: &str) -> bool {
    static ONE: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:\d{1,3}(?:[.,']\d{3})+|\d+)[.,]\d{2}$"));
    ONE.is_match(t)
}

/// Amounts that end right before token `end`: one token ("1.199,00") or a thousands group
/// split by a space ("1 199,00"). Returns (first token index, amount).
fn amounts_ending_at(tokens: &[&str], end: usize) -> Vec<(usize, Amount)> {
    let mut out = Vec::new();
    if end >= 1 && is_plain_amount(tokens[end - 1]) {
        if end >= 2
            && tokens[end - 2].len() <= 3
            && tokens[end - 2].bytes().all(|b| b.is_ascii_digit())
            && tokens[end - 1].len() == 6
            && let Some(a) = parse_amount(&format!("{}{}", tokens[end - 2], tokens[end - 1]))
        {
            out.push((end - 2, a));
        }
        if let Some(a) = parse_amount(tokens[end - 1]) {
            out.push((end - 1, a));
        }
    }
    out
}

/// Every plausible reading of a table row, best first. Quantity × unit price = amount decides
/// between readings ("Miele WWD 320 1 999,00 999,00" is one Miele at 999,00, not 320 at
/// 1 999,00) and repairs a misread quantity ("Protective case a 29.90 29.90").
fn table_row_candidates(line: &str) -> Vec<RowParse> {
    let mut tokens: Vec<&str> = line.split_whitespace().collect();
    while let Some(last) = tokens.last() {
        let stripped = last.trim_end_matches(['€', '£', '$']);
        if stripped.is_empty() || matches!(*last, "EUR" | "GBP" | "USD" | "CHF") {
            tokens.pop();
        } else {
            if stripped.len() != last.len() {
                let n = tokens.len();
                tokens[n - 1] = stripped;
            }
            break;
        }
    }
    let mut out = Vec::new();
    for (amt_start, amount) in amounts_ending_at(&tokens, tokens.len()) {
        let mut units: Vec<(usize, Option<Amount>)> =
            amounts_ending_at(&tokens, amt_start).into_iter().map(|(s, a)| (s, Some(a))).collect();
        units.push((amt_start, None));
        for (unit_start, unit) in units {
            if unit_start == 0 {
                continue;
            }
            let qty_token = tokens[unit_start - 1];
            let qty: Option<u32> = (qty_token.len() <= 3 && qty_token.bytes().all(|b| b.is_ascii_digit()))
                .then(|| qty_token.parse().ok())
                .flatten();
            // A short non-numeric token where the quantity should be is a misread quantity,
            // usable only when the unit price lets us recompute it.
            let garbled = qty.is_none() && qty_token.chars().count() <= 2 && unit.is_some();
            if qty.is_none() && !garbled {
                continue;
            }
            let desc_tokens = &tokens[..unit_start - 1];
            if !desc_tokens.iter().any(|t| t.chars().any(char::is_alphabetic)) {
                continue;
            }
            let (quantity, score) = match (qty, unit) {
                (Some(q), Some(u)) if i64::from(q) * u.0 == amount.0 => (Some(q), 4),
                (_, Some(u)) if u.0 > 0 && amount.0 % u.0 == 0 && amount.0 / u.0 <= 999 => {
                    (Some((amount.0 / u.0) as u32), 2)
                }
                (Some(q), None) => (Some(q), 3),
                (q, Some(_)) => (q, 0),
                (None, None) => continue,
            };
            out.push(RowParse { description: clean_description(&desc_tokens.join(" ")), quantity, amount, score });
        }
    }
    // Stable: among equal scores the earlier (grouped-thousands) reading stays first.
    out.sort_by_key(|r| std::cmp::Reverse(r.score));
    out
}

fn line_items(lines: &[TextLine]) -> Vec<LineItem> {
    let start = lines.iter().position(|l| HEADER_RE.is_match(&l.text)).map(|i| i + 1).unwrap_or(0);
    let mut items = Vec::new();
    let mut candidates: Vec<(usize, Vec<RowParse>)> = Vec::new();
    let mut pending: Option<&TextLine> = None;
    for l in &lines[start..] {
        if is_summary_line(&l.text) {
            if start > 0 || !items.is_empty() {
                break;
            }
            continue;
        }
        if NUMBER_RE.is_match(&l.text) || DATE_LABEL_RE.is_match(&l.text) {
            pending = None;
            continue;
        }
        if let Some(c) = RECEIPT_ROW_RE.captures(&l.text) {
            if let Some(desc) = pending.take() {
                items.push(LineItem {
                    description: clean_description(&desc.text),
                    quantity: c["qty"].parse().ok(),
                    amount: parse_amount(&c["amt"]),
                    confidence: desc.confidence.min(l.confidence),
                });
            }
            continue;
        }
        let rows = table_row_candidates(&l.text);
        if !rows.is_empty() {
            candidates.push((items.len(), rows));
            items.push(LineItem { description: String::new(), quantity: None, amount: None, confidence: l.confidence });
            pending = None;
            continue;
        }
        if SERIAL_NOTE_RE.is_match(&l.text) && SERIAL_NOTE_RE.find(&l.text).is_some_and(|m| m.start() == 0) {
            continue;
        }
        pending = Some(l);
    }
    let subtotal = lines.iter().find(|l| SUBTOTAL_RE.is_match(&l.text)).and_then(|l| last_amount(&l.text));
    for (index, parse) in choose_rows(&items, &candidates, subtotal) {
        let item = &mut items[index];
        item.description = parse.description;
        item.quantity = parse.quantity;
        item.amount = Some(parse.amount);
    }
    items
}

/// Picks one reading per table row: the best-scored ones, unless another combination (at
/// most a few rows have alternatives) makes the rows add up to the subtotal.
fn choose_rows(
    items: &[LineItem],
    candidates: &[(usize, Vec<RowParse>)],
    subtotal: Option<Amount>,
) -> Vec<(usize, RowParse)> {
    let fixed: i64 = items.iter().filter_map(|i| i.amount.map(|a| a.0)).sum();
    let best: Vec<usize> = vec![0; candidates.len()];
    let total = |choice: &[usize]| fixed + candidates.iter().zip(choice).map(|((_, c), k)| c[*k].amount.0).sum::<i64>();
    let mut chosen = best.clone();
    if let Some(target) = subtotal
        && total(&best) != target.0
    {
        let combos: usize = candidates.iter().map(|(_, c)| c.len().min(3)).product();
        if combos <= 4096 {
            for n in 0..combos {
                let mut rest = n;
                let choice: Vec<usize> = candidates
                    .iter()
                    .map(|(_, c)| {
                        let k = rest % c.len().min(3);
                        rest /= c.len().min(3);
                        k
                    })
                    .collect();
                if total(&choice) == target.0 {
                    chosen = choice;
                    break;
                }
            }
        }
    }
    candidates.iter().zip(chosen).map(|((i, c), k)| (*i, c[k].clone())).collect()
}

/// Confidence from arithmetic: numbers that add up are right whatever the reader thought;
/// numbers that don't are suspect whatever the reader thought.
fn cross_check(f: &mut InvoiceFields) {
    let (sub, tax, total) =
        (f.subtotal.as_ref().map(|x| x.value), f.tax.as_ref().map(|x| x.value), f.total.as_ref().map(|x| x.value));
    if let (Some(s), Some(t), Some(g)) = (sub, tax, total) {
        let ok = s.0 + t.0 == g.0;
        for field in [&mut f.subtotal, &mut f.tax, &mut f.total].into_iter().flatten() {
            field.confidence = if ok { field.confidence.max(0.99) } else { field.confidence * 0.5 };
        }
    }
    let amounts: Option<Vec<i64>> = f.line_items.iter().map(|i| i.amount.map(|a| a.0)).collect();
    let reference = sub.or(if tax.is_none() { total } else { None });
    if let (Some(amounts), Some(reference)) = (amounts, reference)
        && !amounts.is_empty()
    {
        let ok = amounts.iter().sum::<i64>() == reference.0;
        for item in &mut f.line_items {
            item.confidence = if ok { item.confidence.max(0.98) } else { item.confidence * 0.6 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<TextLine> {
        text.lines().map(|l| TextLine::new(l, 0.9)).collect()
    }

    #[test]
    fn amounts_in_every_locale() {
        for (s, cents) in [
            ("1,199.00", 119_900),
            ("1.199,00", 119_900),
            ("1 199,00", 119_900),
            ("1199.00", 119_900),
            ("349,99", 34_999),
            ("0.99", 99),
            ("12'345.50", 1_234_550),
        ] {
            assert_eq!(parse_amount(s), Some(Amount(cents)), "{s}");
        }
        assert_eq!(parse_amount("1199"), None);
        assert_eq!(last_amount("Total TTC 1 438,80 €"), Some(Amount(143_880)));
        assert_eq!(last_amount("VAT 20% 83.97"), Some(Amount(8397)));
    }

    #[test]
    fn dates_in_every_locale() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 15).unwrap();
        for s in [
            "2026-03-15",
            "15.03.2026",
            "15/03/2026",
            "15 March 2026",
            "15. März 2026",
            "15 mars 2026",
            "15 MAERZ 2026",
            "March 15, 2026",
            "Mar 15 2026",
        ] {
            assert_eq!(parse_date(s, false), Some(d), "{s}");
        }
        assert_eq!(parse_date("03/15/2026", true), Some(d));
        assert_eq!(parse_date("04/03/2026", true), NaiveDate::from_ymd_opt(2026, 4, 3));
        assert_eq!(parse_date("04/03/2026", false), NaiveDate::from_ymd_opt(2026, 3, 4));
        assert_eq!(parse_date("31.02.2026", false), None);
    }

    #[test]
    fn a_german_invoice() {
        let f = extract(&lines(
            "Elektro Becker GmbH\nHauptstraße 5, 10115 Berlin\nRECHNUNG\nRechnungsnummer: RE-482913\nRechnungsdatum: 15.03.2026\n\
             Beschreibung Menge Einzelpreis Betrag\nApple MacBook Air 13 1 1.199,00 1.199,00\nSeriennummer: C02XK0ABJGH5\n\
             USB-C Ladekabel 2 19,99 39,98\nZwischensumme 1.238,98\nMwSt. 19 % 235,41\nGesamtbetrag 1.474,39 EUR",
        ));
        assert_eq!(f.invoice_number.unwrap().value, "RE-482913");
        assert_eq!(f.invoice_date.unwrap().value, NaiveDate::from_ymd_opt(2026, 3, 15).unwrap());
        assert_eq!(f.seller.unwrap().value, "Elektro Becker GmbH");
        assert_eq!(f.currency.unwrap().value, "EUR");
        assert_eq!(f.subtotal.as_ref().unwrap().value, Amount(123_898));
        assert_eq!(f.tax.as_ref().unwrap().value, Amount(23_541));
        let total = f.total.unwrap();
        assert_eq!(total.value, Amount(147_439));
        assert!(total.confidence >= 0.99, "cross-checked totals are trusted");
        assert_eq!(f.line_items.len(), 2);
        assert_eq!(f.line_items[0].description, "Apple MacBook Air 13");
        assert_eq!(f.line_items[1].quantity, Some(2));
        assert_eq!(f.line_items[1].amount, Some(Amount(3998)));
        assert!(f.line_items[0].confidence >= 0.98);
    }

    #[test]
    fn a_french_receipt() {
        let f = extract(&lines(
            "Techno Dupont SARL\n8 rue de la Paix, 75002 Paris\nFACTURE\nN° de facture FA2026-0042\nDate de facture 15 mars 2026\n\
             Samsung Galaxy S24\nN° de série: R58N12ABCDE\n1 x 899,00 899,00\nHousse de protection\n2 x 29,90 59,80\n\
             Total HT 958,80\nTVA 20 % 191,76\nTotal TTC EUR 1 150,56",
        ));
        assert_eq!(f.invoice_number.unwrap().value, "FA2026-0042");
        assert_eq!(f.invoice_date.unwrap().value, NaiveDate::from_ymd_opt(2026, 3, 15).unwrap());
        assert_eq!(f.seller.unwrap().value, "Techno Dupont SARL");
        assert_eq!(f.total.unwrap().value, Amount(115_056));
        let descs: Vec<_> = f.line_items.iter().map(|i| i.description.as_str()).collect();
        assert_eq!(descs, ["Samsung Galaxy S24", "Housse de protection"]);
    }

    #[test]
    fn totals_that_do_not_add_up_lose_confidence() {
        let f = extract(&lines("Invoice No.: A-1\nSubtotal 100.00\nVAT 20% 20.00\nTotal 130.00 GBP"));
        assert!(f.total.unwrap().confidence < 0.5);
    }
}
