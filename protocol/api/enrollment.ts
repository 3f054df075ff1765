/**
 * Enrollment proof of possession (docs/API.md, POST /v2/did/register): the device signs
 * challenge (32 bytes) || ML-DSA-65 public key || X-Wing public key with this context.
 */
import { concatBytes } from '../bytes.js';
import { ProtocolError } from '../errors.js';

/** ML-DSA-65 context string of the enrollment signature. */
export const ENROLL_CONTEXT = new TextEncoder().encode('ghostpipe/enroll/v1');
/** A challenge is 32 random bytes as unpadded base64url: 43 characters. */
export const CHALLENGE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export class EnrollmentError extends ProtocolError<'bad_challenge'> {}

/** The message a device signs at enrollment. */
export function enrollmentMessage(challenge: string, signingPublicKey: Uint8Array, kemPublicKey: Uint8Array): Uint8Array {
  if (!CHALLENGE_PATTERN.test(challenge)) throw new EnrollmentError('bad_challenge', 'challenge must be 43 base64url characters (32 bytes)');
  return concatBytes(Buffer.from(challenge, 'base64url'), signingPublicKey, kemPublicKey);
}
