/** Padding: u32 big-endian plaintext length || plaintext || zero fill up to the bucket size. */
import { EnvelopeError } from './errors.js';
import { PADDING_PREFIX_LENGTH } from './constants.js';
import { bucketCapacity } from './sizes.js';

export function pad(plaintext: Uint8Array, bucket: number): Uint8Array {
  const capacity = bucketCapacity(bucket);
  if (plaintext.length > capacity) throw new EnvelopeError('too_large', `plaintext of ${plaintext.length} bytes exceeds bucket ${bucket} capacity ${capacity}`);
  const out = new Uint8Array(bucket); // zero-filled
  new DataView(out.buffer).setUint32(0, plaintext.length);
  out.set(plaintext, PADDING_PREFIX_LENGTH);
  return out;
}

/** Inverse of pad. Strict: the length must fit and every fill byte must be zero (one encoding per plaintext). */
export function unpad(padded: Uint8Array): Uint8Array {
  if (padded.length < PADDING_PREFIX_LENGTH) throw new EnvelopeError('bad_padding', 'padded plaintext shorter than its length prefix');
  const length = new DataView(padded.buffer, padded.byteOffset, padded.byteLength).getUint32(0);
  if (length > padded.length - PADDING_PREFIX_LENGTH) throw new EnvelopeError('bad_padding', `padding length prefix ${length} exceeds the bucket`);
  let fill = 0;
  for (let i = PADDING_PREFIX_LENGTH + length; i < padded.length; i++) fill |= padded[i]!;
  if (fill !== 0) throw new EnvelopeError('bad_padding', 'padding fill bytes are not zero');
  return padded.slice(PADDING_PREFIX_LENGTH, PADDING_PREFIX_LENGTH + length);
}
