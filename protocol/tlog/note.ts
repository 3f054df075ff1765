// C2SP signed-note (c2sp.org/signed-note), compatible with golang.org/x/mod/sumdb/note.
//
//   <text ending in \n>
//   <blank line>
//   — <key name> base64(keyID[4] || signature)\n    (one or more)
//
// Key ID = SHA-256(name || 0x0A || signature type || public key)[:4].
// Ed25519 uses type 0x01. ML-DSA-65 has no assigned byte, so Ghost Pipe uses the 0xff form
// with the DER encoding of the id-ml-dsa-65 OID (2.16.840.1.101.3.4.3.18) as identifier:
// type = ff 06 09 60 86 48 01 65 03 04 03 12. Signatures are pure ML-DSA-65 with the empty
// context (as X.509 uses that OID); the key ID already binds name and algorithm.
// See docs/protocol/tlog.md.

import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { getProvider, type CryptoProvider } from '../crypto/provider.js';
import { ProtocolError } from '../errors.js';

export const MAX_NOTE_BYTES = 1024 * 1024;
export const MAX_SIGNATURES = 100;

export const ED25519_TYPE = Uint8Array.of(0x01);
/** 0xff || DER(OID 2.16.840.1.101.3.4.3.18, id-ml-dsa-65). */
export const ML_DSA_65_TYPE = Uint8Array.of(0xff, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12);
const ML_DSA_65_CONTEXT = new Uint8Array(0);
const ML_DSA_65 = { seed: 32, publicKey: 1952, signature: 3309 } as const;
const ED25519 = { seed: 32, publicKey: 32, signature: 64 } as const;

const SIGNATURE_PREFIX = '\u2014 '; // em dash, space

export type NoteErrorCode =
  | 'malformed' // not a well-formed signed note (or signer/verifier key text)
  | 'oversized' // more than MAX_NOTE_BYTES or MAX_SIGNATURES
  | 'unverified' // no signature by a known key
  | 'bad_signature'; // a signature by a known key does not verify

export class NoteError extends ProtocolError<NoteErrorCode> {}

export interface NoteSigner {
  name: string;
  keyId: Uint8Array; // 4 bytes
  sign(message: Uint8Array): Uint8Array;
}

export interface NoteVerifier {
  name: string;
  keyId: Uint8Array; // 4 bytes
  verify(message: Uint8Array, signature: Uint8Array): boolean;
}

export interface NoteSignature {
  name: string;
  keyId: Uint8Array;
  /** true: by a known key and valid. false: by an unknown key (ignored). */
  verified: boolean;
}

export interface OpenedNote {
  text: string;
  signatures: NoteSignature[];
}

/** Signs `text` (which must end in a newline) with every signer, in order. */
export function signNote(text: string, signers: NoteSigner[]): string {
  checkNoteCharacters(text, 'note text');
  if (!text.endsWith('\n')) throw new NoteError('malformed', 'note text must end with a newline');
  if (signers.length === 0) throw new NoteError('malformed', 'at least one signer is required');
  if (signers.length > MAX_SIGNATURES) throw new NoteError('oversized', `at most ${MAX_SIGNATURES} signatures per note`);
  const message = utf8.encode(text);
  const lines = signers.map((signer) => {
    checkKeyName(signer.name);
    checkKeyId(signer.keyId);
    const signature = signer.sign(message);
    return `${SIGNATURE_PREFIX}${signer.name} ${toBase64(concat(signer.keyId, signature))}\n`;
  });
  const note = `${text}\n${lines.join('')}`;
  if (utf8.encode(note).length > MAX_NOTE_BYTES) throw new NoteError('oversized', `signed note exceeds ${MAX_NOTE_BYTES} bytes`);
  return note;
}

export interface ParsedNote {
  text: string;
  signatures: { name: string; keyId: Uint8Array; signature: Uint8Array }[];
}

/**
 * Splits a signed note into text and signature lines without verifying anything (for
 * display and tooling; trust nothing in it). Throws NoteError 'malformed' or 'oversized',
 * also for non-UTF-8 bytes and for a repeated (name, key ID) pair.
 */
export function parseNote(note: string | Uint8Array): ParsedNote {
  const noteText = typeof note === 'string' ? note : decodeUtf8(note);
  if (noteText.length > MAX_NOTE_BYTES || utf8.encode(noteText).length > MAX_NOTE_BYTES) {
    throw new NoteError('oversized', `signed note exceeds ${MAX_NOTE_BYTES} bytes`);
  }
  checkNoteCharacters(noteText, 'signed note');
  const split = noteText.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('malformed', 'no blank line between note text and signatures');
  const text = noteText.slice(0, split + 1);
  const block = noteText.slice(split + 2);
  if (block === '') throw new NoteError('malformed', 'note has no signature lines');
  if (!block.endsWith('\n')) throw new NoteError('malformed', 'signature block does not end with a newline');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new NoteError('oversized', `note has ${lines.length} signatures, at most ${MAX_SIGNATURES} are accepted`);

  const seen = new Set<string>();
  const signatures = lines.map((line, i) => {
    const where = `signature line ${i + 1}`;
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new NoteError('malformed', `${where} does not start with an em dash and a space`);
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space < 0) throw new NoteError('malformed', `${where} has no space between key name and signature`);
    const name = rest.slice(0, space);
    if (!isValidKeyName(name)) throw new NoteError('malformed', `${where} has an invalid key name`);
    const blob = fromBase64(rest.slice(space + 1));
    if (blob === undefined || blob.length < 5) throw new NoteError('malformed', `${where}: signature is not valid base64 of a key ID and a signature`);
    const keyId = blob.slice(0, 4);
    const id = lookupKey(name, keyId);
    if (seen.has(id)) throw new NoteError('malformed', `${where} repeats a signature by ${id}`);
    seen.add(id);
    return { name, keyId, signature: blob.subarray(4) };
  });
  return { text, signatures };
}

/**
 * Parses a signed note and verifies the signatures of known keys. Signatures by unknown
 * keys are ignored (returned with verified: false). Throws NoteError 'bad_signature' if a
 * known key's signature fails, 'unverified' if no known key signed, 'malformed' or
 * 'oversized' for bad input (see parseNote).
 */
export function openNote(note: string | Uint8Array, verifiers: NoteVerifier[]): OpenedNote {
  const known = verifierIndex(verifiers);
  const parsed = parseNote(note);
  const message = utf8.encode(parsed.text);
  const signatures = parsed.signatures.map(({ name, keyId, signature }): NoteSignature => {
    const verifier = known.get(lookupKey(name, keyId));
    if (verifier === undefined) return { name, keyId, verified: false };
    if (!verifier.verify(message, signature)) {
      throw new NoteError('bad_signature', `invalid signature by known key ${lookupKey(name, keyId)}`);
    }
    return { name, keyId, verified: true };
  });
  if (!signatures.some((s) => s.verified)) throw new NoteError('unverified', 'note has no signature by a known key');
  return { text: parsed.text, signatures };
}

/** Key ID = SHA-256(name || 0x0A || type || publicKey)[:4]. */
export function noteKeyId(name: string, type: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const digest = createHash('sha256').update(utf8.encode(name)).update(Uint8Array.of(0x0a)).update(type).update(publicKey).digest();
  return new Uint8Array(digest.subarray(0, 4));
}

// ---- ML-DSA-65 (0xff form) ----

export function mlDsaNoteSigner(name: string, seed: Uint8Array, provider?: CryptoProvider): NoteSigner {
  checkKeyName(name);
  checkLength(seed, ML_DSA_65.seed, 'ML-DSA-65 seed');
  const dsa = (provider ?? getProvider()).mlDsa65;
  const secretSeed = seed.slice();
  const publicKey = dsa.publicKeyFromSeed(secretSeed);
  return {
    name,
    keyId: noteKeyId(name, ML_DSA_65_TYPE, publicKey),
    sign: (message) => dsa.sign(secretSeed, message, ML_DSA_65_CONTEXT),
  };
}

export function mlDsaNoteVerifier(name: string, publicKey: Uint8Array, provider?: CryptoProvider): NoteVerifier {
  checkKeyName(name);
  checkLength(publicKey, ML_DSA_65.publicKey, 'ML-DSA-65 public key');
  const dsa = (provider ?? getProvider()).mlDsa65;
  const key = publicKey.slice();
  return {
    name,
    keyId: noteKeyId(name, ML_DSA_65_TYPE, key),
    verify: (message, signature) => signature.length === ML_DSA_65.signature && dsa.verify(key, message, signature, ML_DSA_65_CONTEXT),
  };
}

/** The verifier key text: name+hex(keyID)+base64(0xff || OID || publicKey). */
export function mlDsaVerifierKey(name: string, publicKey: Uint8Array): string {
  checkKeyName(name);
  checkLength(publicKey, ML_DSA_65.publicKey, 'ML-DSA-65 public key');
  return `${name}+${toHex(noteKeyId(name, ML_DSA_65_TYPE, publicKey))}+${toBase64(concat(ML_DSA_65_TYPE, publicKey))}`;
}

/** The signer key text: PRIVATE+KEY+name+hex(keyID)+base64(0xff || OID || seed). Secret: store 0600. */
export function mlDsaSignerKey(name: string, seed: Uint8Array, provider?: CryptoProvider): string {
  const signer = mlDsaNoteSigner(name, seed, provider);
  return `PRIVATE+KEY+${name}+${toHex(signer.keyId)}+${toBase64(concat(ML_DSA_65_TYPE, seed))}`;
}

// ---- Ed25519 (type 0x01), for the C2SP/Go examples and Ed25519 witnesses ----

export function ed25519NoteSigner(name: string, seed: Uint8Array): NoteSigner {
  checkKeyName(name);
  checkLength(seed, ED25519.seed, 'Ed25519 seed');
  const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = ed25519RawPublicKey(createPublicKey(privateKey));
  return {
    name,
    keyId: noteKeyId(name, ED25519_TYPE, publicKey),
    sign: (message) => new Uint8Array(edSign(null, message, privateKey)),
  };
}

export function ed25519NoteVerifier(name: string, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name);
  checkLength(publicKey, ED25519.publicKey, 'Ed25519 public key');
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  return {
    name,
    keyId: noteKeyId(name, ED25519_TYPE, publicKey),
    verify: (message, signature) => signature.length === ED25519.signature && edVerify(null, message, key, signature),
  };
}

export function ed25519VerifierKey(name: string, publicKey: Uint8Array): string {
  checkKeyName(name);
  checkLength(publicKey, ED25519.publicKey, 'Ed25519 public key');
  return `${name}+${toHex(noteKeyId(name, ED25519_TYPE, publicKey))}+${toBase64(concat(ED25519_TYPE, publicKey))}`;
}

// ---- key text parsing ----

/** Parses `name+hex(keyID)+base64(type || key)` (Ed25519 0x01 or ML-DSA-65 0xff form). */
export function parseVerifierKey(vkey: string, provider?: CryptoProvider): NoteVerifier {
  const { name, keyId, type, key } = splitKeyText(vkey, 'verifier key');
  const verifier = type === 'ed25519'
    ? (checkKeyLength(key, ED25519.publicKey, `verifier key ${name}`), ed25519NoteVerifier(name, key))
    : (checkKeyLength(key, ML_DSA_65.publicKey, `verifier key ${name}`), mlDsaNoteVerifier(name, key, provider));
  if (!sameBytes(verifier.keyId, keyId)) throw new NoteError('malformed', `verifier key ${name}: key ID does not match the key`);
  return verifier;
}

/** Parses `PRIVATE+KEY+name+hex(keyID)+base64(type || seed)`. */
export function parseSignerKey(skey: string, provider?: CryptoProvider): NoteSigner {
  if (!skey.startsWith('PRIVATE+KEY+')) throw new NoteError('malformed', 'signer key must start with PRIVATE+KEY+');
  const { name, keyId, type, key } = splitKeyText(skey.slice('PRIVATE+KEY+'.length), 'signer key');
  checkKeyLength(key, type === 'ed25519' ? ED25519.seed : ML_DSA_65.seed, `signer key ${name}`);
  const signer = type === 'ed25519' ? ed25519NoteSigner(name, key) : mlDsaNoteSigner(name, key, provider);
  if (!sameBytes(signer.keyId, keyId)) throw new NoteError('malformed', `signer key ${name}: key ID does not match the key`);
  return signer;
}

function splitKeyText(text: string, what: string): { name: string; keyId: Uint8Array; type: 'ed25519' | 'mldsa65'; key: Uint8Array } {
  // Split at the first two '+' only: base64 may contain '+'. Never echo key text (it may be secret).
  const first = text.indexOf('+');
  const second = first < 0 ? -1 : text.indexOf('+', first + 1);
  if (second < 0) throw new NoteError('malformed', `${what} must have the form name+keyid+base64`);
  const name = text.slice(0, first);
  const idHex = text.slice(first + 1, second);
  if (!isValidKeyName(name)) throw new NoteError('malformed', `${what} has an invalid key name`);
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw new NoteError('malformed', `${what} ${name}: key ID must be 8 hex digits`);
  const material = fromBase64(text.slice(second + 1));
  if (material === undefined || material.length === 0) throw new NoteError('malformed', `${what} ${name}: key is not valid base64`);
  const keyId = new Uint8Array(Buffer.from(idHex, 'hex'));
  if (material[0] === ED25519_TYPE[0]) return { name, keyId, type: 'ed25519', key: material.slice(1) };
  if (startsWith(material, ML_DSA_65_TYPE)) return { name, keyId, type: 'mldsa65', key: material.slice(ML_DSA_65_TYPE.length) };
  throw new NoteError('malformed', `${what} ${name}: unsupported signature type 0x${toHex(material.subarray(0, 1))}`);
}

function checkKeyLength(key: Uint8Array, length: number, what: string): void {
  if (key.length !== length) throw new NoteError('malformed', `${what}: key must be ${length} bytes, got ${key.length}`);
}

// ---- helpers ----

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function ed25519RawPublicKey(key: KeyObject): Uint8Array {
  const spki = key.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - ED25519.publicKey));
}

function decodeUtf8(bytes: Uint8Array): string {
  if (bytes.length > MAX_NOTE_BYTES) throw new NoteError('oversized', `signed note exceeds ${MAX_NOTE_BYTES} bytes`);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new NoteError('malformed', 'signed note is not valid UTF-8');
  }
}

const CONTROL_OR_LONE_SURROGATE = /[\u0000-\u0009\u000b-\u001f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** C2SP: valid UTF-8, no ASCII control characters other than newline. */
export function checkNoteCharacters(text: string, what: string): void {
  if (CONTROL_OR_LONE_SURROGATE.test(text)) throw new NoteError('malformed', `${what} contains a control character or invalid Unicode`);
}

/** Non-empty, no Unicode spaces, no '+', no control characters. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !CONTROL_OR_LONE_SURROGATE.test(name);
}

function checkKeyName(name: string): void {
  if (typeof name !== 'string' || !isValidKeyName(name)) throw new NoteError('malformed', 'key name must be non-empty without spaces or "+"');
}

function checkKeyId(keyId: Uint8Array): void {
  if (!(keyId instanceof Uint8Array) || keyId.length !== 4) throw new NoteError('malformed', 'key ID must be 4 bytes');
}

function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new NoteError('malformed', `${what} must be ${length} bytes`);
  }
}

function verifierIndex(verifiers: NoteVerifier[]): Map<string, NoteVerifier> {
  const index = new Map<string, NoteVerifier>();
  for (const v of verifiers) {
    const id = lookupKey(v.name, v.keyId);
    if (index.has(id)) throw new TypeError(`two verifiers share the key name and ID ${v.name}+${toHex(v.keyId)}`);
    index.set(id, v);
  }
  return index;
}

function lookupKey(name: string, keyId: Uint8Array): string {
  return `${name}+${toHex(keyId)}`;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict standard base64 (RFC 4648 §4, padded, canonical); undefined if invalid. */
export function fromBase64(text: string): Uint8Array | undefined {
  if (!BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) return undefined; // non-zero padding bits
  return new Uint8Array(bytes);
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64');
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
