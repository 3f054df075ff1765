/** X-Wing KEM against the draft and noble/concrete-hybrid vectors, on every provider, and across providers. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { vectorsDir } from '../../test/helpers/paths.js';
import { availableProviders } from './provider.js';
import { xwingDecapsulate, xwingEncapsulate, xwingEncapsulateDerand, xwingPublicKeyFromSeed, XWING } from './xwing.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const readJson = (rel: string) => JSON.parse(readFileSync(path.join(vectorsDir, rel), 'utf8'));
const providers = availableProviders();

interface Vector { seed: string; eseed: string; pk: string; ct: string; ss: string }
const draft: Vector[] = readJson('xwing/test-vectors.json');
const noble: Vector[] = readJson('xwing/noble-test-vectors-MLKEM768X25519.json').map((v: Vector & { randomness: string }) => ({ ...v, eseed: v.randomness }));

describe('X-Wing vectors', () => {
  it('has all 13 public vectors to run', () => assert.equal(draft.length + noble.length, 13));

  for (const provider of providers) {
    it(`${provider.name}: keygen from seed and decapsulation match all vectors`, () => {
      for (const [i, v] of [...draft, ...noble].entries()) {
        assert.equal(toHex(xwingPublicKeyFromSeed(hex(v.seed), provider)), v.pk, `pk #${i}`);
        assert.equal(toHex(xwingDecapsulate(hex(v.seed), hex(v.ct), provider)), v.ss, `ss #${i}`);
      }
    });
  }

  it('derandomized encapsulation (noble ML-KEM coins) reproduces ct and ss', () => {
    for (const [i, v] of [...draft, ...noble].entries()) {
      const { ciphertext, sharedSecret } = xwingEncapsulateDerand(hex(v.pk), hex(v.eseed));
      assert.equal(toHex(ciphertext), v.ct, `ct #${i}`);
      assert.equal(toHex(sharedSecret), v.ss, `ss #${i}`);
    }
  });
});

describe('X-Wing across providers', () => {
  for (const sender of providers) for (const receiver of providers) {
    it(`${receiver.name} decapsulates what ${sender.name} encapsulated; tampering changes the secret`, () => {
      for (let i = 0; i < 3; i++) {
        const seed = randomBytes(32);
        const pk = xwingPublicKeyFromSeed(seed, receiver);
        assert.equal(toHex(xwingPublicKeyFromSeed(seed, sender)), toHex(pk));
        const { ciphertext, sharedSecret } = xwingEncapsulate(pk, sender);
        assert.equal(ciphertext.length, XWING.ciphertext);
        assert.equal(toHex(xwingDecapsulate(seed, ciphertext, receiver)), toHex(sharedSecret));
        for (const at of [0, 700, 1087, 1088, 1119]) {
          const bad = Uint8Array.from(ciphertext); bad[at]! ^= 0x04;
          assert.notEqual(toHex(xwingDecapsulate(seed, bad, receiver)), toHex(sharedSecret), `flip at ${at}`);
        }
        assert.notEqual(toHex(xwingDecapsulate(randomBytes(32), ciphertext, receiver)), toHex(sharedSecret), 'wrong key');
      }
    });
  }

  it('rejects malformed sizes with RangeError', () => {
    const p = providers[0]!;
    assert.throws(() => xwingPublicKeyFromSeed(new Uint8Array(31), p), RangeError);
    assert.throws(() => xwingEncapsulate(new Uint8Array(XWING.publicKey - 1), p), RangeError);
    assert.throws(() => xwingDecapsulate(new Uint8Array(32), new Uint8Array(XWING.ciphertext + 1), p), RangeError);
    assert.throws(() => xwingEncapsulateDerand(new Uint8Array(XWING.publicKey), new Uint8Array(63)), RangeError);
  });
});
