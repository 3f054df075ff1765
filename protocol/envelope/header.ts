/**
 * Fixed 109-byte header (all integers big-endian). It is the HPKE aad, part of the HPKE info,
 * and the start of the signed bytes. Layout (offset size field):
 *    0  4 magic "GPEV"          37 32 senderKeyId
 *    4  1 version = 1           69 32 recipientKeyId
 *    5  2 kemId                101  2 encLength
 *    7  2 kdfId                103  4 ciphertextLength (= bucket + 16)
 *    9  2 aeadId               107  2 signatureLength (= 3309)
 *   11  2 contentType
 *   13  4 bucket
 *   17  4 streamId
 *   21  8 sequence
 *   29  8 createdAt (ms since the Unix epoch)
 */
import { EnvelopeError } from './errors.js';
import { AEAD_IDS, FORMAT_VERSION, HEADER_LENGTH, KDF, MAGIC, SIGNATURE_LENGTH, TAG_LENGTH } from './constants.js';
import { DEFAULT_MAX_SIZE, encLength, envelopeLength, isValidBucket } from './sizes.js';

export interface EnvelopeHeader {
  version: number; kemId: number; kdfId: number; aeadId: number;
  senderKeyId: Uint8Array; recipientKeyId: Uint8Array;
  streamId: number; sequence: bigint; createdAt: number; bucket: number; contentType: number;
}

const MAX_U64 = (1n << 64n) - 1n;
const isUint = (v: number, bits: number) => Number.isSafeInteger(v) && v >= 0 && v < 2 ** bits;
const hex4 = (v: number) => '0x' + v.toString(16).padStart(4, '0');

/** Checks the caller-supplied fields before sealing; errors are bad_header / unknown_suite / bad_bucket. */
export function checkHeaderFields(h: EnvelopeHeader): void {
  if (h.version !== FORMAT_VERSION) throw new EnvelopeError('unsupported_version', `envelope version ${h.version} is not ${FORMAT_VERSION}`);
  encLength(h.kemId);
  if (h.kdfId !== KDF.HKDF_SHA256) throw new EnvelopeError('unknown_suite', `unknown envelope KDF id ${hex4(h.kdfId)}`);
  if (!AEAD_IDS.includes(h.aeadId)) throw new EnvelopeError('unknown_suite', `unknown envelope AEAD id ${hex4(h.aeadId)}: allowed 0x0002 (AES-256-GCM), 0x0003 (ChaCha20-Poly1305)`);
  if (!isValidBucket(h.bucket)) throw new EnvelopeError('bad_bucket', `bucket ${h.bucket} outside the format limits`);
  if (!isUint(h.contentType, 16)) throw new EnvelopeError('bad_header', `contentType ${h.contentType} is not a u16`);
  if (!isUint(h.streamId, 32)) throw new EnvelopeError('bad_header', `streamId ${h.streamId} is not a u32`);
  if (typeof h.sequence !== 'bigint' || h.sequence < 0n || h.sequence > MAX_U64) throw new EnvelopeError('bad_header', 'sequence must be a bigint in [0, 2^64)');
  if (!Number.isSafeInteger(h.createdAt) || h.createdAt < 0) throw new EnvelopeError('bad_header', `createdAt ${h.createdAt} is not a non-negative integer of milliseconds`);
  for (const [name, id] of [['senderKeyId', h.senderKeyId], ['recipientKeyId', h.recipientKeyId]] as const) {
    if (!(id instanceof Uint8Array) || id.length !== 32) throw new EnvelopeError('bad_header', `${name} must be 32 bytes`);
  }
}

export function encodeHeader(h: EnvelopeHeader): Uint8Array {
  checkHeaderFields(h);
  const out = new Uint8Array(HEADER_LENGTH);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint8(4, h.version);
  view.setUint16(5, h.kemId);
  view.setUint16(7, h.kdfId);
  view.setUint16(9, h.aeadId);
  view.setUint16(11, h.contentType);
  view.setUint32(13, h.bucket);
  view.setUint32(17, h.streamId);
  view.setBigUint64(21, h.sequence);
  view.setBigUint64(29, BigInt(h.createdAt));
  out.set(h.senderKeyId, 37);
  out.set(h.recipientKeyId, 69);
  view.setUint16(101, encLength(h.kemId));
  view.setUint32(103, h.bucket + TAG_LENGTH);
  view.setUint16(107, SIGNATURE_LENGTH);
  return out;
}

export interface DecodedHeader { header: EnvelopeHeader; encLength: number; ciphertextLength: number; signatureLength: number; totalLength: number }

/**
 * Validates a header prefix. Magic and version are checked on whatever bytes are present; the rest
 * once all HEADER_LENGTH bytes are there. Returns undefined while the prefix is too short.
 */
export function decodeHeaderPrefix(prefix: Uint8Array, maxSize: number = DEFAULT_MAX_SIZE): DecodedHeader | undefined {
  if (!(prefix instanceof Uint8Array)) throw new EnvelopeError('bad_length', 'envelope must be a Uint8Array');
  for (let i = 0; i < Math.min(prefix.length, MAGIC.length); i++) {
    if (prefix[i] !== MAGIC[i]) throw new EnvelopeError('bad_magic', 'not a Ghost Pipe envelope (magic "GPEV" expected)');
  }
  if (prefix.length > 4 && prefix[4] !== FORMAT_VERSION) throw new EnvelopeError('unsupported_version', `envelope format version ${prefix[4]} is not supported (expected ${FORMAT_VERSION})`);
  if (prefix.length < HEADER_LENGTH) return undefined;

  const view = new DataView(prefix.buffer, prefix.byteOffset, HEADER_LENGTH);
  const kemId = view.getUint16(5), kdfId = view.getUint16(7), aeadId = view.getUint16(9);
  const bucket = view.getUint32(13);
  const createdAt = view.getBigUint64(29);
  const declared = { enc: view.getUint16(101), ciphertext: view.getUint32(103), signature: view.getUint16(107) };
  const enc = encLength(kemId); // unknown_suite
  if (kdfId !== KDF.HKDF_SHA256) throw new EnvelopeError('unknown_suite', `unknown envelope KDF id ${hex4(kdfId)}`);
  if (!AEAD_IDS.includes(aeadId)) throw new EnvelopeError('unknown_suite', `unknown envelope AEAD id ${hex4(aeadId)}`);
  if (!isValidBucket(bucket)) throw new EnvelopeError('bad_bucket', `declared bucket ${bucket} outside the format limits`);
  if (declared.enc !== enc) throw new EnvelopeError('bad_length', `declared enc length ${declared.enc} does not match KEM ${hex4(kemId)} (${enc})`);
  if (declared.ciphertext !== bucket + TAG_LENGTH) throw new EnvelopeError('bad_length', `declared ciphertext length ${declared.ciphertext} does not match bucket ${bucket} + ${TAG_LENGTH}`);
  if (declared.signature !== SIGNATURE_LENGTH) throw new EnvelopeError('bad_length', `declared signature length ${declared.signature} is not ${SIGNATURE_LENGTH}`);
  if (createdAt > BigInt(Number.MAX_SAFE_INTEGER)) throw new EnvelopeError('bad_header', 'createdAt beyond the representable time range');
  const totalLength = envelopeLength(bucket, kemId);
  if (totalLength > maxSize) throw new EnvelopeError('too_large', `envelope of ${totalLength} bytes exceeds the limit of ${maxSize} bytes`);

  return {
    header: {
      version: FORMAT_VERSION, kemId, kdfId, aeadId,
      senderKeyId: prefix.slice(37, 69), recipientKeyId: prefix.slice(69, 101),
      streamId: view.getUint32(17), sequence: view.getBigUint64(21), createdAt: Number(createdAt),
      bucket, contentType: view.getUint16(11),
    },
    encLength: enc, ciphertextLength: declared.ciphertext, signatureLength: declared.signature, totalLength,
  };
}
