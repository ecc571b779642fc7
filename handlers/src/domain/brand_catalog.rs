//! The brand catalogue: per brand, the serial-number format and the default warranty length,
//! with model-specific overrides (a Dell Latitude has 36 months, a Samsung Galaxy phone has
//! its own serial format).
//!
//! The catalogue is data (`handlers/data/brands.json`), compiled into the binary so a
//! deployment can never run with a missing file. Brands are matched case-insensitively on the
//! name or an alias; models by the longest case-insensitive prefix.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The catalogue shipped with this build.
pub const BUNDLED_CATALOG: &str = include_str!("../../data/brands.json");

/// The rule for brands not in the catalogue: 4 to 40 of A–Z, 0–9, `-`, `/`, `.`.
pub const GENERIC_SERIAL_PATTERN: &str = "^[A-Z0-9./-]{4,40}$";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the brand catalogue is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("brand {brand}: serial pattern {pattern:?} does not compile: {source}")]
    Pattern { brand: String, pattern: String, source: regex::Error },
    #[error("brand {brand}: the example serial {example:?} does not match its own pattern")]
    ExampleMismatch { brand: String, example: String },
    #[error("brand {0} is listed twice (by name or alias)")]
    Duplicate(String),
    #[error("brand {0}: warranty months must be between 1 and 240")]
    Months(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CatalogFile {
    version: String,
    brands: Vec<BrandEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrandEntry {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    serial_pattern: String,
    serial_example: String,
    warranty_months: u32,
    #[serde(default)]
    model_overrides: Vec<ModelOverrideEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelOverrideEntry {
    model_prefix: String,
    serial_pattern: Option<String>,
    serial_example: Option<String>,
    warranty_months: Option<u32>,
}

#[derive(Debug)]
struct SerialRule {
    pattern: String,
    regex: Regex,
    example: String,
}

#[derive(Debug)]
struct Brand {
    name: String,
    keys: Vec<String>,
    rule: SerialRule,
    warranty_months: u32,
    overrides: Vec<ModelOverride>,
}

#[derive(Debug)]
struct ModelOverride {
    prefix_key: String,
    prefix: String,
    rule: Option<SerialRule>,
    warranty_months: Option<u32>,
}

/// One row of `GET /api/brands`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrandView {
    pub name: String,
    pub aliases: Vec<String>,
    pub serial_pattern: String,
    pub serial_example: String,
    pub warranty_months: u32,
    pub model_overrides: Vec<ModelOverrideView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelOverrideView {
    pub model_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_example: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warranty_months: Option<u32>,
}

/// What applies to one (brand, model): how to check the serial and how long the warranty runs.
#[derive(Debug, Clone, Copy)]
pub struct WarrantyTerms<'a> {
    /// The catalogue's spelling of the brand, or `None` for an unknown brand.
    pub canonical_brand: Option<&'a str>,
    pub serial_pattern: &'a str,
    pub serial_example: Option<&'a str>,
    serial_regex: &'a Regex,
    pub warranty_months: u32,
}

impl WarrantyTerms<'_> {
    pub fn serial_matches(&self, normalized: &str) -> bool {
        self.serial_regex.is_match(normalized)
    }
}

#[derive(Debug)]
pub struct BrandCatalog {
    version: String,
    brands: Vec<Brand>,
    generic: Regex,
    default_months: u32,
}

/// Case- and spacing-insensitive key for brand names and model prefixes.
pub fn brand_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

impl BrandCatalog {
    /// Loads and checks a catalogue. Every pattern must compile and every example must match
    /// its own pattern, so a bad edit to the data file fails the build's tests, not a user.
    pub fn from_json(json: &str, default_months: u32) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(json)?;
        let mut brands = Vec::with_capacity(file.brands.len());
        let mut seen = std::collections::HashSet::new();
        for entry in file.brands {
            let rule = compile(&entry.name, entry.serial_pattern, entry.serial_example)?;
            check_months(&entry.name, entry.warranty_months)?;
            let mut keys = vec![brand_key(&entry.name)];
            keys.extend(entry.aliases.iter().map(|a| brand_key(a)));
            for k in &keys {
                if !seen.insert(k.clone()) {
                    return Err(CatalogError::Duplicate(k.clone()));
                }
            }
            let mut overrides = Vec::new();
            for o in entry.model_overrides {
                let rule = match (o.serial_pattern, o.serial_example) {
                    (Some(p), Some(e)) => Some(compile(&entry.name, p, e)?),
                    (None, None) => None,
                    (p, _) => {
                        return Err(CatalogError::ExampleMismatch {
                            brand: entry.name.clone(),
                            example: format!("override {} needs both pattern and example ({p:?})", o.model_prefix),
                        });
                    }
                };
                if let Some(m) = o.warranty_months {
                    check_months(&entry.name, m)?;
                }
                overrides.push(ModelOverride {
                    prefix_key: brand_key(&o.model_prefix),
                    prefix: o.model_prefix,
                    rule,
                    warranty_months: o.warranty_months,
                });
            }
            // Longest prefix first, so "Galaxy Tab" can override "Galaxy".
            overrides.sort_by_key(|o| std::cmp::Reverse(o.prefix_key.len()));
            brands.push(Brand { name: entry.name, keys, rule, warranty_months: entry.warranty_months, overrides });
        }
        Ok(Self {
            version: file.version,
            brands,
            generic: Regex::new(GENERIC_SERIAL_PATTERN).expect("the generic pattern compiles"),
            default_months,
        })
    }

    pub fn bundled(default_months: u32) -> Result<Self, CatalogError> {
        Self::from_json(BUNDLED_CATALOG, default_months)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn len(&self) -> usize {
        self.brands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.brands.is_empty()
    }

    pub fn default_months(&self) -> u32 {
        self.default_months
    }

    /// The terms for `brand` / `model` (both as the user typed them).
    pub fn terms(&self, brand: &str, model: &str) -> WarrantyTerms<'_> {
        let key = brand_key(brand);
        let Some(b) = self.brands.iter().find(|b| b.keys.contains(&key)) else {
            return WarrantyTerms {
                canonical_brand: None,
                serial_pattern: GENERIC_SERIAL_PATTERN,
                serial_example: None,
                serial_regex: &self.generic,
                warranty_months: self.default_months,
            };
        };
        let model_key = brand_key(model);
        let ov = b.overrides.iter().find(|o| model_key.starts_with(&o.prefix_key));
        let rule = ov.and_then(|o| o.rule.as_ref()).unwrap_or(&b.rule);
        WarrantyTerms {
            canonical_brand: Some(&b.name),
            serial_pattern: &rule.pattern,
            serial_example: Some(&rule.example),
            serial_regex: &rule.regex,
            warranty_months: ov.and_then(|o| o.warranty_months).unwrap_or(b.warranty_months),
        }
    }

    /// The catalogue's spelling of the brand `name` names, by its name or an alias (case and
    /// spacing ignored); `None` for a brand the catalogue does not list.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let key = brand_key(name);
        self.brands.iter().find(|b| b.keys.contains(&key)).map(|b| b.name.as_str())
    }

    /// Every name of the brand `name` names (its own and its aliases, as keys: lower-cased,
    /// spacing collapsed); empty for a brand the catalogue does not list.
    pub fn names(&self, name: &str) -> &[String] {
        let key = brand_key(name);
        self.brands.iter().find(|b| b.keys.contains(&key)).map_or(&[], |b| b.keys.as_slice())
    }

    pub fn views(&self) -> Vec<BrandView> {
        self.brands
            .iter()
            .map(|b| BrandView {
                name: b.name.clone(),
                aliases: b.keys.iter().skip(1).cloned().collect(),
                serial_pattern: b.rule.pattern.clone(),
                serial_example: b.rule.example.clone(),
                warranty_months: b.warranty_months,
                model_overrides: b
                    .overrides
                    .iter()
                    .map(|o| ModelOverrideView {
                        model_prefix: o.prefix.clone(),
                        serial_pattern: o.rule.as_ref().map(|r| r.pattern.clone()),
                        serial_example: o.rule.as_ref().map(|r| r.example.clone()),
                        warranty_months: o.warranty_months,
                    })
                    .collect(),
            })
            .collect()
    }
}

fn check_months(brand: &str, months: u32) -> Result<(), CatalogError> {
    if (1..=240).contains(&months) { Ok(()) } else { Err(CatalogError::Months(brand.to_owned())) }
}

fn compile(brand: &str, pattern: String, example: String) -> Result<SerialRule, CatalogError> {
    // Anchor defensively: a pattern without ^…$ would accept any string containing a match.
    let anchored =
        if pattern.starts_with('^') && pattern.ends_with('$') { pattern.clone() } else { format!("^(?:{pattern})$") };
    let regex = Regex::new(&anchored).map_err(|source| CatalogError::Pattern {
        brand: brand.to_owned(),
        pattern: pattern.clone(),
        source,
    })?;
    if !regex.is_match(&example) {
        return Err(CatalogError::ExampleMismatch { brand: brand.to_owned(), example });
    }
    Ok(SerialRule { pattern: anchored, regex, example })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> BrandCatalog {
        BrandCatalog::bundled(24).expect("bundled catalogue is valid")
    }

    #[test]
    fn bundled_catalogue_has_at_least_ten_brands_each_with_a_matching_example() {
        let c = catalog();
        assert!(c.len() >= 10, "only {} brands", c.len());
        for view in c.views() {
            let terms = c.terms(&view.name, "");
            assert!(terms.serial_matches(&view.serial_example), "{}", view.name);
        }
    }

    #[test]
    fn brands_match_case_insensitively_and_by_alias() {
        let c = catalog();
        assert_eq!(c.terms("  apple ", "iPhone").canonical_brand, Some("Apple"));
        assert_eq!(c.terms("hewlett-packard", "x").canonical_brand, Some("HP"));
        assert_eq!(c.terms("LG  electronics", "x").canonical_brand, Some("LG"));
    }

    #[test]
    fn model_overrides_change_months_and_serial_rule() {
        let c = catalog();
        assert_eq!(c.terms("Dell", "Inspiron 15").warranty_months, 12);
        assert_eq!(c.terms("Dell", "latitude 7440").warranty_months, 36);
        let galaxy = c.terms("Samsung", "Galaxy S24");
        assert!(galaxy.serial_matches("R58N12ABCDE"));
        assert!(!galaxy.serial_matches("0B7X3CAR500123K"));
        let tv = c.terms("Samsung", "QE55Q80C");
        assert!(tv.serial_matches("0B7X3CAR500123K"));
        assert_eq!(tv.warranty_months, 24);
    }

    #[test]
    fn unknown_brands_use_the_generic_rule_and_the_configured_default() {
        let c = BrandCatalog::bundled(18).unwrap();
        let t = c.terms("Acme Widgets", "Rocket");
        assert_eq!(t.canonical_brand, None);
        assert_eq!(t.warranty_months, 18);
        assert!(t.serial_matches("AB-12/3.4"));
        assert!(!t.serial_matches("ABC"));
        assert!(!t.serial_matches(&"A".repeat(41)));
        assert!(!t.serial_matches("AB 123"));
    }

    #[test]
    fn broken_catalogues_are_refused() {
        let bad_example = r#"{"version":"x","brands":[{"name":"A","serialPattern":"^[0-9]{3}$","serialExample":"12","warrantyMonths":12}]}"#;
        assert!(matches!(BrandCatalog::from_json(bad_example, 24), Err(CatalogError::ExampleMismatch { .. })));
        let bad_regex = r#"{"version":"x","brands":[{"name":"A","serialPattern":"^[0-9$","serialExample":"12","warrantyMonths":12}]}"#;
        assert!(matches!(BrandCatalog::from_json(bad_regex, 24), Err(CatalogError::Pattern { .. })));
        let dup = r#"{"version":"x","brands":[{"name":"A","serialPattern":"^1$","serialExample":"1","warrantyMonths":12},{"name":"a","serialPattern":"^1$","serialExample":"1","warrantyMonths":12}]}"#;
        assert!(matches!(BrandCatalog::from_json(dup, 24), Err(CatalogError::Duplicate(_))));
        let months =
            r#"{"version":"x","brands":[{"name":"A","serialPattern":"^1$","serialExample":"1","warrantyMonths":0}]}"#;
        assert!(matches!(BrandCatalog::from_json(months, 24), Err(CatalogError::Months(_))));
    }
}
