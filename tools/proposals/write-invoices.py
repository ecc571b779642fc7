#!/usr/bin/env python3
"""Writes invoices for the catalogue's brands, with their truth, to measure invoice-first proposals.

Usage: tools/proposals/write-invoices.py OUT_DIR [--count N] [--seed S] [--photos]

Each invoice is a one-page PDF with a text layer (Helvetica, WinAnsi), laid out one of several
ways a shop's invoice is: a table with description, quantity, unit price and amount columns, or
one line per item with the quantity written into it; German, English or French labels and number
and date forms; one to three products of the catalogue (handlers/data/brands.json), sometimes
named by an alias ("Hewlett-Packard"), each with a serial number that fits the brand's rule
printed on its line, below it, or two lines below (after an EAN line), or not at all; and
accessories, services and a letterhead that names a brand without being a product. The truth,
one JSON object per file in OUT_DIR/proposals-truth.jsonl: `file`, `date`, `products` (the
catalogue products in the invoice's order: `brand` in the catalogue's spelling, `model`,
`serial` or null).

With --photos, each PDF is also rendered (pdftoppm, 150 dpi) and degraded like a phone photo
(ImageMagick: a small rotation, blur, noise, JPEG quality 70) as `NAME.jpg`, with the same truth.
Nothing here reads the service's code: the layouts are written from what invoices look like.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BRANDS = os.path.join(HERE, "..", "..", "handlers", "data", "brands.json")

# (brand, models) — real product names of each catalogue brand.
MODELS = {
    "Apple": ["MacBook Air 13", "MacBook Pro 14", "iPad Air 11", "iPhone 15 Pro", "Mac mini M2"],
    "Samsung": ["Galaxy S24", "Galaxy Tab S9", "QE55Q80C QLED", "Bespoke Jet AI"],
    "Sony": ["WH-1000XM5", "PlayStation 5 Slim", "Bravia XR-65A80L", "Alpha 7 IV"],
    "LG": ["OLED55C3", "Gram 16Z90R", "UltraGear 27GR95QE"],
    "Dell": ["XPS 13 9340", "Latitude 5440", "Precision 3581", "UltraSharp U2723QE"],
    "HP": ["EliteBook 840 G9", "LaserJet Pro M404dn", "ZBook Firefly 14", "Envy x360 15"],
    "Lenovo": ["ThinkPad T14 Gen 4", "Yoga Slim 7", "IdeaPad 5 Pro", "Legion 5"],
    "Nintendo": ["Switch OLED", "Switch Lite"],
    "Dyson": ["V15 Detect", "Airwrap Complete", "Purifier Cool TP07"],
    "Canon": ["EOS R6 Mark II", "PIXMA G650", "EOS R50"],
    "Nikon": ["Z6 II", "Z50", "Coolpix P950"],
    "Microsoft": ["Surface Pro 9", "Surface Laptop 5", "Xbox Series X"],
    "GoPro": ["HERO12 Black", "HERO11 Black Mini"],
    "Miele": ["WWD320 WCS", "G 7110 SCi", "Triflex HX2"],
    "Garmin": ["Fenix 7", "Forerunner 265", "Edge 840"],
}

ACCESSORIES = {
    "en": ["USB-C cable 2 m", "Screen protector", "Shipping", "Extended warranty 2 years", "Carry case"],
    "de": ["USB-C Kabel 2 m", "Displayschutzfolie", "Versandkosten", "Garantieverlängerung 2 Jahre", "Tasche"],
    "fr": ["Câble USB-C 2 m", "Protection d'écran", "Frais de port", "Extension de garantie 2 ans", "Housse"],
}

LABELS = {
    "en": {"invoice": "INVOICE", "no": "Invoice no.", "date": "Invoice date", "desc": "Description", "qty": "Qty",
           "unit": "Unit price", "amount": "Amount", "total": "Total", "net": "Subtotal", "vat": "VAT 20%",
           "thanks": "Thank you for your purchase!"},
    "de": {"invoice": "RECHNUNG", "no": "Rechnungsnr.", "date": "Rechnungsdatum", "desc": "Beschreibung",
           "qty": "Menge", "unit": "Einzelpreis", "amount": "Betrag", "total": "Gesamtbetrag", "net": "Netto",
           "vat": "MwSt. 19%", "thanks": "Vielen Dank für Ihren Einkauf!"},
    "fr": {"invoice": "FACTURE", "no": "Facture n°", "date": "Date de facture", "desc": "Désignation",
           "qty": "Qté", "unit": "Prix unitaire", "amount": "Montant", "total": "Total TTC", "net": "Total HT",
           "vat": "TVA 20%", "thanks": "Merci de votre achat !"},
}

SERIAL_LABELS = {
    "en": ["S/N:", "Serial No.", "Serial number:", "SN:", "Serial #"],
    "de": ["Seriennummer:", "Serien-Nr.", "S/N:", "SN:"],
    "fr": ["N° de série :", "N° de série:", "S/N :", "SN:"],
}

SELLERS = {
    "en": ["TechWorld Ltd", "Currys Retail Ltd", "Gadget Corner LLC"],
    "de": ["Elektro Schmidt GmbH", "MediaWelt Handels GmbH", "Technik Krause e.K."],
    "fr": ["Boulanger SA", "Darty Services SAS", "Informatique Dupont SARL"],
}

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
}


def serial_for(pattern, rng):
    """A random string of the simple patterns the catalogue uses: literals and [class]{m,n}."""
    body = pattern.strip("^$")
    out, i = [], 0
    while i < len(body):
        if body[i] != "[":
            out.append(body[i])
            i += 1
            continue
        end = body.index("]", i)
        cls = body[i + 1:end]
        i = end + 1
        lo = hi = 1
        q = re.match(r"\{(\d+)(?:,(\d+))?\}", body[i:])
        if q:
            lo, hi = int(q.group(1)), int(q.group(2) or q.group(1))
            i += q.end()
        chars = "".join("".join(chr(c) for c in range(ord(a), ord(b) + 1)) for a, b in re.findall(r"(.)-(.)", cls))
        out.append("".join(rng.choice(chars) for _ in range(rng.randint(lo, hi))))
    s = "".join(out)
    if not re.fullmatch(body, s):
        raise SystemExit(f"serial {s} does not fit {pattern}")
    return s


def rule_for(catalogue, brand, model):
    b = next(x for x in catalogue["brands"] if x["name"] == brand)
    for o in b.get("modelOverrides", []):
        if model.lower().startswith(o["modelPrefix"].lower()) and o.get("serialPattern"):
            return o["serialPattern"]
    return b["serialPattern"]


def money(cents, lang, rng):
    whole, frac = divmod(cents, 100)
    grouped = f"{whole:,}"
    if lang == "en":
        text = f"{grouped}.{frac:02d}"
    else:
        text = grouped.replace(",", ".") + f",{frac:02d}"
        if lang == "fr" and rng.random() < 0.5:
            text = text.replace(".", " ")
    return text


def date_text(y, m, d, lang, rng):
    forms = {
        "en": [f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d} {MONTHS['en'][m - 1]} {y}"],
        "de": [f"{d:02d}.{m:02d}.{y}", f"{y}-{m:02d}-{d:02d}", f"{d}. {MONTHS['de'][m - 1]} {y}"],
        "fr": [f"{d:02d}/{m:02d}/{y}", f"{d} {MONTHS['fr'][m - 1]} {y}", f"{y}-{m:02d}-{d:02d}"],
    }
    return rng.choice(forms[lang])


def pdf_bytes(items):
    """A one-page A4 PDF: items are (x, y-from-top, size, text)."""
    ops = []
    for x, y, size, text in items:
        escaped = text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        ops.append(b"BT /F1 %d Tf %d %d Td (" % (size, x, 842 - y) + escaped + b") Tj ET")
    content = b"\n".join(ops)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objects):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for o in offsets:
        pdf += b"%010d 00000 n \n" % o
    pdf += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(pdf)


def invoice(n, catalogue, rng):
    lang = rng.choice(["en", "de", "fr"])
    L = LABELS[lang]
    currency = rng.choice(["€", "EUR"]) if lang != "en" else rng.choice(["€", "EUR", "£", "GBP"])
    y, m, d = 2026, rng.randint(1, 11), rng.randint(1, 28)
    seller = rng.choice(SELLERS[lang])
    items = []
    top = 50

    def line(x, text, size=10):
        items.append((x, top, size, text))

    line(50, seller, 14)
    top += 16
    line(50, rng.choice(["Hauptstraße 12, 10115 Berlin", "12 High Street, London EC1A 1BB",
                         "25 rue de la Paix, 75002 Paris"]))
    if rng.random() < 0.25:
        # A letterhead that names a brand without selling it.
        top += 14
        line(50, rng.choice(["Apple Premium Reseller", "Authorised Samsung Partner", "Sony Center"]))
    top += 30
    line(50, L["invoice"], 16)
    top += 20
    line(50, f"{L['no']} {rng.randint(10000, 99999)}")
    line(330, f"{L['date']}: {date_text(y, m, d, lang, rng)}")
    top += 30

    brands = rng.sample(sorted(MODELS), rng.randint(1, 3))
    rows = []
    truth = []
    for brand in brands:
        model = rng.choice(MODELS[brand])
        entry = next(x for x in catalogue["brands"] if x["name"] == brand)
        printed_brand = brand
        if entry.get("aliases") and rng.random() < 0.35:
            printed_brand = rng.choice(entry["aliases"])
        elif rng.random() < 0.2:
            printed_brand = brand.upper()
        serial = serial_for(rule_for(catalogue, brand, model), rng) if rng.random() < 0.85 else None
        price = rng.randint(4900, 249900)
        rows.append(("product", f"{printed_brand} {model}", price, serial))
        truth.append({"brand": brand, "model": model, "serial": serial})
    for _ in range(rng.randint(0, 2)):
        rows.insert(rng.randint(0, len(rows)), ("accessory", rng.choice(ACCESSORIES[lang]), rng.randint(500, 9900),
                                               None))

    table = rng.random() < 0.6
    if table:
        line(50, L["desc"])
        line(330, L["qty"])
        line(390, L["unit"])
        line(480, L["amount"])
        top += 18
    total = 0
    for kind, desc, price, serial in rows:
        qty = 1
        total += price * qty
        amount = money(price, lang, rng)
        placement = rng.choice(["same", "below", "below2"]) if serial else None
        label = rng.choice(SERIAL_LABELS[lang])
        text = desc
        if placement == "same":
            text = f"{desc}, {label} {serial}" if table else f"{desc} {label} {serial}"
        if table:
            line(50, text)
            line(340, str(qty))
            line(390, f"{amount}")
            line(480, f"{amount} {currency}" if rng.random() < 0.5 else amount)
        else:
            line(50, f"{text}  {qty} x {amount} {currency}" if rng.random() < 0.5 else f"{text}  {amount} {currency}")
        top += 14
        if placement == "below":
            line(60, f"{label} {serial}", 9)
            top += 12
        elif placement == "below2":
            line(60, f"EAN {rng.randint(10 ** 12, 10 ** 13 - 1)}", 9)
            top += 12
            line(60, f"{label} {serial}", 9)
            top += 12
    top += 16
    vat = total // 6
    line(330, f"{L['net']}")
    line(480, money(total - vat, lang, rng))
    top += 14
    line(330, L["vat"])
    line(480, money(vat, lang, rng))
    top += 14
    line(330, L["total"], 11)
    line(480, f"{money(total, lang, rng)} {currency}", 11)
    top += 40
    line(50, L["thanks"], 9)
    return pdf_bytes(items), {"date": f"{y}-{m:02d}-{d:02d}", "products": truth, "language": lang,
                              "layout": "table" if table else "lines"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--photos", action="store_true")
    args = ap.parse_args()
    catalogue = json.load(open(BRANDS, encoding="utf-8"))
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "proposals-truth.jsonl"), "w", encoding="utf-8") as truth_file:
        for n in range(args.count):
            pdf, truth = invoice(n, catalogue, rng)
            name = f"written-{n:03d}.pdf"
            with open(os.path.join(args.out, name), "wb") as f:
                f.write(pdf)
            truth_file.write(json.dumps({"file": name, "kind": "written-pdf", **truth}, ensure_ascii=False) + "\n")
            if args.photos:
                stem = os.path.join(args.out, f"written-{n:03d}")
                subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", stem + ".pdf", stem], check=True)
                angle = rng.uniform(-1.5, 1.5)
                subprocess.run(["convert", stem + ".png", "-background", "white", "-rotate", f"{angle:.2f}",
                                "-blur", "0x0.6", "-attenuate", "0.4", "+noise", "Gaussian", "-quality", "70",
                                stem + ".jpg"], check=True)
                os.remove(stem + ".png")
                truth_file.write(json.dumps({"file": f"written-{n:03d}.jpg", "kind": "written-photo", **truth},
                                            ensure_ascii=False) + "\n")
    print(f"wrote {args.count} invoices{' and photos' if args.photos else ''} to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
