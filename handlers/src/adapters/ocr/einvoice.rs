//! Structured e-invoices: UN/CEFACT CII (Factur-X, ZUGFeRD, XRechnung-CII) and OASIS UBL
//! (XRechnung-UBL, Peppol). The data is exact, so every field has confidence 1.
//!
//! Elements are matched by local name, so namespace prefixes do not matter. Paths follow
//! EN 16931 (BT numbers in comments).

use chrono::NaiveDate;
use roxmltree::{Document, Node};

use crate::domain::extraction::parse_amount;
use crate::domain::ocr::{Amount, Field, InvoiceFields, LineItem};

/// Upper bound on what we parse: real e-invoices are kilobytes.
const MAX_XML: usize = 4 * 1024 * 1024;

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

/// Follows a path of local names from `n`.
fn path<'a, 'i>(n: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
    names.iter().try_fold(n, |node, name| child(node, name))
}

fn text(n: Option<Node<'_, '_>>) -> Option<String> {
    n.and_then(|n| n.text()).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

fn exact<T>(v: Option<T>) -> Option<Field<T>> {
    v.map(|v| Field::new(v, 1.0))
}

/// XML decimals are plain ("1199.00", "1199", "1199.5").
fn amount(s: Option<String>) -> Option<Amount> {
    let s = s?;
    Amount::parse_decimal(&s).or_else(|| parse_amount(&s))
}

/// Parses the XML; `None` when it is not an invoice in either syntax.
pub fn parse(xml: &[u8]) -> Option<(InvoiceFields, String)> {
    if xml.len() > MAX_XML {
        return None;
    }
    let text_xml = std::str::from_utf8(xml).ok()?;
    let doc = Document::parse(text_xml).ok()?;
    let root = doc.root_element();
    let fields = match root.tag_name().name() {
        "CrossIndustryInvoice" => cii(root)?,
        "Invoice" | "CreditNote" => ubl(root)?,
        _ => return None,
    };
    // The text the verification searches: every text node (names, descriptions, ids).
    let all: Vec<&str> = root.descendants().filter_map(|n| n.text()).map(str::trim).filter(|t| !t.is_empty()).collect();
    Some((fields, all.join("\n")))
}

fn cii(root: Node<'_, '_>) -> Option<InvoiceFields> {
    let doc = child(root, "ExchangedDocument")?;
    let tx = child(root, "SupplyChainTradeTransaction")?;
    let settlement = child(tx, "ApplicableHeaderTradeSettlement");
    let sums = settlement.and_then(|s| child(s, "SpecifiedTradeSettlementHeaderMonetarySummation"));
    let date = text(path(doc, &["IssueDateTime", "DateTimeString"])) // BT-2, format 102 = YYYYMMDD
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y%m%d").ok());
    let line_items = tx
        .children()
        .filter(|c| c.tag_name().name() == "IncludedSupplyChainTradeLineItem")
        .map(|line| LineItem {
            description: text(path(line, &["SpecifiedTradeProduct", "Name"])).unwrap_or_default(), // BT-153
            quantity: text(path(line, &["SpecifiedLineTradeDelivery", "BilledQuantity"])) // BT-129
                .and_then(|q| q.parse::<f64>().ok())
                .filter(|q| q.fract() == 0.0 && *q >= 0.0)
                .map(|q| q as u32),
            amount: amount(text(path(
                line,
                &["SpecifiedLineTradeSettlement", "SpecifiedTradeSettlementLineMonetarySummation", "LineTotalAmount"],
            ))), // BT-131
            confidence: 1.0,
        })
        .collect();
    Some(InvoiceFields {
        invoice_number: exact(text(child(doc, "ID"))), // BT-1
        invoice_date: exact(date),
        seller: exact(text(path(tx, &["ApplicableHeaderTradeAgreement", "SellerTradeParty", "Name"]))), // BT-27
        currency: exact(text(settlement.and_then(|s| child(s, "InvoiceCurrencyCode")))),                // BT-5
        subtotal: exact(amount(text(sums.and_then(|s| child(s, "TaxBasisTotalAmount"))))),              // BT-109
        tax: exact(amount(text(sums.and_then(|s| child(s, "TaxTotalAmount"))))),                        // BT-110
        total: exact(amount(text(sums.and_then(|s| child(s, "GrandTotalAmount"))))),                    // BT-112
        line_items,
    })
}

fn ubl(root: Node<'_, '_>) -> Option<InvoiceFields> {
    let totals = child(root, "LegalMonetaryTotal");
    let seller = child(root, "AccountingSupplierParty").and_then(|p| child(p, "Party"));
    let seller_name = seller.and_then(|p| {
        text(path(p, &["PartyName", "Name"])).or_else(|| text(path(p, &["PartyLegalEntity", "RegistrationName"])))
    });
    let line_items = root
        .children()
        .filter(|c| matches!(c.tag_name().name(), "InvoiceLine" | "CreditNoteLine"))
        .map(|line| LineItem {
            description: text(path(line, &["Item", "Name"])).unwrap_or_default(),
            quantity: line
                .children()
                .find(|c| matches!(c.tag_name().name(), "InvoicedQuantity" | "CreditedQuantity"))
                .and_then(|q| q.text())
                .and_then(|q| q.trim().parse::<f64>().ok())
                .filter(|q| q.fract() == 0.0 && *q >= 0.0)
                .map(|q| q as u32),
            amount: amount(text(child(line, "LineExtensionAmount"))),
            confidence: 1.0,
        })
        .collect();
    Some(InvoiceFields {
        invoice_number: exact(text(child(root, "ID"))),
        invoice_date: exact(
            text(child(root, "IssueDate")).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        ),
        seller: exact(seller_name),
        currency: exact(text(child(root, "DocumentCurrencyCode"))),
        subtotal: exact(amount(text(totals.and_then(|t| child(t, "TaxExclusiveAmount"))))),
        tax: exact(amount(text(child(root, "TaxTotal").and_then(|t| child(t, "TaxAmount"))))),
        total: exact(amount(text(totals.and_then(|t| child(t, "TaxInclusiveAmount"))))),
        line_items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ubl_invoice() {
        let xml = br#"<?xml version="1.0"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
 <cbc:ID>UBL-77</cbc:ID><cbc:IssueDate>2026-03-15</cbc:IssueDate><cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
 <cac:AccountingSupplierParty><cac:Party><cac:PartyLegalEntity><cbc:RegistrationName>Elektro Becker GmbH</cbc:RegistrationName></cac:PartyLegalEntity></cac:Party></cac:AccountingSupplierParty>
 <cac:TaxTotal><cbc:TaxAmount currencyID="EUR">227.81</cbc:TaxAmount></cac:TaxTotal>
 <cac:LegalMonetaryTotal><cbc:TaxExclusiveAmount currencyID="EUR">1199.00</cbc:TaxExclusiveAmount><cbc:TaxInclusiveAmount currencyID="EUR">1426.81</cbc:TaxInclusiveAmount></cac:LegalMonetaryTotal>
 <cac:InvoiceLine><cbc:ID>1</cbc:ID><cbc:InvoicedQuantity unitCode="C62">1</cbc:InvoicedQuantity><cbc:LineExtensionAmount currencyID="EUR">1199.00</cbc:LineExtensionAmount><cac:Item><cbc:Name>Apple MacBook Air 13</cbc:Name></cac:Item></cac:InvoiceLine>
</Invoice>"#;
        let (f, text) = parse(xml).unwrap();
        assert_eq!(f.invoice_number.unwrap().value, "UBL-77");
        assert_eq!(f.invoice_date.unwrap().value, NaiveDate::from_ymd_opt(2026, 3, 15).unwrap());
        assert_eq!(f.seller.unwrap().value, "Elektro Becker GmbH");
        assert_eq!(f.total.unwrap().value, Amount(142_681));
        assert_eq!(f.line_items[0].amount, Some(Amount(119_900)));
        assert!(text.contains("MacBook"));
    }

    #[test]
    fn other_xml_is_not_an_invoice() {
        assert!(parse(b"<html><body/></html>").is_none());
        assert!(parse(b"not xml").is_none());
    }
}
