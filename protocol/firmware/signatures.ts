/**
 * k-of-n ML-DSA-65 signatures, as firmware roots and manifests carry them. A signature names
 * its key by keyId (protocol/keys.ts: SHA-256 of the SPKI DER); each format signs with its own
 * FIPS 204 context string, so a signature made for one can never count for another.
 *
 * Counting follows TUF: each known key counts once however often it appears; signatures by keys
 * outside the set count for nothing. Below the threshold, the error says why: a known key's
 * signature that does not verify (the bytes changed after signing) or too few known keys.
 */
import { getProvider } from '../crypto/provider.js';
import { ML_DSA65 } from '../crypto/sizes.js';
import { keyId } from '../keys.js';
import { fail } from './errors.js';

export interface KeySignature { keyId: Uint8Array; signature: Uint8Array }
/** The JSON form in root.json and signatures.json: keyId hex, signature base64. */
export interface KeySignatureJson { keyId: string; signature: string }

/** More than any threshold needs (roots hold at most MAX_ROOT_KEYS); bounds a verifier's work. */
export const MAX_SIGNATURES = 32;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

export function signatureKeyId(publicKey: Uint8Array): Uint8Array {
  return keyId('ML-DSA-65', publicKey);
}

/** `seed`: the release key's 32-byte ML-DSA-65 seed. */
export function signWith(seed: Uint8Array, message: Uint8Array, context: Uint8Array): KeySignature {
  const provider = getProvider();
  return { keyId: signatureKeyId(provider.mlDsa65.publicKeyFromSeed(seed)), signature: provider.mlDsa65.sign(seed, message, context) };
}

/**
 * Requires at least `threshold` distinct keys of `keys` with a valid signature over `message`.
 * Returns the hex key ids that counted. `what` names the signed thing in errors ("manifest").
 */
export function requireThreshold(what: string, message: Uint8Array, signatures: readonly KeySignature[], keys: readonly Uint8Array[], threshold: number, context: Uint8Array): string[] {
  if (signatures.length > MAX_SIGNATURES) fail('bad_field', `${what} carries ${signatures.length} signatures, at most ${MAX_SIGNATURES}`);
  const known = new Map(keys.map((k) => [hex(signatureKeyId(k)), k]));
  const valid = new Set<string>();
  const broken: string[] = [];
  const unknown: string[] = [];
  for (const s of signatures) {
    const id = hex(s.keyId);
    const key = known.get(id);
    if (key === undefined) { unknown.push(id); continue; }
    if (valid.has(id)) continue;
    if (s.signature.length === ML_DSA65.signature && getProvider().mlDsa65.verify(key, message, s.signature, context)) valid.add(id);
    else broken.push(id);
  }
  if (valid.size >= threshold) return [...valid];
  if (broken.length > 0) fail('bad_signature', `${what}: the signature by key ${broken[0]!.slice(0, 16)}… does not verify (changed after signing, or signed for something else)`);
  const strangers = unknown.length > 0 ? `; ${unknown.length} by keys not in the firmware root (${unknown.map((k) => k.slice(0, 16) + '…').join(', ')})` : '';
  return fail('below_threshold', `${what}: ${valid.size} valid signatures by root keys, ${threshold} required${strangers}`);
}

export function signaturesToJson(signatures: readonly KeySignature[]): KeySignatureJson[] {
  return signatures.map((s) => ({ keyId: hex(s.keyId), signature: Buffer.from(s.signature).toString('base64') }));
}

export function signaturesFromJson(json: unknown, what: string): KeySignature[] {
  if (!Array.isArray(json)) return fail('bad_field', `${what} signatures must be an array`);
  if (json.length > MAX_SIGNATURES) fail('bad_field', `${what} carries ${json.length} signatures, at most ${MAX_SIGNATURES}`);
  return json.map((entry: unknown, i) => {
    const e = entry as Partial<KeySignatureJson> | null;
    if (typeof e !== 'object' || e === null || typeof e.keyId !== 'string' || !/^[0-9a-f]{64}$/.test(e.keyId)) return fail('bad_field', `${what} signature ${i}: keyId must be 64 lower-case hex digits`);
    if (typeof e.signature !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(e.signature)) return fail('bad_field', `${what} signature ${i}: signature must be base64`);
    const signature = new Uint8Array(Buffer.from(e.signature, 'base64'));
    if (signature.length !== ML_DSA65.signature) fail('bad_field', `${what} signature ${i} is ${signature.length} bytes, ML-DSA-65 signatures are ${ML_DSA65.signature}`);
    return { keyId: new Uint8Array(Buffer.from(e.keyId, 'hex')), signature };
  });
}
