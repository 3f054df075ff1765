import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertThrowsCode } from '../test/helpers/assert-code.js';
import { createHash } from 'node:crypto';
import {
  DID_PREFIX, DidError, MAX_DID_LENGTH, base32Lower, base32LowerDecode, didDocument, didFromSigningKey, parseDid, readDidDocument,
} from './did.js';
import { generatePrivateKey, keyId, keyIdHex, spkiDer } from './keys.js';

const assertDidError = (fn: () => unknown, code: DidError['code'], pattern?: RegExp): void => assertThrowsCode(fn, DidError, code, pattern);

test('base32 matches RFC 4648 test vectors (lower case, no padding)', () => {
  const cases: [string, string][] = [['', ''], ['f', 'my'], ['fo', 'mzxq'], ['foo', 'mzxw6'], ['foob', 'mzxw6yq'], ['fooba', 'mzxw6ytb'], ['foobar', 'mzxw6ytboi']];
  for (const [plain, encoded] of cases) {
    assert.equal(base32Lower(new TextEncoder().encode(plain)), encoded);
    assert.equal(Buffer.from(base32LowerDecode(encoded)).toString(), plain);
  }
  assertDidError(() => base32LowerDecode('mz'), 'bad_identifier', /non-canonical/); // 'mz' leaves non-zero bits
  assertDidError(() => base32LowerDecode('MY'), 'bad_identifier', /invalid base32 character/);
  assertDidError(() => base32LowerDecode('m'), 'bad_identifier');
});

test('the DID is base32 of SHA-256 over the ML-DSA-65 SPKI, and parses back to that key id', () => {
  const key = generatePrivateKey('ML-DSA-65');
  const did = didFromSigningKey(key.publicKey);
  const expectedId = createHash('sha256').update(spkiDer('ML-DSA-65', key.publicKey)).digest();
  assert.equal(did, DID_PREFIX + base32Lower(expectedId));
  assert.match(did, /^did:ghostpipe:[a-z2-7]{52}$/);
  assert.equal(did.length, MAX_DID_LENGTH);
  const parsed = parseDid(did);
  assert.deepEqual(Buffer.from(parsed.keyId), Buffer.from(keyId('ML-DSA-65', key.publicKey)));
  assert.notEqual(didFromSigningKey(generatePrivateKey('ML-DSA-65').publicKey), did);
});

test('malformed DIDs are refused with a typed error', () => {
  const did = didFromSigningKey(generatePrivateKey('ML-DSA-65').publicKey);
  const id = did.slice(DID_PREFIX.length);
  assertDidError(() => parseDid(42), 'not_a_string');
  assertDidError(() => parseDid(null), 'not_a_string');
  assertDidError(() => parseDid(did + 'a'), 'too_long', /at most 66/);
  assertDidError(() => parseDid('x'.repeat(100_000)), 'too_long');
  assertDidError(() => parseDid('did:key:' + id), 'wrong_method', /not a did:ghostpipe: DID/);
  assertDidError(() => parseDid('DID:ghostpipe:' + id), 'wrong_method');
  assertDidError(() => parseDid(did.toUpperCase()), 'wrong_method');
  assertDidError(() => parseDid(DID_PREFIX + id.toUpperCase()), 'bad_identifier', /only a-z and 2-7/);
  assertDidError(() => parseDid(did.slice(0, -1) + '/'), 'bad_identifier', /no path/);
  assertDidError(() => parseDid(did.slice(0, -2) + '#a'), 'bad_identifier');
  assertDidError(() => parseDid(did.slice(0, -2) + '?a'), 'bad_identifier');
  assertDidError(() => parseDid(did.slice(0, -1) + '1'), 'bad_identifier');
  assertDidError(() => parseDid(did.slice(0, -1)), 'bad_identifier', /must be 52 characters, got 51/);
  assertDidError(() => parseDid(DID_PREFIX), 'bad_identifier');
  // 52 base32 chars carry 260 bits: the last 4 must be zero, so one DID per key id.
  const last = id[id.length - 1]!;
  const sibling = 'abcdefghijklmnopqrstuvwxyz234567'[('abcdefghijklmnopqrstuvwxyz234567'.indexOf(last) ^ 1)]!;
  assertDidError(() => parseDid(did.slice(0, -1) + sibling), 'bad_identifier', /non-canonical/);
});

test('the DID document lists #sign (ML-DSA-65) and #kem (X-Wing) and reads back', () => {
  const sign = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  const doc = didDocument({ signingPublicKey: sign.publicKey, kemPublicKey: kem.publicKey });
  const did = didFromSigningKey(sign.publicKey);
  assert.equal(doc.id, did);
  assert.deepEqual(doc['@context'], ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/jws/v1']);
  assert.deepEqual(doc.verificationMethod.map((m) => [m.id, m.type, m.controller, m.publicKeyJwk.kty, m.publicKeyJwk.alg]), [
    [`${did}#sign`, 'JsonWebKey', did, 'AKP', 'ML-DSA-65'],
    [`${did}#kem`, 'JsonWebKey', did, 'AKP', 'X-Wing'],
  ]);
  assert.equal(Buffer.from(doc.verificationMethod[0]!.publicKeyJwk.pub, 'base64url').toString('hex'), Buffer.from(sign.publicKey).toString('hex'));
  assert.equal(doc.verificationMethod[1]!.publicKeyJwk.kid, keyIdHex('X-Wing', kem.publicKey));
  assert.deepEqual(doc.authentication, [`${did}#sign`]);
  assert.deepEqual(doc.assertionMethod, [`${did}#sign`]);
  assert.deepEqual(doc.keyAgreement, [`${did}#kem`]);

  const back = readDidDocument(JSON.parse(JSON.stringify(doc)));
  assert.equal(back.did, did);
  assert.equal(back.kemAlg, 'X-Wing');
  assert.deepEqual(back.kemPublicKey, kem.publicKey);

  const pq = didDocument({ signingPublicKey: sign.publicKey, kemPublicKey: generatePrivateKey('ML-KEM-768').publicKey, kemAlg: 'ML-KEM-768' });
  assert.equal(readDidDocument(pq).kemAlg, 'ML-KEM-768');
});

test('a DID document that does not match its keys is refused', () => {
  const sign = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  const good = (): any => JSON.parse(JSON.stringify(didDocument({ signingPublicKey: sign.publicKey, kemPublicKey: kem.publicKey })));
  const otherDid = didFromSigningKey(generatePrivateKey('ML-DSA-65').publicKey);
  const cases: [string, (d: any) => unknown, DidError['code']][] = [
    ['not an object', () => 'doc', 'bad_document'],
    ['id of another key', (d) => ({ ...d, id: otherDid }), 'bad_document'],
    ['bad id', (d) => ({ ...d, id: 'did:web:example.com' }), 'wrong_method'],
    ['sign key swapped', (d) => { d.verificationMethod[0].publicKeyJwk.pub = Buffer.from(generatePrivateKey('ML-DSA-65').publicKey).toString('base64url'); return d; }, 'bad_document'],
    ['kem key truncated', (d) => { d.verificationMethod[1].publicKeyJwk.pub = d.verificationMethod[1].publicKeyJwk.pub.slice(0, 100); return d; }, 'bad_document'],
    ['kem alg wrong', (d) => { d.verificationMethod[1].publicKeyJwk.alg = 'RSA-OAEP'; return d; }, 'bad_document'],
    ['extra keyAgreement', (d) => { d.keyAgreement.push(`${otherDid}#kem`); return d; }, 'bad_document'],
    ['missing #kem', (d) => { d.verificationMethod.pop(); return d; }, 'bad_document'],
    ['no verificationMethod', (d) => { delete d.verificationMethod; return d; }, 'bad_document'],
    ['pub not base64url', (d) => { d.verificationMethod[1].publicKeyJwk.pub = 'a+b/'; return d; }, 'bad_document'],
  ];
  for (const [name, mutate, code] of cases) {
    assert.throws(() => readDidDocument(mutate(good())), (err: unknown) => err instanceof DidError && err.code === code, name);
  }
});
