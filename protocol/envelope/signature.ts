/**
 * The device signature covers SHA-512(header ‖ enc ‖ ciphertext), not the raw bytes: pure ML-DSA
 * hashes its whole message with SHAKE256, which in pure JavaScript costs ~0.1 s per MiB, so a
 * 5 MiB envelope would take most of a second to sign and as long again at the relay and at the
 * receiver. SHA-512 runs natively in node:crypto on every Node version; its collision resistance
 * (256 bits classically, ~171 against quantum collision search) exceeds ML-DSA-65's category 3.
 */
import { createHash } from 'node:crypto';

export function signatureMessage(signedBytes: Uint8Array): Uint8Array {
  return createHash('sha512').update(signedBytes).digest();
}
