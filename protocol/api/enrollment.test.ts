import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EnrollmentError, enrollmentMessage } from './enrollment.js';

test('the enrollment message is challenge bytes || signing key || KEM key', () => {
  const challenge = randomBytes(32);
  const signing = randomBytes(1952);
  const kem = randomBytes(1216);
  const message = enrollmentMessage(challenge.toString('base64url'), signing, kem);
  assert.deepEqual(Buffer.from(message), Buffer.concat([challenge, signing, kem]));
});

test('a challenge that is not 43 base64url characters is refused by name', () => {
  for (const bad of ['', 'A'.repeat(42), 'A'.repeat(44), 'A'.repeat(42) + '+', 'A'.repeat(42) + '=']) {
    assert.throws(() => enrollmentMessage(bad, new Uint8Array(1952), new Uint8Array(1216)), (err: unknown) => err instanceof EnrollmentError && err.code === 'bad_challenge' && /43 base64url/.test(err.message));
  }
});
