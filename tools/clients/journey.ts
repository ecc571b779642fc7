// The whole journey through a client generated from docs/openapi.json: openapi-typescript types
// (generated/ts/schema.ts, from generate-ts.mjs) driving openapi-fetch. No request is written by
// hand: every call is `client.GET/POST/PATCH(path, typed options)`.
// Env: WARRANTY_BASE_URL (the API's base, `…/api`), WARRANTY_TOKEN, WARRANTY_INVOICE (a PDF file), WARRANTY_INTAKE_INVOICE (a PDF
// listing an HP laptop with its serial number).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/ts/schema.js";

type Card = components["schemas"]["WarrantyCard"];
type Problem = components["schemas"]["Problem"];

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`journey failed: ${what}`);
}

// openapi-fetch sends a FormData body as multipart (the browser or Node sets the boundary) and
// anything else as JSON; an operation whose body holds a file is sent as a form.
function formWhenItHoldsAFile(body: unknown): FormData | string {
  const fields = Object.entries(body as Record<string, unknown>);
  if (!fields.some(([, v]) => v instanceof Blob)) return JSON.stringify(body);
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value instanceof Blob ? value : String(value));
  return form;
}

const baseUrl = process.env.WARRANTY_BASE_URL!;
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${process.env.WARRANTY_TOKEN}` },
  bodySerializer: formWhenItHoldsAFile,
});
const pdf = readFileSync(process.env.WARRANTY_INVOICE!);
const sha256 = createHash("sha256").update(pdf).digest("hex");
const invoice = () => new Blob([pdf], { type: "application/pdf" });

// Register three products with the PDF.
const registered: Card[] = [];
let etag = "";
for (const serial of ["C02TS0000001", "C02TS0000002", "C02TS0000003"]) {
  const { data, error, response } = await client.POST("/products", {
    body: { brand: "Apple", model: "MacBook Air 13", serialNumber: serial, purchaseDate: "2026-03-14", invoice: invoice() },
  });
  check(response.status === 201 && data && !error, `register ${serial}: ${response.status} ${JSON.stringify(error)}`);
  check(data.invoice.sha256 === sha256, "the stored invoice's SHA-256 is the file's");
  registered.push(data);
  etag = response.headers.get("ETag") ?? "";
}
check(etag === '"r1"', `the 201 carries the card's ETag (${etag})`);
const last = registered[registered.length - 1];
check(last, "three cards");

// List, a page at a time.
const seen = new Set<string>();
let token: string | null | undefined = undefined;
let pages = 0;
do {
  const page: { data?: components["schemas"]["ProductPage"]; error?: Problem } = await client.GET("/products", {
    params: { query: { limit: 2, continuationToken: token ?? undefined } },
  });
  const data = page.data;
  check(data && !page.error, "list");
  for (const card of data.items) seen.add(card.id);
  token = data.continuationToken;
  pages += 1;
} while (token);
check(pages === 2 && registered.every((c) => seen.has(c.id)), `paging saw ${seen.size} products in ${pages} pages`);

// Get one.
const got = await client.GET("/products/{id}", { params: { path: { id: last.id } } });
check(got.data?.id === last.id && got.data.serialNumber === "C02TS0000003", "get");

// Edit with the ETag of the 201: no GET needed first.
const edited = await client.PATCH("/products/{id}", {
  params: { path: { id: last.id }, header: { "If-Match": etag } },
  body: { notes: "Gift for Sam" },
});
check(edited.response.status === 200 && edited.data?.notes === "Gift for Sam" && edited.data.revision === 2, `patch: ${edited.response.status}`);
check(edited.response.headers.get("ETag") === '"r2"', "the edit answers the new ETag");

// Raise a service request.
const raised = await client.POST("/products/{id}/service-requests", {
  params: { path: { id: last.id } },
  body: { description: "The screen flickers after waking from sleep.", preferredContact: "email" },
});
check(raised.response.status === 201 && raised.data?.inWarranty === true, `service request: ${raised.response.status}`);

// Download the invoice: the same bytes.
const download = await client.GET("/products/{id}/invoice", { params: { path: { id: last.id } }, parseAs: "arrayBuffer" });
check(download.data && Buffer.from(download.data).equals(pdf), "downloaded bytes equal the uploaded file");

// A refused registration, its code read through the generated error type.
const refused = await client.POST("/products", {
  body: { brand: "Apple", model: "MacBook Air 13", serialNumber: "NOT A SERIAL!", purchaseDate: "2026-03-14", invoice: invoice() },
});
const problem: Problem | undefined = refused.error;
check(refused.response.status === 422 && problem?.code === "serial_format_invalid", `refused: ${JSON.stringify(problem)}`);
check(problem.errors?.[0]?.field === "serialNumber", "the problem names the field");

// Values the document does not list yet are still a card and a problem to the generated types.
const future: Card = { ...last, warrantyStatus: "suspended", ocr: { ...last.ocr, status: "awaiting_human", engine: "vision-2030" } };
const futureProblem: Problem = { ...problem, code: "a_code_from_the_future" };
check(future.ocr.status === "awaiting_human" && futureProblem.code === "a_code_from_the_future", "open enumerations");

// Invoice first: upload the invoice alone, wait for its reading, register what it proposes.
type Intake = components["schemas"]["Intake"];
const laptop = readFileSync(process.env.WARRANTY_INTAKE_INVOICE!);
const uploaded = await client.POST("/intakes", { body: { invoice: new Blob([laptop], { type: "application/pdf" }) } });
check(uploaded.response.status === 202 && uploaded.data, `intake: ${uploaded.response.status}`);
let intake: Intake = uploaded.data;
const deadline = Date.now() + 30_000;
while (intake.status === "reading") {
  check(Date.now() < deadline, "the intake was read");
  await new Promise((r) => setTimeout(r, 100));
  const polled = await client.GET("/intakes/{id}", { params: { path: { id: intake.id } } });
  check(polled.data, `get intake: ${polled.response.status}`);
  intake = polled.data;
}
check(intake.status === "ready" && intake.proposals, `intake status ${intake.status}`);
const proposed = intake.proposals.products[0];
check(proposed?.brand?.value === "HP" && proposed.serialNumber?.value === "5CD1234XYZ", `proposals: ${JSON.stringify(intake.proposals)}`);
check(proposed.serialNumber.at?.page === 1, "the serial says where it was read");
const confirmed = {
  brand: proposed.brand.value,
  model: proposed.model?.value ?? "",
  serialNumber: proposed.serialNumber.value,
  purchaseDate: intake.proposals.purchaseDate?.value ?? "",
  intakeId: intake.id,
};
// No file in the body: sent as a form all the same (the operation takes multipart).
const asForm = (body: unknown) => {
  const form = new FormData();
  for (const [name, value] of Object.entries(body as Record<string, string>)) form.append(name, value);
  return form;
};
const fromIntake = await client.POST("/products", { body: confirmed, bodySerializer: asForm });
check(fromIntake.response.status === 201 && fromIntake.data?.intakeId === intake.id, `register from intake: ${fromIntake.response.status}`);
check(fromIntake.data.ocr.status === "completed", `card from intake: ${JSON.stringify(fromIntake.data.ocr)}`);
const again = await client.POST("/products", { body: confirmed, bodySerializer: asForm });
check(again.response.status === 410 && again.error?.code === "intake_used", `used: ${again.response.status}`);

console.log(`typescript journey: ${registered.length} registered, ${pages} pages, edit, service request, download, refusal, intake: ok`);
