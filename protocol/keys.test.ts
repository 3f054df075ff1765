import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertThrowsCode } from '../test/helpers/assert-code.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import {
  ALGS, KEY_ALGS, KeyError, MAX_PEM_CHARS, decodePkcs8Der, decodePrivateKeyPem, decodePublicKeyPem, decodeSpkiDer,
  encodePem, encodePrivateKeyPem, encodePublicKeyPem, generatePrivateKey, keyId, keyIdHex, pkcs8Der,
  privateKeyFromSeed, spkiDer, type KeyAlg,
} from './keys.js';
import { encodeOid, octetString, sequence, smallInteger, tlv } from './asn1.js';
import { vectorsDir } from '../test/helpers/paths.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const readJson = (...parts: string[]): any => JSON.parse(readFileSync(path.join(vectorsDir, ...parts), 'utf8'));

const assertKeyError = (fn: () => unknown, code: KeyError['code'], pattern?: RegExp): void => assertThrowsCode(fn, KeyError, code, pattern);

test('ML-DSA-65 SPKI and PKCS#8 match the Wycheproof encodings', () => {
  const sign = readJson('ml-dsa-65', 'wycheproof-mldsa_65_sign_seed_test.subset.json').testGroups[0];
  const verify = readJson('ml-dsa-65', 'wycheproof-mldsa_65_verify_test.subset.json').testGroups[0];
  const publicKey = fromHex(sign.publicKey);
  assert.equal(hex(spkiDer('ML-DSA-65', publicKey)), verify.publicKeyDer);
  const key = decodePkcs8Der(fromHex(sign.privateKeyPkcs8));
  assert.equal(key.alg, 'ML-DSA-65');
  assert.equal(hex(key.seed), sign.privateSeed);
  assert.equal(hex(key.publicKey), sign.publicKey);
  assert.equal(hex(pkcs8Der('ML-DSA-65', key.seed)), sign.privateKeyPkcs8);
  const spki = decodeSpkiDer(fromHex(verify.publicKeyDer));
  assert.equal(spki.alg, 'ML-DSA-65');
  assert.equal(hex(spki.publicKey), sign.publicKey);
});

// draft-connolly-cfrg-xwing-kem, x509/xwing.priv: the published example (seed 00 01 .. 1f).
const XWING_DRAFT_PRIV = '-----BEGIN PRIVATE KEY-----\nMDQCAQAwDQYLKwYBBAGD5i2ByHoEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZ\nGhscHR4f\n-----END PRIVATE KEY-----\n';

test('X-Wing private key matches the draft example encoding byte for byte', () => {
  const key = decodePrivateKeyPem(XWING_DRAFT_PRIV);
  assert.equal(key.alg, 'X-Wing');
  assert.equal(hex(key.seed), hex(Uint8Array.from({ length: 32 }, (_, i) => i)));
  assert.equal(encodePrivateKeyPem(key), XWING_DRAFT_PRIV);
  assert.equal(key.publicKey.length, 1216);
});

test('seeds from the X-Wing and HPKE-PQ vectors derive the published public keys', () => {
  for (const v of readJson('xwing', 'test-vectors.json')) {
    assert.equal(hex(privateKeyFromSeed('X-Wing', fromHex(v.seed)).publicKey), v.pk);
  }
  for (const v of readJson('hpke-pq', 'hpke-pq-test-vectors.mlkem768-xwing.hkdf-sha256.json')) {
    const alg: KeyAlg = v.kem_id === 0x41 ? 'ML-KEM-768' : 'X-Wing';
    const key = privateKeyFromSeed(alg, fromHex(v.skRm));
    assert.equal(hex(key.publicKey), v.pkRm);
    const back = decodePrivateKeyPem(encodePrivateKeyPem(key));
    assert.equal(hex(back.seed), v.skRm);
  }
});

test('every algorithm round-trips through PEM and has a stable 32-byte key id', () => {
  for (const alg of KEY_ALGS) {
    const key = generatePrivateKey(alg);
    assert.equal(key.seed.length, ALGS[alg].seedLength);
    const priv = decodePrivateKeyPem(encodePrivateKeyPem(key), alg);
    assert.deepEqual(priv, key);
    const pubPem = encodePublicKeyPem(alg, key.publicKey);
    assert.match(pubPem, /^-----BEGIN PUBLIC KEY-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END PUBLIC KEY-----\n$/);
    assert.deepEqual(decodePublicKeyPem(pubPem, alg), { alg, publicKey: key.publicKey });
    const id = keyId(alg, key.publicKey);
    assert.equal(id.length, 32);
    assert.equal(keyIdHex(alg, key.publicKey), hex(id));
    assert.notEqual(keyIdHex(alg, generatePrivateKey(alg).publicKey), hex(id));
  }
});

test('the key id binds the algorithm: the same bytes under another OID give another id', () => {
  const bytes = new Uint8Array(1216).fill(7);
  assert.notEqual(keyIdHex('X-Wing', bytes), hex(new Uint8Array(32)));
  const spki = spkiDer('X-Wing', bytes);
  assert.equal(hex(spki.subarray(0, 19)), '308204d4300d060b2b0601040183e62d81c87a'); // SEQUENCE, AlgId with the X-Wing OID
  assertKeyError(() => spkiDer('ML-DSA-65', bytes), 'bad_length', /ML-DSA-65 public key must be 1952 bytes, got 1216/);
  assertKeyError(() => spkiDer('RSA' as KeyAlg, bytes), 'unknown_alg', /unknown key algorithm "RSA"/);
});

test('ML-DSA-65 and ML-KEM-768 "both" forms are accepted, expanded-only is refused clearly', () => {
  const cases: [KeyAlg, Uint8Array, Uint8Array][] = [];
  const dsaSeed = new Uint8Array(32).fill(0x11);
  cases.push(['ML-DSA-65', dsaSeed, ml_dsa65.keygen(dsaSeed).secretKey]);
  const kemSeed = new Uint8Array(64).fill(0x22);
  cases.push(['ML-KEM-768', kemSeed, ml_kem768.keygen(kemSeed).secretKey]);
  for (const [alg, seed, expanded] of cases) {
    const algId = sequence(encodeOid(ALGS[alg].oid));
    const both = sequence(smallInteger(0), algId, octetString(sequence(octetString(seed), octetString(expanded))));
    const key = decodePkcs8Der(both);
    assert.equal(hex(key.seed), hex(seed));
    assert.equal(hex(key.publicKey), hex(privateKeyFromSeed(alg, seed).publicKey));
    const expandedOnly = sequence(smallInteger(0), algId, octetString(octetString(expanded)));
    assertKeyError(() => decodePkcs8Der(expandedOnly), 'expanded_only', new RegExp(`${alg} private key holds only the expanded key`));
    const badBoth = sequence(smallInteger(0), algId, octetString(sequence(octetString(seed), octetString(expanded.subarray(1)))));
    assertKeyError(() => decodePkcs8Der(badBoth), 'bad_length', /expanded private key must be/);
  }
});

test('PKCS#8 v1 with an embedded public key must match the seed', () => {
  const key = generatePrivateKey('ML-DSA-65');
  const algId = sequence(encodeOid(ALGS['ML-DSA-65'].oid));
  const v1 = (pub: Uint8Array): Uint8Array =>
    sequence(smallInteger(1), algId, octetString(tlv(0x80, key.seed)), tlv(0x81, Uint8Array.from([0, ...pub])));
  assert.deepEqual(decodePkcs8Der(v1(key.publicKey)), key);
  const other = key.publicKey.slice();
  other[5]! ^= 1;
  assertKeyError(() => decodePkcs8Der(v1(other)), 'seed_mismatch');
});

test('malformed PEM is refused with a typed error naming the problem', () => {
  const key = generatePrivateKey('X-Wing');
  const priv = encodePrivateKeyPem(key);
  const pub = encodePublicKeyPem('X-Wing', key.publicKey);
  assertKeyError(() => decodePrivateKeyPem(pub), 'wrong_pem_label', /PEM label is "PUBLIC KEY", expected "PRIVATE KEY"/);
  assertKeyError(() => decodePublicKeyPem(priv), 'wrong_pem_label');
  assertKeyError(() => decodePrivateKeyPem(priv.replace('END PRIVATE', 'END PUBLIC')), 'bad_pem', /does not match END/);
  assertKeyError(() => decodePrivateKeyPem(priv.replace(/\n[A-Za-z]/, '\n*')), 'bad_pem');
  assertKeyError(() => decodePrivateKeyPem(priv + priv), 'bad_pem', /single PEM block/);
  assertKeyError(() => decodePrivateKeyPem('garbage\n' + priv), 'bad_pem');
  assertKeyError(() => decodePrivateKeyPem(''), 'bad_pem');
  assertKeyError(() => decodePrivateKeyPem('-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n'), 'bad_pem', /empty/);
  assertKeyError(() => decodePrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n'), 'bad_pem', /base64/);
  assertKeyError(() => decodePrivateKeyPem(priv.replace('-----END PRIVATE KEY-----\n', '')), 'bad_pem');
  assertKeyError(() => decodePrivateKeyPem(42 as unknown as string), 'bad_pem');
  const huge = encodePem('PRIVATE KEY', new Uint8Array(MAX_PEM_CHARS));
  assertKeyError(() => decodePrivateKeyPem(huge), 'bad_pem', /too large/);
  // CRLF line endings (Windows editors) are fine.
  assert.deepEqual(decodePrivateKeyPem(priv.replace(/\n/g, '\r\n')), key);
  assert.deepEqual(decodePublicKeyPem(pub, 'X-Wing').publicKey, key.publicKey);
  assertKeyError(() => decodePublicKeyPem(pub, 'ML-DSA-65'), 'wrong_alg', /expected a ML-DSA-65 key, found X-Wing/);
});

test('malformed DER: unknown OID, parameters, lengths, trailing bytes', () => {
  const key = generatePrivateKey('ML-DSA-65');
  const der = pkcs8Der('ML-DSA-65', key.seed);
  const unknownOid = sequence(smallInteger(0), sequence(encodeOid('1.3.101.112')), octetString(tlv(0x80, key.seed)));
  assertKeyError(() => decodePkcs8Der(unknownOid), 'unknown_oid', /unknown key algorithm OID 1\.3\.101\.112/);
  const withNull = sequence(smallInteger(0), sequence(encodeOid(ALGS['ML-DSA-65'].oid), Uint8Array.of(5, 0)), octetString(tlv(0x80, key.seed)));
  assertKeyError(() => decodePkcs8Der(withNull), 'bad_der', /must have no parameters/);
  const shortSeed = sequence(smallInteger(0), sequence(encodeOid(ALGS['ML-DSA-65'].oid)), octetString(tlv(0x80, key.seed.subarray(1))));
  assertKeyError(() => decodePkcs8Der(shortSeed), 'bad_length', /ML-DSA-65 seed must be 32 bytes, got 31/);
  assertKeyError(() => decodePkcs8Der(Uint8Array.from([...der, 0])), 'trailing_bytes', /1 trailing bytes/);
  assertKeyError(() => decodePkcs8Der(sequence(smallInteger(2), der.subarray(5))), 'bad_der', /version/);
  const spki = spkiDer('ML-DSA-65', key.publicKey);
  assertKeyError(() => decodeSpkiDer(Uint8Array.from([...spki, 0, 0])), 'trailing_bytes');
  const shortPub = sequence(sequence(encodeOid(ALGS['ML-DSA-65'].oid)), tlv(3, Uint8Array.from([0, ...key.publicKey.subarray(1)])));
  assertKeyError(() => decodeSpkiDer(shortPub), 'bad_length', /1952 bytes, got 1951/);
  const unusedBits = sequence(sequence(encodeOid(ALGS['ML-DSA-65'].oid)), tlv(3, Uint8Array.from([1, ...key.publicKey])));
  assertKeyError(() => decodeSpkiDer(unusedBits), 'bad_der', /0 unused bits/);
  // Non-minimal length encoding (0x81 0x05 instead of 0x05) is BER, not DER.
  assertKeyError(() => decodePkcs8Der(Uint8Array.from([0x30, 0x81, 0x03, 0x02, 0x01, 0x00])), 'bad_der', /non-minimal/);
  assertKeyError(() => decodePkcs8Der(Uint8Array.from([0x30, 0x80, 0x00, 0x00])), 'bad_der', /indefinite/);
  assertKeyError(() => decodePkcs8Der(Uint8Array.from([0x30, 0x85, 1, 0, 0, 0, 0])), 'bad_der', /too large/);
});

test('every truncation of SPKI and PKCS#8 DER fails with a KeyError', () => {
  for (const alg of KEY_ALGS) {
    const key = generatePrivateKey(alg);
    const samples: [Uint8Array, (d: Uint8Array) => unknown][] = [
      [pkcs8Der(alg, key.seed), decodePkcs8Der],
      [spkiDer(alg, key.publicKey), decodeSpkiDer],
    ];
    for (const [der, decode] of samples) {
      for (let length = 0; length < der.length; length++) {
        assert.throws(() => decode(der.subarray(0, length)), KeyError, `${alg} truncated to ${length} bytes`);
      }
    }
  }
});

test('mutating any single byte of a key encoding yields a KeyError or a different well-formed key, never a crash', () => {
  for (const alg of KEY_ALGS) {
    const key = generatePrivateKey(alg);
    // ML-KEM's public key ignores z (the seed's second half), so compare the decoded material itself.
    const material = (k: { publicKey: Uint8Array; seed?: Uint8Array }): string => hex(k.seed ?? k.publicKey);
    const samples: [Uint8Array, (d: Uint8Array) => { publicKey: Uint8Array; seed?: Uint8Array }, number][] = [
      // [DER, decoder, offset where raw key material starts (mutations after it stay well-formed)]
      [pkcs8Der(alg, key.seed), decodePkcs8Der, pkcs8Der(alg, key.seed).length - ALGS[alg].seedLength],
      [spkiDer(alg, key.publicKey), decodeSpkiDer, spkiDer(alg, key.publicKey).length - ALGS[alg].publicKeyLength],
    ];
    for (const [der, decode, materialStart] of samples) {
      // Every header byte, and a sample of key-material bytes (the key bytes are opaque to DER).
      const positions = [...Array(materialStart + 3).keys(), der.length - 1];
      for (const position of positions) {
        for (const flip of [0x01, 0x80, 0xff]) {
          const mutated = der.slice();
          mutated[position]! ^= flip;
          let result: { publicKey: Uint8Array; seed?: Uint8Array } | undefined;
          try {
            result = decode(mutated);
          } catch (err) {
            assert.ok(err instanceof KeyError, `${alg} byte ${position} ^ ${flip}: ${String(err)}`);
            continue;
          }
          if (decode === decodePkcs8Der && position === 4 && flip === 0x01) continue; // version 0 -> 1 (v1 without publicKey) is valid RFC 5958
          assert.ok(position >= materialStart, `${alg}: mutation of header byte ${position} ^ ${flip} was accepted`);
          assert.notEqual(material(result), decode === decodePkcs8Der ? hex(key.seed) : hex(key.publicKey));
        }
      }
    }
  }
});
