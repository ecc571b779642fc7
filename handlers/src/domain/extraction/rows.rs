//! Line items from table rows and receipt rows. Quantity × unit price = amount decides between
//! readings of a row, and the rows' sum against the subtotal decides between rows.

use std::sync::LazyLock;

use regex::Regex;

use super::{AMOUNT, TextLine, is_header_field_line, is_summary_line, parse_amount, re};
use crate::domain::ocr::{Amount, LineItem};

static HEADER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:description|item|beschreibung|bezeichnung|artikel|d[ée]signation|article|libell[ée])\b")
});
static RECEIPT_ROW_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"^(?P<qty>\d{{1,3}})\s*[x×X*]\s*(?P<unit>{AMOUNT})\s+(?P<amt>{AMOUNT})\s*(?:[€£$])?$"))
});
static SERIAL_NOTE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\s*[(\[]?\s*(?:serial\s*(?:no\.?|number)?|s/n|seriennummer|n[°o]\s*de\s*s[ée]rie)\b[^)\]]*[)\]]?\s*$")
});
/// Tokens that sit between a row's numbers without being one: units ("Stk.", "pcs",
/// "Unit(s)"), tax rates ("19%", "20,00 %"), currency codes and signs.
static NOISE_TOKEN_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:stk\.?|st[üu]ck|pcs?\.?|pieces?|units?|unit\(s\)|ea\.?|each|std\.?|kg|pauschal|eur|usd|gbp|chf|rm|€|£|\$|\d{1,2}(?:[.,]\d{1,2})?\s*%|%)$",
    )
});

fn clean_description(desc: &str) -> String {
    let d = SERIAL_NOTE_RE.replace(desc, "");
    d.split_whitespace().collect::<Vec<_>>().join(" ")
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

/// A count as a row prints it: up to three digits ("2").
fn count_of(t: &str) -> Option<u32> {
    (t.len() <= 3 && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok()).flatten()
}

/// A count written with zero decimals, as German and French invoices print quantities ("1,00",
/// "400,00", "3.000"): it reads as an amount too, so it is a quantity only where quantity ×
/// unit price = amount says so.
fn decimal_count_of(t: &str) -> Option<u32> {
    static DECIMAL_COUNT: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,4})[.,]0{1,3}$"));
    DECIMAL_COUNT.captures(t).and_then(|c| c[1].parse().ok())
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
    // Units and tax-rate columns are dropped, and a currency sign glued to each amount
    // ("1.199,00 €", "€1,199.00") is stripped, so the numbers line up as quantity, unit, amount.
    // A rate printed apart from its sign ("10 %") is one token, so it is dropped like "10%".
    static SPACED_PERCENT: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{1,2}(?:[.,]\d{1,2})?)\s+%"));
    let line = SPACED_PERCENT.replace_all(line, "$1%");
    let mut tokens: Vec<&str> = line
        .split_whitespace()
        .filter(|t| !NOISE_TOKEN_RE.is_match(t))
        .map(|t| t.trim_matches(|c| matches!(c, '€' | '£' | '$')))
        .filter(|t| !t.is_empty())
        .collect();
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
            let qty = count_of(qty_token).or_else(|| {
                decimal_count_of(qty_token).filter(|q| unit.is_some_and(|u| i64::from(*q) * u.0 == amount.0))
            });
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
    // The quantity first, then the description ("400,00 Luftballon, bunt 19% 0,79 € 316,00 €"):
    // believed only where quantity × unit price = amount, since a leading number is as often a
    // position number. Pushed after the readings above, so an equal one of those wins.
    if let Some(qty) = tokens.first().and_then(|t| count_of(t).or_else(|| decimal_count_of(t))) {
        for (amt_start, amount) in amounts_ending_at(&tokens, tokens.len()) {
            for (unit_start, unit) in amounts_ending_at(&tokens, amt_start) {
                let desc_tokens = &tokens[1..unit_start.max(1)];
                if unit.0 > 0
                    && i64::from(qty) * unit.0 == amount.0
                    && desc_tokens.iter().any(|t| t.chars().any(char::is_alphabetic))
                {
                    out.push(RowParse {
                        description: clean_description(&desc_tokens.join(" ")),
                        quantity: Some(qty),
                        amount,
                        score: 4,
                    });
                }
            }
        }
    }
    // Stable: among equal scores the earlier (grouped-thousands) reading stays first.
    out.sort_by_key(|r| std::cmp::Reverse(r.score));
    out
}

pub(super) fn line_items(lines: &[TextLine], subtotal: Option<Amount>) -> Vec<LineItem> {
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
        if is_header_field_line(&l.text) {
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
