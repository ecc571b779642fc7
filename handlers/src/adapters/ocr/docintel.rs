//! Azure AI Document Intelligence, models `prebuilt-receipt` (till receipts) and
//! `prebuilt-invoice` (invoices), REST API version 2024-11-30.
//!
//! Analyze: `POST {endpoint}/documentintelligence/documentModels/{model}:analyze
//! ?api-version=2024-11-30` with `{"base64Source": …}` → `202 Accepted` with an
//! `Operation-Location` header. Poll it with GET, waiting what `Retry-After` says, until
//! `status` is `succeeded` (fields in `analyzeResult.documents[0].fields`) or `failed`.
//! Auth: `Ocp-Apim-Subscription-Key` (local use) or an Entra bearer token for the scope
//! `https://cognitiveservices.azure.com/.default` (production, managed identity).
//!
//! Fields used (learn.microsoft.com, "Document Intelligence invoice model" and "receipt model",
//! v4.0): invoices `InvoiceId`, `InvoiceDate`, `VendorName`, `SubTotal`, `TotalTax`,
//! `InvoiceTotal`, `Items[].{Description, Quantity, Amount}`; receipts `MerchantName`,
//! `TransactionDate`, `Subtotal`, `TotalTax`, `Total`, `Items[].{Description, Quantity,
//! TotalPrice}`. Amounts are `valueCurrency.{amount, currencyCode}`.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use chrono::NaiveDate;
use serde_json::Value;

use crate::domain::ocr::{Amount, DocumentClass, Field, InvoiceFields, LineItem, OcrEngineKind};
use crate::ports::{EngineReading, ReadError, Reading};

pub const API_VERSION: &str = "2024-11-30";

/// The scope of Document Intelligence tokens.
pub const SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// How requests are authenticated.
#[derive(Clone)]
pub enum Credential {
    /// A resource key, for local use only.
    Key(crate::config::Secret),
    /// Entra ID tokens (the app's managed identity in Azure, role Cognitive Services User).
    Entra(std::sync::Arc<dyn azure_core::credentials::TokenCredential>),
}

#[derive(Clone)]
pub struct DocumentIntelligence {
    endpoint: String,
    credential: Credential,
    client: reqwest::Client,
    /// Give up polling after this long (the operation keeps running on the service).
    max_wait: Duration,
    /// Wait between polls when the service sends no `Retry-After` (its documented polling
    /// interval is 2 s; a poll counts against the resource's request rate).
    default_poll: Duration,
}

impl DocumentIntelligence {
    pub fn new(endpoint: &str, credential: Credential, max_wait: Duration) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credential,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("a TLS client"),
            max_wait,
            default_poll: Duration::from_secs(2),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn authorize(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ReadError> {
        Ok(match &self.credential {
            Credential::Key(k) => req.header("Ocp-Apim-Subscription-Key", k.expose()),
            Credential::Entra(credential) => {
                let token = credential
                    .get_token(&[SCOPE], None)
                    .await
                    .map_err(|e| ReadError::EngineUnavailable(format!("no token: {e}")))?;
                req.bearer_auth(token.token.secret())
            }
        })
    }

    fn classify(status: reqwest::StatusCode, body: &str) -> ReadError {
        let code = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["innererror"]["code"].as_str().or(v["error"]["code"].as_str()).map(str::to_owned))
            .unwrap_or_default();
        match status.as_u16() {
            401 | 403 | 404 => {
                ReadError::EngineUnavailable(format!("Document Intelligence refused the request ({status}, {code})"))
            }
            400 | 415 => {
                ReadError::permanent("invoice_unreadable", format!("Document Intelligence could not read it ({code})"))
            }
            _ => ReadError::Transient(format!("Document Intelligence answered {status} ({code})")),
        }
    }

    fn retry_after(resp: &reqwest::Response, default: Duration) -> Duration {
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .unwrap_or(default)
            .min(Duration::from_secs(60))
    }

    /// Analyses a document with the model for its class.
    pub async fn analyze(&self, bytes: Bytes, class: DocumentClass) -> Result<EngineReading, ReadError> {
        let url = format!(
            "{}/documentintelligence/documentModels/{}:analyze?api-version={API_VERSION}",
            self.endpoint,
            model_id(class)
        );
        let body = serde_json::json!({ "base64Source": base64::engine::general_purpose::STANDARD.encode(&bytes) });
        let resp = self
            .authorize(self.client.post(&url).json(&body))
            .await?
            .send()
            .await
            .map_err(|e| ReadError::Transient(format!("Document Intelligence unreachable: {e}")))?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            let status = resp.status();
            return Err(Self::classify(status, &resp.text().await.unwrap_or_default()));
        }
        let operation = resp
            .headers()
            .get("operation-location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ReadError::Transient("202 without Operation-Location".into()))?;
        let mut wait = Self::retry_after(&resp, self.default_poll);
        let deadline = tokio::time::Instant::now() + self.max_wait;
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ReadError::Transient("Document Intelligence did not finish in time".into()));
            }
            tokio::time::sleep(wait).await;
            let resp = self
                .authorize(self.client.get(&operation))
                .await?
                .send()
                .await
                .map_err(|e| ReadError::Transient(format!("Document Intelligence unreachable: {e}")))?;
            let status = resp.status();
            wait = Self::retry_after(&resp, self.default_poll);
            let text = resp.text().await.map_err(|e| ReadError::Transient(e.to_string()))?;
            if !status.is_success() {
                return Err(Self::classify(status, &text));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| ReadError::Transient(format!("bad JSON: {e}")))?;
            match v["status"].as_str() {
                Some("succeeded") => return Ok(to_reading(&v["analyzeResult"], class)),
                Some("failed") => {
                    return Err(ReadError::permanent(
                        "invoice_unreadable",
                        format!("analysis failed: {}", v["error"]["code"].as_str().unwrap_or("unknown")),
                    ));
                }
                _ => continue, // notStarted, running
            }
        }
    }
}

fn conf(f: &Value) -> f32 {
    f["confidence"].as_f64().unwrap_or(0.0) as f32
}

fn string_field(f: &Value) -> Option<Field<String>> {
    f["valueString"].as_str().or(f["content"].as_str()).map(|s| Field::new(s.trim().to_owned(), conf(f)))
}

fn currency_field(f: &Value) -> Option<(Amount, Option<String>, f32)> {
    let c = &f["valueCurrency"];
    let amount = c["amount"].as_f64()?;
    Some((Amount((amount * 100.0).round() as i64), c["currencyCode"].as_str().map(str::to_owned), conf(f)))
}

/// The prebuilt model that reads a class of document.
pub fn model_id(class: DocumentClass) -> &'static str {
    match class {
        DocumentClass::Receipt => "prebuilt-receipt",
        DocumentClass::Invoice => "prebuilt-invoice",
    }
}

fn date_field(f: &Value) -> Option<Field<NaiveDate>> {
    f["valueDate"].as_str().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()).map(|d| Field::new(d, conf(f)))
}

fn items(f: &Value, amount: &str) -> Vec<LineItem> {
    f["valueArray"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let o = &item["valueObject"];
                    LineItem {
                        description: o["Description"]["valueString"].as_str().unwrap_or_default().to_owned(),
                        quantity: o["Quantity"]["valueNumber"]
                            .as_f64()
                            .filter(|q| q.fract() == 0.0 && *q >= 0.0)
                            .map(|q| q as u32),
                        amount: currency_field(&o[amount]).map(|(a, _, _)| a),
                        confidence: conf(item),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names a prebuilt model gives our fields (the invoice number: invoices only).
struct FieldNames {
    number: Option<&'static str>,
    date: &'static str,
    seller: &'static str,
    subtotal: &'static str,
    total: &'static str,
    item_amount: &'static str,
}

fn field_names(class: DocumentClass) -> FieldNames {
    match class {
        DocumentClass::Receipt => FieldNames {
            number: None,
            date: "TransactionDate",
            seller: "MerchantName",
            subtotal: "Subtotal",
            total: "Total",
            item_amount: "TotalPrice",
        },
        DocumentClass::Invoice => FieldNames {
            number: Some("InvoiceId"),
            date: "InvoiceDate",
            seller: "VendorName",
            subtotal: "SubTotal",
            total: "InvoiceTotal",
            item_amount: "Amount",
        },
    }
}

/// Maps `analyzeResult` of the model for `class` to our fields.
pub fn to_reading(result: &Value, class: DocumentClass) -> EngineReading {
    let fields = &result["documents"][0]["fields"];
    let text = result["content"].as_str().unwrap_or_default().to_owned();
    let names = field_names(class);
    let total = currency_field(&fields[names.total]);
    let out = InvoiceFields {
        invoice_number: names.number.and_then(|n| string_field(&fields[n])),
        invoice_date: date_field(&fields[names.date]),
        seller: string_field(&fields[names.seller]),
        currency: total.as_ref().and_then(|(_, c, conf)| c.clone().map(|c| Field::new(c, *conf))),
        subtotal: currency_field(&fields[names.subtotal]).map(|(a, _, c)| Field::new(a, c)),
        tax: currency_field(&fields["TotalTax"]).map(|(a, _, c)| Field::new(a, c)),
        total: total.map(|(a, _, c)| Field::new(a, c)),
        line_items: items(&fields["Items"], names.item_amount),
    };
    EngineReading { engine: OcrEngineKind::DocumentIntelligence, reading: Reading::Structured { fields: out, text } }
}
