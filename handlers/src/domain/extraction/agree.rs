//! Two recognisers' readings of one image, checked against each other.
//!
//! Their errors are largely independent (different models, different segmentation), so a value
//! both read alike is supported even where one reading alone would not be, and a value they read
//! differently goes to a person. Calibrated on the development corpus (docs/benchmarks.md).

use crate::domain::extraction::fold;
use crate::domain::ocr::{Field, InvoiceFields};

/// Confidence of a value both engines read alike.
pub const AGREED: f32 = 0.9;
/// At most this confidence for a value the engines read differently: below "supported".
pub const DISPUTED: f32 = 0.7;

fn same_text(a: &str, b: &str) -> bool {
    let norm =
        |s: &str| fold(s).chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).collect::<String>();
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

/// One engine's fields twice: as OCR (each value discounted for possibly misread characters)
/// and as if its characters were exact (how well the rules chose the value).
pub struct EngineFields {
    pub ocr: InvoiceFields,
    pub exact: InvoiceFields,
}

impl EngineFields {
    pub fn from_lines(lines: &[super::TextLine]) -> Self {
        Self {
            ocr: super::extract_from(lines, super::Source::Ocr),
            exact: super::extract_from(lines, super::Source::Exact),
        }
    }
}

/// A field of two readings. Read alike: the second engine confirms the characters, so the value
/// is as sure as the rules' choice of it in the less sure engine (its exact-characters
/// confidence), and at least as sure as either reading alone; read differently: at most
/// [`DISPUTED`]; read by one only: that reading as it is.
fn check<T: Clone>(
    field: impl Fn(&InvoiceFields) -> &Option<Field<T>>,
    a: &EngineFields,
    b: &EngineFields,
    same: impl Fn(&T, &T) -> bool,
) -> Option<Field<T>> {
    match (field(&a.ocr), field(&b.ocr)) {
        (Some(x), Some(y)) if same(&x.value, &y.value) => {
            let chosen = |e: &EngineFields| {
                field(&e.exact).as_ref().filter(|f| same(&f.value, &x.value)).map_or(0.0, |f| f.confidence)
            };
            let rules = chosen(a).min(chosen(b)).min(AGREED);
            let best = if x.confidence >= y.confidence { x } else { y };
            Some(Field::new(best.value.clone(), best.confidence.max(rules)))
        }
        (Some(x), Some(y)) => {
            let best = if x.confidence >= y.confidence { x } else { y };
            Some(Field::new(best.value.clone(), best.confidence.min(DISPUTED)))
        }
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    }
}

/// The fields of `first` (the stronger engine's reading) checked against `second`'s.
pub fn agree(first: EngineFields, second: &EngineFields) -> EngineFields {
    let (a, b) = (&first, second);
    let text = |x: &String, y: &String| same_text(x, y);
    let ocr = InvoiceFields {
        invoice_number: check(|f| &f.invoice_number, a, b, text),
        invoice_date: check(|f| &f.invoice_date, a, b, PartialEq::eq),
        seller: check(|f| &f.seller, a, b, text),
        currency: check(|f| &f.currency, a, b, PartialEq::eq),
        subtotal: check(|f| &f.subtotal, a, b, PartialEq::eq),
        tax: check(|f| &f.tax, a, b, PartialEq::eq),
        total: check(|f| &f.total, a, b, PartialEq::eq),
        line_items: if a.ocr.line_items.is_empty() { b.ocr.line_items.clone() } else { a.ocr.line_items.clone() },
    };
    EngineFields { ocr, exact: first.exact }
}

/// The local reading of an image checked against a second opinion (Document Intelligence, whose
/// model chooses each field by its own reading of the document: agreement supports the choice as
/// well as the characters). Alike: at least [`AGREED`]; different: at most [`DISPUTED`]; read by
/// one only: that reading as it is.
pub fn second_opinion(local: InvoiceFields, other: &InvoiceFields) -> InvoiceFields {
    fn pair<T: Clone>(a: &Option<Field<T>>, b: &Option<Field<T>>, same: impl Fn(&T, &T) -> bool) -> Option<Field<T>> {
        match (a, b) {
            (Some(x), Some(y)) => {
                let best = if x.confidence >= y.confidence { x } else { y };
                let c =
                    if same(&x.value, &y.value) { best.confidence.max(AGREED) } else { best.confidence.min(DISPUTED) };
                Some(Field::new(best.value.clone(), c))
            }
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (None, None) => None,
        }
    }
    let text = |x: &String, y: &String| same_text(x, y);
    InvoiceFields {
        invoice_number: pair(&local.invoice_number, &other.invoice_number, text),
        invoice_date: pair(&local.invoice_date, &other.invoice_date, PartialEq::eq),
        seller: pair(&local.seller, &other.seller, text),
        currency: pair(&local.currency, &other.currency, PartialEq::eq),
        subtotal: pair(&local.subtotal, &other.subtotal, PartialEq::eq),
        tax: pair(&local.tax, &other.tax, PartialEq::eq),
        total: pair(&local.total, &other.total, PartialEq::eq),
        line_items: if other.line_items.is_empty() { local.line_items } else { other.line_items.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ocr::Amount;
    use chrono::{Datelike, NaiveDate};

    fn fields(total: Option<(i64, f32)>, date: Option<(u32, f32)>, seller: Option<&str>) -> InvoiceFields {
        InvoiceFields {
            total: total.map(|(v, c)| Field::new(Amount(v), c)),
            invoice_date: date.map(|(d, c)| Field::new(NaiveDate::from_ymd_opt(2024, 3, d).unwrap(), c)),
            seller: seller.map(|s| Field::new(s.to_owned(), 0.6)),
            ..InvoiceFields::default()
        }
    }

    /// The same values read as OCR (capped) and with the rules' own confidence `rules`.
    fn engine(ocr: InvoiceFields, rules: f32) -> EngineFields {
        let mut exact = ocr.clone();
        for f in [&mut exact.total].into_iter().flatten() {
            f.confidence = rules;
        }
        for f in [&mut exact.invoice_date].into_iter().flatten() {
            f.confidence = rules;
        }
        for f in [&mut exact.seller].into_iter().flatten() {
            f.confidence = rules;
        }
        EngineFields { ocr, exact }
    }

    #[test]
    fn values_read_alike_are_as_sure_as_the_rules_choice_and_disputed_ones_go_to_review() {
        let a = engine(fields(Some((1250, 0.7)), Some((5, 0.95)), Some("SDN BHD Kedai")), 0.92);
        let b = engine(fields(Some((1250, 0.7)), Some((8, 0.7)), Some("sdn bhd  KEDAI")), 0.85);
        let got = agree(a, &b).ocr;
        let total = got.total.unwrap();
        assert_eq!(total.value, Amount(1250));
        assert!((total.confidence - 0.85).abs() < 1e-6, "the less sure choice bounds it: {}", total.confidence);
        let date = got.invoice_date.unwrap();
        assert_eq!(date.value.day(), 5, "the stronger reading's value is kept");
        assert!(date.confidence <= DISPUTED, "they disagree: review");
        assert!(got.seller.unwrap().confidence >= 0.85, "spacing and case do not matter");
    }

    #[test]
    fn agreeing_on_a_weakly_chosen_value_does_not_support_it() {
        // Both engines took the subtotal for the total: the same wrong choice, read alike.
        let a = engine(fields(Some((6887, 0.7)), None, None), 0.75);
        let b = engine(fields(Some((6887, 0.7)), None, None), 0.8);
        let got = agree(a, &b).ocr;
        assert!(got.total.unwrap().confidence < 0.8, "not supported");
    }

    #[test]
    fn a_second_opinion_supports_what_it_reads_alike_and_disputes_the_rest() {
        let local = fields(Some((6887, 0.7)), Some((5, 0.7)), Some("Kedai Sdn Bhd"));
        let di = fields(Some((7300, 0.96)), Some((5, 0.93)), None);
        let got = second_opinion(local, &di);
        let total = got.total.unwrap();
        assert_eq!(total.value, Amount(7300), "the surer reading's value");
        assert!(total.confidence <= DISPUTED, "but they disagree: review");
        assert!(got.invoice_date.unwrap().confidence >= 0.93, "alike: supported");
        assert_eq!(got.seller.unwrap().confidence, 0.6, "read by one only: as it is");
    }

    #[test]
    fn a_value_only_one_engine_read_keeps_its_own_confidence() {
        let a = engine(fields(None, Some((5, 0.82)), None), 0.9);
        let b = engine(fields(Some((99, 0.85)), None, None), 0.9);
        let got = agree(a, &b).ocr;
        assert_eq!(got.total.unwrap().confidence, 0.85);
        assert_eq!(got.invoice_date.unwrap().confidence, 0.82);
        assert!(got.seller.is_none());
    }
}
