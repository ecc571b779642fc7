"""The whole journey through a client generated from docs/openapi.json by openapi-python-client.

No request is written by hand: every call is a generated `sync_detailed(...)`.
Usage: python journey.py <generated package's parent dir>
Env: WARRANTY_BASE_URL (the API's base, `…/api`), WARRANTY_TOKEN, WARRANTY_INVOICE (a PDF file), WARRANTY_INTAKE_INVOICE (a PDF
listing an HP laptop with its serial number).
"""

import datetime
import hashlib
import io
import os
import sys
import time

sys.path.insert(0, sys.argv[1])

from warranty_api import AuthenticatedClient  # noqa: E402
from warranty_api.api.intakes import create_intake, get_intake  # noqa: E402
from warranty_api.api.invoices import download_invoice  # noqa: E402
from warranty_api.api.products import edit_product, get_product, list_products, register_product  # noqa: E402
from warranty_api.api.service_requests import raise_service_request  # noqa: E402
from warranty_api.models import (  # noqa: E402
    Intake,
    IntakeForm,
    Problem,
    ProductPatch,
    RegistrationForm,
    ServiceRequestInput,
    WarrantyCard,
)
from warranty_api.types import UNSET, File  # noqa: E402


def check(cond, what):
    if not cond:
        raise SystemExit(f"journey failed: {what}")


client = AuthenticatedClient(base_url=os.environ["WARRANTY_BASE_URL"], token=os.environ["WARRANTY_TOKEN"])
pdf = open(os.environ["WARRANTY_INVOICE"], "rb").read()
sha256 = hashlib.sha256(pdf).hexdigest()


def form(serial):
    return RegistrationForm(
        brand="Apple",
        model="MacBook Air 13",
        serial_number=serial,
        purchase_date=datetime.date(2026, 3, 14),
        invoice=File(payload=io.BytesIO(pdf), file_name="invoice.pdf", mime_type="application/pdf"),
    )


# Register three products with the PDF.
cards = []
etag = None
for serial in ["C02PY0000001", "C02PY0000002", "C02PY0000003"]:
    resp = register_product.sync_detailed(client=client, body=form(serial))
    check(resp.status_code == 201 and isinstance(resp.parsed, WarrantyCard), f"register {serial}: {resp.status_code} {resp.content!r}")
    check(resp.parsed.invoice.sha256 == sha256, "the stored invoice's SHA-256 is the file's")
    cards.append(resp.parsed)
    etag = resp.headers.get("etag")
check(etag == '"r1"', f"the 201 carries the card's ETag ({etag})")
last = cards[-1]

# List, a page at a time.
seen, token, pages = set(), UNSET, 0
while True:
    page = list_products.sync(client=client, limit=2, continuation_token=token)
    check(page is not None and not isinstance(page, Problem), f"list: {page}")
    seen.update(c.id for c in page.items)
    pages += 1
    if not page.continuation_token:
        break
    token = page.continuation_token
check(pages == 2 and all(c.id in seen for c in cards), f"paging saw {len(seen)} products in {pages} pages")

# Get one.
got = get_product.sync(last.id, client=client)
check(isinstance(got, WarrantyCard) and got.id == last.id and got.serial_number == "C02PY0000003", f"get: {got}")

# Edit with the ETag of the 201: no GET needed first.
resp = edit_product.sync_detailed(last.id, client=client, body=ProductPatch(notes="Gift for Sam"), if_match=etag)
check(resp.status_code == 200 and resp.parsed.notes == "Gift for Sam" and resp.parsed.revision == 2, f"patch: {resp.status_code} {resp.content!r}")
check(resp.headers.get("etag") == '"r2"', "the edit answers the new ETag")

# Raise a service request.
resp = raise_service_request.sync_detailed(
    last.id,
    client=client,
    body=ServiceRequestInput(description="The screen flickers after waking from sleep.", preferred_contact="email"),
)
check(resp.status_code == 201 and resp.parsed.in_warranty is True, f"service request: {resp.status_code} {resp.content!r}")

# Download the invoice: the same bytes.
downloaded = download_invoice.sync(last.id, client=client)
check(isinstance(downloaded, File) and downloaded.payload.read() == pdf, "downloaded bytes equal the uploaded file")

# A refused registration, its code read through the generated error type.
resp = register_product.sync_detailed(client=client, body=form("NOT A SERIAL!"))
check(resp.status_code == 422 and isinstance(resp.parsed, Problem), f"refused: {resp.status_code} {resp.content!r}")
check(resp.parsed.code == "serial_format_invalid", f"problem code {resp.parsed.code}")
check(resp.parsed.errors[0].field == "serialNumber", "the problem names the field")

# Values the document does not list yet still parse.
future = last.to_dict()
future["warrantyStatus"] = "suspended"
future["ocr"]["status"] = "awaiting_human"
future["ocr"]["engine"] = "vision-2030"
parsed = WarrantyCard.from_dict(future)
check(parsed.ocr.status == "awaiting_human" and parsed.warranty_status == "suspended", "an unknown OCR state parses")
problem = Problem.from_dict({**resp.parsed.to_dict(), "code": "a_code_from_the_future"})
check(problem.code == "a_code_from_the_future", "an unknown problem code parses")

# Invoice first: upload the invoice alone, wait for its reading, register what it proposes.
laptop = open(os.environ["WARRANTY_INTAKE_INVOICE"], "rb").read()
body = IntakeForm(invoice=File(payload=io.BytesIO(laptop), file_name="laptop.pdf", mime_type="application/pdf"))
resp = create_intake.sync_detailed(client=client, body=body)
check(resp.status_code == 202 and isinstance(resp.parsed, Intake), f"intake: {resp.status_code} {resp.content!r}")
intake = resp.parsed
deadline = time.monotonic() + 30
while intake.status == "reading":
    check(time.monotonic() < deadline, "the intake was read")
    time.sleep(0.1)
    intake = get_intake.sync(intake.id, client=client)
    check(isinstance(intake, Intake), f"get intake: {intake}")
check(intake.status == "ready", f"intake status {intake.status}")
proposed = intake.proposals.products[0]
check((proposed.brand.value, proposed.serial_number.value) == ("HP", "5CD1234XYZ"), f"proposals: {intake.proposals}")
check(proposed.serial_number.at.page == 1, "the serial says where it was read")
confirmed = RegistrationForm(
    brand=proposed.brand.value,
    model=proposed.model.value,
    serial_number=proposed.serial_number.value,
    purchase_date=intake.proposals.purchase_date.value,
    intake_id=intake.id,
)
resp = register_product.sync_detailed(client=client, body=confirmed)
check(resp.status_code == 201 and isinstance(resp.parsed, WarrantyCard), f"register from intake: {resp.status_code} {resp.content!r}")
check(resp.parsed.intake_id == intake.id and resp.parsed.ocr.status == "completed", f"card from intake: {resp.parsed}")
resp = register_product.sync_detailed(client=client, body=confirmed)
check(resp.status_code == 410 and isinstance(resp.parsed, Problem) and resp.parsed.code == "intake_used", f"used: {resp.status_code}")

print(f"python journey: {len(cards)} registered, {pages} pages, edit, service request, download, refusal, intake: ok")
