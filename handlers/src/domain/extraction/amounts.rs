//! Amounts: parsing, what a label says about the amount beside it, and the subtotal, tax and
//! total chosen together by arithmetic and labels.

use super::*;

/// An amount with its sign: "-12.00", "12.00-", "(12.00)", "- 12,00".
pub(super) static SIGNED_AMOUNT_RE: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:^|[^\d.,])(?P<neg>-\s?|\()?(?P<a>{AMOUNT})(?P<post>-|\))?(?:$|[^\d])")));
pub(super) static NET_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bnet(?:to)?\b|\bnet\s*amount|excl"));
pub(super) static SUBTOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:sub\s*-?\s*total|zwischensumme|teilsumme|nettobetrag|netto\s*betrag|summe\s*netto|netto\s*summe|gesamt\s*netto|total\s*netto|\bnetto\b|total\s*h\.?\s*t\.?|montant\s*h\.?\s*t\.?|sous\s*-?\s*total|\bht\b|total\s*(?:excl|excluding|before|exclusive|w/?o|without|net\b)|net\s*amount|amount\s*(?:excl|before)|total\s*\(?\s*excl)",
    )
});
pub(super) static TAX_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:\b(?:vat|tax|mwst|ust|tva|gst|sst|iva|btw|moms)\b|mehrwertsteuer|umsatzsteuer|steuer)")
});
/// Lines that mention tax without being the tax amount: registration numbers, share capital,
/// gross or net lines, exemptions.
pub(super) static NOT_TAX_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:id|no|nr|number|reg|registration|n[°o])\b\.?|-?id\.?-?nr|idnr|identifi|capital|kapital|\bincl|\binkl|including|inclusive|\bexcl|exklusive|zzgl|\bnet\b|netto|brutto|gross|exempt|befreit|exon[ée]r|code|summary)",
    )
});
/// Labels of the amount to pay, strongest first in evidence.
pub(super) static GRAND_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:grand\s*total|total\s*t\.?t\.?c\.?|montant\s*t\.?t\.?c|total\s*due|amount\s*due|balance\s*due|due\s*payable|payable\s*amount|total\s*amount|amount\s*payable|total\s*payable|total\s*to\s*pay|to\s*pay|to\s*be\s*paid|total\W*(?:rm\W*)?(?:amt\W*)?(?:incl|inc\b|inel|including|inclusive)|total\s*with\s*(?:gst|tax|vat)|amt\s*due|(?:total\s*)?after\s*(?:adj|round|disc)|rounded\s*total|total\s*rounded|total\s*sales|total\s*invoice|invoice\s*total|gesamtbetrag|gesamtsumme|endsumme|summe\s*gesamt|rechnungsbetrag|rechnungssumme|endbetrag|zahlbetrag|zu\s*zahlen|bruttobetrag|brutto\s*summe|summe\s*brutto|gesamt\s*brutto|\bbrutto\b|net\s*[àa]\s*payer|total\s*[àa]\s*payer|montant\s*total|montant\s*d[ûu]|total\s*g[ée]n[ée]ral)",
    )
});
/// Words that name a total (as OCR may garble them), as opposed to those that name any amount.
const TOTAL_WORDS: &str = r"total|totaal|t[o0a]t[a@][l1i!]|[il]?[co0]tal|summe|gesamt";
pub(super) static PLAIN_TOTAL_RE: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?i)\b(?:{TOTAL_WORDS}|betrag|amount|amt|montant|sum)\b")));
/// A label that names a total, not merely an amount ("Open Amount").
static TOTAL_WORD_RE: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"(?i)\b(?:{TOTAL_WORDS})\b")));
/// Lines with "total" that are not the amount to pay.
pub(super) static NOT_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:qty|quantity|items?|lines?|pcs|units?|count|menge|anzahl|st[üu]ck|articles?|points?|savings?|saved|discount|rabatt|remise|weight|gewicht|tips?)\b|total\s*(?:gst|tax|vat|sst|mwst|tva)|(?:gst|tax|vat)\s*(?:total|amount|summary)|\bcash\b|\bchange\b|tender|rounding|round\s*(?:adj|off)|\bpaid\b|payment|\bcard\b|visa|master|credit|deposit|bar\b|r[üu]ckgeld|gegeben|esp[èe]ces|rendu|\d{1,2}\s*%)",
    )
});
/// "6%", "19 %": in a grand-total label it names the tax included, not a tax line.
pub(super) static PERCENT_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\d{1,2}(?:[.,]\d{1,2})?\s*%"));
pub(super) static DISCOUNT_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:discount|rabatt|nachlass|remise|r[ée]duction|coupon)\b"));
pub(super) static CASH_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\bcash\b|tender|\bbar\b|gegeben|esp[èe]ces|\bpaid\b|received|^\W*pay\W*$)"));
/// "Due" standing alone as a label: the amount due.
pub(super) static DUE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\W*(?:amt\W*)?due\W*(?:rm\W*)?$"));

pub(super) static CHANGE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\bchange\b|r[üu]ckgeld|\brendu|\bbalance\b)"));
pub(super) static ROUNDING_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:rounding|round\s*(?:adj|off)|rundung|arrondi)"));
/// The total a rounding adjustment leads to ("Total After Rounding", "Rounded Total").
pub(super) static ROUNDED_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:after\s*round|rounded\s*(?:total|amount)|(?:total|amount)\s*\(?(?:after\s*)?rounded|nach\s*rundung|apr[èe]s\s*arrondi)",
    )
});

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

/// Every amount in a text, with its sign and byte position.
pub(super) fn amounts(text: &str) -> Vec<(usize, Amount)> {
    SIGNED_AMOUNT_RE
        .captures_iter(text)
        .filter_map(|c| {
            let a = parse_amount(&c["a"])?;
            let negative = c.name("neg").is_some_and(|m| m.as_str().starts_with('-'))
                || c.name("post").is_some_and(|m| m.as_str() == "-")
                || (c.name("neg").is_some_and(|m| m.as_str() == "(")
                    && c.name("post").is_some_and(|m| m.as_str() == ")"));
            Some((c.get(0).map_or(0, |m| m.start()), if negative { Amount(-a.0) } else { a }))
        })
        .collect()
}

/// What a label says about the amount next to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum AmountRole {
    GrandTotal,
    Total,
    Subtotal,
    Tax,
    Cash,
    Change,
    Rounding,
    Other,
}

/// An amount on a line, with the role its label gives it.
#[derive(Debug, Clone)]
pub(super) struct Labelled {
    line: usize,
    role: AmountRole,
    amount: Amount,
    confidence: f32,
}

pub(super) fn role_of(text: &str) -> AmountRole {
    if ROUNDED_TOTAL_RE.is_match(text) {
        AmountRole::GrandTotal
    } else if ROUNDING_RE.is_match(text) {
        AmountRole::Rounding
    } else if CHANGE_RE.is_match(text) && !GRAND_TOTAL_RE.is_match(text) {
        AmountRole::Change
    } else if CASH_RE.is_match(text) && !GRAND_TOTAL_RE.is_match(text) {
        AmountRole::Cash
    } else if SUBTOTAL_RE.is_match(text) {
        AmountRole::Subtotal
    } else if DUE_RE.is_match(text)
        || GRAND_TOTAL_RE.is_match(text)
            && !NOT_TOTAL_RE.is_match(&PERCENT_RE.replace_all(&GRAND_TOTAL_RE.replace_all(text, ""), ""))
    {
        AmountRole::GrandTotal
    } else if TAX_RE.is_match(text) && !NOT_TAX_RE.is_match(text) {
        AmountRole::Tax
    } else if PLAIN_TOTAL_RE.is_match(text) && !NOT_TOTAL_RE.is_match(text) {
        AmountRole::Total
    } else {
        AmountRole::Other
    }
}

/// Amounts with their labels: a labelled line's last amount, or — when the label stands alone —
/// the first amount on the next line.
pub(super) fn labelled_amounts(lines: &[Line]) -> Vec<Labelled> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let found = &l.amounts;
        let label_text: String = match found.first() {
            Some((pos, _)) => l.text[..*pos].to_owned(),
            None => l.text.clone(),
        };
        let role = role_of(&label_text);
        // Two label–amount pairs on one line ("Total Saving 0.00   Total 77.20"): the words
        // between two amounts label the second, and the line's first label the first.
        let later_pairs: Vec<(AmountRole, Amount)> = found
            .windows(2)
            .filter_map(|w| {
                let words = words_between(&l.text, w[0].0, w[1].0);
                let r = role_of(words);
                (r != AmountRole::Other && words.chars().any(char::is_alphabetic)).then_some((r, w[1].1))
            })
            .collect();
        let amount = match if later_pairs.is_empty() { found.last() } else { found.first() } {
            _ if role == AmountRole::Other => None,
            Some((_, a)) => Some((*a, l.confidence)),
            // A label alone on its line (not a table header of many columns): the amount in the
            // cell below it.
            None if l.cells.len() <= 2 => lines.get(i + 1).and_then(|n| {
                let label = l.cells.iter().find(|c| role_of(&c.text) != AmountRole::Other).unwrap_or(&l.cells[0]);
                (role_of(&n.text) == AmountRole::Other)
                    .then(|| {
                        n.cells
                            .iter()
                            .filter(|c| overlaps(label, c))
                            .find_map(|c| amounts(&c.text).last().map(|(_, a)| (*a, n.confidence)))
                    })
                    .flatten()
            }),
            None => None,
        };
        if let Some((amount, confidence)) = amount {
            out.push(Labelled { line: i, role, amount, confidence });
        }
        for (role, amount) in later_pairs {
            out.push(Labelled { line: i, role, amount, confidence: l.confidence });
        }
    }
    out
}

/// The words after the amount at `from` and before the one at `to`.
pub(super) fn words_between(text: &str, from: usize, to: usize) -> &str {
    let between = text.get(from..to).unwrap_or("");
    between.trim_start().split_once(char::is_whitespace).map_or("", |(_, rest)| rest)
}

/// The amounts of a document, chosen together.
pub(super) struct Money {
    pub(super) subtotal: Option<Field<Amount>>,
    pub(super) tax: Option<Field<Amount>>,
    pub(super) total: Option<Field<Amount>>,
    /// The line the total was read on (the currency next to it is the document's).
    pub(super) total_line: Option<usize>,
}

/// Subtotal, tax and total chosen together by evidence; their confidences say how much of it
/// agreed.
pub(super) fn money(lines: &[Line], source: Source) -> Money {
    // Bounded work whatever the document: the choice below compares every total with every
    // subtotal and tax; a page has a handful of each, a hostile text layer could have thousands.
    const MAX_PER_DOCUMENT: usize = 200;
    let mut labelled = labelled_amounts(lines);
    if labelled.len() > MAX_PER_DOCUMENT {
        labelled.drain(..labelled.len() - MAX_PER_DOCUMENT);
    }
    let of = |r: AmountRole| labelled.iter().filter(move |l| l.role == r);
    let subtotals: Vec<&Labelled> = of(AmountRole::Subtotal).collect();
    let taxes: Vec<&Labelled> = of(AmountRole::Tax).collect();
    let cash: Vec<&Labelled> = of(AmountRole::Cash).collect();
    let change: Vec<&Labelled> = of(AmountRole::Change).collect();
    let rounding: Vec<&Labelled> = of(AmountRole::Rounding).collect();
    // Discounts after the subtotal ("Discount 10% -50.00", "Rabatt 5,00"), always subtracted.
    let discounts: Vec<i64> = lines
        .iter()
        .filter(|l| DISCOUNT_RE.is_match(&l.text))
        .filter_map(|l| l.amounts.last().map(|(_, a)| -a.0.abs()))
        .take(MAX_PER_DOCUMENT)
        .collect();
    let every_amount: Vec<Amount> =
        lines.iter().filter(|l| !CASH_RE.is_match(&l.text)).flat_map(|l| l.amounts.iter()).map(|(_, a)| *a).collect();
    let max_amount = every_amount.iter().map(|a| a.0.abs()).max();

    struct Cand<'a> {
        l: &'a Labelled,
        score: f32,
        arithmetic: bool,
        sub: Option<&'a Labelled>,
        tax: Option<&'a Labelled>,
        /// A total before a printed rounding adjustment, followed by the rounded total.
        superseded: bool,
    }
    let mut cands: Vec<Cand<'_>> = Vec::new();
    // A subtotal is the amount to pay on a receipt without tax lines; it competes weakly.
    for l in
        labelled.iter().filter(|l| matches!(l.role, AmountRole::GrandTotal | AmountRole::Total | AmountRole::Subtotal))
    {
        let mut score = match l.role {
            AmountRole::GrandTotal => 3.0,
            AmountRole::Total => 2.0,
            _ => 1.0,
        };
        let mut arithmetic = false;
        let (mut sub, mut tax) = (None, None);
        // subtotal + tax (+ rounding) = total; a "net total" above serves as the subtotal.
        let nets: Vec<&Labelled> = labelled
            .iter()
            .filter(|o| o.role == AmountRole::Total && o.line < l.line && NET_RE.is_match(&lines[o.line].text))
            .collect();
        'outer: for s in subtotals.iter().chain(nets.iter()) {
            for t in &taxes {
                for r in std::iter::once(0).chain(rounding.iter().map(|r| r.amount.0)).chain(discounts.iter().copied())
                {
                    if s.amount.0 + t.amount.0 + r == l.amount.0 && s.line < l.line {
                        arithmetic = true;
                        (sub, tax) = (Some(*s), Some(*t));
                        break 'outer;
                    }
                }
            }
            // Prices that include tax: the subtotal is the total (tax shown for information).
            if s.amount == l.amount {
                score += 0.5;
            }
        }
        // cash − change = total
        let paid = |total: i64| {
            cash.iter().any(|c| c.amount.0 > 0 && change.iter().any(|ch| c.amount.0 - ch.amount.0 == total))
        };
        if paid(l.amount.0) {
            arithmetic = true;
        }
        if arithmetic {
            score += 3.0;
        }
        // The same amount under several total labels.
        let repeats = labelled
            .iter()
            .filter(|o| {
                o.line != l.line && o.amount == l.amount && matches!(o.role, AmountRole::GrandTotal | AmountRole::Total)
            })
            .count();
        score += 0.5 * repeats.min(2) as f32;
        // The amount to pay is the largest on the document (cash tendered aside).
        if max_amount == Some(l.amount.0.abs()) {
            score += 1.0;
        }
        if l.amount.0 == 0 {
            score -= 1.0;
        }
        cands.push(Cand { l, score, arithmetic, sub, tax, superseded: false });
    }
    // What was paid (cash − change) read on a total line whose amount OCR garbled: the
    // digits are there without their separator ("GRAND TOTAL 1000" for 10.00). Two other
    // printed numbers agree on it.
    // Total lines on which no amount could be read, with their digits.
    let unread_totals: Vec<(usize, AmountRole, String)> = if cash.is_empty() || change.is_empty() {
        Vec::new()
    } else {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let role = role_of(&l.text);
                (matches!(role, AmountRole::GrandTotal | AmountRole::Total) && l.amounts.is_empty())
                    .then(|| (i, role, l.text.chars().filter(char::is_ascii_digit).collect()))
            })
            .collect()
    };
    let mut from_payment: Vec<Labelled> = Vec::new();
    for c in &cash {
        for ch in change.iter().filter(|ch| ch.line > c.line) {
            let paid = c.amount.0 - ch.amount.0;
            if paid <= 0
                || cands.iter().any(|k| k.l.amount.0 == paid)
                || from_payment.iter().any(|f| f.amount.0 == paid)
            {
                continue;
            }
            // Only where no amount was read at all: an amount that differs from the payment
            // leaves open which of the readings is wrong.
            let want = format!("{paid:03}");
            if let Some((i, role, _)) =
                unread_totals.iter().find(|(i, _, digits)| *i < c.line && digits.ends_with(&want))
            {
                from_payment.push(Labelled { line: *i, role: *role, amount: Amount(paid), confidence: c.confidence });
            }
        }
    }
    for r in &from_payment {
        cands.push(Cand { l: r, score: 6.0, arithmetic: true, sub: None, tax: None, superseded: false });
    }
    // A total before a rounding adjustment: what is paid is the rounded amount, when the
    // payment proves it (cash − change = total + rounding).
    let mut rounded: Vec<Labelled> = Vec::new();
    for c in &cands {
        for r in rounding.iter().filter(|r| r.amount.0 != 0 && r.line > c.l.line) {
            let t = c.l.amount.0 + r.amount.0;
            let paid = cash.iter().any(|ca| change.iter().any(|ch| ca.amount.0 - ch.amount.0 == t));
            if paid && !cands.iter().any(|o| o.l.amount.0 == t) {
                rounded.push(Labelled { line: r.line, role: c.l.role, amount: Amount(t), confidence: r.confidence });
            }
        }
    }
    for r in &rounded {
        cands.push(Cand { l: r, score: 6.5, arithmetic: true, sub: None, tax: None, superseded: false });
    }
    // A total, a rounding adjustment below it, and below that the total plus the adjustment
    // (sign as printed, or the other way: "Rounding 0.02" often subtracts) under a total's label:
    // the second is what is paid, the printed sum proves it, and the first is not its rival.
    // (The first is the largest amount and may be repeated, so without this it would win.) An
    // amount under a label that names no total ("Gross Total 144.59 · Rounding 0.01 · Open
    // Amount 144.60") is what remains to pay, not the invoice's total.
    let names_a_total = |c: &Labelled| c.role == AmountRole::GrandTotal || TOTAL_WORD_RE.is_match(&lines[c.line].text);
    for i in 0..cands.len() {
        if !names_a_total(cands[i].l) {
            continue;
        }
        let (line, amount) = (cands[i].l.line, cands[i].l.amount.0);
        let before = cands.iter().enumerate().find_map(|(j, c)| {
            let adjusted = rounding.iter().any(|r| {
                r.amount.0 != 0
                    && r.amount.0.abs() <= 10
                    && c.l.line < r.line
                    && r.line < line
                    && (c.l.amount.0 + r.amount.0 == amount || c.l.amount.0 - r.amount.0 == amount)
            });
            (j != i && adjusted).then_some((j, c.score))
        });
        if let Some((j, score)) = before {
            cands[j].superseded = true;
            let c = &mut cands[i];
            c.score = c.score.max(score) + if c.arithmetic { 1.0 } else { 4.0 };
            c.arithmetic = true;
        }
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.l.line.cmp(&a.l.line)));
    let Some(best) = cands.first() else {
        let sub = subtotals.first().map(|s| Field::new(s.amount, 0.6 * s.confidence));
        let tax = taxes.first().map(|t| Field::new(t.amount, 0.5 * t.confidence));
        return Money { subtotal: sub, tax, total: None, total_line: None };
    };
    // Another amount under as strong a label (the "largest amount" bonus aside) is a rival,
    // unless arithmetic decided between them.
    let rivals = cands
        .iter()
        .skip(1)
        .filter(|c| {
            c.l.amount != best.l.amount
                && !c.superseded
                && (c.arithmetic || !best.arithmetic)
                && c.score >= best.score - 1.0
        })
        .count();
    let mut conf: f32 = if best.arithmetic {
        // Every number of the sum read exactly, or each possibly misread by OCR.
        if source == Source::Exact { 0.99 } else { 0.97 }
    } else if best.l.role == AmountRole::GrandTotal {
        0.85
    } else {
        0.75
    };
    if best.score >= 5.0 && !best.arithmetic {
        conf += 0.05;
    }
    if rivals > 0 {
        conf -= 0.3;
    }
    // A subtotal and a tax that do not add up to it contradict the total.
    let contradicted = !best.arithmetic
        && !subtotals.is_empty()
        && !taxes.is_empty()
        && best.sub.is_none()
        && !subtotals.iter().any(|s| s.amount == best.l.amount);
    if contradicted {
        conf -= 0.35;
    } else if source == Source::Exact && rivals == 0 && max_amount == Some(best.l.amount.0.abs()) {
        // Exact characters, the only candidate, the largest amount on the document.
        conf = conf.max(0.85);
    }
    // OCR: a total that no arithmetic supports is believed only when printed twice and read
    // with high confidence; a digit may be misread.
    let repeated = labelled
        .iter()
        .filter(|o| {
            o.line != best.l.line
                && o.amount == best.l.amount
                && matches!(o.role, AmountRole::GrandTotal | AmountRole::Total | AmountRole::Subtotal)
        })
        .count()
        > 0;
    if source == Source::Ocr && !best.arithmetic {
        let ocr = best.l.confidence;
        conf = conf.min(if repeated && ocr >= 0.9 { 0.85 } else { 0.7 });
    }
    let total = Field::new(best.l.amount, conf);
    let sub = best.sub.map(|s| Field::new(s.amount, 0.97)).or_else(|| {
        subtotals.iter().rev().find(|s| s.line < best.l.line).map(|s| Field::new(s.amount, 0.6 * s.confidence))
    });
    let tax = best.tax.map(|t| Field::new(t.amount, 0.97)).or_else(|| {
        // Without arithmetic, a tax line is believed only when subtotal + tax = total fails for
        // no other candidate; keep it, but doubtful.
        taxes.iter().rev().find(|t| t.line != best.l.line).map(|t| Field::new(t.amount, 0.5 * t.confidence))
    });
    Money { subtotal: sub, tax, total: Some(total), total_line: Some(best.l.line) }
}
