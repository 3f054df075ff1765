/** The relay's view of envelopes: size limits per plan and the checks it runs before storing. */
import {
  DEFAULT_BUCKETS, EnvelopeError, KEM, envelopeLength, parseEnvelope, peekEnvelopeLength, verifyEnvelope,
  type ParsedEnvelope,
} from '../protocol/envelope/index.js';

// The header decoder itself (not re-exported by the envelope's index): the relay checks sender and
// recipient from the first 109 bytes, before it reserves memory for the rest.
export { decodeHeaderPrefix, type DecodedHeader } from '../protocol/envelope/header.js';
export { EnvelopeError, peekEnvelopeLength, type ParsedEnvelope };
export const ALLOWED_BUCKETS: readonly number[] = DEFAULT_BUCKETS;

/** Largest envelope (bytes on the wire) whose bucket fits `maxBlob`; 0 when no bucket does. */
export function envelopeLimit(maxBlob: number, buckets: readonly number[] = ALLOWED_BUCKETS): number {
  let limit = 0;
  for (const bucket of buckets) {
    if (bucket > maxBlob) continue;
    for (const kem of Object.values(KEM)) limit = Math.max(limit, envelopeLength(bucket, kem));
  }
  return limit;
}

export function parseForRelay(bytes: Uint8Array, maxSize: number): ParsedEnvelope {
  const env = parseEnvelope(bytes, { maxSize });
  if (!ALLOWED_BUCKETS.includes(env.header.bucket)) throw new EnvelopeError('bad_bucket', `bucket ${env.header.bucket} is not one of ${ALLOWED_BUCKETS.join(', ')}`);
  return env;
}

/** true when the device's signature verifies. */
export function signatureValid(env: ParsedEnvelope, signingPublicKey: Uint8Array): boolean {
  try {
    verifyEnvelope(env, signingPublicKey);
    return true;
  } catch (err) {
    if (err instanceof EnvelopeError) return false;
    throw err;
  }
}
