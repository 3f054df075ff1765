/** protocol/firmware/signatures.ts: k-of-n counting, and why a count falls short. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey } from '../keys.js';
import { FirmwareError } from './errors.js';
import { MAX_SIGNATURES, requireThreshold, signWith, signaturesFromJson, signaturesToJson } from './signatures.js';

const [a, b, c, stranger] = [0, 1, 2, 3].map(() => generatePrivateKey('ML-DSA-65'));
const keys = [a!.publicKey, b!.publicKey, c!.publicKey];
const ctx = new TextEncoder().encode('ghostpipe/test/v1');
const message = new TextEncoder().encode('release 7');

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FirmwareError, String(err));
    return { code: err.code, message: err.message };
  }
  return { code: 'no error', message: '' };
}

test('2 of 3: two distinct root keys pass; one key twice counts once', () => {
  const sa = signWith(a!.seed, message, ctx);
  const sb = signWith(b!.seed, message, ctx);
  assert.equal(requireThreshold('m', message, [sa, sb], keys, 2, ctx).length, 2);
  const twice = refusal(() => requireThreshold('m', message, [sa, sa], keys, 2, ctx));
  assert.equal(twice.code, 'below_threshold');
  assert.match(twice.message, /1 valid signatures by root keys, 2 required/);
});

test('a signature by a key outside the root counts for nothing, and is named', () => {
  const r = refusal(() => requireThreshold('m', message, [signWith(stranger!.seed, message, ctx)], keys, 1, ctx));
  assert.equal(r.code, 'below_threshold');
  assert.match(r.message, /1 by keys not in the firmware root/);
});

test('changed bytes, or another context string, are bad_signature', () => {
  const sa = signWith(a!.seed, message, ctx);
  assert.equal(refusal(() => requireThreshold('m', new TextEncoder().encode('release 8'), [sa], keys, 1, ctx)).code, 'bad_signature');
  assert.equal(refusal(() => requireThreshold('m', message, [sa], keys, 1, new TextEncoder().encode('ghostpipe/other/v1'))).code, 'bad_signature');
});

test('JSON form round-trips; malformed entries name the entry', () => {
  const list = [signWith(a!.seed, message, ctx)];
  assert.deepEqual(signaturesFromJson(JSON.parse(JSON.stringify(signaturesToJson(list))), 'm'), list);
  assert.match(refusal(() => signaturesFromJson({}, 'm')).message, /must be an array/);
  assert.match(refusal(() => signaturesFromJson([{ keyId: 'ab', signature: 'AA==' }], 'm')).message, /signature 0: keyId/);
  assert.match(refusal(() => signaturesFromJson([{ keyId: 'a'.repeat(64), signature: 'AAAA' }], 'm')).message, /3 bytes/);
  assert.match(refusal(() => signaturesFromJson(Array(MAX_SIGNATURES + 1).fill(signaturesToJson(list)[0]), 'm')).message, /at most 32/);
});
