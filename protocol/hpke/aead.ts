/** HPKE AEADs (RFC 9180 §7.3) on node:crypto: AES-128-GCM (vectors only), AES-256-GCM, ChaCha20-Poly1305. */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { concatBytes } from '../bytes.js';
import { HpkeError } from './errors.js';

export interface Aead { readonly id: number; readonly name: string; readonly keyLength: number; readonly nonceLength: 12; readonly tagLength: 16 }

const table: Record<number, Aead & { cipher: CipherGCMTypes | 'chacha20-poly1305' }> = {
  0x0001: { id: 0x0001, name: 'AES-128-GCM', keyLength: 16, nonceLength: 12, tagLength: 16, cipher: 'aes-128-gcm' },
  0x0002: { id: 0x0002, name: 'AES-256-GCM', keyLength: 32, nonceLength: 12, tagLength: 16, cipher: 'aes-256-gcm' },
  0x0003: { id: 0x0003, name: 'ChaCha20-Poly1305', keyLength: 32, nonceLength: 12, tagLength: 16, cipher: 'chacha20-poly1305' },
};

export function getAead(id: number): Aead {
  const aead = table[id];
  if (!aead) throw new HpkeError('unsupported_suite', `unsupported HPKE AEAD id 0x${id.toString(16).padStart(4, '0')}`);
  return aead;
}

export function aeadSeal(id: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const { cipher } = table[id] ?? (getAead(id) as never);
  // The union type keeps overload resolution happy for both GCM and ChaCha20-Poly1305.
  const c = createCipheriv(cipher as 'aes-256-gcm', key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  const final = c.final();
  return concatBytes(body, final, c.getAuthTag());
}

export function aeadOpen(id: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const { cipher } = table[id] ?? (getAead(id) as never);
  if (ciphertext.length < 16) throw new HpkeError('open_failed', 'AEAD ciphertext shorter than its 16-byte tag');
  const body = ciphertext.subarray(0, ciphertext.length - 16);
  try {
    const d = createDecipheriv(cipher as 'aes-256-gcm', key, nonce, { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: body.length });
    d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
    const plain = d.update(body);
    const rest = d.final(); // empty for the GCM and ChaCha20-Poly1305 modes of OpenSSL: no second copy needed
    if (rest.length === 0) return new Uint8Array(plain.buffer, plain.byteOffset, plain.length);
    try {
      return concatBytes(plain, rest);
    } finally {
      plain.fill(0); // Node's own output buffer: keep no second copy of the plaintext around
    }
  } catch {
    throw new HpkeError('open_failed', 'AEAD authentication failed');
  }
}

