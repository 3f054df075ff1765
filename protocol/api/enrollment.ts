/**
 * Enrollment proof of possession (docs/API.md, POST /v2/did/challenge and /v2/did/register).
 *
 * X-Wing key: the challenge request names the KEM public key; the relay encapsulates to it and
 * sends the ciphertext with the challenge. Only the holder of the KEM private key can decapsulate
 * it, so kemProof = SHA-256(KEM_POP_LABEL || challenge (32) || ciphertext || shared secret) proves
 * possession (the relay knows the shared secret and recomputes it).
 * ML-DSA-65 key: the device signs
 *   challenge (32) || ML-DSA-65 public key || X-Wing public key || kemProof (32)
 * with ENROLL_CONTEXT, which binds both keys to one holder and to this relay's challenge.
 */
import { createHash } from 'node:crypto';
import { concatBytes } from '../bytes.js';
import { ProtocolError } from '../errors.js';

/** ML-DSA-65 context string of the enrollment signature (v2: the message includes kemProof). */
export const ENROLL_CONTEXT = new TextEncoder().encode('ghostpipe/enroll/v2');
/** Domain separation of the KEM proof of possession. */
export const KEM_POP_LABEL = new TextEncoder().encode('ghostpipe/enroll/v2/kem-pop');
/** A challenge is 32 random bytes as unpadded base64url: 43 characters. */
export const CHALLENGE_PATTERN = /^[A-Za-z0-9_-]{43}$/;
export const KEM_PROOF_BYTES = 32;

export class EnrollmentError extends ProtocolError<'bad_challenge' | 'bad_kem_proof'> {}

function challengeBytes(challenge: string): Uint8Array {
  if (!CHALLENGE_PATTERN.test(challenge)) throw new EnrollmentError('bad_challenge', 'challenge must be 43 base64url characters (32 bytes)');
  return Buffer.from(challenge, 'base64url');
}

/** The proof of possession of the KEM key, from the decapsulated (device) or encapsulated (relay) secret. */
export function kemProof(challenge: string, kemCiphertext: Uint8Array, sharedSecret: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(KEM_POP_LABEL).update(challengeBytes(challenge)).update(kemCiphertext).update(sharedSecret).digest());
}

/** The message a device signs at enrollment. */
export function enrollmentMessage(challenge: string, signingPublicKey: Uint8Array, kemPublicKey: Uint8Array, proof: Uint8Array): Uint8Array {
  if (!(proof instanceof Uint8Array) || proof.length !== KEM_PROOF_BYTES) throw new EnrollmentError('bad_kem_proof', `kemProof must be ${KEM_PROOF_BYTES} bytes`);
  return concatBytes(challengeBytes(challenge), signingPublicKey, kemPublicKey, proof);
}
