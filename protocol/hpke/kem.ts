/**
 * HPKE KEMs: X-Wing (0x647a) and ML-KEM-768 (0x0041) per draft-ietf-hpke-pq, where the KEM's own
 * shared secret is the HPKE shared_secret and enc is its ciphertext; DHKEM(X25519, HKDF-SHA256)
 * (0x0020, RFC 9180 §4.1) exists only to run the RFC 9180 key-schedule vectors.
 * Secret keys are seeds: X-Wing 32 bytes, ML-KEM-768 64 bytes (d||z), X25519 32 bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { CryptoProvider } from '../crypto/provider.js';
import { xwingDecapsulate, xwingEncapsulate, xwingEncapsulateDerand, xwingPublicKeyFromSeed, XWING } from '../crypto/xwing.js';
import { x25519, x25519PrivateKey, x25519PublicKeyOf } from '../crypto/x25519.js';
import { ML_KEM768 } from '../crypto/sizes.js';
import { HpkeError } from './errors.js';
import { ascii, concat, i2osp, labeledExpand, labeledExtract } from './kdf.js';

export const KEM_XWING = 0x647a;
export const KEM_MLKEM768 = 0x0041;
export const KEM_DHKEM_X25519 = 0x0020;

export interface Kem {
  readonly id: number;
  readonly name: string;
  readonly secretKeyLength: number;
  readonly publicKeyLength: number;
  readonly encLength: number;
  /** Length of the randomness that encapDerand takes (vectors' ikmE). */
  readonly encapRandomnessLength: number;
  publicKeyFromSecret(secretKey: Uint8Array, provider: CryptoProvider): Uint8Array;
  deriveKeyPair(ikm: Uint8Array, provider: CryptoProvider): { secretKey: Uint8Array; publicKey: Uint8Array };
  encap(publicKey: Uint8Array, provider: CryptoProvider): { enc: Uint8Array; sharedSecret: Uint8Array };
  /** Deterministic encapsulation for test vectors (noble internals; never used to seal real data). */
  encapDerand(publicKey: Uint8Array, randomness: Uint8Array): { enc: Uint8Array; sharedSecret: Uint8Array };
  decap(enc: Uint8Array, secretKey: Uint8Array, provider: CryptoProvider): Uint8Array;
}

const kemSuiteId = (id: number) => concat(ascii('KEM'), i2osp(id, 2));

/** draft-ietf-hpke-pq DeriveKeyPair: SHAKE256(ikm || "HPKE-v1" || suite_id || I2OSP(len(label),2) || label || I2OSP(L,2) || "", L). */
function shakeDerive(id: number, ikm: Uint8Array, length: number): Uint8Array {
  const label = ascii('DeriveKeyPair');
  const input = concat(ikm, ascii('HPKE-v1'), kemSuiteId(id), i2osp(label.length, 2), label, i2osp(length, 2));
  return new Uint8Array(createHash('shake256', { outputLength: length }).update(input).digest());
}

function checked(what: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new HpkeError('bad_input', `${what} must be ${length} bytes`);
}

function decapGuard(fn: () => Uint8Array): Uint8Array {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HpkeError) throw err;
    throw new HpkeError('decap_failed', 'KEM decapsulation failed');
  }
}

const xwing: Kem = {
  id: KEM_XWING, name: 'X-Wing', secretKeyLength: XWING.seed, publicKeyLength: XWING.publicKey, encLength: XWING.ciphertext, encapRandomnessLength: XWING.eseed,
  publicKeyFromSecret: (sk, provider) => xwingPublicKeyFromSeed(sk, provider),
  deriveKeyPair(ikm, provider) {
    const secretKey = shakeDerive(KEM_XWING, ikm, XWING.seed);
    return { secretKey, publicKey: xwingPublicKeyFromSeed(secretKey, provider) };
  },
  encap(pk, provider) {
    checked('X-Wing public key', pk, XWING.publicKey);
    const { ciphertext, sharedSecret } = xwingEncapsulate(pk, provider);
    return { enc: ciphertext, sharedSecret };
  },
  encapDerand(pk, randomness) {
    checked('X-Wing public key', pk, XWING.publicKey);
    const { ciphertext, sharedSecret } = xwingEncapsulateDerand(pk, randomness);
    return { enc: ciphertext, sharedSecret };
  },
  decap(enc, sk, provider) {
    checked('X-Wing enc', enc, XWING.ciphertext);
    checked('X-Wing secret key', sk, XWING.seed);
    return decapGuard(() => xwingDecapsulate(sk, enc, provider));
  },
};

const mlkem768: Kem = {
  id: KEM_MLKEM768, name: 'ML-KEM-768', secretKeyLength: ML_KEM768.seed, publicKeyLength: ML_KEM768.publicKey, encLength: ML_KEM768.ciphertext, encapRandomnessLength: 32,
  publicKeyFromSecret: (sk, provider) => provider.mlKem768.publicKeyFromSeed(sk),
  deriveKeyPair(ikm, provider) {
    const secretKey = shakeDerive(KEM_MLKEM768, ikm, ML_KEM768.seed);
    return { secretKey, publicKey: provider.mlKem768.publicKeyFromSeed(secretKey) };
  },
  encap(pk, provider) {
    checked('ML-KEM-768 public key', pk, ML_KEM768.publicKey);
    const { ciphertext, sharedSecret } = provider.mlKem768.encapsulate(pk);
    return { enc: ciphertext, sharedSecret };
  },
  encapDerand(pk, randomness) {
    checked('ML-KEM-768 public key', pk, ML_KEM768.publicKey);
    checked('ML-KEM-768 encapsulation randomness', randomness, 32);
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(pk, Uint8Array.from(randomness));
    return { enc: cipherText, sharedSecret };
  },
  decap(enc, sk, provider) {
    checked('ML-KEM-768 enc', enc, ML_KEM768.ciphertext);
    checked('ML-KEM-768 secret key', sk, ML_KEM768.seed);
    return decapGuard(() => provider.mlKem768.decapsulate(sk, enc));
  },
};

// DHKEM(X25519, HKDF-SHA256), RFC 9180 §4.1 and §7.1.3.
const DH_SUITE = kemSuiteId(KEM_DHKEM_X25519);
const EMPTY = new Uint8Array(0);

function dhDerive(ikm: Uint8Array): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const prk = labeledExtract(DH_SUITE, EMPTY, 'dkp_prk', ikm);
  const secretKey = labeledExpand(DH_SUITE, prk, 'sk', EMPTY, 32);
  return { secretKey, publicKey: x25519PublicKeyOf(x25519PrivateKey(secretKey)) };
}

function dhSharedSecret(dh: Uint8Array, enc: Uint8Array, pkR: Uint8Array): Uint8Array {
  const prk = labeledExtract(DH_SUITE, EMPTY, 'eae_prk', dh);
  return labeledExpand(DH_SUITE, prk, 'shared_secret', concat(enc, pkR), 32);
}

function dhEncapWith(pkR: Uint8Array, ephemeral: { secretKey: Uint8Array; publicKey: Uint8Array }) {
  checked('X25519 public key', pkR, 32);
  const dh = x25519(x25519PrivateKey(ephemeral.secretKey), pkR);
  return { enc: ephemeral.publicKey, sharedSecret: dhSharedSecret(dh, ephemeral.publicKey, pkR) };
}

const dhkemX25519: Kem = {
  id: KEM_DHKEM_X25519, name: 'DHKEM(X25519, HKDF-SHA256)', secretKeyLength: 32, publicKeyLength: 32, encLength: 32, encapRandomnessLength: 32,
  publicKeyFromSecret: (sk) => x25519PublicKeyOf(x25519PrivateKey(sk)),
  deriveKeyPair: (ikm) => dhDerive(ikm),
  encap: (pk) => dhEncapWith(pk, dhDerive(new Uint8Array(randomBytes(32)))),
  encapDerand: (pk, randomness) => dhEncapWith(pk, dhDerive(randomness)),
  decap(enc, sk) {
    checked('X25519 enc', enc, 32);
    checked('X25519 secret key', sk, 32);
    return decapGuard(() => {
      const privateKey = x25519PrivateKey(sk);
      return dhSharedSecret(x25519(privateKey, enc), enc, x25519PublicKeyOf(privateKey));
    });
  },
};

const kems: Record<number, Kem> = { [KEM_XWING]: xwing, [KEM_MLKEM768]: mlkem768, [KEM_DHKEM_X25519]: dhkemX25519 };

export function getKem(id: number): Kem {
  const kem = kems[id];
  if (!kem) throw new HpkeError('unsupported_suite', `unsupported HPKE KEM id 0x${id.toString(16).padStart(4, '0')}`);
  return kem;
}
