//! The invoice number: labelled, after a title, or under a title that stands alone.

use super::*;

pub(super) static NUMBER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:invoice\s*(?:no\.?|number|nr\.?|num\.?|#|id)|inv\.?\s*(?:no\.?|#)|bill\s*(?:no\.?|number|#)|receipt\s*(?:no\.?|number|#)|rechnungs\s*-?\s*(?:nummer|nr\.?|no\.?)|rechnung\s*(?:nr\.?|no\.?|nummer)|beleg\s*-?\s*(?:nr\.?|nummer)|bon\s*-?\s*(?:nr\.?|nummer)|n[°o]\.?\s*(?:de\s*)?facture|num[ée]ro\s*(?:de\s*)?facture|facture\s*n[°o]\.?|document\s*(?:no\.?|number)|doc\.?\s*no\.?|\bno\.?\s*facture)",
    )
});
/// A document title directly followed by its number: "Invoice VT/2021/07", "Facture FA-1042",
/// "Rechnung RE-2020-11", "Invoice #123".
pub(super) static TITLE_NUMBER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:tax\s*)?(?:invoice|rechnung|facture|receipt|gutschrift|credit\s*note|avoir)\s*(?:n[°o]\.?|nr\.?|no\.?)?\s*[:#]?\s*(?P<v>[A-Z0-9][A-Z0-9/.\-_]*\d[A-Z0-9/.\-_]*)(?:\s|$)",
    )
});
/// A number under a title that stands alone ("FACTURE" / "N° FA-2024-042").
pub(super) static BARE_NUMBER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:n[°o]\.?|nr\.?|no\.?|#)\s*[:#]?\s*(?P<v>[A-Z0-9][A-Z0-9/.\-_]*\d[A-Z0-9/.\-_]*)(?:\s|$)")
});

/// A document title alone on its line ("FACTURE", "Tax Invoice"): the line below it belongs to
/// the title (its number and date are the document's).
pub(super) fn title_alone(l: &Line) -> bool {
    title_text(&l.text)
}

/// A date and nothing else on its line ("15/01/2024").
fn date_alone(l: &Line) -> bool {
    l.cells.len() == 1
        && !l.text.chars().any(char::is_alphabetic)
        && dates_in(&l.text, false).first().is_some_and(|(p, _)| *p == l.text.len() - l.text.trim_start().len())
}

/// A title and nothing else ("FACTURE", "Tax Invoice"), on a line or in a cell.
pub(super) fn title_text(t: &str) -> bool {
    DOCUMENT_TITLE_RE.is_match(t) && !t.chars().any(|c| c.is_ascii_digit()) && t.split_whitespace().count() <= 3
}

pub(super) static NUMBER_VALUE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[:#.\s]*(?P<v>[A-Za-z0-9][A-Za-z0-9/.\-_]*[A-Za-z0-9]|\d)(?:\s|$)"));

pub(super) fn invoice_number(lines: &[Line]) -> Option<Field<String>> {
    let looks_like_number = |v: &str| {
        v.len() >= 2
            && v.len() <= 40
            && v.bytes().any(|b| b.is_ascii_digit())
            // A value that is a date, not a number that contains one ("RE-20170509/505").
            && (v.chars().any(char::is_alphabetic) || dates_in(v, false).first().is_none_or(|(p, _)| *p != 0))
            && !v.contains("@")
    };
    let mut best: Option<(f32, String)> = None;
    for (i, l) in lines.iter().enumerate() {
        if let Some(c) = TITLE_NUMBER_RE.captures(&l.cells[0].text)
            && looks_like_number(&c["v"])
        {
            let conf = 0.85 * l.confidence.max(0.5);
            if best.as_ref().is_none_or(|(b, _)| conf > *b) {
                best = Some((conf, c["v"].to_owned()));
            }
        }
        // Under a title alone on its line, or in the cell under a title alone in its cell
        // ("Blanc-Conseil   FACTURE" / "12 rue …   N° FX-2026-0042"), or under a title with only
        // the document's date between them (a header in two columns whose date, at the right,
        // sits a little higher than the number: "FACTURE" / "15/01/2024" / "N° FA-2024-042").
        for cell in &l.cells {
            let under_title = i > 0
                && (title_alone(&lines[i - 1])
                    || lines[i - 1].cells.iter().any(|t| overlaps(t, cell) && title_text(&t.text))
                    || (i > 1 && title_alone(&lines[i - 2]) && date_alone(&lines[i - 1])));
            if under_title
                && let Some(c) = BARE_NUMBER_RE.captures(&cell.text)
                && looks_like_number(&c["v"])
            {
                let conf = 0.85 * l.confidence.max(0.5);
                if best.as_ref().is_none_or(|(b, _)| conf > *b) {
                    best = Some((conf, c["v"].to_owned()));
                }
            }
        }
        for m in NUMBER_LABEL_RE.find_iter(&l.text) {
            let cell = l.cell_at(m.start());
            let after_in_cell = {
                let c = &l.cells[cell].text;
                let offset: usize = l.cells[..cell].iter().map(|c| c.text.len() + 1).sum();
                let end = m.end().saturating_sub(offset).min(c.len());
                c.get(end..).unwrap_or("")
            };
            for (text, conf, below) in value_for_label(lines, i, cell, after_in_cell) {
                if let Some(v) = NUMBER_VALUE_RE.captures(text).map(|c| c["v"].to_owned())
                    && looks_like_number(&v)
                {
                    let conf = if below { 0.8 } else { 0.9 } * conf.max(0.5);
                    if best.as_ref().is_none_or(|(b, _)| conf > *b) {
                        best = Some((conf, v));
                    }
                    break;
                }
            }
        }
    }
    best.map(|(c, v)| Field::new(v, c))
}
