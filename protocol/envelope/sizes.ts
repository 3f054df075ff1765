/** Bucket rules and envelope lengths. Every envelope of one bucket and KEM has exactly one length. */
import { EnvelopeError } from './errors.js';
import { DEFAULT_BUCKETS, ENC_LENGTH, HEADER_LENGTH, MAX_BUCKET, MIN_BUCKET, PADDING_PREFIX_LENGTH, SIGNATURE_LENGTH, TAG_LENGTH } from './constants.js';

export function isValidBucket(bucket: number): boolean {
  return Number.isSafeInteger(bucket) && bucket >= MIN_BUCKET && bucket <= MAX_BUCKET;
}

export function checkBucket(bucket: number): void {
  if (!Number.isSafeInteger(bucket) || bucket > MAX_BUCKET) throw new EnvelopeError('bad_bucket', `bucket ${bucket} is not an integer number of bytes up to ${MAX_BUCKET}`);
  if (bucket < MIN_BUCKET) throw new EnvelopeError('too_small', `bucket ${bucket} is smaller than the minimum ${MIN_BUCKET} bytes`);
}

/** Validates a configured bucket list: ascending, unique, each within the format limits. */
export function validateBuckets(buckets: readonly number[]): void {
  if (!Array.isArray(buckets) || buckets.length === 0) throw new EnvelopeError('bad_bucket', 'bucket list must be a non-empty array');
  buckets.forEach((b, i) => {
    checkBucket(b);
    if (i > 0 && b <= buckets[i - 1]!) throw new EnvelopeError('bad_bucket', `bucket list must be strictly ascending: ${buckets.join(', ')}`);
  });
}

/** Largest plaintext a bucket holds (the bucket minus the 4-byte length prefix). */
export function bucketCapacity(bucket: number): number {
  checkBucket(bucket);
  return bucket - PADDING_PREFIX_LENGTH;
}

/** Smallest bucket that holds the plaintext; throws too_large when none does. */
export function chooseBucket(plaintextLength: number, buckets: readonly number[] = DEFAULT_BUCKETS): number {
  validateBuckets(buckets);
  const bucket = buckets.find((b) => plaintextLength <= b - PADDING_PREFIX_LENGTH);
  if (bucket === undefined) {
    throw new EnvelopeError('too_large', `plaintext of ${plaintextLength} bytes exceeds the largest bucket capacity ${bucketCapacity(buckets[buckets.length - 1]!)} bytes; split it`);
  }
  return bucket;
}

export function encLength(kemId: number): number {
  const length = ENC_LENGTH[kemId];
  if (length === undefined) throw new EnvelopeError('unknown_suite', `unknown envelope KEM id 0x${kemId.toString(16).padStart(4, '0')}`);
  return length;
}

/** Total envelope bytes: header, enc, AEAD ciphertext (bucket + tag), signature. */
export function envelopeLength(bucket: number, kemId: number): number {
  checkBucket(bucket);
  return HEADER_LENGTH + encLength(kemId) + bucket + TAG_LENGTH + SIGNATURE_LENGTH;
}

/** Default parse limit: the largest default bucket with the largest enc (X-Wing). */
export const DEFAULT_MAX_SIZE = Math.max(...Object.keys(ENC_LENGTH).map((k) => envelopeLength(DEFAULT_BUCKETS[DEFAULT_BUCKETS.length - 1]!, Number(k))));
