//! One test per class of failure the independent evaluation found, on text written here in the
//! shape real documents take (no real document's text is copied).

use super::*;
use crate::application::ocr::SUPPORTED;

fn lines(text: &str) -> Vec<TextLine> {
    text.lines().map(|l| TextLine::new(l, 0.9)).collect()
}

/// `text` as OCR would give it, every line read with confidence `conf`.
fn ocr(conf: f32, text: &str) -> InvoiceFields {
    let lines: Vec<TextLine> = text.lines().map(|l| TextLine::new(l, conf)).collect();
    extract_from(&lines, Source::Ocr)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn supported<T>(f: &Option<Field<T>>) -> bool {
    f.as_ref().is_some_and(|f| f.confidence >= SUPPORTED)
}

#[test]
fn amounts_in_every_locale_and_sign() {
    for (s, cents) in [
        ("1,199.00", 119_900),
        ("1.199,00", 119_900),
        ("1 199,00", 119_900),
        ("1199.00", 119_900),
        ("349,99", 34_999),
        ("0.99", 99),
        ("12'345.50", 1_234_550),
    ] {
        assert_eq!(parse_amount(s), Some(Amount(cents)), "{s}");
    }
    assert_eq!(parse_amount("1199"), None);
    let signed = |s: &str| amounts(s).last().map(|(_, a)| *a);
    assert_eq!(signed("Total TTC 1 438,80 €"), Some(Amount(143_880)));
    assert_eq!(signed("Total -100.00"), Some(Amount(-10_000)));
    assert_eq!(signed("Gesamt 100,00-"), Some(Amount(-10_000)));
    assert_eq!(signed("Total (100.00)"), Some(Amount(-10_000)));
    assert_eq!(signed("TOTAL RM9.00"), Some(Amount(900)));
}

#[test]
fn dates_in_the_forms_invoices_and_receipts_print() {
    let d = date(2026, 3, 15);
    for s in [
        "2026-03-15",
        "2026/03/15",
        "15.03.2026",
        "15/03/2026",
        "15-03-2026",
        "15/03/26",
        "15-03-26",
        "15.03.26",
        "15 March 2026",
        "15. März 2026",
        "15 mars 2026",
        "15 MAERZ 2026",
        "15 MAR 2026",
        "15-MAR-2026",
        "15 Mar 26",
        "March 15, 2026",
        "Mar 15 2026",
        "20260315",
    ] {
        assert_eq!(parse_date(s, false), Some(d), "{s}");
    }
    assert_eq!(parse_date("August 3, 2014", false), Some(date(2014, 8, 3)));
    assert_eq!(parse_date("3rd August 2014", false), Some(date(2014, 8, 3)));
    assert_eq!(parse_date("03/15/2026", true), Some(d));
    assert_eq!(parse_date("04/03/2026", true), Some(date(2026, 4, 3)));
    assert_eq!(parse_date("04/03/2026", false), Some(date(2026, 3, 4)));
    assert_eq!(parse_date("31.02.2026", false), None);
    assert_eq!(parse_date("15/03-2026", false), None, "mixed separators are not a date");
}

#[test]
fn a_german_invoice() {
    let f = extract(&lines(
        "Elektro Becker GmbH\nHauptstraße 5, 10115 Berlin\nRECHNUNG\nRechnungsnummer: RE-482913\nRechnungsdatum: 15.03.2026\n\
         Beschreibung Menge Einzelpreis Betrag\nApple MacBook Air 13 1 1.199,00 1.199,00\nSeriennummer: C02XK0ABJGH5\n\
         USB-C Ladekabel 2 19,99 39,98\nZwischensumme 1.238,98\nMwSt. 19 % 235,41\nGesamtbetrag 1.474,39 EUR",
    ));
    assert_eq!(f.invoice_number.unwrap().value, "RE-482913");
    assert_eq!(f.invoice_date.unwrap().value, date(2026, 3, 15));
    assert_eq!(f.seller.unwrap().value, "Elektro Becker GmbH");
    assert_eq!(f.currency.unwrap().value, "EUR");
    assert_eq!(f.subtotal.as_ref().unwrap().value, Amount(123_898));
    assert_eq!(f.tax.as_ref().unwrap().value, Amount(23_541));
    let total = f.total.unwrap();
    assert_eq!(total.value, Amount(147_439));
    assert!(total.confidence >= 0.95, "cross-checked totals are trusted");
    assert_eq!(f.line_items.len(), 2);
    assert_eq!(f.line_items[0].description, "Apple MacBook Air 13");
    assert_eq!(f.line_items[1].quantity, Some(2));
    assert_eq!(f.line_items[1].amount, Some(Amount(3998)));
    assert!(f.line_items[0].confidence >= 0.98);
}

#[test]
fn a_french_receipt() {
    let f = extract(&lines(
        "Techno Dupont SARL\n8 rue de la Paix, 75002 Paris\nFACTURE\nN° de facture FA2026-0042\nDate de facture 15 mars 2026\n\
         Samsung Galaxy S24\nN° de série: R58N12ABCDE\n1 x 899,00 899,00\nHousse de protection\n2 x 29,90 59,80\n\
         Total HT 958,80\nTVA 20 % 191,76\nTotal TTC EUR 1 150,56",
    ));
    assert_eq!(f.invoice_number.unwrap().value, "FA2026-0042");
    assert_eq!(f.invoice_date.unwrap().value, date(2026, 3, 15));
    assert_eq!(f.seller.unwrap().value, "Techno Dupont SARL");
    assert_eq!(f.total.unwrap().value, Amount(115_056));
    let descs: Vec<_> = f.line_items.iter().map(|i| i.description.as_str()).collect();
    assert_eq!(descs, ["Samsung Galaxy S24", "Housse de protection"]);
}

#[test]
fn totals_that_do_not_add_up_are_not_supported() {
    let f = extract(&lines("Invoice No.: A-1\nSubtotal 100.00\nVAT 20% 20.00\nTotal 130.00 GBP"));
    assert!(!supported(&f.total), "{:?}", f.total);
}

#[test]
fn share_capital_and_vat_numbers_are_not_the_tax() {
    let f = extract(&lines(
        "Atelier Exemple SAS au capital de 120 000,00 €\nTVA intracommunautaire FR12 345678901\nFacture FA-2024-117\n\
         Date : 02/05/2024\nTotal HT 200,00 €\nTVA 20 % 40,00 €\nTotal TTC 240,00 €",
    ));
    assert_eq!(f.tax.as_ref().unwrap().value, Amount(4000));
    assert_eq!(f.subtotal.as_ref().unwrap().value, Amount(20_000));
    assert_eq!(f.total.as_ref().unwrap().value, Amount(24_000));
    assert!(supported(&f.total));
    assert_eq!(f.invoice_number.unwrap().value, "FA-2024-117");
}

#[test]
fn net_and_gross_lines_are_subtotal_and_total_not_tax() {
    let f = extract(&lines(
        "Muster Handel GMBH\nBeleg-Nr. 4711\nDatum 07.01.2025\nNetto (excl. USt.) 100,00\nUSt. 19 % 19,00\n\
         Brutto (inkl. USt.) 119,00",
    ));
    assert_eq!(f.subtotal.as_ref().unwrap().value, Amount(10_000));
    assert_eq!(f.tax.as_ref().unwrap().value, Amount(1900));
    assert_eq!(f.total.as_ref().unwrap().value, Amount(11_900));
    assert!(supported(&f.total));
    assert_eq!(f.seller.unwrap().value, "Muster Handel GMBH", "legal forms in any case");
    assert_eq!(f.invoice_number.unwrap().value, "4711");
}

#[test]
fn a_discount_line_is_not_the_tax_and_a_footnote_is_not_the_total() {
    let f = extract(&lines(
        "Invoice VT/2021/07\nInvoice date: 12/07/2021\nSubtotal 500.00\nDiscount 10% -50.00\nVAT 20% 90.00\n\
         Total 540.00\nThe total above includes a delivery fee of 5.00",
    ));
    assert_eq!(f.total.as_ref().unwrap().value, Amount(54_000));
    assert_eq!(f.tax.as_ref().unwrap().value, Amount(9000));
    assert_eq!(f.invoice_number.unwrap().value, "VT/2021/07");
}

#[test]
fn the_due_date_is_not_the_invoice_date() {
    let f = extract(&lines("Payment due: 30.04.2026\nInvoice # 12345\nInvoice date 31.03.2026\nTotal 10.00 EUR"));
    assert_eq!(f.invoice_date.as_ref().unwrap().value, date(2026, 3, 31));
    assert!(supported(&f.invoice_date));
    assert_eq!(f.invoice_number.unwrap().value, "12345");
}

#[test]
fn a_value_below_its_label_is_found() {
    let f = extract(&lines(
        "Kraxi GmbH\nInvoice number        Date\n2014-03               August 3, 2014\nGrand total 1,005.55 EUR",
    ));
    assert_eq!(f.invoice_number.unwrap().value, "2014-03");
    assert_eq!(f.invoice_date.unwrap().value, date(2014, 8, 3));
}

#[test]
fn the_buyers_block_is_not_the_seller() {
    let f = extract(&lines(
        "INVOICE\nBill to:\nCustomer Holdings Ltd\n1 Client Road\nSpringfield\nInvoice No: 88\nDate: 2025-01-05\nTotal due 42.00\n\
         Northwind Supplies Ltd · 5 Harbour Street · Portsmouth",
    ));
    assert_eq!(f.seller.unwrap().value, "Northwind Supplies Ltd");
}

#[test]
fn a_receipt_total_is_not_cash_or_change_and_is_supported_by_them() {
    let f = extract(&lines(
        "KEDAI MAJU JAYA\nNO 12, JALAN BUNGA 3\nTEL: 07-1234567\nDATE: 25/12/2018 10:15\nITEM QTY PRICE\nTEH ICE 2 3.00\n\
         NASI LEMAK 1 6.00\nTOTAL QTY: 3\nTOTAL (RM): 9.00\nCASH 10.00\nCHANGE 1.00",
    ));
    let total = f.total.unwrap();
    assert_eq!(total.value, Amount(900));
    assert!(total.confidence >= 0.95, "cash − change = total: {}", total.confidence);
    assert_eq!(f.invoice_date.unwrap().value, date(2018, 12, 25));
    assert_eq!(f.seller.unwrap().value, "KEDAI MAJU JAYA");
    assert_eq!(f.currency.unwrap().value, "MYR");
}

#[test]
fn rounding_adjustments_and_gst_summaries_are_not_the_total() {
    let f = extract(&lines(
        "SYARIKAT CONTOH SDN BHD (123456-X)\nGST REG NO: 000123456789\n12-01-19\nTotal Sales (Excluding GST) 31.98\n\
         Total GST @6% 1.92\nRounding Adj 0.00\nTotal Sales (Inclusive of GST) 33.90\nTotal GST 1.92\nCASH 50.00\nCHANGE 16.10",
    ));
    assert_eq!(f.total.as_ref().unwrap().value, Amount(3390));
    assert!(supported(&f.total));
    assert_eq!(f.seller.unwrap().value, "SYARIKAT CONTOH SDN BHD");
    assert_eq!(f.invoice_date.unwrap().value, date(2019, 1, 12));
}

#[test]
fn currencies_beyond_euro_dollar_and_pound() {
    let c = |t: &str| extract(&lines(t)).currency.map(|c| c.value);
    assert_eq!(c("Grand Total ₹ 1,200.00").as_deref(), Some("INR"));
    assert_eq!(c("Total Rs. 1,200.00").as_deref(), Some("INR"));
    assert_eq!(c("TOTAL RM 9.00").as_deref(), Some("MYR"));
    assert_eq!(c("Total 830.00 SEK").as_deref(), Some("SEK"));
    assert_eq!(c("Total 87 859,00 HUF").as_deref(), Some("HUF"));
    assert_eq!(c("Total 5.00").as_deref(), None, "no evidence, no currency");
}

#[test]
fn a_credit_note_keeps_its_sign() {
    let f = extract(&lines("Credit note CN-7\nDate: 2025-02-01\nSubtotal -100.00\nVAT -20.00\nTotal -120.00 EUR"));
    assert_eq!(f.total.as_ref().unwrap().value, Amount(-12_000));
    assert!(supported(&f.total));
}

#[test]
fn rows_with_units_currency_signs_and_vat_columns() {
    let f = extract(&lines(
        "Rechnung RE-2020-11\nDatum 01.02.2020\nPos Bezeichnung Menge Einzelpreis USt Betrag\n\
         Beratung 20 Unit(s) 50,00 € 19% 1.000,00 €\nKabel 2 Stk. 9,99 € 19% 19,98 €\nNettobetrag 1.019,98 €\n\
         USt. 19 % 193,80 €\nGesamtbetrag 1.213,78 €",
    ));
    assert_eq!(f.line_items.len(), 2, "{:?}", f.line_items);
    assert_eq!(f.line_items[0].quantity, Some(20));
    assert_eq!(f.line_items[0].amount, Some(Amount(100_000)));
    assert_eq!(f.line_items[1].quantity, Some(2));
    assert_eq!(f.line_items[1].amount, Some(Amount(1998)));
    assert!(f.line_items.iter().all(|i| i.confidence >= 0.98), "rows add up to the subtotal");
}

#[test]
fn quantities_with_zero_decimals_and_rows_that_start_with_the_quantity() {
    let f = extract(&lines(
        "Rechnung RE-2021-07\nDatum 03.04.2021\nMenge Bezeichnung USt Einzelpreis Gesamt\n\
         2,00 Wandhalterung schwenkbar 19% 24,50 € 49,00 €\n150,00 Kabelbinder, schwarz 19% 0,12 € 18,00 €\n\
         3 Jahreslizenz Office 1,00 Stk. 84,95 84,95\n2 Malerrolle 3 4,00 12,00\n\
         Übernachtung 2 89,00 € 7 % 178,00 €\nNettobetrag: 341,95 €\nUSt.: 43,61 €\nGesamtbetrag: 385,56 €",
    ));
    let rows: Vec<_> =
        f.line_items.iter().map(|i| (i.description.as_str(), i.quantity, i.amount.map(|a| a.0))).collect();
    assert_eq!(
        rows,
        [
            ("Wandhalterung schwenkbar", Some(2), Some(4900)),
            ("Kabelbinder, schwarz", Some(150), Some(1800)),
            // A decimal quantity after the description; the position number stays in it.
            ("3 Jahreslizenz Office", Some(1), Some(8495)),
            // A leading position number is not the quantity where the numbers say otherwise.
            ("2 Malerrolle", Some(3), Some(1200)),
            // A rate printed apart from its sign is not a number of the row.
            ("Übernachtung", Some(2), Some(17_800)),
        ]
    );
    assert!(f.line_items.iter().all(|i| i.confidence >= 0.98), "rows add up to the subtotal");
    assert_eq!(f.total.unwrap().value, Amount(38_556));
}

#[test]
fn a_leading_count_is_a_quantity_only_when_the_row_adds_up() {
    // "1,00" before the description and 1 × 80,00 ≠ 160,00: no reading starts with it.
    let f = extract(&lines("Menge Bezeichnung Preis Betrag\n1,00 Montage vor Ort 80,00 160,00\nSumme 160,00"));
    assert!(f.line_items.iter().all(|i| i.quantity != Some(1)), "{:?}", f.line_items);
}

#[test]
fn a_lone_unlabelled_amount_and_rival_dates_are_not_supported() {
    let f = extract(&lines("Some Shop\n01/02/2024\n05/03/2024\nAmount 12.00\nAmount 15.00"));
    assert!(!supported(&f.invoice_date), "two unlabelled dates: {:?}", f.invoice_date);
    assert!(!supported(&f.total), "two rival amounts: {:?}", f.total);
}

#[test]
fn ocr_values_need_a_second_support() {
    let read = ocr;
    // Doubtful words: neither the date nor a lone labelled total is trusted.
    let f = read(0.3, "Shop\nDate: 01/02/2024\nTotal 12.00");
    assert!(!supported(&f.total), "{:?}", f.total);
    assert!(!supported(&f.invoice_date), "{:?}", f.invoice_date);
    // Clear words, but a total printed once and supported by nothing else: a digit may be
    // misread, so it is not trusted; the same text from a PDF's text layer is.
    let f = read(0.95, "Shop\nDate: 01/02/2024\nTotal 12.00");
    assert!(!supported(&f.total), "{:?}", f.total);
    assert!(supported(&f.invoice_date), "a clearly read, labelled date: {:?}", f.invoice_date);
    assert!(supported(&extract(&lines("Shop\nDate: 01/02/2024\nTotal 12.00")).total));
    // Cash − change agreeing with the total supports it even from OCR.
    let f = read(0.95, "Shop\nDate: 01/02/2024\nTotal 12.00\nCash 20.00\nChange 8.00");
    assert!(supported(&f.total), "{:?}", f.total);
}

#[test]
fn a_total_garbled_by_ocr_is_recovered_from_the_payment() {
    let read = |text: &str| ocr(0.95, text);
    // "GRAND TOTAL 1000": the separator was lost; cash − change = 10.00 has the same digits.
    let f = read("Shop\nSUB TOTAL 10.00\nGRAND TOTAL 1000\nCASH 20.00\nCHANGE DUE 10.00");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(1000));
    assert!(supported(&f.total));
    // A total before rounding; the payment proves the rounded amount.
    let f = read("Shop\nTOTAL AMT 60.31\nROUNDING ADJ -0.01\nCASH 70.30\nCHANGE 10.00");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(6030));
    assert!(supported(&f.total));
}

#[test]
fn positioned_cells_find_a_value_in_the_column_below() {
    let cell = |t: &str, l: f32, r: f32| Cell { text: t.into(), left: l, right: r, confidence: 0.95 };
    let input = vec![
        TextLine::positioned(vec![cell("Beispiel Handel GmbH", 50.0, 300.0)], 1, 10.0, 12.0, 0.95),
        TextLine::positioned(
            vec![cell("Kunde", 50.0, 100.0), cell("Rechnungsdatum", 400.0, 520.0)],
            1,
            100.0,
            10.0,
            0.95,
        ),
        TextLine::positioned(
            vec![cell("Max Muster AG", 50.0, 160.0), cell("09.05.2017", 400.0, 470.0)],
            1,
            115.0,
            10.0,
            0.95,
        ),
        TextLine::positioned(
            vec![cell("Gesamtbetrag", 50.0, 150.0), cell("571,04 EUR", 450.0, 530.0)],
            1,
            400.0,
            10.0,
            0.95,
        ),
    ];
    let f = extract(&input);
    assert_eq!(f.invoice_date.unwrap().value, date(2017, 5, 9));
    assert_eq!(f.seller.unwrap().value, "Beispiel Handel GmbH", "Max Muster AG is under Kunde");
    assert_eq!(f.total.unwrap().value, Amount(57_104));
}

#[test]
fn legal_forms_misread_by_ocr_are_put_right() {
    assert_eq!(repair_legal_forms("UNI HAKKA INTERNATIONAL SON BHD"), "UNI HAKKA INTERNATIONAL SDN BHD");
    assert_eq!(repair_legal_forms("SUN VICTORY SDN 8HD"), "SUN VICTORY SDN BHD");
    assert_eq!(repair_legal_forms("SONNY TRADING"), "SONNY TRADING", "only beside another legal form or at the end");
    assert_eq!(repair_legal_forms("Beispiel GmbH"), "Beispiel GmbH");
}

#[test]
fn the_sender_line_over_the_address_window_names_the_issuer() {
    let f = extract(&lines(
        "weclapp.com | Somestreet 42 | 08155 Some city\nBeispiel AG\nFeldstraße 34\n54321 Hithausen\nRechnung RE1001\n\
         Belegdatum: 26.10.22\nEndsumme 963,12 €",
    ));
    assert_eq!(f.seller.unwrap().value, "weclapp.com", "Beispiel AG is the addressee");
    assert_eq!(f.total.unwrap().value, Amount(96_312));
    assert_eq!(f.invoice_number.unwrap().value, "RE1001");
    assert_eq!(f.invoice_date.unwrap().value, date(2022, 10, 26));
}

#[test]
fn two_label_amount_pairs_on_one_line_and_receipt_labels() {
    let read = |text: &str| ocr(0.95, text);
    let f =
        read("Shop\nItem 2  Total with GST @ 6%  77.20\nTotal Saving 0.00   Total 77.20\nCash 100.00\nChange 22.80");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(7720));
    assert!(supported(&f.total), "{:?}", f.total);
    let f = read("Shop\nSub Total 129,30\nAmt Due 129.30");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(12_930));
    let f = read("Shop\nTotal Sales Incl GST 78.00\nTotal After Adj 75.00\nCash 100.00\nChange 25.00");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(7500), "the amount after the adjustment is paid");
}

#[test]
fn a_document_of_thousands_of_labelled_lines_is_read_in_bounded_work() {
    // 3 × 2000 labelled amounts: without the bound the total/subtotal/tax comparison is cubic.
    let mut text = String::from("Shop\n");
    for i in 0..2000 {
        text.push_str(&format!("Subtotal {i}.00\nVAT {i}.50\nTotal {i}.99\n"));
    }
    text.push_str("Subtotal 10.00\nVAT 2.00\nGrand total 12.00\n");
    let f = extract(&lines(&text));
    assert_eq!(f.total.unwrap().value, Amount(1200));
}

#[test]
fn a_receipt_without_tax_lines_pays_its_subtotal_and_ocr_garbled_total_labels_still_count() {
    let read = |text: &str| ocr(0.95, text);
    let f = read("Shop\nNasi Lemak 1 6.00\nSub Total 6.00\nCash 10.00\nChange 4.00");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(600));
    assert!(supported(&f.total), "cash − change confirms it: {:?}", f.total);
    let f = read("Shop\nTatal Sales (Inclusive of GST) : 32.70\nCash 50.00\nChange 17.30");
    assert_eq!(f.total.as_ref().unwrap().value, Amount(3270));
    assert!(supported(&f.total));
}

#[test]
fn a_legal_form_alone_names_no_one_and_a_name_split_into_cells_is_joined() {
    let cell = |t: &str, l: f32, r: f32| Cell { text: t.into(), left: l, right: r, confidence: 0.9 };
    let input = vec![
        TextLine::positioned(vec![cell("TAX INVOICE", 100.0, 200.0)], 1, 10.0, 12.0, 0.9),
        TextLine::positioned(
            vec![
                cell("POPULAR BOOK", 20.0, 150.0),
                cell("CO.(M) SDN BHD", 180.0, 330.0),
                cell("(113825-W)", 350.0, 440.0),
            ],
            1,
            50.0,
            12.0,
            0.9,
        ),
    ];
    let f = extract_from(&input, Source::Ocr);
    assert_eq!(f.seller.unwrap().value, "POPULAR BOOK CO.(M) SDN BHD");
    let f = extract_from(&lines("Inc\nKedai Runcit Ali\nTotal 5.00"), Source::Ocr);
    assert_eq!(f.seller.unwrap().value, "Kedai Runcit Ali");
}

/// A receipt that labels the amount due "Due" alone and the tendered amount "Pay", with the tax
/// it includes under "Total included GST @6%": cash − change supports "Due", so the tax line
/// (whose label reads like a grand total's) does not win.
#[test]
fn a_bare_due_supported_by_the_payment_beats_a_total_included_tax_line() {
    let f = ocr(
        0.97,
        "Cheese Tart   1   3.40\n\
         Qty   8   25.15\n\
         Rounding Adj   0.00\n\
         Due   25.15\n\
         Pay   30.00\n\
         Change   4.85\n\
         (Total Included GST @6%   1.42)",
    );
    let total = f.total.unwrap();
    assert_eq!(total.value, Amount(2515));
    assert!(total.confidence >= SUPPORTED, "cash − change supports it: {total:?}");
    // "Total Incl. GST@6%" is the amount to pay where nothing else is.
    let f = ocr(0.97, "Item   1 X   3.90\nTotal Incl. GST@6%   RM 3.90\nCASH   RM 4.00\nCHANGE   RM 0.10");
    assert_eq!(f.total.map(|t| t.value), Some(Amount(390)));
}

/// A title alone on its line with the number and date on the line below ("FACTURE" /
/// "N° FA-2024-042   15/01/2024"), and earlier dates in the rows: the title block's are the
/// document's.
#[test]
fn the_line_under_a_title_alone_carries_the_number_and_the_date() {
    let f = extract(&lines(
        "FACTURE\n\
         N° FA-2024-042   15/01/2024\n\
         Emetteur   Destinataire\n\
         Date   Description   Qté   Total HT\n\
         10/01/2024 Consultation   1.00   50.00 EUR\n\
         12/01/2024 Suivi   1.00   50.00 EUR\n\
         Total TTC:   100.00 EUR",
    ));
    assert_eq!(f.invoice_number.map(|n| n.value), Some("FA-2024-042".to_owned()));
    assert_eq!(f.invoice_date.map(|d| d.value), Some(date(2024, 1, 15)));
    // The same header where the date, at the right, sits a little higher than the number: a
    // line of its own between the title and the number.
    let f = extract(&lines(
        "FACTURE\n\
         15/01/2024\n\
         N° FA-2024-042\n\
         Emetteur   Destinataire\n\
         10/01/2024 Consultation   1.00   50.00 EUR\n\
         Total TTC:   100.00 EUR",
    ));
    assert_eq!(f.invoice_number.map(|n| n.value), Some("FA-2024-042".to_owned()));
    assert_eq!(f.invoice_date.map(|d| d.value), Some(date(2024, 1, 15)));
    // A title with more on its line is not a title block: "Invoice for March" does not make the
    // next line's number the invoice's.
    let f = extract(&lines("Invoice for services rendered in March 2024\nNo. 77\nTotal   10.00"));
    assert_ne!(f.invoice_number.map(|n| n.value), Some("77".to_owned()));
}

/// A seller's name that starts with a label's word is not a label ("Seller Company · 123 Seller
/// St · 12345 Seller City" is the sender line), and a label line that names the field ("SELLER
/// TRADE NAME") has its value below it, never in itself.
#[test]
fn a_seller_label_ends_in_a_colon_or_stands_alone() {
    let f = extract(&lines(
        "Seller Company · 123 Seller St · Suite 100 · 12345 Seller City\n\
         Buyer Company   Invoice Number: DOC-12345\n\
         Total   10.00",
    ));
    assert_eq!(f.seller.map(|s| s.value), Some("Seller Company".to_owned()));
    let f = extract(&lines(
        "FACTURE N° : F20220024\nSELLER TRADE NAME   Adresse du Client\nLE FOURNISSEUR   LE CLIENT\nTotal TTC   12.00",
    ));
    assert_eq!(f.seller.map(|s| s.value), Some("LE FOURNISSEUR".to_owned()));
    let f = extract(&lines("Seller: Kedai Runcit Maju\nTotal   5.00"));
    assert_eq!(f.seller.map(|s| s.value), Some("Kedai Runcit Maju".to_owned()));
}

/// A letterhead beside the title ("Blanc-Conseil   FACTURE") with the number in the cell under
/// the title; and a "Line Total Amount" (the sum of the lines, before allowances) that is not
/// the amount to pay.
#[test]
fn title_cells_letterheads_and_line_totals() {
    let positioned = |rows: &[&[(&str, f32)]]| -> Vec<TextLine> {
        rows.iter()
            .enumerate()
            .map(|(i, cells)| {
                let cells = cells
                    .iter()
                    .map(|(t, left)| Cell {
                        text: (*t).to_owned(),
                        left: *left,
                        right: left + 8.0 * t.len() as f32,
                        confidence: 0.99,
                    })
                    .collect();
                TextLine::positioned(cells, 1, 20.0 * i as f32, 10.0, 0.99)
            })
            .collect()
    };
    let f = extract(&positioned(&[
        &[("Blanc-Conseil", 56.0), ("FACTURE", 438.0)],
        &[("12 rue des Lices, 49100 Angers", 56.0), ("N° FX-2026-0042", 440.0)],
        &[("Total TTC", 370.0), ("1 693,20 €", 479.0)],
    ]));
    assert_eq!(f.invoice_number.map(|n| n.value), Some("FX-2026-0042".to_owned()));
    assert_eq!(f.seller.map(|s| s.value), Some("Blanc-Conseil".to_owned()));
    let f = extract(&lines(
        "Line Total Amount   €1,000.00\n\
         Allowance (Tax: 0.00%): Discount   - €10.00\n\
         Net Total Amount   €990.00\n\
         Gross Total Amount   €990.00",
    ));
    assert_eq!(f.total.map(|t| t.value), Some(Amount(99_000)));
}

/// A total, a rounding adjustment and the rounded total: what is paid is the rounded amount
/// ("Total After Rounding" is a total, not the adjustment), the printed sum supports it, and the
/// larger amount before rounding is not its rival. The adjustment may be printed without its
/// sign, and "Amount To Be Paid" labels the rounded total too.
#[test]
fn the_total_after_a_rounding_adjustment_is_what_is_paid() {
    for (text, want) in [
        (
            "KEDAI CONTOH SDN BHD\n29/03/2018\nTotal Sales Incl. GST 100.62\nRounding Adjustment -0.02\n\
             Total After Rounding 100.60\nVISA 100.60",
            Amount(10060),
        ),
        (
            "KEDAI CONTOH SDN BHD\n08/02/2017\nTotal : 25.44\nTotal Sales Inclusive GST @6.00% 25.44\n\
             Rounding Adjustment: 0.01\nAmount To Be Paid : 25.45\nCash Received : 25.50",
            Amount(2545),
        ),
        (
            "KEDAI CONTOH SDN BHD\n08/02/2017\nTotal Sales 26.82\nRounding Adjustment 0.02\n\
             Amount To Be Paid 26.80",
            Amount(2680),
        ),
    ] {
        let f = ocr(0.95, text);
        let total = f.total.as_ref().unwrap();
        assert_eq!(total.value, want, "{text}");
        assert!(total.confidence >= 0.95, "the printed sum supports it: {total:?} in {text}");
    }
    // An amount still open after the rounding, under a weaker label, is not the invoice's total.
    let f = extract(&lines(
        "Seller Company GmbH\nInvoice date: 01.10.2023\nNet Total Amount €121.50\nGross Total Amount €144.59\n\
         Rounding Amount €0.01\nOpen Amount €144.60",
    ));
    assert_ne!(f.total.as_ref().map(|t| t.value), Some(Amount(14460)), "{:?}", f.total);
    // Without the adjustment between them, two different totals are rivals: neither is believed.
    let f = ocr(0.95, "KEDAI CONTOH SDN BHD\n08/02/2017\nTotal Sales 26.82\nAmount To Be Paid 26.80");
    assert!(!supported(&f.total), "{:?}", f.total);
}

/// A shop's legal name over two lines: "CO. (M) SDN BHD" or "ENTERPRISE (…) SDN BHD" continues the
/// line above; a line that starts a name on its own does not take the one above.
#[test]
fn a_legal_name_continued_on_the_next_line_is_joined() {
    let f = ocr(0.95, "POPULAR BOOK\nCO. (M) SDN BHD\n(Co. No. 113825-W)\nNo 8, Jalan 7/118B\nTotal 5.00");
    assert_eq!(f.seller.unwrap().value, "POPULAR BOOK CO. (M) SDN BHD");
    let f = ocr(0.95, "AIK HUAT HARDWARE\nENTERPRISE (SETIA ALAM) SDN BHD\nNO. 17-G, JALAN SETIA\nTotal 5.00");
    assert_eq!(f.seller.unwrap().value, "AIK HUAT HARDWARE ENTERPRISE (SETIA ALAM) SDN BHD");
    let f = ocr(0.95, "TAX INVOICE\nSUNRISE TRADING SDN BHD\nNo 8, Jalan 7/118B\nTotal 5.00");
    assert_eq!(f.seller.unwrap().value, "SUNRISE TRADING SDN BHD");
}

/// Which Document Intelligence model a document goes to: receipt words against invoice words,
/// the title "Invoice" (not "Tax Invoice") for an invoice, and the kind when the text says nothing.
#[test]
fn receipts_and_invoices_are_told_apart_for_the_second_opinion() {
    use crate::domain::InvoiceKind::{Jpeg, Pdf, Png};
    use crate::domain::ocr::DocumentClass::{Invoice, Receipt};
    let receipt = "KEDAI CONTOH SDN BHD\nTAX INVOICE\nCashier: 03\nTOTAL 9.00\nCASH 10.00\nCHANGE 1.00\nTHANK YOU";
    assert_eq!(document_class(Jpeg, receipt), Receipt);
    assert_eq!(document_class(Pdf, receipt), Receipt, "a scanned receipt is a receipt");
    let invoice = "Elektro Becker GmbH\nRechnung RE-482913\nZahlbar bis 30.03.2026\nIBAN DE02 1203 0000 0000 2020 51";
    assert_eq!(document_class(Png, invoice), Invoice, "a photographed invoice is an invoice");
    assert_eq!(document_class(Png, "INVOICE 2026-0042\nTotal: EUR 1199.00"), Invoice);
    assert_eq!(document_class(Png, "SIMPLIFIED TAX INVOICE\nTotal 5.00"), Receipt, "a tax invoice says nothing");
    assert_eq!(document_class(Png, ""), Receipt);
    assert_eq!(document_class(Pdf, ""), Invoice);
}
