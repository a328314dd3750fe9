// Parse AsyncAPI documents with the AsyncAPI Initiative's own parser and say whether each is valid.
//
//   node check.mjs FILE...
//
// Prints one JSON object per file on stdout: {"file", "valid", "version", "errors": [...],
// "warnings": [...]}, each diagnostic as {"code", "message", "path"}; errors also go to stderr, one
// a line. Exit 0 when every document parses with no error, 1 when one has errors, 2 when a file
// cannot be read (or none is named).
import { readFileSync } from "node:fs";
import parserModule from "@asyncapi/parser";

const { Parser, DiagnosticSeverity } = parserModule;

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node check.mjs FILE...");
  process.exit(2);
}

const shown = (d) => ({ code: String(d.code), message: d.message, path: (d.path || []).join("/") });
const parser = new Parser();
let invalid = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    console.error(`cannot read ${file}: ${err.message}`);
    process.exit(2);
  }
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(shown);
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(shown);
  const valid = document !== undefined && errors.length === 0;
  const version = document ? document.version() : null;
  console.log(JSON.stringify({ file, valid, version, errors, warnings }));
  for (const e of errors) {
    console.error(`${file}: error ${e.code} at /${e.path}: ${e.message}`);
  }
  if (!valid) {
    invalid += 1;
  }
}
process.exit(invalid ? 1 : 0);
