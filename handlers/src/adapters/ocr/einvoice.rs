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

/// XML decimals are plain ("1199.00", "1199", "1199.5", "150.0000", "-5"): rounded to cents,
/// half away from zero.
fn amount(s: Option<String>) -> Option<Amount> {
    let s = s?;
    let t = s.trim();
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let t = t.strip_prefix('+').unwrap_or(t);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return parse_amount(&s);
    }
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let digits: Vec<i64> = frac.bytes().map(|b| i64::from(b - b'0')).chain(std::iter::repeat(0)).take(3).collect();
    let mut cents = int.checked_mul(100)? + digits[0] * 10 + digits[1];
    if digits[2] >= 5 {
        cents += 1;
    }
    Some(Amount(if neg { -cents } else { cents }))
}

/// The XML as text: UTF-8 (a byte-order mark skipped), or ISO-8859-1 / Windows-1252 when the
/// declaration says so (older ZUGFeRD generators write Latin-1).
fn decode(xml: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    match std::str::from_utf8(xml) {
        Ok(s) => Some(s.into()),
        Err(_) => {
            let head = String::from_utf8_lossy(&xml[..xml.len().min(200)]).to_ascii_lowercase();
            (head.contains("iso-8859") || head.contains("windows-125") || head.contains("latin"))
                .then(|| xml.iter().map(|&b| b as char).collect::<String>().into())
        }
    }
}

/// Parses the XML; `None` when it is not an invoice in either syntax.
pub fn parse(xml: &[u8]) -> Option<(InvoiceFields, String)> {
    if xml.len() > MAX_XML {
        return None;
    }
    let text_xml = decode(xml)?;
    // roxmltree refuses a declaration naming an encoding it was not given; the text is already
    // decoded, so the declaration is dropped.
    let body = match text_xml.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(&*text_xml, |(_, b)| b),
        None => &text_xml,
    };
    let doc = Document::parse(body).ok()?;
    let root = doc.root_element();
    let fields = match root.tag_name().name() {
        // UN/CEFACT CII D16B (ZUGFeRD 2.x, Factur-X, XRechnung CII) and its ZUGFeRD 1.0
        // predecessor (CII D13B names), read with the same paths under their two spellings.
        "CrossIndustryInvoice" => cii(root, &CII_D16B)?,
        "CrossIndustryDocument" => cii(root, &ZUGFERD_1)?,
        "Invoice" | "CreditNote" => ubl(root)?,
        _ => return None,
    };
    // The text the verification searches: every text node (names, descriptions, ids).
    let all: Vec<&str> = root.descendants().filter_map(|n| n.text()).map(str::trim).filter(|t| !t.is_empty()).collect();
    Some((fields, all.join("\n")))
}

/// Element names that differ between ZUGFeRD 1.0 and CII D16B.
struct CiiNames {
    document: &'static str,
    transaction: &'static str,
    agreement: &'static str,
    settlement: &'static str,
    summation: &'static str,
    line_delivery: &'static str,
    line_settlement: &'static str,
}

const CII_D16B: CiiNames = CiiNames {
    document: "ExchangedDocument",
    transaction: "SupplyChainTradeTransaction",
    agreement: "ApplicableHeaderTradeAgreement",
    settlement: "ApplicableHeaderTradeSettlement",
    summation: "SpecifiedTradeSettlementHeaderMonetarySummation",
    line_delivery: "SpecifiedLineTradeDelivery",
    line_settlement: "SpecifiedLineTradeSettlement",
};

const ZUGFERD_1: CiiNames = CiiNames {
    document: "HeaderExchangedDocument",
    transaction: "SpecifiedSupplyChainTradeTransaction",
    agreement: "ApplicableSupplyChainTradeAgreement",
    settlement: "ApplicableSupplyChainTradeSettlement",
    summation: "SpecifiedTradeSettlementMonetarySummation",
    line_delivery: "SpecifiedSupplyChainTradeDelivery",
    line_settlement: "SpecifiedSupplyChainTradeSettlement",
};

/// A CII date: format 102 is `YYYYMMDD` (BT-2 requires it); 610 `YYYYMM` and 616 `YYYYWW`
/// carry no day and are not an issue date.
fn cii_date(n: Option<Node<'_, '_>>) -> Option<NaiveDate> {
    let n = n?;
    let t = n.text()?.trim();
    match n.attribute("format").unwrap_or("102") {
        "102" => NaiveDate::parse_from_str(t, "%Y%m%d").ok(),
        _ => None,
    }
}

/// The amount among same-named siblings whose `currencyID` is the invoice currency (a CII
/// invoice may state the tax total twice: in the invoice and in the accounting currency).
fn in_currency(parent: Option<Node<'_, '_>>, name: &str, currency: Option<&str>) -> Option<Amount> {
    let nodes: Vec<Node<'_, '_>> =
        parent?.children().filter(|c| c.is_element() && c.tag_name().name() == name).collect();
    let pick = nodes
        .iter()
        .find(|n| currency.is_some_and(|c| n.attribute("currencyID") == Some(c)))
        .or_else(|| nodes.iter().find(|n| n.attribute("currencyID").is_none()))
        .or(nodes.first())?;
    amount(text(Some(*pick)))
}

fn cii(root: Node<'_, '_>, names: &CiiNames) -> Option<InvoiceFields> {
    let doc = child(root, names.document)?;
    let tx = child(root, names.transaction)?;
    let settlement = child(tx, names.settlement);
    let sums = settlement.and_then(|s| child(s, names.summation));
    let currency = text(settlement.and_then(|s| child(s, "InvoiceCurrencyCode"))); // BT-5
    let line_items = tx
        .children()
        .filter(|c| c.tag_name().name() == "IncludedSupplyChainTradeLineItem")
        .map(|line| LineItem {
            description: text(path(line, &["SpecifiedTradeProduct", "Name"])).unwrap_or_default(), // BT-153
            quantity: text(path(line, &[names.line_delivery, "BilledQuantity"])) // BT-129
                .and_then(|q| q.parse::<f64>().ok())
                .filter(|q| q.fract() == 0.0 && *q >= 0.0)
                .map(|q| q as u32),
            amount: line
                .children()
                .find(|c| c.tag_name().name() == names.line_settlement)
                .and_then(|s| s.children().find(|c| c.tag_name().name().ends_with("MonetarySummation")))
                .and_then(|s| amount(text(child(s, "LineTotalAmount")))), // BT-131
            confidence: 1.0,
        })
        // ZUGFeRD 1.0 allows a line that only carries a note (free text between items): no
        // product, no amount — not a line item.
        .filter(|item| !(item.description.trim().is_empty() && item.amount.is_none()))
        .collect();
    Some(InvoiceFields {
        invoice_number: exact(text(child(doc, "ID"))), // BT-1
        invoice_date: exact(cii_date(path(doc, &["IssueDateTime", "DateTimeString"]))), // BT-2
        seller: exact(text(path(tx, &[names.agreement, "SellerTradeParty", "Name"]))), // BT-27
        subtotal: exact(in_currency(sums, "TaxBasisTotalAmount", currency.as_deref())), // BT-109
        tax: exact(in_currency(sums, "TaxTotalAmount", currency.as_deref())), // BT-110
        total: exact(in_currency(sums, "GrandTotalAmount", currency.as_deref())), // BT-112
        currency: exact(currency),
        line_items,
    })
}

fn ubl(root: Node<'_, '_>) -> Option<InvoiceFields> {
    let totals = child(root, "LegalMonetaryTotal");
    let currency = text(child(root, "DocumentCurrencyCode"));
    let seller = child(root, "AccountingSupplierParty").and_then(|p| child(p, "Party"));
    // BT-27 (seller name) is the legal registration name; PartyName is BT-28, the trading name.
    let seller_name = seller.and_then(|p| {
        text(path(p, &["PartyLegalEntity", "RegistrationName"])).or_else(|| text(path(p, &["PartyName", "Name"])))
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
        subtotal: exact(amount(text(totals.and_then(|t| child(t, "TaxExclusiveAmount"))))),
        // One TaxTotal per currency when a tax currency is given: the invoice currency's.
        tax: exact(
            root.children()
                .filter(|c| c.tag_name().name() == "TaxTotal")
                .filter_map(|t| child(t, "TaxAmount"))
                .find(|a| a.attribute("currencyID") == currency.as_deref() || currency.is_none())
                .and_then(|a| amount(text(Some(a)))),
        ),
        currency: exact(currency),
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
    fn a_zugferd_1_line_with_only_a_note_is_not_a_line_item() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryDocument xmlns:rsm="urn:ferd:CrossIndustryDocument:invoice:1p0" xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:12">
 <rsm:HeaderExchangedDocument><ram:ID>Z1-9</ram:ID><ram:IssueDateTime><udt:DateTimeString xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:15" format="102">20260315</udt:DateTimeString></ram:IssueDateTime></rsm:HeaderExchangedDocument>
 <rsm:SpecifiedSupplyChainTradeTransaction>
  <ram:ApplicableSupplyChainTradeAgreement><ram:SellerTradeParty><ram:Name>Lieferant GmbH</ram:Name></ram:SellerTradeParty></ram:ApplicableSupplyChainTradeAgreement>
  <ram:IncludedSupplyChainTradeLineItem>
   <ram:AssociatedDocumentLineDocument><ram:LineID>1</ram:LineID><ram:IncludedNote><ram:Content>Lieferung laut Auftrag 4711</ram:Content></ram:IncludedNote></ram:AssociatedDocumentLineDocument>
  </ram:IncludedSupplyChainTradeLineItem>
  <ram:IncludedSupplyChainTradeLineItem>
   <ram:AssociatedDocumentLineDocument><ram:LineID>2</ram:LineID></ram:AssociatedDocumentLineDocument>
   <ram:SpecifiedSupplyChainTradeDelivery><ram:BilledQuantity unitCode="C62">1</ram:BilledQuantity></ram:SpecifiedSupplyChainTradeDelivery>
   <ram:SpecifiedSupplyChainTradeSettlement><ram:SpecifiedTradeSettlementMonetarySummation><ram:LineTotalAmount>100.00</ram:LineTotalAmount></ram:SpecifiedTradeSettlementMonetarySummation></ram:SpecifiedSupplyChainTradeSettlement>
   <ram:SpecifiedTradeProduct><ram:Name>Kaffeemaschine</ram:Name></ram:SpecifiedTradeProduct>
  </ram:IncludedSupplyChainTradeLineItem>
  <ram:ApplicableSupplyChainTradeSettlement><ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>
   <ram:SpecifiedTradeSettlementMonetarySummation><ram:TaxBasisTotalAmount>100.00</ram:TaxBasisTotalAmount><ram:TaxTotalAmount currencyID="EUR">19.00</ram:TaxTotalAmount><ram:GrandTotalAmount>119.00</ram:GrandTotalAmount></ram:SpecifiedTradeSettlementMonetarySummation>
  </ram:ApplicableSupplyChainTradeSettlement>
 </rsm:SpecifiedSupplyChainTradeTransaction>
</rsm:CrossIndustryDocument>"#;
        let (fields, text) = parse(xml).unwrap();
        assert_eq!(fields.line_items.len(), 1, "{:?}", fields.line_items);
        assert_eq!(fields.line_items[0].description, "Kaffeemaschine");
        assert_eq!(fields.total.unwrap().value, Amount(11900));
        assert!(text.contains("Lieferung laut Auftrag 4711"), "the note stays searchable");
    }

    #[test]
    fn other_xml_is_not_an_invoice() {
        assert!(parse(b"<html><body/></html>").is_none());
        assert!(parse(b"not xml").is_none());
    }
}
