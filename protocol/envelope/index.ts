/** Ghost Pipe sealed envelope v1. Layout and rationale: docs/protocol/envelope.md. */
export { EnvelopeError, type EnvelopeErrorCode } from './errors.js';
export {
  AEAD, CONTENT_TYPE, DEFAULT_BUCKETS, FORMAT_VERSION, HEADER_LENGTH, INFO_LABEL, KDF, KEM, MAGIC, MAX_BUCKET, MIN_BUCKET, SIGNATURE_CONTEXT,
} from './constants.js';
export { bucketCapacity, chooseBucket, envelopeLength, validateBuckets, DEFAULT_MAX_SIZE } from './sizes.js';
export { type EnvelopeHeader } from './header.js';
export { parseEnvelope, peekEnvelopeLength, envelopeId, type ParsedEnvelope } from './parse.js';
export { sealEnvelope, type Sender, type RecipientPublic, type RecipientPrivate, type SealOptions } from './seal.js';
export { verifyEnvelope, openEnvelope, hpkeParameters } from './open.js';
export { signatureMessage } from './signature.js';
