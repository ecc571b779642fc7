// Generates TypeScript types for docs/openapi.json with openapi-typescript's Node API, as its
// documentation shows for file uploads: `format: binary` becomes `Blob`, so an app passes the
// file it has. Usage: node generate-ts.mjs <openapi.json> <out.ts>
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const [input, output] = process.argv.slice(2);
const BLOB = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier("Blob"));
const ast = await openapiTS(pathToFileURL(path.resolve(input)), {
  transform(schema) {
    if (schema.format === "binary") return BLOB;
    return undefined;
  },
});
fs.mkdirSync(path.dirname(output), { recursive: true });
fs.writeFileSync(output, astToString(ast));
