/** protocol/firmware/root.ts: the pinned root, canonical encoding, and rotation as TUF chains it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey, type PrivateKey } from '../keys.js';
import { FirmwareError } from './errors.js';
import { thrownCode } from '../../test/helpers/assert-code.js';
import { chainRoots, decodeRoot, encodeRoot, ROOT_CONTEXT, signedRootFromJson, signedRootToJson, verifyRoot, verifyRotation, type FirmwareRoot, type SignedRoot } from './root.js';
import { signWith } from './signatures.js';

const keys = [0, 1, 2, 3, 4].map(() => generatePrivateKey('ML-DSA-65'));
const [a, b, c, d, e] = keys as [PrivateKey, PrivateKey, PrivateKey, PrivateKey, PrivateKey];

function signed(root: FirmwareRoot, signers: PrivateKey[]): SignedRoot {
  const bytes = encodeRoot(root);
  return { bytes, root: decodeRoot(bytes), signatures: signers.map((k) => signWith(k.seed, bytes, ROOT_CONTEXT)) };
}

const code = (fn: () => unknown): string => thrownCode(fn, FirmwareError);

const v1 = signed({ version: 1, threshold: 2, keys: [c.publicKey, a.publicKey, b.publicKey] }, [a, b]);

test('a root encodes canonically: keys sorted by keyId, and only that order decodes', () => {
  const again = encodeRoot({ version: 1, threshold: 2, keys: [b.publicKey, c.publicKey, a.publicKey] });
  assert.deepEqual(again, v1.bytes);
  assert.equal(v1.bytes.length, 5 + 4 + 2 + 3 * 1952);
  assert.equal(Buffer.from(v1.bytes.subarray(0, 11)).toString('hex'), '47504652010000000102' + '03');
  const swapped = v1.bytes.slice();
  swapped.set(v1.bytes.subarray(11, 11 + 1952), 11 + 1952);
  swapped.set(v1.bytes.subarray(11 + 1952, 11 + 2 * 1952), 11);
  assert.equal(code(() => decodeRoot(swapped)), 'bad_field');
});

test('malformed roots are refused with the field named', () => {
  assert.equal(code(() => decodeRoot(v1.bytes.subarray(0, 100))), 'truncated');
  assert.equal(code(() => decodeRoot(new Uint8Array([...v1.bytes, 0]))), 'trailing_bytes');
  assert.equal(code(() => decodeRoot(new Uint8Array([0x47, 0x50, 0x46, 0x4d, 1]))), 'bad_magic');
  const zeroThreshold = v1.bytes.slice(); zeroThreshold[9] = 0;
  assert.equal(code(() => decodeRoot(zeroThreshold)), 'bad_field');
  const over = v1.bytes.slice(); over[9] = 4;
  assert.equal(code(() => decodeRoot(over)), 'bad_field');
  assert.equal(code(() => encodeRoot({ version: 1, threshold: 1, keys: [a.publicKey, a.publicKey] })), 'bad_field');
  assert.equal(code(() => encodeRoot({ version: 0, threshold: 1, keys: [a.publicKey] })), 'bad_field');
  assert.equal(code(() => signedRootFromJson({ root: 5 })), 'bad_field');
});

test('a root verifies with its own threshold; one signature of two is not enough', () => {
  assert.equal(verifyRoot(signedRootFromJson(JSON.parse(JSON.stringify(signedRootToJson(v1))))).version, 1);
  assert.equal(code(() => verifyRoot(signed(v1.root, [a]))), 'below_threshold');
  assert.equal(code(() => verifyRoot(signed(v1.root, [d, e]))), 'below_threshold');
});

test('rotation needs the old threshold of the old keys and the new threshold of the new keys', () => {
  const next = { version: 2, threshold: 2, keys: [c.publicKey, d.publicKey, e.publicKey] };
  assert.equal(verifyRotation(v1.root, signed(next, [a, b, d, e])).version, 2);
  // new keys only: the old root never agreed
  assert.equal(code(() => verifyRotation(v1.root, signed(next, [d, e]))), 'not_chained');
  // old keys only: the new keys never agreed to serve
  assert.equal(code(() => verifyRotation(v1.root, signed(next, [a, b]))), 'below_threshold');
  // c is in both: it counts once for each side, so a + c + d passes
  assert.equal(verifyRotation(v1.root, signed(next, [a, c, d])).version, 2);
});

test('a chain is walked version by version; a skipped or replayed version does not chain', () => {
  const r2 = signed({ version: 2, threshold: 1, keys: [d.publicKey] }, [a, b, d]);
  const r3 = signed({ version: 3, threshold: 1, keys: [e.publicKey] }, [d, e]);
  assert.deepEqual(chainRoots(v1.root, [r2, r3]).keys, [e.publicKey]);
  assert.equal(code(() => chainRoots(v1.root, [r3])), 'not_chained');
  assert.equal(code(() => chainRoots(v1.root, [v1])), 'not_chained');
  assert.equal(code(() => chainRoots(v1.root, [r2, r2])), 'not_chained');
});
