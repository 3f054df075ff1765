import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { EnrollmentError, KEM_POP_LABEL, enrollmentMessage, kemProof } from './enrollment.js';

test('the enrollment message is challenge bytes || signing key || KEM key || kemProof', () => {
  const challenge = randomBytes(32);
  const signing = randomBytes(1952);
  const kem = randomBytes(1216);
  const proof = randomBytes(32);
  const message = enrollmentMessage(challenge.toString('base64url'), signing, kem, proof);
  assert.deepEqual(Buffer.from(message), Buffer.concat([challenge, signing, kem, proof]));
});

test('kemProof is SHA-256(label || challenge || ciphertext || shared secret)', () => {
  const challenge = randomBytes(32);
  const ct = randomBytes(1120);
  const ss = randomBytes(32);
  const expected = createHash('sha256').update(Buffer.concat([KEM_POP_LABEL, challenge, ct, ss])).digest();
  assert.deepEqual(Buffer.from(kemProof(challenge.toString('base64url'), ct, ss)), expected);
  assert.notDeepEqual(Buffer.from(kemProof(challenge.toString('base64url'), ct, randomBytes(32))), expected);
});

test('a challenge that is not 43 base64url characters, or a kemProof that is not 32 bytes, is refused by name', () => {
  for (const bad of ['', 'A'.repeat(42), 'A'.repeat(44), 'A'.repeat(42) + '+', 'A'.repeat(42) + '=']) {
    assert.throws(() => enrollmentMessage(bad, new Uint8Array(1952), new Uint8Array(1216), new Uint8Array(32)), (err: unknown) => err instanceof EnrollmentError && err.code === 'bad_challenge' && /43 base64url/.test(err.message));
  }
  assert.throws(() => enrollmentMessage('A'.repeat(43), new Uint8Array(1952), new Uint8Array(1216), new Uint8Array(31)), (err: unknown) => err instanceof EnrollmentError && err.code === 'bad_kem_proof');
});
