/** Sealing: pad, HPKE base-mode single shot to the recipient, then ML-DSA-65 signature by the sender. */
import type { CryptoProvider } from '../crypto/provider.js';
import { getProvider } from '../crypto/provider.js';
import { ML_DSA65 } from '../crypto/sizes.js';
import { sealBase } from '../hpke/hpke.js';
import { keyId } from '../keys.js';
import { EnvelopeError } from './errors.js';
import { AEAD, DEFAULT_BUCKETS, FORMAT_VERSION, HEADER_LENGTH, INFO_LABEL, KDF, KEM_KEY_ALG, SIGNATURE_CONTEXT } from './constants.js';
import { encodeHeader } from './header.js';
import { pad } from './padding.js';
import { signatureMessage } from './signature.js';
import { chooseBucket, encLength, envelopeLength, bucketCapacity } from './sizes.js';

/** ML-DSA-65 device key: seed (32) and its public key (1952). */
export interface Sender { seed: Uint8Array; publicKey: Uint8Array }
export interface RecipientPublic { kemId: number; publicKey: Uint8Array }
export interface RecipientPrivate { kemId: number; seed: Uint8Array; publicKey: Uint8Array }

export interface SealOptions {
  plaintext: Uint8Array; recipient: RecipientPublic; sender: Sender;
  streamId: number; sequence: bigint; contentType: number;
  createdAt?: number; bucket?: number | 'auto'; buckets?: readonly number[]; aeadId?: number; provider?: CryptoProvider;
}

export function hpkeInfo(headerBytes: Uint8Array): Uint8Array {
  const info = new Uint8Array(INFO_LABEL.length + headerBytes.length);
  info.set(INFO_LABEL, 0);
  info.set(headerBytes, INFO_LABEL.length);
  return info;
}

export function recipientKeyAlg(kemId: number): 'X-Wing' | 'ML-KEM-768' {
  encLength(kemId); // unknown_suite
  return KEM_KEY_ALG[kemId as keyof typeof KEM_KEY_ALG];
}

function signerKeyId(publicKey: Uint8Array): Uint8Array {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== ML_DSA65.publicKey) throw new EnvelopeError('wrong_signer', `signer public key must be ${ML_DSA65.publicKey} bytes of ML-DSA-65`);
  return keyId('ML-DSA-65', publicKey);
}

export function sealEnvelope(o: SealOptions): Uint8Array {
  const provider = o.provider ?? getProvider();
  if (!(o.plaintext instanceof Uint8Array)) throw new EnvelopeError('bad_header', 'plaintext must be a Uint8Array');
  const alg = recipientKeyAlg(o.recipient.kemId);
  if (!(o.recipient.publicKey instanceof Uint8Array)) throw new EnvelopeError('wrong_recipient', 'recipient public key must be a Uint8Array');
  const recipientKeyId = (() => {
    try { return keyId(alg, o.recipient.publicKey); } catch { throw new EnvelopeError('wrong_recipient', `recipient public key is not a valid ${alg} key`); }
  })();
  if (!(o.sender.seed instanceof Uint8Array) || o.sender.seed.length !== ML_DSA65.seed) throw new EnvelopeError('wrong_signer', `sender seed must be ${ML_DSA65.seed} bytes`);
  const senderKeyId = signerKeyId(o.sender.publicKey);
  // A mismatched pair would seal envelopes nobody can verify; the provider caches the derivation.
  if (!Buffer.from(provider.mlDsa65.publicKeyFromSeed(o.sender.seed)).equals(o.sender.publicKey)) {
    throw new EnvelopeError('wrong_signer', 'sender public key does not belong to the sender seed');
  }

  const bucket = o.bucket === undefined || o.bucket === 'auto' ? chooseBucket(o.plaintext.length, o.buckets ?? DEFAULT_BUCKETS) : o.bucket;
  if (o.plaintext.length > bucketCapacity(bucket)) throw new EnvelopeError('too_large', `plaintext of ${o.plaintext.length} bytes does not fit bucket ${bucket}`);
  const header = {
    version: FORMAT_VERSION, kemId: o.recipient.kemId, kdfId: KDF.HKDF_SHA256, aeadId: o.aeadId ?? AEAD.AES256GCM,
    senderKeyId, recipientKeyId, streamId: o.streamId, sequence: o.sequence,
    createdAt: o.createdAt ?? Date.now(), bucket, contentType: o.contentType,
  };
  const headerBytes = encodeHeader(header);

  const padded = pad(o.plaintext, bucket);
  let sealed: { enc: Uint8Array; ciphertext: Uint8Array };
  try {
    sealed = sealBase({ kemId: header.kemId, kdfId: header.kdfId, aeadId: header.aeadId }, o.recipient.publicKey, hpkeInfo(headerBytes), headerBytes, padded, provider);
  } catch (err) {
    throw new EnvelopeError('wrong_recipient', `cannot encrypt to the recipient key: ${(err as Error).message}`);
  } finally {
    padded.fill(0);
  }

  const out = new Uint8Array(envelopeLength(bucket, header.kemId));
  out.set(headerBytes, 0);
  out.set(sealed.enc, HEADER_LENGTH);
  out.set(sealed.ciphertext, HEADER_LENGTH + sealed.enc.length);
  const signedLength = HEADER_LENGTH + sealed.enc.length + sealed.ciphertext.length;
  out.set(provider.mlDsa65.sign(o.sender.seed, signatureMessage(out.subarray(0, signedLength)), SIGNATURE_CONTEXT), signedLength);
  return out;
}

export { signerKeyId };
