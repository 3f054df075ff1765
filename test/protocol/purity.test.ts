/**
 * protocol/ is pure (DESIGN.md): bytes in, bytes out. These checks read the sources: every import
 * is node:crypto, @noble/*, or another protocol/ module, and the only reads of the environment and
 * the clock are the two documented ones (docs/PROTOCOL.md, "Purity").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../helpers/paths.js';

const protocolDir = path.join(repoRoot, 'protocol');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    // Unit tests sit beside the files they test; they are not the product and may read vectors.
    return name.endsWith('.ts') && !name.endsWith('.test.ts') ? [full] : [];
  });
}

const sources = sourceFiles(protocolDir).map((file) => ({ file: path.relative(protocolDir, file), text: readFileSync(file, 'utf8') }));

test('protocol/ imports only node:crypto, @noble/post-quantum, @noble/hashes and protocol/ modules', () => {
  assert.ok(sources.length >= 30, `found ${sources.length} sources`);
  for (const { file, text } of sources) {
    for (const [, spec] of text.matchAll(/\bfrom\s+'([^']+)'|\bimport\s*\(\s*'([^']+)'/g)) {
      if (spec === undefined) continue;
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(path.join(protocolDir, file)), spec);
        assert.ok(target.startsWith(protocolDir + path.sep), `${file} imports ${spec}, outside protocol/`);
      } else {
        assert.match(spec, /^(node:crypto|@noble\/post-quantum\/[\w.-]+|@noble\/hashes\/[\w.-]+)$/, `${file} imports ${spec}`);
      }
    }
    assert.doesNotMatch(text, /\brequire\s*\(/, `${file} uses require()`);
  }
});

test('no timers, no clock and no environment reads except the two documented ones', () => {
  const found: string[] = [];
  for (const { file, text } of sources) {
    for (const m of text.matchAll(/\b(process\.[a-z]+|setTimeout|setInterval|setImmediate|Date\.now|new Date|performance\.now)\b/g)) found.push(`${file}: ${m[1]}`);
  }
  assert.deepEqual(found.sort(), [
    'crypto/provider.ts: process.env', // GHOSTPIPE_CRYPTO: operator override of the provider choice
    'crypto/provider.ts: process.version', // named in the "native unavailable" error message
    'crypto/provider.ts: process.versions',
    'envelope/seal.ts: Date.now', // default createdAt when the caller passes none
  ].sort());
});
