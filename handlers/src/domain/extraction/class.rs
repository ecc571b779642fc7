//! What a document is (a till receipt or an invoice), for a reader with a model per class.

use super::*;

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
