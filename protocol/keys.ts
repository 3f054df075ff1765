/**
 * Key encodings: SPKI public keys and PKCS#8 private keys (seed form) for ML-DSA-65, ML-KEM-768
 * and X-Wing, their PEM armour, and key ids. Pure: bytes and strings in, bytes and strings out
 * (randomBytes only for key generation). See docs/protocol/keys.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  DerError, TAG, bitString, decodeBitStringBytes, decodeOid, encodeOid,
  octetString, readChildren, readSingle, readTlv, sequence, smallInteger, tlv, type Tlv,
} from './asn1.js';
import { getProvider } from './crypto/provider.js';
import { xwingPublicKeyFromSeed } from './crypto/xwing.js';
import { ProtocolError } from './errors.js';

export type KeyAlg = 'ML-DSA-65' | 'X-Wing' | 'ML-KEM-768';
export const KEY_ALGS: readonly KeyAlg[] = ['ML-DSA-65', 'X-Wing', 'ML-KEM-768'];

interface AlgInfo {
  oid: string;
  publicKeyLength: number;
  seedLength: number;
  /** Expanded (non-seed) private key length, for recognising the "expanded" and "both" forms. */
  expandedLength?: number;
}

/** OIDs: FIPS 204 / FIPS 203 (NIST CSOR) and draft-connolly-cfrg-xwing-kem. */
export const ALGS: Readonly<Record<KeyAlg, AlgInfo>> = {
  'ML-DSA-65': { oid: '2.16.840.1.101.3.4.3.18', publicKeyLength: 1952, seedLength: 32, expandedLength: 4032 },
  'ML-KEM-768': { oid: '2.16.840.1.101.3.4.4.2', publicKeyLength: 1184, seedLength: 64, expandedLength: 2400 },
  'X-Wing': { oid: '1.3.6.1.4.1.62253.25722', publicKeyLength: 1216, seedLength: 32 },
};

export type KeyErrorCode =
  | 'bad_pem' | 'wrong_pem_label' | 'bad_der' | 'unknown_oid' | 'bad_length' | 'trailing_bytes'
  | 'expanded_only' | 'seed_mismatch' | 'wrong_alg' | 'unknown_alg';

/** Any malformed key or key file content. `code` is stable, `message` names what was wrong. */
export class KeyError extends ProtocolError<KeyErrorCode> {}

function algInfo(alg: KeyAlg): AlgInfo {
  const info = ALGS[alg];
  if (!info) throw new KeyError('unknown_alg', `unknown key algorithm "${String(alg)}": allowed are ${KEY_ALGS.join(', ')}`);
  return info;
}

function algByOid(oid: string): KeyAlg {
  const alg = KEY_ALGS.find((a) => ALGS[a].oid === oid);
  if (!alg) throw new KeyError('unknown_oid', `unknown key algorithm OID ${oid}: expected ${KEY_ALGS.map((a) => `${a} (${ALGS[a].oid})`).join(', ')}`);
  return alg;
}

function checkLength(bytes: Uint8Array, expected: number, what: string): void {
  if (!(bytes instanceof Uint8Array)) throw new KeyError('bad_length', `${what} must be a Uint8Array`);
  if (bytes.length !== expected) throw new KeyError('bad_length', `${what} must be ${expected} bytes, got ${bytes.length}`);
}

const algorithmIdentifier = (alg: KeyAlg): Uint8Array => sequence(encodeOid(algInfo(alg).oid));

// ---------- SPKI and key ids ----------

/** SubjectPublicKeyInfo DER: SEQUENCE { SEQUENCE { OID }, BIT STRING publicKey } (no parameters). */
export function spkiDer(alg: KeyAlg, publicKey: Uint8Array): Uint8Array {
  checkLength(publicKey, algInfo(alg).publicKeyLength, `${alg} public key`);
  return sequence(algorithmIdentifier(alg), bitString(publicKey));
}

/** Key id: SHA-256 over the SPKI DER (32 bytes), so it names algorithm and key together. */
export function keyId(alg: KeyAlg, publicKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(spkiDer(alg, publicKey)).digest());
}

export function keyIdHex(alg: KeyAlg, publicKey: Uint8Array): string {
  return Buffer.from(keyId(alg, publicKey)).toString('hex');
}

/** Runs a DER decoder, turning low-level DerErrors into KeyError('bad_der' | 'trailing_bytes'). */
function withDer<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof DerError) {
      throw new KeyError(/trailing bytes/.test(err.message) ? 'trailing_bytes' : 'bad_der', `${what}: ${err.message}`);
    }
    throw err;
  }
}

/** AlgorithmIdentifier with no parameters (absent; an explicit NULL is refused as these OIDs forbid it). */
function readAlgorithmIdentifier(element: Tlv | undefined, what: string): KeyAlg {
  if (!element || element.tag !== TAG.SEQUENCE) throw new KeyError('bad_der', `${what}: missing AlgorithmIdentifier`);
  const parts = readChildren(element.content);
  const oid = parts[0];
  if (!oid || oid.tag !== TAG.OID) throw new KeyError('bad_der', `${what}: AlgorithmIdentifier has no OID`);
  const alg = algByOid(decodeOid(oid.content));
  if (parts.length !== 1) throw new KeyError('bad_der', `${what}: ${alg} AlgorithmIdentifier must have no parameters`);
  return alg;
}

export interface PublicKey {
  alg: KeyAlg;
  publicKey: Uint8Array;
}

export function decodeSpkiDer(der: Uint8Array, expectedAlg?: KeyAlg): PublicKey {
  return withDer('public key (SPKI)', () => {
    const outer = readSingle(der, TAG.SEQUENCE, 'SubjectPublicKeyInfo');
    const [algId, bits, ...extra] = readChildren(outer.content);
    const alg = readAlgorithmIdentifier(algId, 'SubjectPublicKeyInfo');
    if (!bits || bits.tag !== TAG.BIT_STRING || extra.length > 0) throw new KeyError('bad_der', 'SubjectPublicKeyInfo: expected exactly one BIT STRING after the AlgorithmIdentifier');
    const publicKey = Uint8Array.from(decodeBitStringBytes(bits.content, 'subjectPublicKey'));
    checkLength(publicKey, ALGS[alg].publicKeyLength, `${alg} public key`);
    checkAlg(alg, expectedAlg);
    return { alg, publicKey };
  });
}

function checkAlg(found: KeyAlg, expected: KeyAlg | undefined): void {
  if (expected && found !== expected) throw new KeyError('wrong_alg', `expected a ${expected} key, found ${found}`);
}

// ---------- PKCS#8 (seed form) ----------

export interface PrivateKey {
  alg: KeyAlg;
  /** The seed: ML-DSA-65 xi (32), ML-KEM-768 d||z (64), X-Wing sk (32). */
  seed: Uint8Array;
  publicKey: Uint8Array;
}

/** Public key from seed via the active crypto provider (or the X-Wing construction). */
export function publicKeyFromSeed(alg: KeyAlg, seed: Uint8Array): Uint8Array {
  checkLength(seed, algInfo(alg).seedLength, `${alg} seed`);
  switch (alg) {
    case 'ML-DSA-65': return getProvider().mlDsa65.publicKeyFromSeed(seed);
    case 'ML-KEM-768': return getProvider().mlKem768.publicKeyFromSeed(seed);
    case 'X-Wing': return xwingPublicKeyFromSeed(seed, getProvider());
  }
}

export function privateKeyFromSeed(alg: KeyAlg, seed: Uint8Array): PrivateKey {
  const copy = Uint8Array.from(seed);
  return { alg, seed: copy, publicKey: publicKeyFromSeed(alg, copy) };
}

export function generatePrivateKey(alg: KeyAlg): PrivateKey {
  return privateKeyFromSeed(alg, new Uint8Array(randomBytes(algInfo(alg).seedLength)));
}

/**
 * PKCS#8 OneAsymmetricKey v0 in seed form. ML-DSA / ML-KEM: privateKey = OCTET STRING { [0] IMPLICIT
 * OCTET STRING seed } (RFC 9881 / draft-ietf-lamps-kyber-certificates). X-Wing: privateKey =
 * OCTET STRING { the 32-byte seed } as the X-Wing draft specifies.
 */
export function pkcs8Der(alg: KeyAlg, seed: Uint8Array): Uint8Array {
  checkLength(seed, algInfo(alg).seedLength, `${alg} seed`);
  const inner = alg === 'X-Wing' ? seed : tlv(TAG.CONTEXT_0_PRIMITIVE, seed);
  return sequence(smallInteger(0), algorithmIdentifier(alg), octetString(inner));
}

/** The seed from the privateKey OCTET STRING's content, accepting seed-only and "both" forms. */
function seedFromPrivateKeyField(alg: KeyAlg, field: Uint8Array): Uint8Array {
  const info = ALGS[alg];
  if (alg === 'X-Wing') {
    checkLength(field, info.seedLength, 'X-Wing private key (seed)');
    return field;
  }
  const choice = readTlv(field, 0);
  if (choice.end !== field.length) throw new KeyError('trailing_bytes', `${alg} private key: ${field.length - choice.end} trailing bytes`);
  switch (choice.tag) {
    case TAG.CONTEXT_0_PRIMITIVE: // seed
      checkLength(choice.content, info.seedLength, `${alg} seed`);
      return choice.content;
    case TAG.OCTET_STRING: // expandedKey only: we cannot recover the seed
      throw new KeyError('expanded_only', `${alg} private key holds only the expanded key (${choice.content.length} bytes) and no seed; re-export it in seed or seed+expanded ("both") form`);
    case TAG.SEQUENCE: { // both: SEQUENCE { seed OCTET STRING, expandedKey OCTET STRING }
      const [seed, expanded, ...extra] = readChildren(choice.content);
      if (!seed || seed.tag !== TAG.OCTET_STRING || !expanded || expanded.tag !== TAG.OCTET_STRING || extra.length > 0) {
        throw new KeyError('bad_der', `${alg} private key: "both" form must be SEQUENCE { OCTET STRING seed, OCTET STRING expandedKey }`);
      }
      checkLength(seed.content, info.seedLength, `${alg} seed`);
      checkLength(expanded.content, info.expandedLength!, `${alg} expanded private key`);
      return seed.content;
    }
    default:
      throw new KeyError('bad_der', `${alg} private key: unexpected DER tag 0x${choice.tag.toString(16)} (expected seed [0], expandedKey or both)`);
  }
}

/** Decodes PKCS#8 (v0 or v1 OneAsymmetricKey); derives the public key and checks an embedded one. */
export function decodePkcs8Der(der: Uint8Array, expectedAlg?: KeyAlg): PrivateKey {
  const { alg, seed, embeddedPublicKey } = withDer('private key (PKCS#8)', () => {
    const outer = readSingle(der, TAG.SEQUENCE, 'PrivateKeyInfo');
    const [version, algId, key, ...rest] = readChildren(outer.content);
    if (!version || version.tag !== TAG.INTEGER || version.content.length !== 1 || version.content[0]! > 1) {
      throw new KeyError('bad_der', 'PrivateKeyInfo: version must be INTEGER 0 or 1');
    }
    const alg = readAlgorithmIdentifier(algId, 'PrivateKeyInfo');
    checkAlg(alg, expectedAlg);
    if (!key || key.tag !== TAG.OCTET_STRING) throw new KeyError('bad_der', 'PrivateKeyInfo: missing privateKey OCTET STRING');
    const seed = Uint8Array.from(seedFromPrivateKeyField(alg, key.content));
    // Optional [0] attributes and, in v1, [1] publicKey; anything else is refused.
    let embeddedPublicKey: Uint8Array | undefined;
    for (const field of rest) {
      if (field.tag === 0xa0) continue;
      if (field.tag === 0x81 && version.content[0] === 1) {
        embeddedPublicKey = decodeBitStringBytes(field.content, 'publicKey');
        continue;
      }
      throw new KeyError('bad_der', `PrivateKeyInfo: unexpected field with tag 0x${field.tag.toString(16)}`);
    }
    return { alg, seed, embeddedPublicKey };
  });
  const key = privateKeyFromSeed(alg, seed);
  if (embeddedPublicKey && !Buffer.from(embeddedPublicKey).equals(Buffer.from(key.publicKey))) {
    throw new KeyError('seed_mismatch', `${alg} private key: the embedded public key does not match the seed`);
  }
  return key;
}

// ---------- PEM ----------

const PEM_LINE = 64;
/** Largest PEM we accept: an ML-DSA "both"-form PKCS#8 is ~4.1 KB DER; leave generous room. */
export const MAX_PEM_CHARS = 16 * 1024;

export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += PEM_LINE) lines.push(b64.slice(i, i + PEM_LINE));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Decodes exactly one PEM block with the given label (text outside the block is refused). */
export function decodePem(pem: string, label: string): Uint8Array {
  if (typeof pem !== 'string') throw new KeyError('bad_pem', 'PEM input must be a string');
  if (pem.length > MAX_PEM_CHARS) throw new KeyError('bad_pem', `PEM is too large (${pem.length} characters, at most ${MAX_PEM_CHARS})`);
  const match = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)\r?\n?-----END ([A-Z0-9 ]+)-----\s*$/.exec(pem);
  if (!match) throw new KeyError('bad_pem', `not a single PEM block (expected "-----BEGIN ${label}-----" ... "-----END ${label}-----")`);
  const [, begin, body, end] = match as unknown as [string, string, string, string];
  if (begin !== end) throw new KeyError('bad_pem', `PEM BEGIN label "${begin}" does not match END label "${end}"`);
  if (begin !== label) throw new KeyError('wrong_pem_label', `PEM label is "${begin}", expected "${label}"`);
  const b64 = body.replace(/\r?\n/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(b64)) {
    throw new KeyError('bad_pem', 'PEM body is not valid base64');
  }
  const der = new Uint8Array(Buffer.from(b64, 'base64'));
  if (der.length === 0) throw new KeyError('bad_pem', 'PEM body is empty');
  return der;
}

export const encodePublicKeyPem = (alg: KeyAlg, publicKey: Uint8Array): string => encodePem('PUBLIC KEY', spkiDer(alg, publicKey));
export const decodePublicKeyPem = (pem: string, expectedAlg?: KeyAlg): PublicKey => decodeSpkiDer(decodePem(pem, 'PUBLIC KEY'), expectedAlg);
export const encodePrivateKeyPem = (key: { alg: KeyAlg; seed: Uint8Array }): string => encodePem('PRIVATE KEY', pkcs8Der(key.alg, key.seed));
export const decodePrivateKeyPem = (pem: string, expectedAlg?: KeyAlg): PrivateKey => decodePkcs8Der(decodePem(pem, 'PRIVATE KEY'), expectedAlg);
