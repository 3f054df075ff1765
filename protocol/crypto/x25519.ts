/** X25519 over raw 32-byte keys with node:crypto (RFC 7748). */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import { expectLength } from './checks.js';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export function x25519PrivateKey(secret: Uint8Array): KeyObject {
  expectLength(secret, 32, 'X25519 secret key');
  const der = Buffer.concat([PKCS8_PREFIX, secret]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

export function x25519PublicKeyOf(privateKey: KeyObject): Uint8Array {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
}

/** X25519(secret, peer). Throws if the peer point yields the all-zero shared secret (OpenSSL check). */
export function x25519(privateKey: KeyObject, peerPublic: Uint8Array): Uint8Array {
  expectLength(peerPublic, 32, 'X25519 public key');
  const publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, peerPublic]), format: 'der', type: 'spki' });
  return new Uint8Array(diffieHellman({ privateKey, publicKey }));
}
