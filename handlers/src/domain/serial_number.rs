//! A product's serial number, valid for its brand (and model).

use super::{FieldError, WarrantyTerms};

/// Longest serial we store, whatever the brand rule says.
pub const MAX_SERIAL_CHARS: usize = 64;

/// Trimmed, upper-cased and matching the serial rule of its brand when it was set. Stored as
/// the plain string; read back as it was stored (the brand's rule may have changed since).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SerialNumber(String);

impl SerialNumber {
    pub fn parse(raw: Option<&str>, terms: &WarrantyTerms<'_>) -> Result<Self, FieldError> {
        const FIELD: &str = "serialNumber";
        let Some(trimmed) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
            return Err(FieldError::new(FIELD, "serial_number_missing", "`serialNumber` is required"));
        };
        if trimmed.chars().count() > MAX_SERIAL_CHARS {
            return Err(FieldError::new(
                FIELD,
                "field_too_long",
                format!("`serialNumber` must be at most {MAX_SERIAL_CHARS} characters"),
            ));
        }
        let normalized = trimmed.to_uppercase();
        if !terms.serial_matches(&normalized) {
            let brand = terms.canonical_brand.unwrap_or("this brand");
            let hint = terms.serial_example.map(|e| format!(", for example {e}")).unwrap_or_default();
            return Err(FieldError::new(
                FIELD,
                "serial_format_invalid",
                format!(
                    "`{normalized}` is not a valid serial number for {brand} (expected {}{hint})",
                    terms.serial_pattern
                ),
            ));
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BrandCatalog;
    use proptest::prelude::*;

    #[test]
    fn trims_and_upper_cases() {
        let c = BrandCatalog::bundled(24).unwrap();
        let s = SerialNumber::parse(Some("  c02xk0abjgh5 "), &c.terms("Apple", "MacBook")).unwrap();
        assert_eq!(s.as_str(), "C02XK0ABJGH5");
    }

    #[test]
    fn refuses_serials_of_the_wrong_shape_for_the_brand() {
        let c = BrandCatalog::bundled(24).unwrap();
        let e = SerialNumber::parse(Some("ABC"), &c.terms("Apple", "MacBook")).unwrap_err();
        assert_eq!(e.code, "serial_format_invalid");
        assert!(e.detail.contains("Apple"), "{}", e.detail);
        // A Dell service tag is exactly seven characters.
        assert!(SerialNumber::parse(Some("7XK9JH2"), &c.terms("Dell", "XPS")).is_ok());
        assert!(SerialNumber::parse(Some("7XK9JH22"), &c.terms("Dell", "XPS")).is_err());
        assert_eq!(SerialNumber::parse(Some(" "), &c.terms("Dell", "XPS")).unwrap_err().code, "serial_number_missing");
        assert_eq!(
            SerialNumber::parse(Some(&"A".repeat(65)), &c.terms("Acme", "x")).unwrap_err().code,
            "field_too_long"
        );
    }

    proptest! {
        #[test]
        fn any_generic_serial_is_accepted_for_unknown_brands(s in "[a-zA-Z0-9./-]{4,40}") {
            let c = BrandCatalog::bundled(24).unwrap();
            let parsed = SerialNumber::parse(Some(&format!(" {s}\t")), &c.terms("Acme", "x")).unwrap();
            prop_assert_eq!(parsed.as_str(), s.to_uppercase());
        }

        #[test]
        fn serials_with_other_characters_are_refused_for_unknown_brands(
            a in "[A-Z0-9]{2,10}", bad in "[ _#@!%&*+=]", b in "[A-Z0-9]{2,10}"
        ) {
            let c = BrandCatalog::bundled(24).unwrap();
            let e = SerialNumber::parse(Some(&format!("{a}{bad}{b}")), &c.terms("Acme", "x")).unwrap_err();
            prop_assert_eq!(e.code, "serial_format_invalid");
        }
    }
}
