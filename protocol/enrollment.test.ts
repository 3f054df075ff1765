/** protocol/enrollment.ts: fleet statements, their signature, and every way a bad one is refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FLEET_CONTEXT, FleetStatementError, decodeEnrollmentStatement, encodeEnrollmentStatement, signEnrollmentStatement, verifyEnrollmentApproval,
  type EnrollmentStatement,
} from './enrollment.js';
import { generatePrivateKey } from './keys.js';
import { didFromSigningKey } from './did.js';
import { getProvider } from './crypto/provider.js';

const fleet = generatePrivateKey('ML-DSA-65');
const otherFleet = generatePrivateKey('ML-DSA-65');
const signing = generatePrivateKey('ML-DSA-65');
const kem = generatePrivateKey('X-Wing');
const NOW = Date.UTC(2027, 0, 1);
const statement: EnrollmentStatement = {
  did: didFromSigningKey(signing.publicKey), signingPublicKey: signing.publicKey, kemAlg: 'X-Wing', kemPublicKey: kem.publicKey,
  apiKeyId: '0123456789ab', notBefore: NOW - 1000, notAfter: NOW + 86_400_000,
};
const check = { fleetPublicKey: fleet.publicKey, signingPublicKey: signing.publicKey, kemPublicKey: kem.publicKey, now: NOW };

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FleetStatementError, String(err));
    assert.ok(err.message.length > 10, 'the message names the problem');
    return err.code;
  }
  return 'no error';
}

test('a statement round-trips, with the documented layout and length', () => {
  const bytes = encodeEnrollmentStatement(statement);
  // magic, version, did (1+66), signing key (2+1952), KEM (4+1216), API key id (1+6), times (16)
  assert.equal(bytes.length, 5 + 1 + 66 + 2 + 1952 + 4 + 1216 + 1 + 6 + 16);
  assert.equal(Buffer.from(bytes.subarray(0, 5)).toString('hex'), '4750464501');
  assert.deepEqual(decodeEnrollmentStatement(bytes), statement);
});

test('an approval signed by the fleet key verifies; the signature uses the fleet context', () => {
  const bytes = encodeEnrollmentStatement(statement);
  const signature = signEnrollmentStatement(fleet.seed, bytes);
  assert.deepEqual(verifyEnrollmentApproval(bytes, signature, check), statement);
  assert.ok(getProvider().mlDsa65.verify(fleet.publicKey, bytes, signature, FLEET_CONTEXT));
  assert.ok(!getProvider().mlDsa65.verify(fleet.publicKey, bytes, signature, new Uint8Array(0)), 'not valid without the context');
});

test('wrong key, tampered statement, other device, expired and not-yet-valid approvals are refused by code', () => {
  const bytes = encodeEnrollmentStatement(statement);
  const signature = signEnrollmentStatement(fleet.seed, bytes);
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signEnrollmentStatement(otherFleet.seed, bytes), check)), 'bad_signature');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature, { ...check, fleetPublicKey: otherFleet.publicKey })), 'bad_signature');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature.subarray(1), check)), 'bad_signature');
  const later = encodeEnrollmentStatement({ ...statement, notAfter: statement.notAfter + 1 });
  assert.equal(code(() => verifyEnrollmentApproval(later, signature, check)), 'bad_signature', 'a changed validity is not covered by the signature');
  const otherKem = generatePrivateKey('X-Wing');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature, { ...check, kemPublicKey: otherKem.publicKey })), 'wrong_device');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature, { ...check, signingPublicKey: generatePrivateKey('ML-DSA-65').publicKey })), 'wrong_device');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature, { ...check, now: statement.notAfter })), 'expired');
  assert.equal(code(() => verifyEnrollmentApproval(bytes, signature, { ...check, now: statement.notBefore - 1 })), 'not_yet_valid');
  assert.equal(verifyEnrollmentApproval(bytes, signature, { ...check, now: statement.notBefore }).did, statement.did);
});

test('malformed and truncated statements are typed errors naming what was wrong', () => {
  const bytes = encodeEnrollmentStatement(statement);
  for (let cut = 0; cut < bytes.length; cut += 97) assert.equal(code(() => decodeEnrollmentStatement(bytes.subarray(0, cut))), 'truncated', `cut at ${cut}`);
  assert.equal(code(() => decodeEnrollmentStatement(bytes.subarray(0, bytes.length - 1))), 'truncated');
  assert.equal(code(() => decodeEnrollmentStatement(Uint8Array.of(...bytes, 0))), 'trailing_bytes');
  const bad = (at: number, value: number) => {
    const copy = bytes.slice();
    copy[at] = value;
    return copy;
  };
  assert.equal(code(() => decodeEnrollmentStatement(bad(0, 0x48))), 'bad_magic');
  assert.equal(code(() => decodeEnrollmentStatement(bad(4, 2))), 'bad_version');
  const didEnd = 6 + 66;
  assert.equal(code(() => decodeEnrollmentStatement(bad(didEnd + 1, 0x00))), 'bad_field', 'signing key length');
  assert.equal(code(() => decodeEnrollmentStatement(bad(didEnd + 2 + 1952, 0x13))), 'bad_field', 'unknown KEM id');
  assert.equal(code(() => decodeEnrollmentStatement(bad(30, bytes[30] === 0x61 ? 0x62 : 0x61))), 'wrong_device', 'a DID that is not the signing key\'s');
  assert.equal(code(() => decodeEnrollmentStatement(bad(10, 0x20))), 'bad_field', 'a DID with a space');
  // notAfter before notBefore
  const swapped = bytes.slice();
  swapped.set(bytes.subarray(bytes.length - 8), bytes.length - 16);
  swapped.set(bytes.subarray(bytes.length - 16, bytes.length - 8), bytes.length - 8);
  assert.equal(code(() => decodeEnrollmentStatement(swapped)), 'bad_field');
  assert.equal(code(() => encodeEnrollmentStatement({ ...statement, apiKeyId: 'XYZ' })), 'bad_field');
  assert.equal(code(() => encodeEnrollmentStatement({ ...statement, did: didFromSigningKey(fleet.publicKey) })), 'wrong_device');
  assert.equal(code(() => encodeEnrollmentStatement({ ...statement, kemPublicKey: kem.publicKey.subarray(1) })), 'bad_field');
  assert.equal(code(() => encodeEnrollmentStatement({ ...statement, notAfter: statement.notBefore })), 'bad_field');
  assert.equal(code(() => signEnrollmentStatement(fleet.seed, bytes.subarray(3))), 'bad_magic');
});
