/** Verification and opening of a parsed envelope. */
import { timingSafeEqual } from 'node:crypto';
import type { CryptoProvider } from '../crypto/provider.js';
import { getProvider } from '../crypto/provider.js';
import { openBase } from '../hpke/hpke.js';
import { keyId } from '../keys.js';
import { EnvelopeError } from './errors.js';
import { SIGNATURE_CONTEXT } from './constants.js';
import { unpad } from './padding.js';
import { signatureMessage } from './signature.js';
import type { ParsedEnvelope } from './parse.js';
import { hpkeInfo, recipientKeyAlg, signerKeyId, type RecipientPrivate } from './seal.js';

const sameId = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);

/** Checks that senderKeyId names this key ('wrong_signer'), then the ML-DSA-65 signature ('bad_signature'). */
export function verifyEnvelope(env: ParsedEnvelope, signerPublicKey: Uint8Array, provider: CryptoProvider = getProvider()): void {
  if (!sameId(env.header.senderKeyId, signerKeyId(signerPublicKey))) {
    throw new EnvelopeError('wrong_signer', 'envelope sender key id does not match the given signer key');
  }
  if (!provider.mlDsa65.verify(signerPublicKey, signatureMessage(env.signedBytes), env.signature, SIGNATURE_CONTEXT)) {
    throw new EnvelopeError('bad_signature', 'envelope signature does not verify');
  }
}

/** Verify, check the recipient key id ('wrong_recipient'), decrypt ('decrypt_failed'), unpad ('bad_padding'). */
export function openEnvelope(env: ParsedEnvelope, recipient: RecipientPrivate, signerPublicKey: Uint8Array, provider: CryptoProvider = getProvider()): Uint8Array {
  verifyEnvelope(env, signerPublicKey, provider);
  const { header } = env;
  if (recipient.kemId !== header.kemId) throw new EnvelopeError('wrong_recipient', `envelope is for KEM 0x${header.kemId.toString(16)}, the key is for 0x${recipient.kemId.toString(16)}`);
  let recipientId: Uint8Array;
  try {
    recipientId = keyId(recipientKeyAlg(recipient.kemId), recipient.publicKey);
  } catch {
    throw new EnvelopeError('wrong_recipient', 'recipient public key is malformed');
  }
  if (!sameId(header.recipientKeyId, recipientId)) throw new EnvelopeError('wrong_recipient', 'envelope is addressed to another recipient key');
  let padded: Uint8Array;
  try {
    padded = openBase({ kemId: header.kemId, kdfId: header.kdfId, aeadId: header.aeadId }, env.enc, recipient.seed, hpkeInfo(env.headerBytes), env.headerBytes, env.ciphertext, provider);
  } catch {
    throw new EnvelopeError('decrypt_failed', 'envelope does not decrypt with this recipient key');
  }
  try {
    return unpad(padded);
  } finally {
    padded.fill(0);
  }
}

/** The plain HPKE parameters, so any RFC 9180 implementation (or `ghostpipe inspect`) can open the envelope. */
export function hpkeParameters(env: ParsedEnvelope): { kemId: number; kdfId: number; aeadId: number; enc: Uint8Array; info: Uint8Array; aad: Uint8Array; ciphertext: Uint8Array } {
  const { kemId, kdfId, aeadId } = env.header;
  return { kemId, kdfId, aeadId, enc: env.enc, info: hpkeInfo(env.headerBytes), aad: env.headerBytes, ciphertext: env.ciphertext };
}
