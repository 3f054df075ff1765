/**
 * Crypto providers: both match the ML-DSA-65 / ML-KEM-768 vectors where they can (native cannot
 * derandomize, so deterministic signing is checked through noble), and each verifies/opens what
 * the other produced. On Node 20 only noble exists; scripts/test-node24.sh runs the native half.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { shake128 } from '@noble/hashes/sha3.js';
import { vectorsDir } from '../../test/helpers/paths.js';
import { availableProviders, getProvider, CryptoProviderError, ML_DSA65, ML_KEM768 } from './provider.js';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const readJson = (rel: string) => JSON.parse(readFileSync(path.join(vectorsDir, rel), 'utf8'));
const providers = availableProviders();
const nodeHasNativePq = typeof (await import('node:crypto') as Record<string, unknown>)['encapsulate'] === 'function';

describe('provider selection', () => {
  it('offers native exactly when node:crypto has ML-KEM, and noble always', () => {
    assert.deepEqual(providers.map((p) => p.name), nodeHasNativePq ? ['native', 'noble'] : ['noble']);
  });

  it('honours GHOSTPIPE_CRYPTO and rejects unknown or unavailable providers with typed errors', () => {
    const saved = process.env['GHOSTPIPE_CRYPTO'];
    try {
      process.env['GHOSTPIPE_CRYPTO'] = 'noble';
      assert.equal(getProvider().name, 'noble');
      assert.equal(getProvider('auto').name, 'noble');
      process.env['GHOSTPIPE_CRYPTO'] = 'rsa';
      assert.throws(() => getProvider(), (e: unknown) => e instanceof CryptoProviderError && e.code === 'bad_provider_name' && /rsa/.test(e.message));
      process.env['GHOSTPIPE_CRYPTO'] = 'native';
      if (nodeHasNativePq) assert.equal(getProvider().name, 'native');
      else assert.throws(() => getProvider(), (e: unknown) => e instanceof CryptoProviderError && e.code === 'provider_unavailable');
      delete process.env['GHOSTPIPE_CRYPTO'];
      assert.equal(getProvider().name, nodeHasNativePq ? 'native' : 'noble');
      assert.equal(getProvider('noble').name, 'noble');
    } finally {
      if (saved === undefined) delete process.env['GHOSTPIPE_CRYPTO'];
      else process.env['GHOSTPIPE_CRYPTO'] = saved;
    }
  });
});

for (const provider of providers) {
  describe(`ML-DSA-65 vectors, ${provider.name}`, () => {
    const seedFile = readJson('ml-dsa-65/wycheproof-mldsa_65_sign_seed_test.subset.json');
    const group = seedFile.testGroups[0];

    it('derives the Wycheproof public key from the seed, and the seed-only PKCS#8 matches our DER', () => {
      assert.equal(toHex(provider.mlDsa65.publicKeyFromSeed(hex(group.privateSeed))), group.publicKey);
      assert.equal(group.privateKeyPkcs8, '3034020100300b0609608648016503040312042280' + '20' + group.privateSeed);
    });

    it('verifies Wycheproof sign_seed results and signs hedged signatures that verify', () => {
      const pk = hex(group.publicKey);
      for (const t of group.tests) {
        const ctx = hex(t.ctx ?? ''), msg = hex(t.msg);
        if (t.result === 'valid') {
          assert.equal(provider.mlDsa65.verify(pk, msg, hex(t.sig), ctx), true, `tcId ${t.tcId}`);
          const own = provider.mlDsa65.sign(hex(group.privateSeed), msg, ctx);
          assert.equal(own.length, ML_DSA65.signature);
          assert.equal(provider.mlDsa65.verify(pk, msg, own, ctx), true);
          assert.notEqual(toHex(own), t.sig, 'hedged signing must not be deterministic');
        } else {
          assert.throws(() => provider.mlDsa65.sign(hex(group.privateSeed), msg, ctx), RangeError, `tcId ${t.tcId}`);
          assert.equal(provider.mlDsa65.verify(pk, msg, new Uint8Array(ML_DSA65.signature), ctx), false);
        }
      }
    });

    it('matches every Wycheproof verify and ACVP sigVer result', () => {
      const w = readJson('ml-dsa-65/wycheproof-mldsa_65_verify_test.subset.json').testGroups[0];
      for (const t of w.tests) {
        assert.equal(provider.mlDsa65.verify(hex(w.publicKey), hex(t.msg), hex(t.sig), hex(t.ctx ?? '')), t.result === 'valid', `wycheproof tcId ${t.tcId}`);
      }
      const acvp = readJson('ml-dsa-65/acvp-ML-DSA-65-sigVer-external-pure.subset.json').testGroups[0];
      for (const t of acvp.tests) {
        assert.equal(provider.mlDsa65.verify(hex(t.pk), hex(t.message), hex(t.signature), hex(t.context)), String(t.testPassed).toLowerCase() === 'true', `acvp tcId ${t.tcId}`);
      }
    });

    it('verify returns false (never throws) on malformed keys, signatures and contexts', () => {
      const seed = randomBytes(32), msg = randomBytes(40), ctx = new Uint8Array([1]);
      const pk = provider.mlDsa65.publicKeyFromSeed(seed);
      const sig = provider.mlDsa65.sign(seed, msg, ctx);
      const bad: [Uint8Array, Uint8Array, Uint8Array, Uint8Array][] = [
        [pk.subarray(1), msg, sig, ctx], [new Uint8Array(0), msg, sig, ctx], [pk, msg, sig.subarray(0, 100), ctx],
        [pk, msg, new Uint8Array(ML_DSA65.signature + 1), ctx], [pk, msg, sig, new Uint8Array(256)], [pk, msg, sig, new Uint8Array(0)],
        [new Uint8Array(ML_DSA65.publicKey).fill(0xff), msg, sig, ctx], [pk, msg, new Uint8Array(ML_DSA65.signature).fill(0xff), ctx],
        [null as unknown as Uint8Array, msg, sig, ctx], [pk, 'text' as unknown as Uint8Array, sig, ctx],
      ];
      for (const [i, args] of bad.entries()) assert.equal(provider.mlDsa65.verify(...args), false, `case ${i}`);
      assert.throws(() => provider.mlDsa65.sign(seed.subarray(1), msg, ctx), RangeError);
    });
  });

  describe(`ML-KEM-768, ${provider.name}`, () => {
    const entry = readJson('hpke-pq/hpke-pq-test-vectors.mlkem768-xwing.hkdf-sha256.json').find((e: { kem_id: unknown }) => Number(e.kem_id) === 0x41);
    it('derives pkRm from the 64-byte seed and decapsulates the HPKE-PQ vector', () => {
      assert.equal(toHex(provider.mlKem768.publicKeyFromSeed(hex(entry.skRm))), entry.pkRm);
      assert.equal(toHex(provider.mlKem768.decapsulate(hex(entry.skRm), hex(entry.enc))), entry.shared_secret);
    });
    it('rejects wrong sizes with RangeError', () => {
      assert.throws(() => provider.mlKem768.publicKeyFromSeed(new Uint8Array(32)), RangeError);
      assert.throws(() => provider.mlKem768.encapsulate(new Uint8Array(ML_KEM768.publicKey - 1)), RangeError);
      assert.throws(() => provider.mlKem768.decapsulate(new Uint8Array(64), new Uint8Array(ML_KEM768.ciphertext + 1)), RangeError);
    });
  });
}

describe('deterministic ML-DSA-65 (noble internals)', () => {
  it('reproduces the ACVP deterministic sigGen signatures, and every provider verifies them', () => {
    const group = readJson('ml-dsa-65/acvp-ML-DSA-65-sigGen-deterministic-external-pure.subset.json').testGroups[0];
    for (const t of group.tests) {
      const sig = ml_dsa65.sign(hex(t.message), hex(t.sk), { context: hex(t.context), extraEntropy: false });
      assert.equal(toHex(sig).toUpperCase(), t.signature.toUpperCase(), `tcId ${t.tcId}`);
      const pk = ml_dsa65.getPublicKey(hex(t.sk));
      for (const p of providers) assert.equal(p.mlDsa65.verify(pk, hex(t.message), sig, hex(t.context)), true, `${p.name} tcId ${t.tcId}`);
    }
  });

  it('reproduces the CCTV accumulated value for 100 iterations (keys from every provider agree)', () => {
    const expected = readJson('ml-dsa-65/cctv-ML-DSA-accumulated.json')['ML-DSA-65']['100'];
    const source = shake128.create({}), sink = shake128.create({});
    const empty = new Uint8Array(0);
    for (let i = 0; i < 100; i++) {
      const seed = source.xof(32);
      const { publicKey, secretKey } = ml_dsa65.keygen(Uint8Array.from(seed));
      if (i % 25 === 0) for (const p of providers) assert.equal(toHex(p.mlDsa65.publicKeyFromSeed(seed)), toHex(publicKey));
      const sig = ml_dsa65.sign(empty, secretKey, { extraEntropy: false });
      assert.equal(ml_dsa65.verify(sig, empty, publicKey), true);
      sink.update(publicKey).update(sig);
    }
    assert.equal(toHex(sink.xof(32)), expected);
  });
});

describe('cross-provider agreement', () => {
  for (const signer of providers) for (const verifier of providers) {
    it(`${verifier.name} verifies and opens what ${signer.name} signed and encapsulated`, () => {
      for (let i = 0; i < 3; i++) {
        const seed = randomBytes(32), msg = randomBytes(1 + i * 500), ctx = randomBytes(i * 100);
        assert.equal(toHex(signer.mlDsa65.publicKeyFromSeed(seed)), toHex(verifier.mlDsa65.publicKeyFromSeed(seed)));
        const sig = signer.mlDsa65.sign(seed, msg, ctx);
        const pk = verifier.mlDsa65.publicKeyFromSeed(seed);
        assert.equal(verifier.mlDsa65.verify(pk, msg, sig, ctx), true);
        const flipped = Uint8Array.from(msg); flipped[0]! ^= 1;
        assert.equal(verifier.mlDsa65.verify(pk, flipped, sig, ctx), false);
        assert.equal(verifier.mlDsa65.verify(pk, msg, sig, randomBytes(ctx.length + 1)), false);

        const kemSeed = randomBytes(64);
        const { ciphertext, sharedSecret } = signer.mlKem768.encapsulate(verifier.mlKem768.publicKeyFromSeed(kemSeed));
        assert.equal(toHex(verifier.mlKem768.decapsulate(kemSeed, ciphertext)), toHex(sharedSecret));
        const tampered = Uint8Array.from(ciphertext); tampered[5]! ^= 0x40;
        assert.notEqual(toHex(verifier.mlKem768.decapsulate(kemSeed, tampered)), toHex(sharedSecret), 'implicit rejection');
      }
    });
  }
});
