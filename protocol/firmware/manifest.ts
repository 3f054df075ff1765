/**
 * The firmware manifest (docs/protocol/firmware.md): what a release is, who may install it, and
 * the hash of every encrypted chunk, so a device checks each chunk before it decrypts or writes it.
 * Canonical: every field has one encoding, and decode refuses any other (order, case, padding).
 *
 *   magic "GPFM" (4) || version 0x01 (1)
 *   u8 len || package name            [a-z0-9][a-z0-9._-]{0,63}
 *   u8 len || version                 semver 2.0.0, at most 64 characters
 *   u64       release counter         1..2^53-1, strictly increasing per package
 *   u8 len || target group            as the package name
 *   u8 n   || n × (u8 len || hardware id)   1..32 ids, [A-Za-z0-9][A-Za-z0-9._:-]{0,63}, ascending, unique
 *   u64       plaintext size          1..4 GiB
 *   64        SHA-512(plaintext)
 *   u16       chunk AEAD              0x0002 AES-256-GCM, 0x0003 ChaCha20-Poly1305 (HPKE ids)
 *   u32       chunk size              4 KiB..8 MiB (plaintext bytes per chunk; the last may be shorter)
 *   u32 n  || n × 32                  SHA-256 of each encrypted chunk, n = ceil(size / chunk size)
 *   u64       expires                 ms since the Unix epoch
 *   u8 len || install type            [a-z][a-z0-9-]{0,31} ("command", "ghostpipe-release")
 *   u16 len || install hint           UTF-8, at most 1024 bytes
 *
 * manifest signature = ML-DSA-65.Sign(release key, manifest bytes, ctx = "ghostpipe/firmware-manifest/v1")
 * manifest digest = SHA-256(manifest bytes): the 0x04 log leaf, the chunk ETags, receipts.
 */
import { sha256 } from '../bytes.js';
import { AEAD } from '../envelope/constants.js';
import { Reader, Writer } from './codec.js';
import { fail } from './errors.js';
import type { FirmwareRoot } from './root.js';
import { requireThreshold, signaturesFromJson, signaturesToJson, type KeySignature, type KeySignatureJson } from './signatures.js';

export const MANIFEST_MAGIC = new Uint8Array([0x47, 0x50, 0x46, 0x4d]); // "GPFM"
export const MANIFEST_FORMAT_VERSION = 1;
export const MANIFEST_CONTEXT = new TextEncoder().encode('ghostpipe/firmware-manifest/v1');
export const CHUNK_TAG_LENGTH = 16;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
export const LIMITS = {
  minChunkSize: 4096,
  maxChunkSize: 8 * 1024 * 1024, // a chunk and its tag stay below the relay client's 16 MiB response cap
  maxSize: 4 * 1024 * 1024 * 1024,
  maxHardwareIds: 32,
  maxHintBytes: 1024,
} as const;
const CHUNK_AEADS: readonly number[] = [AEAD.AES256GCM, AEAD.CHACHA20POLY1305];

/** Package and group names. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const HARDWARE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const NAME = NAME_PATTERN;
const HARDWARE = HARDWARE_ID_PATTERN;
const INSTALL_TYPE = /^[a-z][a-z0-9-]{0,31}$/;
// semver.org's recommended expression for SemVer 2.0.0.
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export interface FirmwareManifest {
  name: string;
  version: string;
  counter: number;
  group: string;
  hardware: string[];
  size: number;
  sha512: Uint8Array;
  aeadId: number;
  chunkSize: number;
  /** SHA-256 of each encrypted chunk, in order. */
  chunkHashes: Uint8Array[];
  expires: number;
  installType: string;
  installHint: string;
}

/** What the chunk encryption binds every chunk to. */
export interface PackageIdentity { name: string; version: string; counter: number }

export interface SignedManifest { bytes: Uint8Array; manifest: FirmwareManifest; signatures: KeySignature[] }
/** The JSON a relay serves and `firmware sign` extends: manifest bytes base64, signatures. */
export interface SignedManifestJson { manifest: string; signatures: KeySignatureJson[] }

export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

/** Plaintext bytes in chunk `index` (requires 0 <= index < chunk count). */
export function plainChunkLength(m: Pick<FirmwareManifest, 'size' | 'chunkSize'>, index: number): number {
  return Math.min(m.chunkSize, m.size - index * m.chunkSize);
}

/** Bytes of encrypted chunk `index`: its plaintext and the AEAD tag. */
export function encryptedChunkLength(m: Pick<FirmwareManifest, 'size' | 'chunkSize'>, index: number): number {
  return plainChunkLength(m, index) + CHUNK_TAG_LENGTH;
}

function check(m: FirmwareManifest): void {
  const field = (ok: boolean, message: string) => { if (!ok) fail('bad_field', message); };
  field(typeof m.name === 'string' && NAME.test(m.name), `package name ${JSON.stringify(m.name)} must match ${NAME.source}`);
  field(typeof m.version === 'string' && m.version.length <= 64 && SEMVER.test(m.version), `version ${JSON.stringify(m.version)} is not a semantic version (semver.org 2.0.0, at most 64 characters)`);
  field(Number.isSafeInteger(m.counter) && m.counter >= 1, `release counter must be an integer 1..2^53-1, got ${m.counter}`);
  field(typeof m.group === 'string' && NAME.test(m.group), `group ${JSON.stringify(m.group)} must match ${NAME.source}`);
  field(Array.isArray(m.hardware) && m.hardware.length >= 1 && m.hardware.length <= LIMITS.maxHardwareIds, `1..${LIMITS.maxHardwareIds} hardware ids required`);
  for (const [i, h] of m.hardware.entries()) {
    field(typeof h === 'string' && HARDWARE.test(h), `hardware id ${JSON.stringify(h)} must match ${HARDWARE.source}`);
    if (i > 0) field(m.hardware[i - 1]! < h, 'hardware ids must be ascending and unique');
  }
  field(Number.isSafeInteger(m.size) && m.size >= 1 && m.size <= LIMITS.maxSize, `plaintext size must be 1..${LIMITS.maxSize} bytes, got ${m.size}`);
  field(m.sha512 instanceof Uint8Array && m.sha512.length === 64, 'the plaintext digest must be 64 bytes of SHA-512');
  field(CHUNK_AEADS.includes(m.aeadId), `chunk AEAD 0x${Number(m.aeadId).toString(16).padStart(4, '0')} is not AES-256-GCM (0x0002) or ChaCha20-Poly1305 (0x0003)`);
  field(Number.isInteger(m.chunkSize) && m.chunkSize >= LIMITS.minChunkSize && m.chunkSize <= LIMITS.maxChunkSize, `chunk size must be ${LIMITS.minChunkSize}..${LIMITS.maxChunkSize} bytes, got ${m.chunkSize}`);
  const count = chunkCount(m.size, m.chunkSize);
  field(Array.isArray(m.chunkHashes) && m.chunkHashes.length === count, `${count} chunk hashes expected for ${m.size} bytes in chunks of ${m.chunkSize}, got ${m.chunkHashes?.length}`);
  for (const h of m.chunkHashes) field(h instanceof Uint8Array && h.length === 32, 'chunk hashes are 32 bytes of SHA-256');
  field(Number.isSafeInteger(m.expires) && m.expires >= 0, `expires must be ms since the epoch, got ${m.expires}`);
  field(typeof m.installType === 'string' && INSTALL_TYPE.test(m.installType), `install type ${JSON.stringify(m.installType)} must match ${INSTALL_TYPE.source}`);
  field(typeof m.installHint === 'string' && Buffer.byteLength(m.installHint) <= LIMITS.maxHintBytes, `install hint must be at most ${LIMITS.maxHintBytes} bytes of UTF-8`);
}

export function encodeManifest(m: FirmwareManifest): Uint8Array {
  check(m);
  const w = new Writer().bytes(MANIFEST_MAGIC).u8(MANIFEST_FORMAT_VERSION)
    .text8(m.name).text8(m.version).u64(m.counter).text8(m.group).u8(m.hardware.length);
  for (const h of m.hardware) w.text8(h);
  w.u64(m.size).bytes(m.sha512).u16(m.aeadId).u32(m.chunkSize).u32(m.chunkHashes.length);
  for (const h of m.chunkHashes) w.bytes(h);
  return w.u64(m.expires).text8(m.installType).text16(m.installHint).finish();
}

export function decodeManifest(bytes: Uint8Array): FirmwareManifest {
  const r = new Reader(bytes, 'firmware manifest');
  r.header(MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION);
  const name = r.text8('package name');
  const version = r.text8('version');
  const counter = r.u64('release counter');
  const group = r.text8('group');
  const hardwareCount = r.u8('the hardware id count');
  const hardware: string[] = [];
  for (let i = 0; i < hardwareCount; i++) hardware.push(r.text8(`hardware id ${i}`));
  const size = r.u64('plaintext size');
  const sha512 = r.bytes(64, 'plaintext digest');
  const aeadId = r.u16('chunk AEAD');
  const chunkSize = r.u32('chunk size');
  const count = r.u32('the chunk count');
  // Bound the loop by what the bytes can hold before trusting the count.
  if (count > (bytes.length - 5) / 32) fail('truncated', `firmware manifest declares ${count} chunks, more than its ${bytes.length} bytes can hold`);
  const chunkHashes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) chunkHashes.push(r.bytes(32, `chunk hash ${i}`));
  const expires = r.u64('expiry');
  const installType = r.text8('install type');
  const installHint = r.text16('install hint');
  r.end();
  const m = { name, version, counter, group, hardware, size, sha512, aeadId, chunkSize, chunkHashes, expires, installType, installHint };
  check(m);
  return m;
}

export function manifestDigest(bytes: Uint8Array): Uint8Array {
  return sha256(bytes);
}

export function packageIdentity(m: FirmwareManifest): PackageIdentity {
  return { name: m.name, version: m.version, counter: m.counter };
}

export function signedManifestFromJson(json: unknown): SignedManifest {
  const j = json as Partial<SignedManifestJson> | null;
  if (typeof j !== 'object' || j === null || typeof j.manifest !== 'string') return fail('bad_field', 'a signed manifest is an object with "manifest" (base64) and "signatures"');
  const bytes = new Uint8Array(Buffer.from(j.manifest, 'base64'));
  return { bytes, manifest: decodeManifest(bytes), signatures: signaturesFromJson(j.signatures ?? [], 'firmware manifest') };
}

export function signedManifestToJson(s: Pick<SignedManifest, 'bytes' | 'signatures'>): SignedManifestJson {
  return { manifest: Buffer.from(s.bytes).toString('base64'), signatures: signaturesToJson(s.signatures) };
}

/** The root's threshold of its keys over the manifest bytes. */
export function verifyManifest(signed: SignedManifest, root: FirmwareRoot): FirmwareManifest {
  const m = signed.manifest;
  requireThreshold(`manifest ${m.name}@${m.version}`, signed.bytes, signed.signatures, root.keys, root.threshold, MANIFEST_CONTEXT);
  return m;
}

export interface DeviceView {
  groups: readonly string[];
  hardwareId: string;
  /** The release counter of what is installed (0: nothing from Ghost Pipe yet). */
  installedCounter: number;
  /** ms since the Unix epoch, from the device's clock. */
  now: number;
}

/** A genuine manifest may still not be for this device, or not now (TUF: freeze, rollback). */
export function checkManifestFor(m: FirmwareManifest, device: DeviceView): void {
  const id = `${m.name}@${m.version}`;
  if (!device.groups.includes(m.group)) fail('wrong_group', `${id} targets group ${m.group}; this device is in ${device.groups.join(', ') || 'no group'}`);
  if (!m.hardware.includes(device.hardwareId)) fail('wrong_hardware', `${id} is for hardware ${m.hardware.join(', ')}, not ${device.hardwareId}`);
  if (m.counter <= device.installedCounter) fail('rollback', `${id} has release counter ${m.counter}; the installed release has ${device.installedCounter} (must increase)`);
  if (device.now >= m.expires) fail('expired', `${id} expired at ${m.expires} ms after the epoch (now: ${device.now})`);
}
