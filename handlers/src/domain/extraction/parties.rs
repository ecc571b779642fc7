//! The seller: labels, sender lines, letterheads and legal forms; never the buyer's block.

use super::*;

/// Company legal forms (case-insensitive): the issuer's name usually carries one.
pub(super) static LEGAL_FORM_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:gmbh(?:\s*&\s*co\.?\s*kg)?|mbh|ag|kg|ug|ohg|gbr|e\.\s?k\.?|e\.\s?v\.?|ltd\.?|limited|inc\.?|incorporated|llc|llp|plc|corp\.?|corporation|sas|sasu|sarl|eurl|sa|s\.a\.?|sca|bv|b\.v\.?|nv|n\.v\.?|srl|s\.r\.l\.?|spa|s\.p\.a\.?|sdn\.?\s*bhd\.?|bhd\.?|s/?b|pty\.?|pte\.?|ab|a/s|aps|oy|kft|sp\.\s*z\s*o\.?\s*o\.?)\b\.?)",
    )
});
/// Words shop names carry without a legal form ("… TRADING", "… HARDWARE", "… MART").
pub(super) static BUSINESS_WORD_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:enterprises?|trading|store|stores|mart|minimarket|supermarket|hypermarket|restaurant|hardware|electrical|pharmacy|bakery|cafe|café|shop|boutique|market|stationery|bookstore|books|machinery|motor|motors|engineering|services?|industries|holdings|company|co\.|kedai|perniagaan|gallery|station|centre|center|handel|markt|laden|apotheke|b[äa]ckerei|magasin|boulangerie|pharmacie|librairie)\b",
    )
});
pub(super) static SELLER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:seller|sold\s*by|vendor|supplier|from|issued\s*by|verk[äa]ufer|lieferant|rechnungssteller|absender|vendeur|fournisseur|[ée]metteur|company\s*name)(?:\s*(?:trade\s*|company\s*|legal\s*)?name)?\s*(?:[:\-]\s*(?P<v>.*))?$",
    )
});
/// The label must end in a colon or stand alone (its value in the next cell or on the next line):
/// "Seller Company · 123 Seller St" is a name that starts with a label's word, not a label.
/// Labels that open the buyer's block: the lines after them (same column) are not the issuer.
pub(super) static BUYER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\W*(?:bill(?:ed)?\s*to|invoice\s*to|invoiced\s*to|ship(?:ped)?\s*to|sold\s*to|deliver\s*to|customer|client|buyer|attn|attention|recipient|rechnungsempf[äa]nger|rechnungsadresse|lieferanschrift|lieferadresse|kunde|k[äa]ufer|empf[äa]nger|an:|destinataire|factur[ée]\s*[àa]|adresse\s*de\s*(?:facturation|livraison)|acheteur|livr[ée]\s*[àa])\b",
    )
});
/// Lines that are not a shop's name at the top of a receipt.
pub(super) static NOT_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:tax\s*invoice|simplified|invoice|receipt|rechnung|quittung|kassenbon|facture|ticket|re[çc]u|welcome|thank|tel|telephone|phone|fax|e-?mail|www|http|gst\s*(?:id|reg|no)|reg\.?\s*no|co\.?\s*no|company\s*no|jalan|road|street|str\.|strasse|straße|rue|avenue|no\.|lot|taman|page|date|time|cashier|table)\b|@|\d{5})",
    )
});
pub(super) static POSTCODE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:[A-Z]{1,2}-?)?\d{4,5}\s+\p{L}"));

/// Lines in the buyer's block: the line of a buyer label and the next lines in its column.
pub(super) fn buyer_lines(lines: &[Line]) -> Vec<bool> {
    let mut buyer = vec![false; lines.len()];
    for (i, l) in lines.iter().enumerate() {
        // A buyer label heads its cell ("Bill to:", "Kunde"), never inside a word or a sentence.
        let Some(label) = l.cells.iter().find(|c| BUYER_LABEL_RE.is_match(&c.text)).cloned() else { continue };
        buyer[i] = true;
        // The block: a name and an address (at most four lines) in the label's column, ending
        // at the next labelled header field or amount.
        for (j, below) in lines.iter().enumerate().skip(i + 1).take(4) {
            if is_header_field_line(&below.text) || !below.amounts.is_empty() {
                break;
            }
            if below.cells.iter().any(|c| overlaps(&label, c) || c.left <= label.left + 1.0 && c.right > label.left) {
                buyer[j] = true;
            }
        }
    }
    buyer
}

/// A seller candidate's evidence.
pub(super) fn seller(lines: &[Line]) -> Option<Field<String>> {
    let buyer = buyer_lines(lines);
    let mut best: Option<(f32, String, f32)> = None;
    let consider = |best: &mut Option<(f32, String, f32)>, score: f32, name: String, conf: f32| {
        let name =
            name.trim_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '-' | '|' | '·' | '*')).to_owned();
        // A legal form alone ("BHD", "SA" in OCR noise) names no one.
        if LEGAL_FORM_RE.replace_all(&name, "").chars().filter(|c| c.is_alphabetic()).count() < 3 {
            return;
        }
        if best.as_ref().is_none_or(|(s, ..)| score > *s) {
            *best = Some((score, name, conf));
        }
    };
    let n = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if buyer[i] {
            continue;
        }
        if let Some(c) = SELLER_LABEL_RE.captures(&l.cells[0].text) {
            let v = c.name("v").map_or("", |m| m.as_str()).trim().to_owned();
            let beside = || l.cells.get(1).map(|c| c.text.clone());
            let below = || lines.get(i + 1).map(|n| n.cells[0].text.clone());
            let value = if v.is_empty() {
                // "Seller:" points to its value beside it; a heading without a colon ("SELLER
                // TRADE NAME" over a column) to the value below it.
                if c.name("v").is_some() { beside().or_else(below) } else { below().or_else(beside) }
            } else {
                Some(v)
            };
            if let Some(v) = value {
                consider(&mut best, 10.0, v, 0.9 * l.confidence.max(0.5));
            }
        }
        // The sender line over a letter's address window (DIN 5008): "Name · Street 1 ·
        // 12345 Town" names the issuer, with or without a legal form.
        let parts: Vec<&str> = l.text.split(['·', '|', '•', '●']).map(str::trim).filter(|p| !p.is_empty()).collect();
        if parts.len() >= 3 && parts.iter().skip(1).any(|p| POSTCODE_RE.is_match(p)) && !POSTCODE_RE.is_match(parts[0])
        {
            consider(&mut best, 8.0, parts[0].to_owned(), 0.85 * l.confidence.max(0.5));
        }
        // A line that is only a name (a receipt's centred header, spaced letters split into
        // cells) is read whole; otherwise the cell holding the legal form.
        let whole = l.cells.iter().all(|c| !c.text.chars().any(|ch| ch.is_ascii_digit()));
        // A cell also takes the plain words to its left ("POPULAR BOOK | CO.(M) SDN BHD"):
        // cells without digits or a label's colon.
        let texts: Vec<String> = if whole {
            vec![l.text.clone()]
        } else {
            (0..l.cells.len())
                .map(|k| {
                    let start = (0..k)
                        .rev()
                        .take_while(|&j| !l.cells[j].text.chars().any(|c| c.is_ascii_digit() || c == ':'))
                        .last()
                        .unwrap_or(k);
                    l.cells[start..=k].iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ")
                })
                .collect()
        };
        for text in texts {
            let (name, base) = if let Some(m) = LEGAL_FORM_RE.find(&text) {
                // The sender line above an address window: "Name GmbH · Street 1 · 12345 Town".
                let head = &text[..m.end()];
                let name = head.rsplit(['·', '|', '•', ';', '●']).next().unwrap_or(head);
                let name = name.rsplit(" - ").next().unwrap_or(name);
                (DOCUMENT_TITLE_RE.replace(name.trim(), "").trim().to_owned(), 5.0)
            } else if i < 6 && BUSINESS_WORD_RE.is_match(&text) && !NOT_NAME_RE.is_match(&text) {
                (text.clone(), 4.0)
            } else {
                continue;
            };
            let name = with_continuations(lines, &buyer, i, name);
            let mut score = base;
            if i < 6 {
                score += 2.0 - i as f32 * 0.2;
            } else if i + 6 >= n {
                score += 0.5; // letterhead in the footer
            }
            if NOT_NAME_RE.is_match(&name) {
                score -= 2.0;
            }
            consider(&mut best, score, name, 0.85 * l.confidence.max(0.5));
        }
    }
    // A receipt's first line is the shop, when nothing names the issuer better.
    if best.as_ref().is_none_or(|(s, ..)| *s < 5.0) {
        for (i, l) in lines.iter().enumerate().take(4) {
            // A letterhead beside the document's title ("Blanc-Conseil   FACTURE"): the title's
            // cell is not part of the name.
            let text = if l.cells.len() > 1 && l.cells.iter().any(|c| title_text(&c.text)) {
                l.cells.iter().filter(|c| !title_text(&c.text)).map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ")
            } else {
                l.text.clone()
            };
            if buyer[i] || NOT_NAME_RE.is_match(&text) || !l.amounts.is_empty() || !dates_in(&text, false).is_empty() {
                continue;
            }
            let letters = text.chars().filter(|c| c.is_alphabetic()).count();
            if letters >= 3 && letters * 2 >= text.chars().filter(|c| !c.is_whitespace()).count() {
                let name = with_continuations(lines, &buyer, i, text);
                consider(&mut best, 2.0 - i as f32 * 0.3, name, 0.6 * l.confidence.max(0.5));
                break;
            }
        }
    }
    best.map(|(_, name, conf)| Field::new(repair_legal_forms(&strip_registration(&name)), conf))
}

/// OCR's usual misreadings of legal-form words ("SON BHD", "SDN 8HD", "GMBM") put right: a
/// word one letter away from a legal form, next to another legal-form word or at the end.
pub(super) fn repair_legal_forms(name: &str) -> String {
    const FORMS: [&str; 8] = ["SDN", "BHD", "GMBH", "LTD", "SARL", "GMBH", "LIMITED", "ENTERPRISE"];
    let one_off = |a: &str, b: &str| {
        a.len() == b.len() && a.len() >= 3 && a.chars().zip(b.chars()).filter(|(x, y)| x != y).count() == 1
    };
    let words: Vec<&str> = name.split_whitespace().collect();
    let n = words.len();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let upper = w.to_uppercase();
            let beside_form = |j: usize| words.get(j).is_some_and(|o| FORMS.contains(&o.to_uppercase().as_str()));
            match FORMS.iter().find(|f| one_off(&upper, f)) {
                Some(f) if i + 1 == n || beside_form(i + 1) || (i > 0 && beside_form(i - 1)) => {
                    if w.chars().all(|c| !c.is_lowercase()) { (*f).to_owned() } else { w.to_string() }
                }
                _ => w.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name printed over two lines: the line above when this one is only a legal form
/// ("SDN BHD", "CO. (M) SDN BHD") or starts with a word that continues a name ("ENTERPRISE
/// (SETIA ALAM) SDN BHD" under "AIK HUAT HARDWARE"), the line below when this one ends in "&" or
/// the next is only a legal form.
pub(super) fn with_continuations(lines: &[Line], buyer: &[bool], i: usize, name: String) -> String {
    /// Words that join a name's parts or follow its distinctive words, never start one.
    static CONTINUES_RE: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)^\W*(?:co\b\.?|&|and\b|enterprises?\b|\(m\)|\(malaysia\))"));
    /// Short words a legal name carries beside its form ("CO. (M) SDN BHD").
    static FILLER_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bco\b\.?|\((?:m|malaysia)\)|&"));
    let name_like = |j: usize| {
        !buyer[j]
            && !NOT_NAME_RE.is_match(&lines[j].text)
            && !lines[j].text.chars().any(|c| c.is_ascii_digit())
            && lines[j].text.split_whitespace().count() <= 5
    };
    let mut name = name;
    let only_form = |t: &str| {
        let rest = FILLER_RE.replace_all(&LEGAL_FORM_RE.replace_all(t, ""), "").into_owned();
        !t.trim().is_empty() && rest.chars().filter(|c| c.is_alphanumeric()).count() <= 3
    };
    // A receipt header in capitals spread over two lines ("LIAN CHI PU TIAN VEGETARIAN" /
    // "RESTAURANT SDN BHD") is one name too.
    let capitals = |t: &str| t.chars().any(char::is_alphabetic) && !t.chars().any(char::is_lowercase);
    let short = |t: &str| LEGAL_FORM_RE.replace_all(t, "").split_whitespace().count() <= 1;
    // At most two lines above: a name over three lines is the longest a header prints.
    let mut top = i;
    while top > 0
        && i - top < 2
        && top <= 8
        && name_like(top - 1)
        && lines[top - 1].confidence >= 0.6
        && (only_form(&name)
            || short(&name) && capitals(&name) && capitals(&lines[top - 1].text) && top <= 4
            || CONTINUES_RE.is_match(&name) && top <= 4)
    {
        name = format!("{} {}", lines[top - 1].text, name);
        top -= 1;
    }
    if i + 1 < lines.len() && name_like(i + 1) {
        let next = &lines[i + 1].text;
        if name.trim_end().ends_with(['&', ','])
            || name.trim_end().to_ascii_uppercase().ends_with(" AND")
            || only_form(next)
        {
            name = format!("{name} {next}");
        }
    }
    name
}

/// "MR D.I.Y. (JOHOR) SDN BHD (860671-D)" → without the trailing registration number.
pub(super) fn strip_registration(name: &str) -> String {
    static REG: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\s*[\(\[]?\s*(?:co\.?\s*reg\.?\s*no\.?|reg\.?\s*no\.?)?[:\s]*\d{3,}[-\s]?[A-Z]?\s*[\)\]]?\s*$")
    });
    REG.replace(name, "").trim().to_owned()
}
