//! The currency: codes, symbols and local conventions, nearest the total first.

use super::*;

pub(super) static CURRENCY_CODE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(EUR|USD|GBP|CHF|SEK|NOK|DKK|ISK|PLN|CZK|HUF|RON|BGN|HRK|TRY|RUB|UAH|JPY|CNY|RMB|HKD|TWD|KRW|SGD|MYR|IDR|THB|PHP|VND|INR|PKR|LKR|BDT|AUD|NZD|CAD|MXN|BRL|ARS|CLP|COP|ZAR|NGN|KES|EGP|MAD|AED|SAR|QAR|ILS)\b",
    )
});
/// "RM 9.00", "RM9.00", "(RM)": the Malaysian ringgit's sign.
pub(super) static RINGGIT_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:\bRM\s?\d|\(RM\)|\bRM\b)"));
pub(super) static RUPEE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:₹|\bRs\.?\s?\d|\bINR\b)"));

pub(super) fn currency_of(text: &str) -> Option<(String, f32)> {
    if let Some(c) = CURRENCY_CODE_RE.captures(text) {
        let code = if &c[1] == "RMB" { "CNY" } else { &c[1] };
        return Some((code.to_owned(), 0.95));
    }
    if text.contains('€') {
        Some(("EUR".into(), 0.95))
    } else if text.contains('£') {
        Some(("GBP".into(), 0.95))
    } else if text.contains('¥') {
        Some(("JPY".into(), 0.7))
    } else if RUPEE_RE.is_match(text) {
        Some(("INR".into(), 0.9))
    } else if RINGGIT_RE.is_match(text) {
        Some(("MYR".into(), 0.9))
    } else if text.contains("S$") {
        Some(("SGD".into(), 0.9))
    } else if text.contains("A$") || text.contains("AU$") {
        Some(("AUD".into(), 0.9))
    } else if text.contains("C$") || text.contains("CA$") {
        Some(("CAD".into(), 0.9))
    } else if text.contains("US$") {
        Some(("USD".into(), 0.95))
    } else {
        None
    }
}

/// The document's currency: a code or sign next to the total first, then anywhere, then the
/// country a legal form names ("Sdn Bhd" is Malaysian); a bare "$" is a dollar of unknown
/// country unless nothing else is known.
pub(super) fn currency(lines: &[Line], total_line: Option<usize>, source: Source) -> Option<Field<String>> {
    // OCR turns specks into "£" or "€": a sign read once by OCR is weak evidence.
    let weak = if source == Source::Ocr { 0.8 } else { 1.0 };
    if let Some(i) = total_line
        && let Some((c, conf)) = currency_of(&lines[i].text)
    {
        return Some(Field::new(c, conf * lines[i].confidence.max(0.5) * weak));
    }
    let mut votes: Vec<(String, f32, usize)> = Vec::new();
    for l in lines {
        if let Some((c, conf)) = currency_of(&l.text) {
            match votes.iter_mut().find(|(v, ..)| *v == c) {
                Some(v) => v.2 += 1,
                None => votes.push((c, conf, 1)),
            }
        }
    }
    votes.sort_by_key(|v| std::cmp::Reverse(v.2));
    if let Some((c, conf, n)) = votes.first() {
        let contested = votes.len() > 1;
        let conf = if contested {
            conf * 0.7
        } else if *n > 1 {
            conf.max(0.9)
        } else {
            *conf * 0.9 * weak
        };
        return Some(Field::new(c.clone(), conf));
    }
    let all: String = lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n");
    static SDN_BHD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bsdn\.?\s*bhd\b|\bbhd\b"));
    if SDN_BHD.is_match(&all) {
        return Some(Field::new("MYR".into(), 0.75));
    }
    if all.contains('$') {
        return Some(Field::new("USD".into(), 0.5));
    }
    None
}
