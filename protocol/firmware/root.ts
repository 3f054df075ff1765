/**
 * The firmware root (docs/protocol/firmware.md): which release keys may sign firmware, and how
 * many of them must (k of n). Devices pin one at provisioning; a new root is trusted only when it
 * chains to the pinned one, as TUF's root rotation: version + 1, signed by the old root's threshold
 * of the old keys and by the new root's threshold of the new keys.
 *
 *   magic "GPFR" (4) || version 0x01 (1)
 *   u32 root version (>= 1)
 *   u8  threshold k (1..n) || u8 key count n (1..16)
 *   n × ML-DSA-65 public key (1952 each), ascending by keyId, no duplicates
 *
 * root signature = ML-DSA-65.Sign(release key, root bytes, ctx = "ghostpipe/firmware-root/v1")
 */
import { ML_DSA65 } from '../crypto/sizes.js';
import { Reader, Writer } from './codec.js';
import { fail } from './errors.js';
import { requireThreshold, signatureKeyId, signaturesFromJson, signaturesToJson, type KeySignature, type KeySignatureJson } from './signatures.js';

export const ROOT_MAGIC = new Uint8Array([0x47, 0x50, 0x46, 0x52]); // "GPFR"
export const ROOT_FORMAT_VERSION = 1;
export const ROOT_CONTEXT = new TextEncoder().encode('ghostpipe/firmware-root/v1');
export const MAX_ROOT_KEYS = 16;

export interface FirmwareRoot {
  version: number;
  threshold: number;
  /** ML-DSA-65 public keys, in canonical order (ascending keyId). */
  keys: Uint8Array[];
}

/** A root with the signatures that vouch for it; `bytes` is what was signed. */
export interface SignedRoot { bytes: Uint8Array; root: FirmwareRoot; signatures: KeySignature[] }
/** root.json */
export interface SignedRootJson { root: string; signatures: KeySignatureJson[] }

const compare = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b);

/** The keys in canonical order; refuses duplicates and wrong sizes. */
export function canonicalKeys(keys: readonly Uint8Array[]): Uint8Array[] {
  if (keys.length < 1 || keys.length > MAX_ROOT_KEYS) fail('bad_field', `a firmware root holds 1..${MAX_ROOT_KEYS} release keys, got ${keys.length}`);
  for (const k of keys) if (!(k instanceof Uint8Array) || k.length !== ML_DSA65.publicKey) fail('bad_field', `release keys are ML-DSA-65 public keys of ${ML_DSA65.publicKey} bytes`);
  const sorted = keys.map((k) => ({ k, id: signatureKeyId(k) })).sort((a, b) => compare(a.id, b.id));
  for (let i = 1; i < sorted.length; i++) if (compare(sorted[i - 1]!.id, sorted[i]!.id) === 0) fail('bad_field', 'a release key is listed twice');
  return sorted.map((e) => e.k);
}

function checkNumbers(r: FirmwareRoot): void {
  if (!Number.isInteger(r.version) || r.version < 1 || r.version > 0xffffffff) fail('bad_field', `root version must be 1..2^32-1, got ${r.version}`);
  if (!Number.isInteger(r.threshold) || r.threshold < 1 || r.threshold > r.keys.length) fail('bad_field', `threshold must be 1..${r.keys.length} (the number of keys), got ${r.threshold}`);
}

export function encodeRoot(r: FirmwareRoot): Uint8Array {
  const keys = canonicalKeys(r.keys);
  checkNumbers(r);
  const w = new Writer().bytes(ROOT_MAGIC).u8(ROOT_FORMAT_VERSION).u32(r.version).u8(r.threshold).u8(keys.length);
  for (const k of keys) w.bytes(k);
  return w.finish();
}

export function decodeRoot(bytes: Uint8Array): FirmwareRoot {
  const r = new Reader(bytes, 'firmware root');
  r.header(ROOT_MAGIC, ROOT_FORMAT_VERSION);
  const version = r.u32('the root version');
  const threshold = r.u8('the threshold');
  const count = r.u8('the key count');
  const keys: Uint8Array[] = [];
  for (let i = 0; i < count; i++) keys.push(r.bytes(ML_DSA65.publicKey, `release key ${i}`));
  r.end();
  const root = { version, threshold, keys };
  checkNumbers(root);
  const canonical = canonicalKeys(keys);
  if (canonical.some((k, i) => k !== keys[i])) fail('bad_field', 'release keys are not in canonical order (ascending keyId)');
  return root;
}

export function signedRootFromJson(json: unknown): SignedRoot {
  const j = json as Partial<SignedRootJson> | null;
  if (typeof j !== 'object' || j === null || typeof j.root !== 'string') return fail('bad_field', 'root.json must be an object with "root" (base64) and "signatures"');
  const bytes = new Uint8Array(Buffer.from(j.root, 'base64'));
  return { bytes, root: decodeRoot(bytes), signatures: signaturesFromJson(j.signatures, 'firmware root') };
}

export function signedRootToJson(s: Pick<SignedRoot, 'bytes' | 'signatures'>): SignedRootJson {
  return { root: Buffer.from(s.bytes).toString('base64'), signatures: signaturesToJson(s.signatures) };
}

/** The first root a device pins: its own threshold of its own keys. */
export function verifyRoot(signed: SignedRoot): FirmwareRoot {
  requireThreshold(`firmware root v${signed.root.version}`, signed.bytes, signed.signatures, signed.root.keys, signed.root.threshold, ROOT_CONTEXT);
  return signed.root;
}

/** One rotation step from a trusted root to the next. */
export function verifyRotation(trusted: FirmwareRoot, next: SignedRoot): FirmwareRoot {
  if (next.root.version !== trusted.version + 1) {
    fail('not_chained', `firmware root v${next.root.version} does not follow the trusted v${trusted.version} (v${trusted.version + 1} expected)`);
  }
  const what = `firmware root v${next.root.version}`;
  try {
    requireThreshold(`${what} (by the keys of v${trusted.version})`, next.bytes, next.signatures, trusted.keys, trusted.threshold, ROOT_CONTEXT);
  } catch (err) {
    return fail('not_chained', (err as Error).message);
  }
  requireThreshold(`${what} (by its own keys)`, next.bytes, next.signatures, next.root.keys, next.root.threshold, ROOT_CONTEXT);
  return next.root;
}

/** Walks `chain` (v+1, v+2, …) from the pinned root; returns the newest trusted root. */
export function chainRoots(pinned: FirmwareRoot, chain: readonly SignedRoot[]): FirmwareRoot {
  return chain.reduce(verifyRotation, pinned);
}

export function sameRoot(a: FirmwareRoot, b: FirmwareRoot): boolean {
  return compare(encodeRoot(a), encodeRoot(b)) === 0;
}
