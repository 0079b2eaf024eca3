// Validates an AsyncAPI document with the official parser (which also
// resolves every $ref): exits non-zero on any error-level diagnostic.
// Usage: node tests/asyncapi/validate.mjs docs/asyncapi.yaml
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}
const severities = ['error', 'warning', 'information', 'hint'];
const { document, diagnostics } = await new Parser().parse(readFileSync(file, 'utf8'));
for (const diagnostic of diagnostics) {
  const where = diagnostic.path.join('.') || '(document)';
  console.log(`${severities[diagnostic.severity]} ${diagnostic.code} at ${where}: ${diagnostic.message}`);
}
const errors = diagnostics.filter((diagnostic) => diagnostic.severity === 0);
if (!document || errors.length > 0) {
  console.error(`${file}: not a valid AsyncAPI document (${errors.length} errors)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.operations().length} operations`);
