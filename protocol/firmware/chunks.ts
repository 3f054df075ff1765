/**
 * Chunk encryption: one random content key per package (never reused), the chunk index as the
 * nonce, and the package identity plus the index as associated data, so a chunk of another
 * release or another position does not open. A chunk is checked against the manifest's SHA-256
 * before it is decrypted: a corrupted or swapped chunk is refused without touching the key.
 *
 *   nonce = 0x00000000 || u64 chunk index
 *   aad   = "ghostpipe/firmware-chunk/v1" || u8 len || name || u8 len || version || u64 counter || u32 index
 */
import { timingSafeEqual } from 'node:crypto';
import { sha256 } from '../bytes.js';
import { aeadOpen, aeadSeal } from '../hpke/aead.js';
import { Writer } from './codec.js';
import { fail } from './errors.js';
import { encryptedChunkLength, type FirmwareManifest, type PackageIdentity } from './manifest.js';

export const CONTENT_KEY_LENGTH = 32;
const AAD_LABEL = new TextEncoder().encode('ghostpipe/firmware-chunk/v1');

export function chunkNonce(index: number): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(index));
  return nonce;
}

export function chunkAad(id: PackageIdentity, index: number): Uint8Array {
  return new Writer().bytes(AAD_LABEL).text8(id.name).text8(id.version).u64(id.counter).u32(index).finish();
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== CONTENT_KEY_LENGTH) fail('bad_field', `content keys are ${CONTENT_KEY_LENGTH} bytes`);
}

export function encryptChunk(aeadId: number, key: Uint8Array, id: PackageIdentity, index: number, plaintext: Uint8Array): Uint8Array {
  checkKey(key);
  return aeadSeal(aeadId, key, chunkNonce(index), chunkAad(id, index), plaintext);
}

/** Length and hash against the manifest only: what a relay or a resuming device can check without the key. */
export function checkChunk(m: FirmwareManifest, index: number, encrypted: Uint8Array): void {
  if (!Number.isInteger(index) || index < 0 || index >= m.chunkHashes.length) fail('bad_chunk', `chunk ${index} is outside 0..${m.chunkHashes.length - 1}`);
  const expected = encryptedChunkLength(m, index);
  if (encrypted.length !== expected) fail('bad_chunk', `chunk ${index} is ${encrypted.length} bytes, the manifest says ${expected}`);
  if (!timingSafeEqual(sha256(encrypted), m.chunkHashes[index]!)) fail('bad_chunk', `chunk ${index} does not match its hash in the manifest (corrupted, or from another release)`);
}

/** Checks the chunk against the manifest, then decrypts it. */
export function openChunk(m: FirmwareManifest, key: Uint8Array, index: number, encrypted: Uint8Array): Uint8Array {
  checkKey(key);
  checkChunk(m, index, encrypted);
  try {
    return aeadOpen(m.aeadId, key, chunkNonce(index), chunkAad(m, index), encrypted);
  } catch {
    return fail('wrong_key', `chunk ${index} matches the manifest but does not open with the content key`);
  }
}
