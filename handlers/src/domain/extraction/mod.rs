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

pub mod agree;
mod rows;

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;

use super::ocr::{Amount, Field, InvoiceFields};

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

/// An amount with its sign: "-12.00", "12.00-", "(12.00)", "- 12,00".
static SIGNED_AMOUNT_RE: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:^|[^\d.,])(?P<neg>-\s?|\()?(?P<a>{AMOUNT})(?P<post>-|\))?(?:$|[^\d])")));
static ISO_DATE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})\b"));
static NUMERIC_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})(?P<sep2>[./-])(?P<y>\d{4}|\d{2})\b"));
static WORD_DATE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\.?[\s\-/]*(?P<mon>[a-zäéûô]{3,10})\.?[\s\-/,]*(?P<y>\d{4}|\d{2})\b")
});
static US_WORD_DATE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?P<mon>[a-z]{3,9})\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b"));
static COMPACT_DATE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?P<y>20\d{2})(?P<m>[01]\d)(?P<d>[0-3]\d)\b"));

/// Labels of an issue date (the one a warranty starts from).
static INVOICE_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:invoice\s*date|date\s*of\s*(?:issue|invoice)|issue\s*date|bill\s*date|receipt\s*date|rechnungsdatum|belegdatum|ausstellungsdatum|datum|date\s*de\s*(?:la\s*)?facture|date\s*d'?\s*[ée]mission|fecha|date|dated|tarikh)\b",
    )
});
/// Labels of other dates on an invoice: never the invoice date.
/// Labels that name the issue date unambiguously, even beside another kind of date
/// ("Liefer- und Rechnungsdatum"), and the German letter's "München, den 01.11.2024".
static STRONG_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:invoice\s*date|date\s*of\s*(?:issue|invoice)|rechnungsdatum|date\s*de\s*(?:la\s*)?facture|,\s*den\b)")
});
static OTHER_DATE_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\bdue\b|f[äa]llig|zahlbar|payable|[ée]ch[ée]ance|payment|zahlung|remit|[üu]berweisen|deliver|liefer|leistung|shipping|ship\s*date|order\s*date|bestell|auftrag|commande|period|zeitraum|p[ée]riode|valid|g[üu]ltig|expir|ablauf|until\b|birth|geburt|printed|gedruckt|skonto)",
    )
});
/// A document title: a date on its line ("Rechnung Nr. 5 vom 09.05.2017", "Invoice # 7 issued
/// at …") is the issue date.
static DOCUMENT_TITLE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:tax\s*)?(?:invoice|rechnung|facture|receipt|quittung|gutschrift|credit\s*note|avoir)\b")
});
/// Two dates joined as a range ("01.03. – 31.03.2026", "du … au …", "from … to …").
static RANGE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\s*(?:-|–|—|bis|to|till|until|au|à)\s*$"));
static NET_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bnet(?:to)?\b|\bnet\s*amount|excl"));
static SUBTOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:sub\s*-?\s*total|zwischensumme|teilsumme|nettobetrag|netto\s*betrag|summe\s*netto|netto\s*summe|gesamt\s*netto|total\s*netto|\bnetto\b|total\s*h\.?\s*t\.?|montant\s*h\.?\s*t\.?|sous\s*-?\s*total|\bht\b|total\s*(?:excl|excluding|before|exclusive|w/?o|without|net\b)|net\s*amount|amount\s*(?:excl|before)|total\s*\(?\s*excl)",
    )
});
static TAX_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:\b(?:vat|tax|mwst|ust|tva|gst|sst|iva|btw|moms)\b|mehrwertsteuer|umsatzsteuer|steuer)")
});
/// Lines that mention tax without being the tax amount: registration numbers, share capital,
/// gross or net lines, exemptions.
static NOT_TAX_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:id|no|nr|number|reg|registration|n[°o])\b\.?|-?id\.?-?nr|idnr|identifi|capital|kapital|\bincl|\binkl|including|inclusive|\bexcl|exklusive|zzgl|\bnet\b|netto|brutto|gross|exempt|befreit|exon[ée]r|code|summary)",
    )
});
/// Labels of the amount to pay, strongest first in evidence.
static GRAND_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:grand\s*total|total\s*t\.?t\.?c\.?|montant\s*t\.?t\.?c|total\s*due|amount\s*due|balance\s*due|due\s*payable|payable\s*amount|total\s*amount|amount\s*payable|total\s*payable|total\s*to\s*pay|to\s*pay|to\s*be\s*paid|total\W*(?:rm\W*)?(?:amt\W*)?(?:incl|inc\b|inel|including|inclusive)|total\s*with\s*(?:gst|tax|vat)|amt\s*due|(?:total\s*)?after\s*(?:adj|round|disc)|rounded\s*total|total\s*rounded|total\s*sales|total\s*invoice|invoice\s*total|gesamtbetrag|gesamtsumme|endsumme|summe\s*gesamt|rechnungsbetrag|rechnungssumme|endbetrag|zahlbetrag|zu\s*zahlen|bruttobetrag|brutto\s*summe|summe\s*brutto|gesamt\s*brutto|\bbrutto\b|net\s*[àa]\s*payer|total\s*[àa]\s*payer|montant\s*total|montant\s*d[ûu]|total\s*g[ée]n[ée]ral)",
    )
});
static PLAIN_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\btotal\b|\btotaal\b|\bt[o0a]t[a@][l1i!]\b|\b[il]?[co0]tal\b|\bsumme\b|\bgesamt\b|\bbetrag\b|\bamount\b|\bamt\b|\bmontant\b|\bsum\b)",
    )
});
/// Lines with "total" that are not the amount to pay.
static NOT_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:qty|quantity|items?|lines?|pcs|units?|count|menge|anzahl|st[üu]ck|articles?|points?|savings?|saved|discount|rabatt|remise|weight|gewicht|tips?)\b|total\s*(?:gst|tax|vat|sst|mwst|tva)|(?:gst|tax|vat)\s*(?:total|amount|summary)|\bcash\b|\bchange\b|tender|rounding|round\s*(?:adj|off)|\bpaid\b|payment|\bcard\b|visa|master|credit|deposit|bar\b|r[üu]ckgeld|gegeben|esp[èe]ces|rendu|\d{1,2}\s*%)",
    )
});
/// "6%", "19 %": in a grand-total label it names the tax included, not a tax line.
static PERCENT_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\d{1,2}(?:[.,]\d{1,2})?\s*%"));
static DISCOUNT_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:discount|rabatt|nachlass|remise|r[ée]duction|coupon)\b"));
static CASH_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\bcash\b|tender|\bbar\b|gegeben|esp[èe]ces|\bpaid\b|received|^\W*pay\W*$)"));
/// "Due" standing alone as a label: the amount due.
static DUE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^\W*(?:amt\W*)?due\W*(?:rm\W*)?$"));

static CHANGE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)(?:\bchange\b|r[üu]ckgeld|\brendu|\bbalance\b)"));
static ROUNDING_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)(?:rounding|round\s*(?:adj|off)|rundung|arrondi)"));
/// The total a rounding adjustment leads to ("Total After Rounding", "Rounded Total").
static ROUNDED_TOTAL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:after\s*round|rounded\s*(?:total|amount)|(?:total|amount)\s*\(?(?:after\s*)?rounded|nach\s*rundung|apr[èe]s\s*arrondi)",
    )
});

static NUMBER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:invoice\s*(?:no\.?|number|nr\.?|num\.?|#|id)|inv\.?\s*(?:no\.?|#)|bill\s*(?:no\.?|number|#)|receipt\s*(?:no\.?|number|#)|rechnungs\s*-?\s*(?:nummer|nr\.?|no\.?)|rechnung\s*(?:nr\.?|no\.?|nummer)|beleg\s*-?\s*(?:nr\.?|nummer)|bon\s*-?\s*(?:nr\.?|nummer)|n[°o]\.?\s*(?:de\s*)?facture|num[ée]ro\s*(?:de\s*)?facture|facture\s*n[°o]\.?|document\s*(?:no\.?|number)|doc\.?\s*no\.?|\bno\.?\s*facture)",
    )
});
/// A document title directly followed by its number: "Invoice VT/2021/07", "Facture FA-1042",
/// "Rechnung RE-2020-11", "Invoice #123".
static TITLE_NUMBER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:tax\s*)?(?:invoice|rechnung|facture|receipt|gutschrift|credit\s*note|avoir)\s*(?:n[°o]\.?|nr\.?|no\.?)?\s*[:#]?\s*(?P<v>[A-Z0-9][A-Z0-9/.\-_]*\d[A-Z0-9/.\-_]*)(?:\s|$)",
    )
});
/// A number under a title that stands alone ("FACTURE" / "N° FA-2024-042").
static BARE_NUMBER_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:n[°o]\.?|nr\.?|no\.?|#)\s*[:#]?\s*(?P<v>[A-Z0-9][A-Z0-9/.\-_]*\d[A-Z0-9/.\-_]*)(?:\s|$)")
});

/// A document title alone on its line ("FACTURE", "Tax Invoice"): the line below it belongs to
/// the title (its number and date are the document's).
fn title_alone(l: &Line) -> bool {
    title_text(&l.text)
}

/// A title and nothing else ("FACTURE", "Tax Invoice"), on a line or in a cell.
fn title_text(t: &str) -> bool {
    DOCUMENT_TITLE_RE.is_match(t) && !t.chars().any(|c| c.is_ascii_digit()) && t.split_whitespace().count() <= 3
}

static NUMBER_VALUE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[:#.\s]*(?P<v>[A-Za-z0-9][A-Za-z0-9/.\-_]*[A-Za-z0-9]|\d)(?:\s|$)"));

static CURRENCY_CODE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(EUR|USD|GBP|CHF|SEK|NOK|DKK|ISK|PLN|CZK|HUF|RON|BGN|HRK|TRY|RUB|UAH|JPY|CNY|RMB|HKD|TWD|KRW|SGD|MYR|IDR|THB|PHP|VND|INR|PKR|LKR|BDT|AUD|NZD|CAD|MXN|BRL|ARS|CLP|COP|ZAR|NGN|KES|EGP|MAD|AED|SAR|QAR|ILS)\b",
    )
});
/// "RM 9.00", "RM9.00", "(RM)": the Malaysian ringgit's sign.
static RINGGIT_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:\bRM\s?\d|\(RM\)|\bRM\b)"));
static RUPEE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?:₹|\bRs\.?\s?\d|\bINR\b)"));

/// Company legal forms (case-insensitive): the issuer's name usually carries one.
static LEGAL_FORM_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:gmbh(?:\s*&\s*co\.?\s*kg)?|mbh|ag|kg|ug|ohg|gbr|e\.\s?k\.?|e\.\s?v\.?|ltd\.?|limited|inc\.?|incorporated|llc|llp|plc|corp\.?|corporation|sas|sasu|sarl|eurl|sa|s\.a\.?|sca|bv|b\.v\.?|nv|n\.v\.?|srl|s\.r\.l\.?|spa|s\.p\.a\.?|sdn\.?\s*bhd\.?|bhd\.?|s/?b|pty\.?|pte\.?|ab|a/s|aps|oy|kft|sp\.\s*z\s*o\.?\s*o\.?)\b\.?)",
    )
});
/// Words shop names carry without a legal form ("… TRADING", "… HARDWARE", "… MART").
static BUSINESS_WORD_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:enterprises?|trading|store|stores|mart|minimarket|supermarket|hypermarket|restaurant|hardware|electrical|pharmacy|bakery|cafe|café|shop|boutique|market|stationery|bookstore|books|machinery|motor|motors|engineering|services?|industries|holdings|company|co\.|kedai|perniagaan|gallery|station|centre|center|handel|markt|laden|apotheke|b[äa]ckerei|magasin|boulangerie|pharmacie|librairie)\b",
    )
});
static SELLER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(?:seller|sold\s*by|vendor|supplier|from|issued\s*by|verk[äa]ufer|lieferant|rechnungssteller|absender|vendeur|fournisseur|[ée]metteur|company\s*name)(?:\s*(?:trade\s*|company\s*|legal\s*)?name)?\s*(?:[:\-]\s*(?P<v>.*))?$",
    )
});
/// The label must end in a colon or stand alone (its value in the next cell or on the next line):
/// "Seller Company · 123 Seller St" is a name that starts with a label's word, not a label.
/// Labels that open the buyer's block: the lines after them (same column) are not the issuer.
static BUYER_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\W*(?:bill(?:ed)?\s*to|invoice\s*to|invoiced\s*to|ship(?:ped)?\s*to|sold\s*to|deliver\s*to|customer|client|buyer|attn|attention|recipient|rechnungsempf[äa]nger|rechnungsadresse|lieferanschrift|lieferadresse|kunde|k[äa]ufer|empf[äa]nger|an:|destinataire|factur[ée]\s*[àa]|adresse\s*de\s*(?:facturation|livraison)|acheteur|livr[ée]\s*[àa])\b",
    )
});
/// Lines that are not a shop's name at the top of a receipt.
static NOT_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:tax\s*invoice|simplified|invoice|receipt|rechnung|quittung|kassenbon|facture|ticket|re[çc]u|welcome|thank|tel|telephone|phone|fax|e-?mail|www|http|gst\s*(?:id|reg|no)|reg\.?\s*no|co\.?\s*no|company\s*no|jalan|road|street|str\.|strasse|straße|rue|avenue|no\.|lot|taman|page|date|time|cashier|table)\b|@|\d{5})",
    )
});
static POSTCODE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:[A-Z]{1,2}-?)?\d{4,5}\s+\p{L}"));

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
fn amounts(text: &str) -> Vec<(usize, Amount)> {
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
fn full_year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    Some(match (y.len(), n) {
        (2, 0..=69) => 2000 + n,
        (2, _) => 1900 + n,
        _ => n,
    })
}

/// Dates on invoices lie between 1970 and a year ahead of any plausible "now".
fn plausible(d: NaiveDate) -> bool {
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

/// Lines in the buyer's block: the line of a buyer label and the next lines in its column.
fn buyer_lines(lines: &[Line]) -> Vec<bool> {
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

fn currency_of(text: &str) -> Option<(String, f32)> {
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
fn currency(lines: &[Line], total_line: Option<usize>, source: Source) -> Option<Field<String>> {
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

fn invoice_number(lines: &[Line]) -> Option<Field<String>> {
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
        // ("Blanc-Conseil   FACTURE" / "12 rue …   N° FX-2026-0042").
        for cell in &l.cells {
            let under_title = i > 0
                && (title_alone(&lines[i - 1])
                    || lines[i - 1].cells.iter().any(|t| overlaps(t, cell) && title_text(&t.text)));
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

/// A date candidate and its evidence.
struct DateCandidate {
    date: NaiveDate,
    score: f32,
    confidence: f32,
}

fn invoice_date(lines: &[Line], month_first: bool, source: Source) -> Option<Field<NaiveDate>> {
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

/// What a label says about the amount next to it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AmountRole {
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
struct Labelled {
    line: usize,
    role: AmountRole,
    amount: Amount,
    confidence: f32,
}

fn role_of(text: &str) -> AmountRole {
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
fn labelled_amounts(lines: &[Line]) -> Vec<Labelled> {
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
fn words_between(text: &str, from: usize, to: usize) -> &str {
    let between = text.get(from..to).unwrap_or("");
    between.trim_start().split_once(char::is_whitespace).map_or("", |(_, rest)| rest)
}

/// The amounts of a document, chosen together.
struct Money {
    subtotal: Option<Field<Amount>>,
    tax: Option<Field<Amount>>,
    total: Option<Field<Amount>>,
    /// The line the total was read on (the currency next to it is the document's).
    total_line: Option<usize>,
}

/// Subtotal, tax and total chosen together by evidence; their confidences say how much of it
/// agreed.
fn money(lines: &[Line], source: Source) -> Money {
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
    static TOTAL_WORD_RE: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)\b(?:total|t[o0a]t[a@][l1i!]|[il]?[co0]tal|totaal|summe|gesamt)\b"));
    let names_a_total = |c: &Labelled| c.role == AmountRole::GrandTotal || TOTAL_WORD_RE.is_match(&lines[c.line].text);
    for i in 0..cands.len() {
        let (line, amount) = (cands[i].l.line, cands[i].l.amount.0);
        let before = cands.iter().enumerate().find_map(|(j, c)| {
            let adjusted = rounding.iter().any(|r| {
                r.amount.0 != 0
                    && r.amount.0.abs() <= 10
                    && c.l.line < r.line
                    && r.line < line
                    && (c.l.amount.0 + r.amount.0 == amount || c.l.amount.0 - r.amount.0 == amount)
            });
            (j != i && adjusted && names_a_total(cands[i].l)).then_some((j, c.score))
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

/// A seller candidate's evidence.
fn seller(lines: &[Line]) -> Option<Field<String>> {
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
fn repair_legal_forms(name: &str) -> String {
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
fn with_continuations(lines: &[Line], buyer: &[bool], i: usize, name: String) -> String {
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
fn strip_registration(name: &str) -> String {
    static REG: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\s*[\(\[]?\s*(?:co\.?\s*reg\.?\s*no\.?|reg\.?\s*no\.?)?[:\s]*\d{3,}[-\s]?[A-Z]?\s*[\)\]]?\s*$")
    });
    REG.replace(name, "").trim().to_owned()
}

/// What a document is, from its kind and the text read from it: words only a till receipt
/// prints (cash, change, cashier, "thank you") against words only an invoice prints (due date,
/// payment terms, bill to, IBAN, the title "Invoice"); without either, a photo is taken for a
/// receipt and a PDF for an invoice. ("Tax invoice" is printed on receipts in several countries,
/// so it decides nothing.)
pub fn document_class(kind: crate::domain::InvoiceKind, text: &str) -> crate::domain::ocr::DocumentClass {
    use crate::domain::ocr::DocumentClass;
    static RECEIPT_RE: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)\b(?:cash|change|tender(?:ed)?|cashier|receipt|thank\s*you|terima\s*kasih|kassenbon|kassierer|bar\s*gegeben|r[üu]ckgeld|ticket\s*de\s*caisse|esp[èe]ces|rendu|caissier|merci)\b",
        )
    });
    static INVOICE_RE: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"(?i)(?:\bdue\s*date|payment\s*terms|\bbill(?:ed)?[ \t]*to\b|\binvoice[ \t]*to\b|\biban\b|\bbic\b|f[äa]llig|zahlungsziel|zahlbar\s*bis|[ée]ch[ée]ance|conditions\s*de\s*paiement|\bnet\s*\d+\s*days|purchase\s*order|\bp\.?o\.?\s*(?:no|number)\b)",
        )
    });
    let distinct = |r: &Regex| {
        let mut found: Vec<String> = r.find_iter(text).map(|m| m.as_str().to_lowercase()).collect();
        found.sort();
        found.dedup();
        found.len()
    };
    // A title "Invoice" counts for an invoice; "Tax Invoice" (a receipt's title in several
    // countries) does not.
    static TITLE_RE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(?:invoice|rechnung|facture)\b"));
    static TAX_TITLE_RE: LazyLock<Regex> =
        LazyLock::new(|| re(r"(?i)\b(?:(?:simplified\s*)?tax|gst|sst|vat)\s*invoice\b"));
    let titled = TITLE_RE.is_match(&TAX_TITLE_RE.replace_all(text, ""));
    let (receipt, invoice) = (distinct(&RECEIPT_RE), distinct(&INVOICE_RE) + usize::from(titled));
    match (receipt, invoice) {
        (r, i) if r > i => DocumentClass::Receipt,
        (r, i) if i > r => DocumentClass::Invoice,
        _ if kind == crate::domain::InvoiceKind::Pdf => DocumentClass::Invoice,
        _ => DocumentClass::Receipt,
    }
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
