/** Structural parsing: no keys needed. The returned byte fields are views into the input (no copies). */
import { createHash } from 'node:crypto';
import { EnvelopeError } from './errors.js';
import { HEADER_LENGTH } from './constants.js';
import { decodeHeaderPrefix, type EnvelopeHeader } from './header.js';

export interface ParsedEnvelope {
  header: EnvelopeHeader;
  headerBytes: Uint8Array;
  enc: Uint8Array;
  ciphertext: Uint8Array;
  signature: Uint8Array;
  /** header || enc || ciphertext: what the ML-DSA-65 signature covers. */
  signedBytes: Uint8Array;
  bytes: Uint8Array;
}

export function parseEnvelope(bytes: Uint8Array, o: { maxSize?: number } = {}): ParsedEnvelope {
  const decoded = decodeHeaderPrefix(bytes, o.maxSize);
  if (decoded === undefined) throw new EnvelopeError('truncated', `envelope truncated: ${bytes.length} bytes, the fixed header alone is ${HEADER_LENGTH}`);
  if (bytes.length < decoded.totalLength) throw new EnvelopeError('truncated', `envelope truncated: ${bytes.length} of ${decoded.totalLength} bytes`);
  if (bytes.length > decoded.totalLength) throw new EnvelopeError('trailing_bytes', `${bytes.length - decoded.totalLength} bytes after the end of the envelope`);
  const encEnd = HEADER_LENGTH + decoded.encLength;
  const ctEnd = encEnd + decoded.ciphertextLength;
  return {
    header: decoded.header,
    headerBytes: bytes.subarray(0, HEADER_LENGTH),
    enc: bytes.subarray(HEADER_LENGTH, encEnd),
    ciphertext: bytes.subarray(encEnd, ctEnd),
    signature: bytes.subarray(ctEnd),
    signedBytes: bytes.subarray(0, ctEnd),
    bytes,
  };
}

/**
 * Total length the header declares, once all HEADER_LENGTH bytes arrived (undefined before), so a
 * streaming reader can stop early. Throws EnvelopeError on bad magic/version/suite/lengths/size.
 */
export function peekEnvelopeLength(prefix: Uint8Array, o: { maxSize?: number } = {}): number | undefined {
  return decodeHeaderPrefix(prefix, o.maxSize)?.totalLength;
}

/** Lowercase hex SHA-256 of the whole envelope (the transparency-log leaf data and delivery id). */
export function envelopeId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
