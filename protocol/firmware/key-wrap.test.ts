/** protocol/firmware/key-wrap.ts: a content key opens only for its device and its manifest. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KEM } from '../envelope/constants.js';
import { sealEnvelope } from '../envelope/seal.js';
import { generatePrivateKey } from '../keys.js';
import { FirmwareError } from './errors.js';
import { thrownCode } from '../../test/helpers/assert-code.js';
import { unwrapContentKey, wrapContentKey } from './key-wrap.js';

const publisher = generatePrivateKey('ML-DSA-65');
const sender = { seed: publisher.seed, publicKey: publisher.publicKey };
const deviceA = generatePrivateKey('X-Wing');
const deviceB = generatePrivateKey('X-Wing');
const recipient = (k: typeof deviceA) => ({ kemId: KEM.XWING, seed: k.seed, publicKey: k.publicKey });
const digest = new Uint8Array(randomBytes(32));
const contentKey = new Uint8Array(randomBytes(32));

const code = (fn: () => unknown): string => thrownCode(fn, FirmwareError);

test('the device the key was wrapped to gets it back', () => {
  const wrap = wrapContentKey({ manifestDigest: digest, contentKey, recipient: recipient(deviceA), sender, counter: 7 });
  assert.deepEqual(unwrapContentKey(wrap, recipient(deviceA), publisher.publicKey, digest), contentKey);
});

test("another device's wrap, another manifest's wrap, or another content type: wrong_key", () => {
  const forB = wrapContentKey({ manifestDigest: digest, contentKey, recipient: recipient(deviceB), sender, counter: 7 });
  assert.equal(code(() => unwrapContentKey(forB, recipient(deviceA), publisher.publicKey, digest)), 'wrong_key');
  const otherManifest = wrapContentKey({ manifestDigest: new Uint8Array(32), contentKey, recipient: recipient(deviceA), sender, counter: 7 });
  assert.equal(code(() => unwrapContentKey(otherManifest, recipient(deviceA), publisher.publicKey, digest)), 'wrong_key');
  const readings = sealEnvelope({ plaintext: new Uint8Array(69), recipient: recipient(deviceA), sender, streamId: 0, sequence: 7n, contentType: 1 });
  assert.equal(code(() => unwrapContentKey(readings, recipient(deviceA), publisher.publicKey, digest)), 'wrong_key');
  assert.equal(code(() => unwrapContentKey(new Uint8Array(100), recipient(deviceA), publisher.publicKey, digest)), 'wrong_key');
});
