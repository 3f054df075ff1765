/**
 * X-Wing KEM (draft-connolly-cfrg-xwing-kem; = MLKEM768-X25519, HPKE KEM id 0x647a):
 *   expanded = SHAKE256(seed, 96): d||z = [0:64] ML-KEM-768 seed, [64:96] X25519 secret
 *   pk = pk_M (1184) || pk_X (32); ct = ct_M (1088) || ct_X (32)
 *   ss = SHA3-256(ss_M || ss_X || ct_X || pk_X || "\.//^\")
 * ML-KEM runs on the chosen provider; X25519, SHAKE256 and SHA3-256 come from node:crypto.
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { CryptoProvider } from './interface.js';
import { KeyCache } from './cache.js';
import { expectLength, ML_KEM768 } from './checks.js';
import { x25519, x25519PrivateKey, x25519PublicKeyOf } from './x25519.js';

export const XWING = { seed: 32, publicKey: 1216, ciphertext: 1120, sharedSecret: 32, eseed: 64 } as const;
const LABEL = Buffer.from('5c2e2f2f5e5c', 'hex'); // \.//^\

interface Expanded { kemSeed: Uint8Array; xPrivate: KeyObject; xPublic: Uint8Array }
const expandedKeys = new KeyCache<Expanded>();

function expand(seed: Uint8Array): Expanded {
  expectLength(seed, XWING.seed, 'X-Wing seed');
  return expandedKeys.get(seed, () => {
    const expanded = createHash('shake256', { outputLength: 96 }).update(seed).digest();
    const xPrivate = x25519PrivateKey(expanded.subarray(64, 96));
    const result = { kemSeed: new Uint8Array(expanded.subarray(0, 64)), xPrivate, xPublic: x25519PublicKeyOf(xPrivate) };
    expanded.fill(0);
    return result;
  });
}

function combine(ssM: Uint8Array, ssX: Uint8Array, ctX: Uint8Array, pkX: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha3-256').update(ssM).update(ssX).update(ctX).update(pkX).update(LABEL).digest());
}

function splitPublicKey(publicKey: Uint8Array): { pkM: Uint8Array; pkX: Uint8Array } {
  expectLength(publicKey, XWING.publicKey, 'X-Wing public key');
  return { pkM: publicKey.subarray(0, ML_KEM768.publicKey), pkX: publicKey.subarray(ML_KEM768.publicKey) };
}

export function xwingPublicKeyFromSeed(seed: Uint8Array, provider: CryptoProvider): Uint8Array {
  const { kemSeed, xPublic } = expand(seed);
  const out = new Uint8Array(XWING.publicKey);
  out.set(provider.mlKem768.publicKeyFromSeed(kemSeed), 0);
  out.set(xPublic, ML_KEM768.publicKey);
  return out;
}

function encapsulateWith(publicKey: Uint8Array, ephemeralX: Uint8Array, kem: (pkM: Uint8Array) => { ciphertext: Uint8Array; sharedSecret: Uint8Array }) {
  const { pkM, pkX } = splitPublicKey(publicKey);
  const ephemeral = x25519PrivateKey(ephemeralX);
  const ctX = x25519PublicKeyOf(ephemeral);
  const ssX = x25519(ephemeral, pkX);
  const m = kem(pkM);
  const ciphertext = new Uint8Array(XWING.ciphertext);
  ciphertext.set(m.ciphertext, 0);
  ciphertext.set(ctX, ML_KEM768.ciphertext);
  return { ciphertext, sharedSecret: combine(m.sharedSecret, ssX, ctX, pkX) };
}

export function xwingEncapsulate(publicKey: Uint8Array, provider: CryptoProvider): { ciphertext: Uint8Array; sharedSecret: Uint8Array } {
  const ephemeralX = randomBytes(32);
  try {
    return encapsulateWith(publicKey, ephemeralX, (pkM) => provider.mlKem768.encapsulate(pkM));
  } finally {
    ephemeralX.fill(0);
  }
}

/** Derandomized encapsulation (eseed = ML-KEM coins || X25519 ephemeral secret). Vector tests only: always noble. */
export function xwingEncapsulateDerand(publicKey: Uint8Array, eseed: Uint8Array): { ciphertext: Uint8Array; sharedSecret: Uint8Array } {
  expectLength(eseed, XWING.eseed, 'X-Wing eseed');
  return encapsulateWith(publicKey, eseed.subarray(32, 64), (pkM) => {
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(pkM, Uint8Array.from(eseed.subarray(0, 32)));
    return { ciphertext: cipherText, sharedSecret };
  });
}

export function xwingDecapsulate(seed: Uint8Array, ciphertext: Uint8Array, provider: CryptoProvider): Uint8Array {
  expectLength(ciphertext, XWING.ciphertext, 'X-Wing ciphertext');
  const { kemSeed, xPrivate, xPublic } = expand(seed);
  const ctX = ciphertext.subarray(ML_KEM768.ciphertext);
  const ssM = provider.mlKem768.decapsulate(kemSeed, ciphertext.subarray(0, ML_KEM768.ciphertext));
  return combine(ssM, x25519(xPrivate, ctX), ctX, xPublic);
}
