//! Dates: every printed form, and the invoice date among the dates of a document.

use super::*;

pub(super) static ISO_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})\b"));
pub(super) static NUMERIC_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})(?P<sep2>[./-])(?P<y>\d{4}|\d{2})\b"));
pub(super) static WORD_DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\.?[\s\-/]*(?P<mon>[a-zäéûô]{3,10})\.?[\s\-/,]*(?P<y>\d{4}|\d{2})\b")
});
pub(super) static US_WORD_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?P<mon>[a-z]{3,9})\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b"));
pub(super) static COMPACT_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?P<y>20\d{2})(?P<m>[01]\d)(?P<d>[0-3]\d)\b"));

/// Labels of an issue date (the one a warranty starts from).
pub(super) static INVOICE_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:invoice\s*date|date\s*of\s*(?:issue|invoice)|issue\s*date|bill\s*date|receipt\s*date|rechnungsdatum|belegdatum|ausstellungsdatum|datum|date\s*de\s*(?:la\s*)?facture|date\s*d'?\s*[ée]mission|fecha|date|dated|tarikh)\b",
    )
});
/// Labels of other dates on an invoice: never the invoice date.
/// Labels that name the issue date unambiguously, even beside another kind of date
/// ("Liefer- und Rechnungsdatum"), and the German letter's "München, den 01.11.2024".
pub(super) static STRONG_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:invoice\s*date|date\s*of\s*(?:issue|invoice)|rechnungsdatum|date\s*de\s*(?:la\s*)?facture|,\s*den\b)")
});
pub(super) static OTHER_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\bdue\b|f[äa]llig|zahlbar|payable|[ée]ch[ée]ance|payment|zahlung|remit|[üu]berweisen|deliver|liefer|leistung|shipping|ship\s*date|order\s*date|bestell|auftrag|commande|period|zeitraum|p[ée]riode|valid|g[üu]ltig|expir|ablauf|until\b|birth|geburt|printed|gedruckt|skonto)",
    )
});
/// Two dates joined as a range ("01.03. – 31.03.2026", "du … au …", "from … to …").
pub(super) static RANGE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\s*(?:-|–|—|bis|to|till|until|au|à)\s*$"));
pub(super) fn month_number(name: &str) -> Option<u32> {
    let n = fold(name);
    const MONTHS: [&[&str]; 12] = [
        &["jan", "january", "januar", "janvier", "janv", "jänner", "janner"],
        &["feb", "february", "februar", "fevrier", "fevr", "fev"],
        &["mar", "march", "marz", "maerz", "mars", "mrz"],
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

/// A two-digit year: 00–69 are 2000–2069, 70–99 are 1970–1999.
pub(super) fn full_year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    Some(match (y.len(), n) {
        (2, 0..=69) => 2000 + n,
        (2, _) => 1900 + n,
        _ => n,
    })
}

/// Dates on invoices lie between 1970 and a year ahead of any plausible "now".
pub(super) fn plausible(d: NaiveDate) -> bool {
    (1970..=2100).contains(&d.year())
}

/// Every date in `s` with its byte position. `month_first` decides ambiguous `a/b/yyyy`
/// (US invoices); otherwise day first, as printed everywhere else.
pub fn dates_in(s: &str, month_first: bool) -> Vec<(usize, NaiveDate)> {
    let mut found: Vec<(usize, NaiveDate)> = Vec::new();
    let start = |c: &regex::Captures<'_>| c.get(0).map_or(0, |m| m.start());
    for c in ISO_DATE_RE.captures_iter(s) {
        if let (Ok(y), Ok(m), Ok(d)) = (c["y"].parse(), c["m"].parse(), c["d"].parse())
            && let Some(date) = NaiveDate::from_ymd_opt(y, m, d)
        {
            found.push((start(&c), date));
        }
    }
    for c in NUMERIC_DATE_RE.captures_iter(s) {
        if c["sep"] != c["sep2"] {
            continue;
        }
        let (Ok(a), Ok(b), Some(y)) = (c["a"].parse::<u32>(), c["b"].parse::<u32>(), full_year(&c["y"])) else {
            continue;
        };
        // A dot is always day.month; otherwise day first unless one side is above 12 or the
        // document is American.
        let (day, month) = if &c["sep"] == "." || a > 12 || (!month_first && b <= 12) { (a, b) } else { (b, a) };
        if let Some(d) = NaiveDate::from_ymd_opt(y, month, day) {
            found.push((start(&c), d));
        }
    }
    for c in WORD_DATE_RE.captures_iter(s) {
        if let (Some(m), Ok(day), Some(y)) = (month_number(&c["mon"]), c["d"].parse(), full_year(&c["y"]))
            && let Some(d) = NaiveDate::from_ymd_opt(y, m, day)
        {
            found.push((start(&c), d));
        }
    }
    for c in US_WORD_DATE_RE.captures_iter(s) {
        if let (Some(m), Ok(day), Ok(y)) = (month_number(&c["mon"]), c["d"].parse(), c["y"].parse())
            && let Some(d) = NaiveDate::from_ymd_opt(y, m, day)
        {
            found.push((start(&c), d));
        }
    }
    for c in COMPACT_DATE_RE.captures_iter(s) {
        if let (Ok(y), Ok(m), Ok(d)) = (c["y"].parse(), c["m"].parse(), c["d"].parse())
            && let Some(date) = NaiveDate::from_ymd_opt(y, m, d)
        {
            found.push((start(&c), date));
        }
    }
    found.retain(|(_, d)| plausible(*d));
    found.sort_by_key(|(p, _)| *p);
    found
}

/// The first date in `s`.
pub fn parse_date(s: &str, month_first: bool) -> Option<NaiveDate> {
    dates_in(s, month_first).into_iter().next().map(|(_, d)| d)
}

/// A date candidate and its evidence.
pub(super) struct DateCandidate {
    date: NaiveDate,
    score: f32,
    confidence: f32,
}

pub(super) fn invoice_date(lines: &[Line], month_first: bool, source: Source) -> Option<Field<NaiveDate>> {
    let mut cands: Vec<DateCandidate> = Vec::new();
    let n = lines.len().max(1) as f32;
    for (i, l) in lines.iter().enumerate() {
        for (pos, date) in dates_in(&l.text, month_first) {
            let cell = l.cell_at(pos);
            let before = &l.text[..pos];
            // A label in the same cell or the cell to the left, or above in the same column.
            let label_here = |re: &Regex| {
                re.is_match(
                    &l.cells[cell].text[..l.cells[cell]
                        .text
                        .len()
                        .min(pos.saturating_sub(l.cells[..cell].iter().map(|c| c.text.len() + 1).sum::<usize>()))],
                ) || cell > 0 && re.is_match(&l.cells[cell - 1].text)
                    || before.len() < 40 && re.is_match(before)
            };
            let label_above = |re: &Regex| {
                i > 0 && lines[i - 1].cells.iter().any(|c| overlaps(c, &l.cells[cell]) && re.is_match(&c.text))
            };
            // Either end of a range is a period, not an issue date.
            let in_range = {
                let all = dates_in(&l.text, month_first);
                all.windows(2).any(|w| {
                    let between = |a: usize, b: usize| l.text.get(a..b).unwrap_or("");
                    let end_of_first =
                        w[0].0 + l.text[w[0].0..].find(char::is_whitespace).unwrap_or(l.text.len() - w[0].0);
                    (w[0].0 == pos || w[1].0 == pos) && RANGE_RE.is_match(between(end_of_first.min(w[1].0), w[1].0))
                })
            };
            let strong = label_here(&STRONG_DATE_LABEL_RE) || label_above(&STRONG_DATE_LABEL_RE);
            let other = !strong && (in_range || label_here(&OTHER_DATE_LABEL_RE) || label_above(&OTHER_DATE_LABEL_RE));
            let labelled = strong
                || !other
                    && (label_here(&INVOICE_DATE_LABEL_RE)
                        || label_above(&INVOICE_DATE_LABEL_RE)
                        || DOCUMENT_TITLE_RE.is_match(&l.text)
                        || i > 0 && title_alone(&lines[i - 1]));
            let mut score = 0.0;
            if labelled {
                score += 3.0;
            }
            if other {
                score -= 4.0;
            }
            // Issue dates sit in the header; later dates are due dates, periods, footnotes.
            score += 1.0 - i as f32 / n;
            // The engine's confidence in the words of the date itself.
            let conf = l.cells[cell].confidence.max(0.0);
            cands.push(DateCandidate { date, score, confidence: conf });
        }
    }
    if cands.is_empty() {
        return None;
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let best = &cands[0];
    if best.score < -1.0 {
        return None;
    }
    let rivals = cands.iter().skip(1).filter(|c| c.date != best.date && c.score > best.score - 1.0).count();
    let agreeing = cands.iter().filter(|c| c.date == best.date).count();
    let distinct = {
        let mut d: Vec<NaiveDate> = cands.iter().filter(|c| c.score > -1.0).map(|c| c.date).collect();
        d.sort();
        d.dedup();
        d.len()
    };
    let labelled = best.score >= 3.0;
    let mut conf: f32 = match (labelled, distinct) {
        (true, _) => 0.92,
        (false, 1) => 0.88,
        (false, _) => 0.6,
    };
    if rivals > 0 {
        conf -= 0.25;
    }
    if agreeing > 1 {
        conf += 0.04;
    }
    // OCR may misread a digit of a date printed once: the same date read twice agrees;
    // otherwise the engine's confidence in the line has to be high.
    if source == Source::Ocr && agreeing < 2 {
        let ocr = best.confidence;
        conf *= if ocr >= 0.9 {
            0.97
        } else if ocr >= 0.8 {
            0.92
        } else {
            0.75
        };
    }
    Some(Field::new(best.date, conf))
}
