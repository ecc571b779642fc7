//! Does the invoice prove the registration? Compares what was read with what the user typed.
//!
//! - purchase date: the invoice date within `tolerance_days` of the purchase date (a parcel
//!   may arrive days after the invoice is issued);
//! - serial number, brand, model: present in the invoice text, compared after folding case,
//!   accents, punctuation and the characters OCR confuses (O/0, I/1/L, S/5, B/8, Z/2).
//!
//! Anything not matched makes the reading `needs_review`: never a silent pass.

use chrono::NaiveDate;

use super::extraction::fold;
use super::ocr::{Check, InvoiceFields, MatchResults};

/// Letters and digits only, lower-cased and accent-folded.
fn alnum(s: &str) -> String {
    fold(s).chars().filter(|c| c.is_alphanumeric()).collect()
}

/// [`alnum`], then the characters OCR confuses mapped to one representative.
fn ocr_folded(s: &str) -> String {
    alnum(s)
        .chars()
        .map(|c| match c {
            'o' => '0',
            'i' | 'l' => '1',
            's' => '5',
            'b' => '8',
            'z' => '2',
            other => other,
        })
        .collect()
}

pub struct Registered<'a> {
    pub brand: &'a str,
    /// Other names the catalogue knows the brand by ("Hewlett-Packard" for HP): an invoice that
    /// prints one of them names the brand.
    pub brand_aliases: &'a [String],
    pub model: &'a str,
    pub serial_number: &'a str,
    pub purchase_date: NaiveDate,
}

pub fn verify(reg: &Registered<'_>, fields: &InvoiceFields, text: &str, tolerance_days: u32) -> MatchResults {
    let purchase_date = match &fields.invoice_date {
        None => Check::NotFound,
        Some(d) if (d.value - reg.purchase_date).num_days().unsigned_abs() <= u64::from(tolerance_days) => {
            Check::Matched
        }
        Some(_) => Check::Mismatch,
    };
    let folded_text = ocr_folded(text);
    let found = |needle: &str| {
        let n = ocr_folded(needle);
        if !n.is_empty() && folded_text.contains(&n) { Check::Matched } else { Check::NotFound }
    };
    // Every word of the model must appear (word order and spacing vary between documents).
    let model = {
        let words: Vec<String> = reg.model.split_whitespace().map(ocr_folded).filter(|w| !w.is_empty()).collect();
        if !words.is_empty() && words.iter().all(|w| folded_text.contains(w.as_str())) {
            Check::Matched
        } else {
            Check::NotFound
        }
    };
    let brand = match found(reg.brand) {
        Check::NotFound if reg.brand_aliases.iter().any(|a| found(a) == Check::Matched) => Check::Matched,
        check => check,
    };
    MatchResults { purchase_date, serial_number: found(reg.serial_number), brand, model }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ocr::Field;

    fn reg() -> Registered<'static> {
        Registered {
            brand: "Apple",
            brand_aliases: &[],
            model: "MacBook Air 13",
            serial_number: "C02XK0ABJGH5",
            purchase_date: NaiveDate::from_ymd_opt(2026, 3, 15).unwrap(),
        }
    }

    fn fields(date: Option<(i32, u32, u32)>) -> InvoiceFields {
        InvoiceFields {
            invoice_date: date.map(|(y, m, d)| Field::new(NaiveDate::from_ymd_opt(y, m, d).unwrap(), 0.9)),
            ..Default::default()
        }
    }

    #[test]
    fn everything_present_matches_even_through_ocr_confusions() {
        let text = "APPLE MacBook Air 13\" — S/N: CO2XKOABJGH5"; // O for 0, twice
        let r = verify(&reg(), &fields(Some((2026, 3, 17))), text, 3);
        assert!(r.all_matched(), "{r:?}");
    }

    #[test]
    fn a_date_outside_the_tolerance_is_a_mismatch_and_a_missing_one_is_not_found() {
        let text = "Apple MacBook Air 13 C02XK0ABJGH5";
        assert_eq!(verify(&reg(), &fields(Some((2026, 3, 19))), text, 3).purchase_date, Check::Mismatch);
        assert_eq!(verify(&reg(), &fields(None), text, 3).purchase_date, Check::NotFound);
    }

    #[test]
    fn another_product_on_the_invoice_is_not_found() {
        let r = verify(&reg(), &fields(Some((2026, 3, 15))), "Dell XPS 13 serial 7XK9JH2", 3);
        assert_eq!(r.serial_number, Check::NotFound);
        assert_eq!(r.brand, Check::NotFound);
        assert_eq!(r.model, Check::NotFound);
        assert!(!r.all_matched());
    }

    /// An invoice that names the brand by one of its catalogue aliases names the brand.
    #[test]
    fn a_brand_printed_by_its_alias_matches() {
        let aliases = ["hp".to_owned(), "hewlett-packard".to_owned()];
        let hp = Registered { brand: "HP", brand_aliases: &aliases, model: "EliteBook 840", ..reg() };
        let text = "Hewlett-Packard EliteBook 840 G9 S/N C02XK0ABJGH5";
        assert_eq!(verify(&hp, &fields(Some((2026, 3, 15))), text, 3).brand, Check::Matched);
        let without = Registered { brand_aliases: &[], ..hp };
        assert_eq!(verify(&without, &fields(Some((2026, 3, 15))), text, 3).brand, Check::NotFound);
    }
}
