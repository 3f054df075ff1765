/** @noble/post-quantum provider: pure JS, runs on every Node version. */
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { CryptoProvider } from './interface.js';
import { KeyCache } from './cache.js';
import { checkContext, expectLength, verifyInputsWellFormed, ML_DSA65, ML_KEM768 } from './checks.js';

type KeyPair = { secretKey: Uint8Array; publicKey: Uint8Array };
const dsaKeys = new KeyCache<KeyPair>();
const kemKeys = new KeyCache<KeyPair>();

function dsaKeyPair(seed: Uint8Array): KeyPair {
  expectLength(seed, ML_DSA65.seed, 'ML-DSA-65 seed');
  return dsaKeys.get(seed, () => ml_dsa65.keygen(Uint8Array.from(seed)));
}

function kemKeyPair(seed: Uint8Array): KeyPair {
  expectLength(seed, ML_KEM768.seed, 'ML-KEM-768 seed');
  return kemKeys.get(seed, () => ml_kem768.keygen(Uint8Array.from(seed)));
}

export const nobleProvider: CryptoProvider = Object.freeze({
  name: 'noble' as const,
  mlDsa65: Object.freeze({
    publicKeyFromSeed: (seed: Uint8Array) => Uint8Array.from(dsaKeyPair(seed).publicKey),
    sign(seed: Uint8Array, message: Uint8Array, context: Uint8Array): Uint8Array {
      checkContext(context);
      // noble signs hedged (fresh 32-byte rnd) unless extraEntropy: false is passed.
      return ml_dsa65.sign(message, dsaKeyPair(seed).secretKey, { context });
    },
    verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, context: Uint8Array): boolean {
      if (!verifyInputsWellFormed(publicKey, message, signature, context)) return false;
      try {
        return ml_dsa65.verify(signature, message, publicKey, { context });
      } catch {
        return false;
      }
    },
  }),
  mlKem768: Object.freeze({
    publicKeyFromSeed: (seed: Uint8Array) => Uint8Array.from(kemKeyPair(seed).publicKey),
    encapsulate(publicKey: Uint8Array) {
      expectLength(publicKey, ML_KEM768.publicKey, 'ML-KEM-768 public key');
      const { cipherText, sharedSecret } = ml_kem768.encapsulate(publicKey);
      return { ciphertext: cipherText, sharedSecret };
    },
    decapsulate(seed: Uint8Array, ciphertext: Uint8Array): Uint8Array {
      expectLength(ciphertext, ML_KEM768.ciphertext, 'ML-KEM-768 ciphertext');
      return ml_kem768.decapsulate(ciphertext, kemKeyPair(seed).secretKey);
    },
  }),
});
