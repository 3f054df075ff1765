/**
 * node:crypto provider (OpenSSL 3.5: Node >= 24.7). Keys are imported from seed-only PKCS#8
 * (FIPS 204 / FIPS 203 "seed" CHOICE [0]) so native and noble derive identical key pairs.
 * Availability is a feature test (keygen from seed, sign with context, encapsulate/decapsulate),
 * never a version-string check. @types/node 20 lacks these APIs, hence the local typing.
 */
import * as nodeCrypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { CryptoProvider } from './interface.js';
import { KeyCache } from './cache.js';
import { checkContext, expectLength, verifyInputsWellFormed, ML_DSA65, ML_KEM768 } from './checks.js';

interface Node24Crypto {
  encapsulate(key: KeyObject): { sharedKey: Buffer; ciphertext: Buffer };
  decapsulate(key: KeyObject, ciphertext: Uint8Array): Buffer;
  sign(algorithm: null, data: Uint8Array, key: { key: KeyObject; context?: Uint8Array }): Buffer;
  verify(algorithm: null, data: Uint8Array, key: { key: KeyObject; context?: Uint8Array }, signature: Uint8Array): boolean;
}
const crypto24 = nodeCrypto as unknown as Node24Crypto;

const hex = (s: string) => Buffer.from(s.replace(/ /g, ''), 'hex');
// PKCS#8 OneAsymmetricKey { version 0, AlgorithmIdentifier { OID }, OCTET STRING { [0] seed } }
const DSA_PKCS8_PREFIX = hex('30 34 02 01 00 30 0b 06 09 60 86 48 01 65 03 04 03 12 04 22 80 20');
const KEM_PKCS8_PREFIX = hex('30 54 02 01 00 30 0b 06 09 60 86 48 01 65 03 04 04 02 04 42 80 40');
// SubjectPublicKeyInfo { AlgorithmIdentifier { OID }, BIT STRING { 0 unused bits, key } }
const DSA_SPKI_PREFIX = hex('30 82 07 b2 30 0b 06 09 60 86 48 01 65 03 04 03 12 03 82 07 a1 00');
const KEM_SPKI_PREFIX = hex('30 82 04 b2 30 0b 06 09 60 86 48 01 65 03 04 04 02 03 82 04 a1 00');

type Pair = { privateKey: KeyObject; publicKey: KeyObject; rawPublic: Uint8Array };
const dsaPrivate = new KeyCache<Pair>();
const kemPrivate = new KeyCache<Pair>();
const dsaPublic = new KeyCache<KeyObject>(64);
const kemPublic = new KeyCache<KeyObject>(64);

function importSeed(prefix: Buffer, seed: Uint8Array, publicLength: number): Pair {
  const der = Buffer.concat([prefix, seed]);
  try {
    const privateKey = nodeCrypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    const publicKey = nodeCrypto.createPublicKey(privateKey);
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    return { privateKey, publicKey, rawPublic: new Uint8Array(spki.subarray(spki.length - publicLength)) };
  } finally {
    der.fill(0); // the DER copy holds the seed
  }
}

function dsaPair(seed: Uint8Array): Pair {
  expectLength(seed, ML_DSA65.seed, 'ML-DSA-65 seed');
  return dsaPrivate.get(seed, () => importSeed(DSA_PKCS8_PREFIX, seed, ML_DSA65.publicKey));
}

function kemPair(seed: Uint8Array): Pair {
  expectLength(seed, ML_KEM768.seed, 'ML-KEM-768 seed');
  return kemPrivate.get(seed, () => importSeed(KEM_PKCS8_PREFIX, seed, ML_KEM768.publicKey));
}

function publicKeyObject(cache: KeyCache<KeyObject>, prefix: Buffer, raw: Uint8Array): KeyObject {
  return cache.get(raw, () => nodeCrypto.createPublicKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'spki' }));
}

export const nativeProvider: CryptoProvider = Object.freeze({
  name: 'native' as const,
  mlDsa65: Object.freeze({
    publicKeyFromSeed: (seed: Uint8Array) => Uint8Array.from(dsaPair(seed).rawPublic),
    sign(seed: Uint8Array, message: Uint8Array, context: Uint8Array): Uint8Array {
      checkContext(context);
      // OpenSSL signs hedged by default (fresh rnd per signature).
      return new Uint8Array(crypto24.sign(null, message, { key: dsaPair(seed).privateKey, context }));
    },
    verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array, context: Uint8Array): boolean {
      if (!verifyInputsWellFormed(publicKey, message, signature, context)) return false;
      try {
        const key = publicKeyObject(dsaPublic, DSA_SPKI_PREFIX, publicKey);
        return crypto24.verify(null, message, { key, context }, signature);
      } catch {
        return false;
      }
    },
  }),
  mlKem768: Object.freeze({
    publicKeyFromSeed: (seed: Uint8Array) => Uint8Array.from(kemPair(seed).rawPublic),
    encapsulate(publicKey: Uint8Array) {
      expectLength(publicKey, ML_KEM768.publicKey, 'ML-KEM-768 public key');
      const { sharedKey, ciphertext } = crypto24.encapsulate(publicKeyObject(kemPublic, KEM_SPKI_PREFIX, publicKey));
      return { ciphertext: new Uint8Array(ciphertext), sharedSecret: new Uint8Array(sharedKey) };
    },
    decapsulate(seed: Uint8Array, ciphertext: Uint8Array): Uint8Array {
      expectLength(ciphertext, ML_KEM768.ciphertext, 'ML-KEM-768 ciphertext');
      return new Uint8Array(crypto24.decapsulate(kemPair(seed).privateKey, ciphertext));
    },
  }),
});

let available: boolean | undefined;

/** Feature test, run once: the exact operations this provider uses must work end to end. */
export function nativeAvailable(): boolean {
  if (available !== undefined) return available;
  try {
    if (typeof crypto24.encapsulate !== 'function' || typeof crypto24.decapsulate !== 'function') return (available = false);
    const dsaSeed = new Uint8Array(32).fill(7);
    const message = new Uint8Array([1, 2, 3]);
    const context = new Uint8Array([9]);
    const { privateKey, publicKey } = importSeed(DSA_PKCS8_PREFIX, dsaSeed, ML_DSA65.publicKey);
    const signature = crypto24.sign(null, message, { key: privateKey, context });
    // A context-ignoring implementation would accept the wrong context: that is not FIPS 204 pure with ctx.
    const contextHonoured = crypto24.verify(null, message, { key: publicKey, context }, signature)
      && !crypto24.verify(null, message, { key: publicKey, context: new Uint8Array([8]) }, signature);
    const kem = importSeed(KEM_PKCS8_PREFIX, new Uint8Array(64).fill(5), ML_KEM768.publicKey);
    const { sharedKey, ciphertext } = crypto24.encapsulate(kem.publicKey);
    const kemWorks = ciphertext.length === ML_KEM768.ciphertext && crypto24.decapsulate(kem.privateKey, ciphertext).equals(sharedKey);
    available = signature.length === ML_DSA65.signature && contextHonoured && kemWorks;
  } catch {
    available = false;
  }
  return available;
}
