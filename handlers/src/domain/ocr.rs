//! What reading an invoice produced, and how it compares with the registration.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Where a product's invoice reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OcrStatus {
    Queued,
    Processing,
    /// Read, and everything checked matched the registration.
    Completed,
    /// Read, but something did not match (or could not be found): a person should look.
    NeedsReview,
    /// Could not be read (corrupt, encrypted, no pages, no engine): `failureReason` says why.
    Failed,
}

impl OcrStatus {
    /// No further processing happens for this invoice version.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::NeedsReview | Self::Failed)
    }
}

/// An amount in minor units (cents). Serialised as a decimal string ("1199.00") so JSON
/// clients never see binary floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(pub i64);

impl Amount {
    pub fn to_decimal_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", a / 100, a % 100)
    }

    /// Parses "1199.00", "1199", "-5.5".
    pub fn parse_decimal(s: &str) -> Option<Self> {
        let s = s.trim();
        let (neg, s) = s.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, s));
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let cents = int.parse::<i64>().ok()?.checked_mul(100)? + format!("{frac:0<2}").parse::<i64>().ok()?;
        Some(Self(if neg { -cents } else { cents }))
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_decimal_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_decimal(&s).ok_or_else(|| serde::de::Error::custom(format!("not an amount: {s}")))
    }
}

/// One extracted value and how sure we are of it (0 to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field<T> {
    pub value: T,
    pub confidence: f32,
}

impl<T> Field<T> {
    pub fn new(value: T, confidence: f32) -> Self {
        Self { value, confidence: confidence.clamp(0.0, 1.0) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    pub description: String,
    pub quantity: Option<u32>,
    pub amount: Option<Amount>,
    pub confidence: f32,
}

/// The fields read from an invoice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<Field<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_date: Option<Field<NaiveDate>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<Field<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Field<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtotal: Option<Field<Amount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax: Option<Field<Amount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Field<Amount>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Matched,
    Mismatch,
    NotFound,
}

/// The invoice compared with what the user registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResults {
    pub purchase_date: Check,
    pub serial_number: Check,
    pub brand: Check,
    pub model: Check,
}

impl MatchResults {
    pub fn all_matched(&self) -> bool {
        [self.purchase_date, self.serial_number, self.brand, self.model].iter().all(|c| *c == Check::Matched)
    }
}

/// What a document is, for a reader that has a model per class (Document Intelligence's
/// `prebuilt-receipt` and `prebuilt-invoice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentClass {
    /// A till receipt: a shop, a date, what was paid.
    Receipt,
    /// An invoice: an issuer, a buyer, a number, terms.
    Invoice,
}

/// Which engine read the invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OcrEngineKind {
    /// Factur-X / ZUGFeRD / XRechnung XML embedded in the PDF: exact, no OCR.
    EmbeddedXml,
    /// The PDF's own text layer.
    PdfText,
    Tesseract,
    /// PaddleOCR's PP-OCR models, in process.
    PpOcr,
    /// PP-OCR and Tesseract both read the image; a value they read alike is supported, one they
    /// read differently goes to review.
    #[serde(rename = "pp-ocr+tesseract")]
    PpOcrTesseract,
    DocumentIntelligence,
}

/// The reading state stored on the product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OcrState {
    pub status: OcrStatus,
    /// The invoice version this state is about.
    pub invoice_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<OcrEngineKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<InvoiceFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<MatchResults>,
    /// With `needs_review`: what a person should check (`invoiceDate`, `total`: not supported
    /// by the document's evidence; `purchaseDate`, `serialNumber`, `brand`, `model`: the
    /// registration did not match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain_fields: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
}

impl OcrState {
    pub fn queued(invoice_version: u32) -> Self {
        Self {
            status: OcrStatus::Queued,
            invoice_version,
            engine: None,
            fields: None,
            matches: None,
            uncertain_fields: Vec::new(),
            failure_reason: None,
            attempts: 0,
            processed_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip_as_decimal_strings() {
        for (s, cents) in [("1199.00", 119_900), ("0.05", 5), ("12.5", 1250), ("7", 700), ("-3.20", -320)] {
            let a = Amount::parse_decimal(s).unwrap();
            assert_eq!(a.0, cents, "{s}");
        }
        assert_eq!(Amount(119_900).to_decimal_string(), "1199.00");
        assert_eq!(Amount(-5).to_decimal_string(), "-0.05");
        assert!(Amount::parse_decimal("1.234").is_none());
        assert!(Amount::parse_decimal("abc").is_none());
        assert_eq!(serde_json::to_string(&Amount(1)).unwrap(), "\"0.01\"");
    }
}
