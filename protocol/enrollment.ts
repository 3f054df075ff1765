/**
 * Fleet enrollment statement (docs/PROTOCOL.md "Fleet enrollment"): the operator's offline fleet
 * key (ML-DSA-65) approves one device. Pure: bytes in, bytes out; the caller passes the time.
 * All integers unsigned big-endian; every variable field has a length; one encoding per statement.
 *
 *   magic "GPFE" (4) || version 0x01 (1)
 *   u8  did length      || did (ASCII, must be the DID of the signing key)
 *   u16 length (1952)   || ML-DSA-65 public key
 *   u16 HPKE KEM id     || u16 length || KEM public key   (0x647a X-Wing 1216, 0x0041 ML-KEM-768 1184)
 *   u8  length (6)      || device API key id (the 12 hex digits of pgp_<id>…, as 6 bytes)
 *   u64 notBefore ms    || u64 notAfter ms                (Unix epoch, notBefore < notAfter <= 2^53-1)
 *
 * fleet signature = ML-DSA-65.Sign(fleet key, statement, ctx = "ghostpipe/fleet-enrollment/v1")
 */
import { ProtocolError } from './errors.js';
import { getProvider } from './crypto/provider.js';
import { ML_DSA65 } from './crypto/sizes.js';
import { XWING } from './crypto/xwing.js';
import { ML_KEM768 } from './crypto/sizes.js';
import { didFromSigningKey } from './did.js';

export const FLEET_STATEMENT_MAGIC = new Uint8Array([0x47, 0x50, 0x46, 0x45]); // "GPFE"
export const FLEET_STATEMENT_VERSION = 1;
/** ML-DSA-65 context string of the fleet signature: no other Ghost Pipe signature uses it. */
export const FLEET_CONTEXT = new TextEncoder().encode('ghostpipe/fleet-enrollment/v1');
const KEMS = { 0x647a: { alg: 'X-Wing', length: XWING.publicKey }, 0x0041: { alg: 'ML-KEM-768', length: ML_KEM768.publicKey } } as const;
export type FleetKemAlg = (typeof KEMS)[keyof typeof KEMS]['alg'];
const API_KEY_ID_BYTES = 6;
/** Largest statement: header 5 + did 1+255 + 2+1952 + 4+1216 + 1+6 + 16. */
export const MAX_FLEET_STATEMENT = 5 + 256 + 2 + ML_DSA65.publicKey + 4 + XWING.publicKey + 1 + API_KEY_ID_BYTES + 16;

export interface EnrollmentStatement {
  did: string;
  signingPublicKey: Uint8Array;
  kemAlg: FleetKemAlg;
  kemPublicKey: Uint8Array;
  /** 12 lower-case hex digits: the device API key the device registers with. */
  apiKeyId: string;
  notBefore: number;
  notAfter: number;
}

export type FleetStatementErrorCode =
  | 'bad_magic' | 'bad_version' | 'truncated' | 'trailing_bytes' | 'bad_field'
  | 'bad_signature' | 'wrong_device' | 'not_yet_valid' | 'expired';
export class FleetStatementError extends ProtocolError<FleetStatementErrorCode> {}

const fail = (code: FleetStatementErrorCode, message: string): never => {
  throw new FleetStatementError(code, message);
};

function kemId(alg: string): number {
  for (const [id, kem] of Object.entries(KEMS)) if (kem.alg === alg) return Number(id);
  return fail('bad_field', `KEM must be X-Wing or ML-KEM-768, got ${alg}`);
}

function checkTimes(notBefore: number, notAfter: number): void {
  if (!Number.isSafeInteger(notBefore) || notBefore < 0) fail('bad_field', 'notBefore must be a non-negative integer of ms (<= 2^53-1)');
  if (!Number.isSafeInteger(notAfter) || notAfter <= notBefore) fail('bad_field', 'notAfter must be an integer of ms after notBefore (<= 2^53-1)');
}

/** Requires a consistent statement (the DID of the signing key, key lengths of the named KEM). */
export function encodeEnrollmentStatement(s: EnrollmentStatement): Uint8Array {
  const id = kemId(s.kemAlg);
  if (!(s.signingPublicKey instanceof Uint8Array) || s.signingPublicKey.length !== ML_DSA65.publicKey) fail('bad_field', `signing public key must be ${ML_DSA65.publicKey} bytes`);
  if (!(s.kemPublicKey instanceof Uint8Array) || s.kemPublicKey.length !== KEMS[id as keyof typeof KEMS].length) fail('bad_field', `${s.kemAlg} public key must be ${KEMS[id as keyof typeof KEMS].length} bytes`);
  if (s.did !== didFromSigningKey(s.signingPublicKey)) fail('wrong_device', 'the DID is not the one of the signing public key');
  if (!/^[0-9a-f]{12}$/.test(s.apiKeyId)) fail('bad_field', 'API key id must be 12 lower-case hex digits');
  checkTimes(s.notBefore, s.notAfter);
  const did = new TextEncoder().encode(s.did);
  const out = new Uint8Array(5 + 1 + did.length + 2 + s.signingPublicKey.length + 4 + s.kemPublicKey.length + 1 + API_KEY_ID_BYTES + 16);
  const view = new DataView(out.buffer);
  let at = 0;
  out.set(FLEET_STATEMENT_MAGIC, at); at += 4;
  out[at++] = FLEET_STATEMENT_VERSION;
  out[at++] = did.length; out.set(did, at); at += did.length;
  view.setUint16(at, s.signingPublicKey.length); at += 2;
  out.set(s.signingPublicKey, at); at += s.signingPublicKey.length;
  view.setUint16(at, id); view.setUint16(at + 2, s.kemPublicKey.length); at += 4;
  out.set(s.kemPublicKey, at); at += s.kemPublicKey.length;
  out[at++] = API_KEY_ID_BYTES; out.set(Buffer.from(s.apiKeyId, 'hex'), at); at += API_KEY_ID_BYTES;
  view.setBigUint64(at, BigInt(s.notBefore)); view.setBigUint64(at + 8, BigInt(s.notAfter));
  return out;
}

/** Parses and checks a statement's structure (not its signature, not its validity period). */
export function decodeEnrollmentStatement(bytes: Uint8Array): EnrollmentStatement {
  if (!(bytes instanceof Uint8Array)) return fail('bad_field', 'statement must be bytes');
  if (bytes.length > MAX_FLEET_STATEMENT) fail('trailing_bytes', `statement is ${bytes.length} bytes, at most ${MAX_FLEET_STATEMENT}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number, what: string) => {
    if (at + n > bytes.length) fail('truncated', `statement ends inside ${what} (byte ${at}, ${n} more needed, ${bytes.length - at} left)`);
  };
  need(5, 'the header');
  if (!FLEET_STATEMENT_MAGIC.every((b, i) => bytes[i] === b)) fail('bad_magic', 'not a fleet enrollment statement (magic is not "GPFE")');
  if (bytes[4] !== FLEET_STATEMENT_VERSION) fail('bad_version', `fleet statement version ${bytes[4]} is not supported (only ${FLEET_STATEMENT_VERSION})`);
  at = 5;
  need(1, 'the DID length');
  const didLength = bytes[at++]!;
  need(didLength, 'the DID');
  const didBytes = bytes.subarray(at, at + didLength); at += didLength;
  if (!didBytes.every((b) => b >= 0x21 && b <= 0x7e)) fail('bad_field', 'DID must be printable ASCII');
  const did = new TextDecoder().decode(didBytes);
  need(2, 'the signing key length');
  const signLength = view.getUint16(at); at += 2;
  if (signLength !== ML_DSA65.publicKey) fail('bad_field', `signing public key length ${signLength}, must be ${ML_DSA65.publicKey}`);
  need(signLength, 'the signing public key');
  const signingPublicKey = bytes.slice(at, at + signLength); at += signLength;
  need(4, 'the KEM id and length');
  const id = view.getUint16(at); const kemLength = view.getUint16(at + 2); at += 4;
  const kem = KEMS[id as keyof typeof KEMS];
  if (!kem) fail('bad_field', `KEM id 0x${id.toString(16).padStart(4, '0')} is not X-Wing (0x647a) or ML-KEM-768 (0x0041)`);
  if (kemLength !== kem!.length) fail('bad_field', `${kem!.alg} public key length ${kemLength}, must be ${kem!.length}`);
  need(kemLength, 'the KEM public key');
  const kemPublicKey = bytes.slice(at, at + kemLength); at += kemLength;
  need(1, 'the API key id length');
  if (bytes[at] !== API_KEY_ID_BYTES) fail('bad_field', `API key id length ${bytes[at]}, must be ${API_KEY_ID_BYTES}`);
  at++;
  need(API_KEY_ID_BYTES, 'the API key id');
  const apiKeyId = Buffer.from(bytes.subarray(at, at + API_KEY_ID_BYTES)).toString('hex'); at += API_KEY_ID_BYTES;
  need(16, 'the validity period');
  const notBefore = view.getBigUint64(at); const notAfter = view.getBigUint64(at + 8); at += 16;
  if (at !== bytes.length) fail('trailing_bytes', `${bytes.length - at} bytes after the statement`);
  if (notBefore > BigInt(Number.MAX_SAFE_INTEGER) || notAfter > BigInt(Number.MAX_SAFE_INTEGER)) fail('bad_field', 'validity times must be <= 2^53-1 ms');
  checkTimes(Number(notBefore), Number(notAfter));
  if (did !== didFromSigningKey(signingPublicKey)) fail('wrong_device', 'the statement\'s DID is not the one of its signing public key');
  return { did, signingPublicKey, kemAlg: kem!.alg, kemPublicKey, apiKeyId, notBefore: Number(notBefore), notAfter: Number(notAfter) };
}

/** The fleet signature over an encoded statement. `fleetSeed`: the fleet key's 32-byte ML-DSA-65 seed. */
export function signEnrollmentStatement(fleetSeed: Uint8Array, statement: Uint8Array): Uint8Array {
  decodeEnrollmentStatement(statement); // never sign something a verifier would refuse to parse
  return getProvider().mlDsa65.sign(fleetSeed, statement, FLEET_CONTEXT);
}

export interface ApprovalCheck {
  /** The fleet public key the verifier pins. */
  fleetPublicKey: Uint8Array;
  /** The device keys the approval must name exactly. */
  signingPublicKey: Uint8Array;
  kemPublicKey: Uint8Array;
  /** Milliseconds since the Unix epoch, from the caller's clock. */
  now: number;
}

/**
 * Structure and fleet signature only (no keys, no clock): what an auditor checks of a logged
 * approval, which was valid, or not, when it was logged. Returns the statement.
 */
export function verifyFleetSignature(statement: Uint8Array, signature: Uint8Array, fleetPublicKey: Uint8Array): EnrollmentStatement {
  const s = decodeEnrollmentStatement(statement);
  if (!(signature instanceof Uint8Array) || signature.length !== ML_DSA65.signature || !getProvider().mlDsa65.verify(fleetPublicKey, statement, signature, FLEET_CONTEXT)) {
    fail('bad_signature', 'the fleet signature does not verify with the pinned fleet public key');
  }
  return s;
}

/**
 * Checks an approval: structure, fleet signature, exactly these device keys, and `now` inside
 * [notBefore, notAfter). Returns the statement, or throws FleetStatementError naming the failure.
 */
export function verifyEnrollmentApproval(statement: Uint8Array, signature: Uint8Array, check: ApprovalCheck): EnrollmentStatement {
  const s = verifyFleetSignature(statement, signature, check.fleetPublicKey);
  if (!sameBytes(s.signingPublicKey, check.signingPublicKey) || !sameBytes(s.kemPublicKey, check.kemPublicKey)) {
    fail('wrong_device', `the approval names other device keys than ${s.did} presents`);
  }
  if (check.now < s.notBefore) fail('not_yet_valid', `the approval of ${s.did} is valid only from ${s.notBefore} ms after the epoch (now: ${check.now})`);
  if (check.now >= s.notAfter) fail('expired', `the approval of ${s.did} expired at ${s.notAfter} ms after the epoch (now: ${check.now})`);
  return s;
}

// Public keys only: no secret, so a plain compare is fine.
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
