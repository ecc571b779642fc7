#!/usr/bin/env python3
"""Generates the OCR test corpus: invoices in 4 layouts, 3 languages and 5 kinds, with ground truth.

Kinds: digital PDF (text layer), hybrid PDF with embedded Factur-X (CII) XML, scanned PDF (the
page rendered to an image inside a PDF), JPEG photo-like (rotation, noise, blur, JPEG
artefacts) and PNG. Output: handlers/tests/corpus/*.{pdf,jpg,png} and ground-truth.json.

Usage: python3 tools/invoice-corpus/generate.py [--out handlers/tests/corpus]
Needs Pillow (pip install pillow) and the DejaVu fonts (Debian: fonts-dejavu-core), which have the
€, £ and accented glyphs European invoices use. Deterministic: a fixed seed per invoice, so
rerunning with the same Pillow and fonts gives the same files.
"""
import argparse
import datetime as dt
import io
import json
import os
import random
import zlib
from decimal import Decimal, ROUND_HALF_UP

from PIL import Image, ImageDraw, ImageFilter, ImageFont

LABELS = {
    "en": dict(title="INVOICE", number="Invoice No.", date="Invoice Date", seller="Seller", buyer="Bill to",
               desc="Description", qty="Qty", unit="Unit Price", amount="Amount", subtotal="Subtotal",
               tax="VAT {rate}%", total="Total", serial="Serial No."),
    "de": dict(title="RECHNUNG", number="Rechnungsnummer", date="Rechnungsdatum", seller="Verkäufer", buyer="Rechnungsempfänger",
               desc="Beschreibung", qty="Menge", unit="Einzelpreis", amount="Betrag", subtotal="Zwischensumme",
               tax="MwSt. {rate} %", total="Gesamtbetrag", serial="Seriennummer"),
    "fr": dict(title="FACTURE", number="N° de facture", date="Date de facture", seller="Vendeur", buyer="Client",
               desc="Désignation", qty="Qté", unit="Prix unitaire", amount="Montant", subtotal="Total HT",
               tax="TVA {rate} %", total="Total TTC", serial="N° de série"),
}
MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"],
}
SELLERS = {
    "en": ["Brightline Electronics Ltd", "Harbor Tech Supplies Inc", "Northwind Gadgets Ltd"],
    "de": ["Elektro Becker GmbH", "Technikhaus Müller GmbH", "Medienwelt Schmidt KG"],
    "fr": ["Boulanger Électroménager SAS", "Techno Dupont SARL", "Maison Martin SA"],
}
PRODUCTS = [
    ("Apple", "MacBook Air 13", "C02XK0ABJGH5", Decimal("1199.00")),
    ("Samsung", "Galaxy S24", "R58N12ABCDE", Decimal("899.00")),
    ("Dell", "Latitude 7440", "7XK9JH2", Decimal("1549.00")),
    ("Sony", "WH-1000XM5", "4012345", Decimal("349.99")),
    ("LG", "OLED55C3", "105KRAB12345", Decimal("1299.00")),
    ("Lenovo", "ThinkPad X1 Carbon", "PF2ABCD1", Decimal("1899.00")),
    ("Nintendo", "Switch OLED", "XAW10012345678", Decimal("349.00")),
    ("Dyson", "V15 Detect", "D4A-UK-PAA1234A", Decimal("699.00")),
    ("Canon", "EOS R8", "012345678901", Decimal("1499.00")),
    ("GoPro", "HERO12 Black", "C3331324567890", Decimal("399.99")),
    ("Garmin", "Fenix 7", "3K1234567", Decimal("649.99")),
    ("Miele", "WWD 320", "123456789", Decimal("999.00")),
]
EXTRAS = {
    "en": [("Extended care plan 2 years", Decimal("79.00")), ("USB-C charging cable", Decimal("19.99")), ("Protective case", Decimal("29.90"))],
    "de": [("Garantieverlängerung 2 Jahre", Decimal("79.00")), ("USB-C Ladekabel", Decimal("19.99")), ("Schutzhülle", Decimal("29.90"))],
    "fr": [("Extension de garantie 2 ans", Decimal("79.00")), ("Câble de charge USB-C", Decimal("19.99")), ("Housse de protection", Decimal("29.90"))],
}
TAX = {"en": 20, "de": 19, "fr": 20}
CURRENCY = {"en": "GBP", "de": "EUR", "fr": "EUR"}
KINDS = ["digital", "facturx", "scanned", "photo", "png"]
LAYOUTS = ["classic", "modern", "receipt", "compact"]
CENT = Decimal("0.01")


def money(v: Decimal, lang: str) -> str:
    s = f"{v.quantize(CENT):,.2f}"  # 1,199.00
    if lang == "de":
        return s.replace(",", "_").replace(".", ",").replace("_", ".")
    if lang == "fr":
        return s.replace(",", " ").replace(".", ",")
    return s


def date_text(d: dt.date, lang: str, style: int) -> str:
    if lang == "en":
        return [f"{d.day} {MONTHS['en'][d.month - 1]} {d.year}", d.isoformat(), f"{d.day:02d}/{d.month:02d}/{d.year}"][style % 3]
    if lang == "de":
        return [f"{d.day:02d}.{d.month:02d}.{d.year}", f"{d.day}. {MONTHS['de'][d.month - 1]} {d.year}"][style % 2]
    return [f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.day} {MONTHS['fr'][d.month - 1]} {d.year}"][style % 2]


def make_invoice(i: int):
    rnd = random.Random(1000 + i)
    lang = ["en", "de", "fr"][i % 3]
    kind = KINDS[i % 5]
    layout = LAYOUTS[(i // 5) % 4]
    brand, model, serial, price = PRODUCTS[i % len(PRODUCTS)]
    seller = SELLERS[lang][i % 3]
    date = dt.date(2025, 1, 1) + dt.timedelta(days=rnd.randrange(0, 600))
    number = {"en": f"INV-{2025 + i % 2}-{rnd.randrange(1000, 99999):05d}", "de": f"RE-{rnd.randrange(100000, 999999)}",
              "fr": f"FA{date.year}-{rnd.randrange(100, 9999):04d}"}[lang]
    lines = [(f"{brand} {model}", 1, price)]
    for extra in rnd.sample(EXTRAS[lang], rnd.randrange(0, 3)):
        qty = rnd.choice([1, 1, 2])
        lines.append((extra[0], qty, extra[1]))
    subtotal = sum((q * p for _, q, p in lines), Decimal(0)).quantize(CENT)
    tax = (subtotal * TAX[lang] / 100).quantize(CENT, ROUND_HALF_UP)
    total = subtotal + tax
    return dict(
        id=f"{i:02d}-{kind}-{layout}-{lang}", index=i, kind=kind, layout=layout, lang=lang, brand=brand, model=model,
        serial=serial, seller=seller, date=date, number=number, currency=CURRENCY[lang], lines=lines, subtotal=subtotal,
        tax=tax, tax_rate=TAX[lang], total=total, date_style=rnd.randrange(0, 3),
    )


def text_rows(inv):
    """The invoice as rows of (x in points from the left, text), per layout. y advances per row."""
    L = LABELS[inv["lang"]]
    lang, cur = inv["lang"], inv["currency"]
    sym = {"EUR": "€", "GBP": "£"}[cur]
    d = date_text(inv["date"], lang, inv["date_style"])
    m = lambda v: money(v, lang)
    rows = []
    addr = {"en": "12 King Street, London", "de": "Hauptstraße 5, 10115 Berlin", "fr": "8 rue de la Paix, 75002 Paris"}[lang]
    if inv["layout"] == "classic":
        rows += [[(50, inv["seller"])], [(50, addr)], [], [(50, L["title"])], [],
                 [(50, f"{L['number']}: {inv['number']}")], [(50, f"{L['date']}: {d}")], [(50, f"{L['buyer']}: Jane Doe")], [],
                 [(50, L["desc"]), (300, L["qty"]), (360, L["unit"]), (470, L["amount"])]]
        for desc, q, p in inv["lines"]:
            rows.append([(50, desc), (300, str(q)), (360, m(p)), (470, m(q * p))])
            if desc.startswith(inv["brand"]):
                rows.append([(60, f"{L['serial']}: {inv['serial']}")])
        rows += [[], [(330, L["subtotal"]), (470, m(inv["subtotal"]))],
                 [(330, L["tax"].format(rate=inv["tax_rate"])), (470, m(inv["tax"]))],
                 [(330, L["total"]), (470, f"{m(inv['total'])} {cur}")]]
    elif inv["layout"] == "modern":
        rows += [[(50, L["title"]), (350, inv["seller"])], [(350, addr)], [],
                 [(50, L["number"]), (200, inv["number"])], [(50, L["date"]), (200, d)], [],
                 [(50, L["desc"]), (330, L["qty"]), (470, L["amount"])]]
        for desc, q, p in inv["lines"]:
            extra = f" ({L['serial']} {inv['serial']})" if desc.startswith(inv["brand"]) else ""
            rows.append([(50, desc + extra), (330, str(q)), (470, f"{m(q * p)} {sym}")])
        rows += [[], [(330, L["subtotal"]), (470, f"{m(inv['subtotal'])} {sym}")],
                 [(330, L["tax"].format(rate=inv["tax_rate"])), (470, f"{m(inv['tax'])} {sym}")],
                 [(330, L["total"]), (470, f"{m(inv['total'])} {sym}")], [], [(50, f"{cur}")]]
    elif inv["layout"] == "receipt":
        rows += [[(150, inv["seller"])], [(150, addr)], [(150, L["title"])], [(150, f"{L['number']} {inv['number']}")],
                 [(150, f"{L['date']} {d}")], []]
        for desc, q, p in inv["lines"]:
            rows.append([(150, desc)])
            if desc.startswith(inv["brand"]):
                rows.append([(150, f"{L['serial']}: {inv['serial']}")])
            rows.append([(170, f"{q} x {m(p)}"), (400, m(q * p))])
        rows += [[], [(150, L["subtotal"]), (400, m(inv["subtotal"]))],
                 [(150, L["tax"].format(rate=inv["tax_rate"])), (400, m(inv["tax"]))],
                 [(150, f"{L['total']} {cur}"), (400, m(inv["total"]))]]
    else:  # compact
        rows += [[(50, f"{inv['seller']} - {addr}")], [],
                 [(50, f"{L['title']}   {L['number']}: {inv['number']}   {L['date']}: {d}")], [],
                 [(50, L["desc"]), (330, L["qty"]), (470, f"{L['amount']} ({cur})")]]
        for desc, q, p in inv["lines"]:
            rows.append([(50, desc), (330, str(q)), (470, m(q * p))])
        rows += [[(50, f"{L['serial']}: {inv['serial']}")], [],
                 [(330, L["subtotal"]), (470, m(inv["subtotal"]))],
                 [(330, L["tax"].format(rate=inv["tax_rate"])), (470, m(inv["tax"]))],
                 [(330, L["total"]), (470, m(inv["total"]))]]
    return rows


# ---- PDF writing (by hand: text layer with Helvetica / WinAnsiEncoding, optional attachment)

def pdf_string(s: str) -> bytes:
    b = s.encode("cp1252")
    return b"(" + b.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def write_pdf(objects, root=1, info=None) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"", compress=True) -> bytes:
    if compress:
        data = zlib.compress(data)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def digital_pdf(inv, xml: bytes = None) -> bytes:
    ops = []
    y = 800
    for row in text_rows(inv):
        for x, text in row:
            size = 14 if text in (LABELS[inv["lang"]]["title"],) else 10
            ops.append(b"BT /F1 %d Tf 1 0 0 1 %d %d Tm %s Tj ET" % (size, x, y, pdf_string(text)))
        y -= 16
    content = b"\n".join(ops)
    objs = [
        None,  # catalog, filled below
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        stream(content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    if xml is None:
        objs[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    else:
        # Factur-X: the XML as an embedded file named factur-x.xml, listed in the EmbeddedFiles
        # name tree and in the catalog's associated files (/AF), relationship Data.
        objs.append(stream(xml, b" /Type /EmbeddedFile /Subtype /text#2Fxml /Params << /Size %d >>" % len(xml)))  # 6
        objs.append(b"<< /Type /Filespec /F (factur-x.xml) /UF (factur-x.xml) /AFRelationship /Data "
                    b"/Desc (Factur-X invoice) /EF << /F 6 0 R /UF 6 0 R >> >>")  # 7
        objs[0] = b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(factur-x.xml) 7 0 R] >> >> /AF [7 0 R] >>"
    return write_pdf(objs)


def cii_xml(inv) -> bytes:
    """A Factur-X / ZUGFeRD (EN 16931 profile) CrossIndustryInvoice for the invoice."""
    items = []
    for n, (desc, q, p) in enumerate(inv["lines"], 1):
        name = desc + (f" S/N {inv['serial']}" if desc.startswith(inv["brand"]) else "")
        items.append(f"""  <ram:IncludedSupplyChainTradeLineItem>
   <ram:AssociatedDocumentLineDocument><ram:LineID>{n}</ram:LineID></ram:AssociatedDocumentLineDocument>
   <ram:SpecifiedTradeProduct><ram:Name>{xml_escape(name)}</ram:Name></ram:SpecifiedTradeProduct>
   <ram:SpecifiedLineTradeAgreement><ram:NetPriceProductTradePrice><ram:ChargeAmount>{p}</ram:ChargeAmount></ram:NetPriceProductTradePrice></ram:SpecifiedLineTradeAgreement>
   <ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode="C62">{q}</ram:BilledQuantity></ram:SpecifiedLineTradeDelivery>
   <ram:SpecifiedLineTradeSettlement><ram:SpecifiedTradeSettlementLineMonetarySummation><ram:LineTotalAmount>{(q * p).quantize(CENT)}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation></ram:SpecifiedLineTradeSettlement>
  </ram:IncludedSupplyChainTradeLineItem>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100" xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
 <rsm:ExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:cen.eu:en16931:2017</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter></rsm:ExchangedDocumentContext>
 <rsm:ExchangedDocument>
  <ram:ID>{inv['number']}</ram:ID>
  <ram:TypeCode>380</ram:TypeCode>
  <ram:IssueDateTime><udt:DateTimeString format="102">{inv['date'].strftime('%Y%m%d')}</udt:DateTimeString></ram:IssueDateTime>
 </rsm:ExchangedDocument>
 <rsm:SupplyChainTradeTransaction>
{chr(10).join(items)}
  <ram:ApplicableHeaderTradeAgreement>
   <ram:SellerTradeParty><ram:Name>{xml_escape(inv['seller'])}</ram:Name></ram:SellerTradeParty>
   <ram:BuyerTradeParty><ram:Name>Jane Doe</ram:Name></ram:BuyerTradeParty>
  </ram:ApplicableHeaderTradeAgreement>
  <ram:ApplicableHeaderTradeDelivery/>
  <ram:ApplicableHeaderTradeSettlement>
   <ram:InvoiceCurrencyCode>{inv['currency']}</ram:InvoiceCurrencyCode>
   <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
    <ram:LineTotalAmount>{inv['subtotal']}</ram:LineTotalAmount>
    <ram:TaxBasisTotalAmount>{inv['subtotal']}</ram:TaxBasisTotalAmount>
    <ram:TaxTotalAmount currencyID="{inv['currency']}">{inv['tax']}</ram:TaxTotalAmount>
    <ram:GrandTotalAmount>{inv['total']}</ram:GrandTotalAmount>
    <ram:DuePayableAmount>{inv['total']}</ram:DuePayableAmount>
   </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
  </ram:ApplicableHeaderTradeSettlement>
 </rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>
""".encode()


def xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- Raster rendering (scans, photos, PNG)

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
# One typeface per layout, as real senders differ: receipts come from thermal printers in a
# monospaced face, some letters are set in a serif.
FONTS = {"classic": "DejaVuSans.ttf", "modern": "DejaVuSans.ttf", "receipt": "DejaVuSansMono.ttf", "compact": "DejaVuSerif.ttf"}


def font(layout: str, size: int):
    return ImageFont.truetype(os.path.join(FONT_DIR, FONTS[layout]), size)


def render(inv, scale=2.5) -> Image.Image:
    """The page at 180 dpi (595 pt * 2.5 = 1488 px wide)."""
    w, h = int(595 * scale), int(842 * scale)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    font_ = font(inv["layout"], int(9 * scale))
    big = font(inv["layout"], int(14 * scale))
    y = 42
    for row in text_rows(inv):
        for x, text in row:
            f = big if text == LABELS[inv["lang"]]["title"] else font_
            draw.text((x * scale, y * scale), text, fill=0, font=f)
        y += 16
    return img


def photo(img: Image.Image, rnd: random.Random) -> bytes:
    angle = rnd.uniform(-1.5, 1.5)
    img = img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=235)
    img = img.filter(ImageFilter.GaussianBlur(radius=0.6))
    px = img.load()
    for _ in range(img.size[0] * img.size[1] // 60):
        x, y = rnd.randrange(img.size[0]), rnd.randrange(img.size[1])
        px[x, y] = max(0, min(255, px[x, y] + rnd.randint(-70, 70)))
    # Uneven lighting: a soft gradient, like a phone photo under a lamp.
    grad = Image.linear_gradient("L").resize(img.size).point(lambda v: 255 - v // 8)
    img = Image.composite(img, Image.new("L", img.size, 0), grad)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=72)
    return buf.getvalue()


def scanned_pdf(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=80)
    jpg = buf.getvalue()
    w, h = img.size
    content = b"q 595 0 0 842 0 0 cm /Im0 Do Q"
    return write_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /XObject << /Im0 5 0 R >> >> >>",
        stream(content),
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n" % (w, h, len(jpg)) + jpg + b"\nendstream",
    ])


def truth(inv):
    return {
        "file": None, "kind": inv["kind"], "layout": inv["layout"], "language": inv["lang"],
        "registration": {"brand": inv["brand"], "model": inv["model"], "serialNumber": inv["serial"],
                         "purchaseDate": inv["date"].isoformat()},
        "fields": {
            "invoiceNumber": inv["number"], "invoiceDate": inv["date"].isoformat(), "seller": inv["seller"],
            "currency": inv["currency"], "subtotal": str(inv["subtotal"]), "tax": str(inv["tax"]), "total": str(inv["total"]),
            "lineItems": [{"description": d, "quantity": q, "amount": str((q * p).quantize(CENT))} for d, q, p in inv["lines"]],
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "handlers", "tests", "corpus"))
    ap.add_argument("--count", type=int, default=25)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = []
    for i in range(args.count):
        inv = make_invoice(i)
        rnd = random.Random(5000 + i)
        kind = inv["kind"]
        if kind == "digital":
            data, ext = digital_pdf(inv), "pdf"
        elif kind == "facturx":
            data, ext = digital_pdf(inv, cii_xml(inv)), "pdf"
        elif kind == "scanned":
            data, ext = scanned_pdf(render(inv)), "pdf"
        elif kind == "photo":
            data, ext = photo(render(inv), rnd), "jpg"
        else:
            buf = io.BytesIO()
            render(inv).save(buf, "PNG", optimize=True)
            data, ext = buf.getvalue(), "png"
        name = f"{inv['id']}.{ext}"
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
        t = truth(inv)
        t["file"] = name
        manifest.append(t)
    with open(os.path.join(args.out, "ground-truth.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/invoice-corpus/generate.py", "invoices": manifest}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(manifest)} invoices to {args.out}")


if __name__ == "__main__":
    main()
