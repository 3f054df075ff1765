import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../test/helpers/paths.js';
import { RELAY_ERRORS, isRelayErrorCode } from './errors.js';

/** The rows of docs/API.md's "Error codes" table: `| 409 | \`duplicate\` | … |`. */
function documentedErrors(): [string, number][] {
  const text = readFileSync(path.join(repoRoot, 'docs', 'API.md'), 'utf8');
  const section = text.split(/^### Error codes$/m)[1];
  assert.ok(section !== undefined, 'docs/API.md has no "### Error codes" section');
  const table = section.split(/\n\n/)[1] ?? '';
  const rows = [...table.matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[2]!, Number(m[1])] as [string, number]);
  assert.ok(rows.length > 0, 'the error table has no rows');
  return rows;
}

test('docs/API.md lists exactly the relay error codes, each with its status', () => {
  const documented = documentedErrors();
  const codes = documented.map(([code]) => code);
  assert.equal(new Set(codes).size, codes.length, `a code is listed twice: ${codes.join(', ')}`);
  assert.deepEqual(Object.fromEntries(documented.sort()), Object.fromEntries(Object.entries(RELAY_ERRORS).sort()));
});

test('isRelayErrorCode accepts exactly the table', () => {
  for (const code of Object.keys(RELAY_ERRORS)) assert.ok(isRelayErrorCode(code), code);
  for (const other of ['http_500', 'network', 'toString', '__proto__', '', 42, undefined]) assert.equal(isRelayErrorCode(other), false, String(other));
});
