/**
 * Leaf data of the relay's transparency log (RFC 9162 leaves: leafHash = SHA-256(0x00 || data)).
 * Pure: bytes in, bytes out. One type byte, then fixed fields; variable fields carry a length.
 *
 *   0x01 transfer      || SHA-256(envelope bytes)                                  (33 bytes)
 *   0x02 registration  || keyId(ML-DSA-65 pk) (32) || keyId(KEM pk) (32) || did (UTF-8, rest)
 *   0x03 revocation    || keyId(ML-DSA-65 pk) (32) || did (UTF-8, rest)
 *   0x04 firmware      || SHA-256(manifest bytes)                                  (33 bytes)
 *   0x05 approved registration || keyId(ML-DSA-65 pk) (32) || keyId(KEM pk) (32)
 *                      || u16 length || fleet statement (protocol/enrollment.ts)
 *                      || u16 length || fleet signature (3309) || did (UTF-8, rest)
 *   0x06 install receipt || u16 length || receipt (protocol/firmware/receipt.ts)
 *                      || u16 length || device signature (3309)
 *
 * 0x02 is a registration without a fleet approval (written by relays before fleet enrollment, and
 * still by a relay that is given none): decoded as before, with no `approval`. Receivers in
 * enrolled mode refuse such a device (docs/RECEIVER.md). A 0x05 leaf decodes only when its
 * statement parses and names the same DID and keys as the leaf (the signature is the verifier's to
 * check, against the fleet key it pins).
 *
 * A 0x06 leaf decodes only when its receipt parses; the signature is checked by whoever knows the
 * device's key (the auditor, from the device's registration leaf).
 *
 * Key ids are protocol/keys.ts keyId(): SHA-256 of the SPKI DER. No names and no plaintext.
 * A receiver recomputes the transfer leaf from the envelope it leased (transferLeaf).
 */
import { ProtocolError } from './errors.js';
import { sha256 } from './bytes.js';
import { leafHash } from './tlog/merkle.js';
import { decodeEnrollmentStatement, FleetStatementError } from './enrollment.js';
import { keyId, type KeyAlg } from './keys.js';
import { ML_DSA65 } from './crypto/sizes.js';
import { decodeReceipt } from './firmware/receipt.js';
import { FirmwareError } from './firmware/errors.js';

export const LOG_ENTRY = { transfer: 0x01, registration: 0x02, revocation: 0x03, firmware: 0x04, approvedRegistration: 0x05, receipt: 0x06 } as const;
const HASH = 32;
const MAX_DID_BYTES = 128;

export type LogEntry =
  | { type: 'transfer'; envelopeHash: Uint8Array }
  | { type: 'registration'; signingKeyId: Uint8Array; kemKeyId: Uint8Array; did: string; approval?: FleetApproval }
  | { type: 'revocation'; signingKeyId: Uint8Array; did: string }
  | { type: 'firmware'; manifestHash: Uint8Array }
  | { type: 'receipt'; receipt: Uint8Array; signature: Uint8Array };

/** The fleet statement and the fleet key's signature over it, as the registration carries them. */
export interface FleetApproval { statement: Uint8Array; signature: Uint8Array }

export class LogEntryError extends ProtocolError<'empty' | 'unknown_type' | 'bad_length' | 'bad_did' | 'bad_approval' | 'bad_receipt'> {}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

function checkHash(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== HASH) throw new LogEntryError('bad_length', `${what} must be ${HASH} bytes`);
}

function didBytes(did: string): Uint8Array {
  const bytes = utf8.encode(did);
  if (bytes.length === 0 || bytes.length > MAX_DID_BYTES || !/^[\x21-\x7e]+$/.test(did)) throw new LogEntryError('bad_did', `DID must be 1..${MAX_DID_BYTES} printable ASCII characters`);
  return bytes;
}

function withType(type: number, ...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(1 + parts.reduce((n, p) => n + p.length, 0));
  out[0] = type;
  let at = 1;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >>> 8, n & 0xff);
}

/** The statement must parse and name this leaf's DID and keys; the signature must be ML-DSA-65 sized. */
function checkApproval(approval: FleetApproval, signingKeyId: Uint8Array, kemKeyId: Uint8Array, did: string): void {
  let s;
  try {
    s = decodeEnrollmentStatement(approval.statement);
  } catch (err) {
    if (err instanceof FleetStatementError) throw new LogEntryError('bad_approval', `fleet statement: ${err.message}`);
    throw err;
  }
  if (!(approval.signature instanceof Uint8Array) || approval.signature.length !== ML_DSA65.signature) throw new LogEntryError('bad_approval', `fleet signature must be ${ML_DSA65.signature} bytes`);
  const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (s.did !== did || !same(keyId('ML-DSA-65', s.signingPublicKey), signingKeyId) || !same(keyId(s.kemAlg as KeyAlg, s.kemPublicKey), kemKeyId)) {
    throw new LogEntryError('bad_approval', 'the fleet statement names another device than the registration');
  }
}

function checkReceipt(receipt: Uint8Array, signature: Uint8Array): void {
  try {
    decodeReceipt(receipt);
  } catch (err) {
    if (err instanceof FirmwareError) throw new LogEntryError('bad_receipt', err.message);
    throw err;
  }
  if (!(signature instanceof Uint8Array) || signature.length !== ML_DSA65.signature) throw new LogEntryError('bad_receipt', `receipt signature must be ${ML_DSA65.signature} bytes`);
}

/** Reads u16-length-prefixed fields of `body` from `start` on. */
function lengthPrefixed(body: Uint8Array, start: number, entry: string): { next(what: string): Uint8Array; offset(): number } {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let at = start;
  return {
    next(what) {
      if (at + 2 > body.length) throw new LogEntryError('bad_length', `${entry} entry ends before the ${what} length`);
      const length = view.getUint16(at);
      if (at + 2 + length > body.length) throw new LogEntryError('bad_length', `${entry} entry ends inside the ${what}`);
      const bytes = body.slice(at + 2, at + 2 + length);
      at += 2 + length;
      return bytes;
    },
    offset: () => at,
  };
}

export function encodeLogEntry(entry: LogEntry): Uint8Array {
  switch (entry.type) {
    case 'transfer':
      checkHash(entry.envelopeHash, 'envelope hash');
      return withType(LOG_ENTRY.transfer, entry.envelopeHash);
    case 'firmware':
      checkHash(entry.manifestHash, 'manifest hash');
      return withType(LOG_ENTRY.firmware, entry.manifestHash);
    case 'registration':
      checkHash(entry.signingKeyId, 'signing key id');
      checkHash(entry.kemKeyId, 'KEM key id');
      if (entry.approval === undefined) return withType(LOG_ENTRY.registration, entry.signingKeyId, entry.kemKeyId, didBytes(entry.did));
      checkApproval(entry.approval, entry.signingKeyId, entry.kemKeyId, entry.did);
      return withType(LOG_ENTRY.approvedRegistration, entry.signingKeyId, entry.kemKeyId, u16(entry.approval.statement.length), entry.approval.statement,
        u16(entry.approval.signature.length), entry.approval.signature, didBytes(entry.did));
    case 'revocation':
      checkHash(entry.signingKeyId, 'signing key id');
      return withType(LOG_ENTRY.revocation, entry.signingKeyId, didBytes(entry.did));
    case 'receipt':
      checkReceipt(entry.receipt, entry.signature);
      return withType(LOG_ENTRY.receipt, u16(entry.receipt.length), entry.receipt, u16(entry.signature.length), entry.signature);
  }
}

export function decodeLogEntry(data: Uint8Array): LogEntry {
  if (data.length === 0) throw new LogEntryError('empty', 'log entry is empty');
  const body = data.subarray(1);
  const did = (bytes: Uint8Array): string => {
    let text: string;
    try {
      text = fromUtf8.decode(bytes);
    } catch {
      throw new LogEntryError('bad_did', 'DID is not UTF-8');
    }
    didBytes(text);
    return text;
  };
  switch (data[0]) {
    case LOG_ENTRY.transfer:
    case LOG_ENTRY.firmware: {
      if (body.length !== HASH) throw new LogEntryError('bad_length', `type 0x0${data[0]} entry must be ${1 + HASH} bytes, got ${data.length}`);
      const hash = body.slice();
      return data[0] === LOG_ENTRY.transfer ? { type: 'transfer', envelopeHash: hash } : { type: 'firmware', manifestHash: hash };
    }
    case LOG_ENTRY.registration:
      if (body.length <= 2 * HASH) throw new LogEntryError('bad_length', 'registration entry is too short');
      return { type: 'registration', signingKeyId: body.slice(0, HASH), kemKeyId: body.slice(HASH, 2 * HASH), did: did(body.subarray(2 * HASH)) };
    case LOG_ENTRY.approvedRegistration: {
      const fields = lengthPrefixed(body, 2 * HASH, 'approved registration');
      const statement = fields.next('fleet statement');
      const signature = fields.next('fleet signature');
      const at = fields.offset();
      if (at >= body.length) throw new LogEntryError('bad_length', 'approved registration entry has no DID');
      const entry = { type: 'registration' as const, signingKeyId: body.slice(0, HASH), kemKeyId: body.slice(HASH, 2 * HASH), did: did(body.subarray(at)), approval: { statement, signature } };
      checkApproval(entry.approval, entry.signingKeyId, entry.kemKeyId, entry.did);
      return entry;
    }
    case LOG_ENTRY.receipt: {
      const fields = lengthPrefixed(body, 0, 'receipt');
      const receipt = fields.next('receipt');
      const signature = fields.next('signature');
      if (fields.offset() !== body.length) throw new LogEntryError('bad_length', `${body.length - fields.offset()} bytes after the receipt entry`);
      checkReceipt(receipt, signature);
      return { type: 'receipt', receipt, signature };
    }
    case LOG_ENTRY.revocation:
      if (body.length <= HASH) throw new LogEntryError('bad_length', 'revocation entry is too short');
      return { type: 'revocation', signingKeyId: body.slice(0, HASH), did: did(body.subarray(HASH)) };
    default:
      throw new LogEntryError('unknown_type', `unknown log entry type 0x${data[0]!.toString(16).padStart(2, '0')}`);
  }
}

/** Leaf data and RFC 9162 leaf hash of a transfer, from the envelope bytes. */
export function transferLeaf(envelopeBytes: Uint8Array): { data: Uint8Array; hash: Uint8Array; envelopeHash: Uint8Array } {
  return transferLeafFromHash(sha256(envelopeBytes));
}

/** The same from SHA-256(envelope), for callers that hashed the bytes as they streamed in. */
export function transferLeafFromHash(envelopeHash: Uint8Array): { data: Uint8Array; hash: Uint8Array; envelopeHash: Uint8Array } {
  const data = encodeLogEntry({ type: 'transfer', envelopeHash });
  return { data, hash: leafHash(data), envelopeHash: new Uint8Array(envelopeHash) };
}

/** Leaf data and hash of a firmware manifest. */
export function firmwareLeaf(manifestBytes: Uint8Array): { data: Uint8Array; hash: Uint8Array } {
  const data = encodeLogEntry({ type: 'firmware', manifestHash: sha256(manifestBytes) });
  return { data, hash: leafHash(data) };
}
