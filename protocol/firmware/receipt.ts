/**
 * The install receipt: a device's signed statement of what it did with a release. The relay logs
 * each one as a 0x06 leaf, so an auditor can prove which device installed what, and when, from
 * the log alone (the device's key is in its 0x02/0x05 registration leaf).
 *
 *   magic "GPIR" (4) || version 0x01 (1)
 *   u8 len || device DID
 *   32        SHA-256(manifest bytes)
 *   u8        outcome            1 installed, 2 failed, 3 rolled back, 4 refused (never installed)
 *   u8 len || running version  what runs after this attempt (semver, or "" when unknown)
 *   u64       running counter    its release counter (0: nothing from Ghost Pipe)
 *   u64       time               ms since the Unix epoch, device clock
 *   u16 len || reason           UTF-8, at most 512 bytes ("" when installed)
 *
 * receipt signature = ML-DSA-65.Sign(device key, receipt bytes, ctx = "ghostpipe/firmware-receipt/v1")
 */
import { getProvider } from '../crypto/provider.js';
import { ML_DSA65 } from '../crypto/sizes.js';
import { didFromSigningKey } from '../did.js';
import { Reader, Writer } from './codec.js';
import { fail } from './errors.js';

export const RECEIPT_MAGIC = new Uint8Array([0x47, 0x50, 0x49, 0x52]); // "GPIR"
export const RECEIPT_VERSION = 1;
export const RECEIPT_CONTEXT = new TextEncoder().encode('ghostpipe/firmware-receipt/v1');
export const OUTCOMES = { installed: 1, failed: 2, rolled_back: 3, refused: 4 } as const;
export type Outcome = keyof typeof OUTCOMES;
export const MAX_REASON_BYTES = 512;
/** The largest encoded receipt: 5 + (1 + 128) DID + 32 + 1 + (1 + 64) version + 8 + 8 + (2 + 512) reason. */
export const MAX_RECEIPT_BYTES = 5 + 1 + 128 + 32 + 1 + 1 + 64 + 8 + 8 + 2 + MAX_REASON_BYTES;

export interface InstallReceipt {
  did: string;
  manifestDigest: Uint8Array;
  outcome: Outcome;
  runningVersion: string;
  runningCounter: number;
  time: number;
  reason: string;
}

function check(r: InstallReceipt): void {
  const field = (ok: boolean, message: string) => { if (!ok) fail('bad_field', message); };
  field(typeof r.did === 'string' && /^[\x21-\x7e]{1,128}$/.test(r.did), 'the DID must be 1..128 printable ASCII characters');
  field(r.manifestDigest instanceof Uint8Array && r.manifestDigest.length === 32, 'the manifest digest is 32 bytes');
  field(r.outcome in OUTCOMES, `outcome must be one of ${Object.keys(OUTCOMES).join(', ')}`);
  field(typeof r.runningVersion === 'string' && r.runningVersion.length <= 64 && /^[\x21-\x7e]*$/.test(r.runningVersion), 'the running version is at most 64 printable ASCII characters');
  field(Number.isSafeInteger(r.runningCounter) && r.runningCounter >= 0, 'the running counter is an integer 0..2^53-1');
  field(Number.isSafeInteger(r.time) && r.time >= 0, 'the time is ms since the epoch');
  field(typeof r.reason === 'string' && Buffer.byteLength(r.reason) <= MAX_REASON_BYTES, `the reason is at most ${MAX_REASON_BYTES} bytes of UTF-8`);
}

export function encodeReceipt(r: InstallReceipt): Uint8Array {
  check(r);
  return new Writer().bytes(RECEIPT_MAGIC).u8(RECEIPT_VERSION).text8(r.did).bytes(r.manifestDigest).u8(OUTCOMES[r.outcome])
    .text8(r.runningVersion).u64(r.runningCounter).u64(r.time).text16(r.reason).finish();
}

export function decodeReceipt(bytes: Uint8Array): InstallReceipt {
  const r = new Reader(bytes, 'install receipt');
  r.header(RECEIPT_MAGIC, RECEIPT_VERSION);
  const did = r.text8('DID');
  const manifestDigest = r.bytes(32, 'the manifest digest');
  const code = r.u8('the outcome');
  const outcome = (Object.keys(OUTCOMES) as Outcome[]).find((k) => OUTCOMES[k] === code);
  if (outcome === undefined) fail('bad_field', `install receipt outcome ${code} is not 1..4`);
  const receipt = { did, manifestDigest, outcome: outcome!, runningVersion: r.text8('running version'), runningCounter: r.u64('running counter'), time: r.u64('time'), reason: r.text16('reason') };
  r.end();
  check(receipt);
  return receipt;
}

/** `seed`: the device's ML-DSA-65 seed; the receipt must name that device's DID. */
export function signReceipt(seed: Uint8Array, receipt: Uint8Array): Uint8Array {
  const r = decodeReceipt(receipt);
  const provider = getProvider();
  if (didFromSigningKey(provider.mlDsa65.publicKeyFromSeed(seed)) !== r.did) fail('bad_field', 'a device signs only receipts that name its own DID');
  return provider.mlDsa65.sign(seed, receipt, RECEIPT_CONTEXT);
}

/** Structure, the DID of `devicePublicKey`, and the signature. Returns the receipt. */
export function verifyReceipt(receipt: Uint8Array, signature: Uint8Array, devicePublicKey: Uint8Array): InstallReceipt {
  const r = decodeReceipt(receipt);
  if (didFromSigningKey(devicePublicKey) !== r.did) fail('bad_signature', `the receipt names ${r.did}, not the device of this key`);
  if (signature.length !== ML_DSA65.signature || !getProvider().mlDsa65.verify(devicePublicKey, receipt, signature, RECEIPT_CONTEXT)) {
    fail('bad_signature', `the receipt signature does not verify with the key of ${r.did}`);
  }
  return r;
}
