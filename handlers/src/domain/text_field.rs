//! Free-text fields (brand, model): trimmed, bounded, printable.

use super::FieldError;

/// A trimmed, non-empty, bounded piece of text without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedText(String);

impl BoundedText {
    /// An optional field: absent or blank is `None`; otherwise the same rules as [`Self::parse`].
    pub fn parse_optional(
        field: &'static str,
        raw: Option<&str>,
        max_chars: usize,
    ) -> Result<Option<Self>, FieldError> {
        match raw.map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(None),
            // Not blank, so the "missing" code is never reported.
            Some(r) => Self::parse(field, field, Some(r), max_chars).map(Some),
        }
    }

    /// `missing_code` is returned for an absent or blank value so the app can say which one.
    pub fn parse(
        field: &'static str,
        missing_code: &'static str,
        raw: Option<&str>,
        max_chars: usize,
    ) -> Result<Self, FieldError> {
        let Some(raw) = raw else {
            return Err(FieldError::new(field, missing_code, format!("`{field}` is required")));
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(field, missing_code, format!("`{field}` must not be blank")));
        }
        // Collapse runs of inner whitespace so "Galaxy  S24" and "Galaxy S24" are one model.
        let collapsed = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
        if collapsed.chars().count() > max_chars {
            return Err(FieldError::new(
                field,
                "field_too_long",
                format!("`{field}` must be at most {max_chars} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "field_invalid_characters",
                format!("`{field}` must not contain control characters"),
            ));
        }
        Ok(Self(collapsed))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_collapses_whitespace() {
        let t = BoundedText::parse("model", "model_missing", Some("  Galaxy   S24 "), 10).unwrap();
        assert_eq!(t.as_str(), "Galaxy S24");
    }

    #[test]
    fn refuses_missing_blank_long_and_control() {
        let e = BoundedText::parse("model", "model_missing", None, 10).unwrap_err();
        assert_eq!(e.code, "model_missing");
        let e = BoundedText::parse("model", "model_missing", Some("   "), 10).unwrap_err();
        assert_eq!(e.code, "model_missing");
        let e = BoundedText::parse("model", "model_missing", Some("abcdefghijk"), 10).unwrap_err();
        assert_eq!(e.code, "field_too_long");
        let e = BoundedText::parse("model", "model_missing", Some("a\u{0}b"), 10).unwrap_err();
        assert_eq!(e.code, "field_invalid_characters");
    }
}
