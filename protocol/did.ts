/**
 * did:ghostpipe — a device identifier derived from its ML-DSA-65 public key, and its DID
 * document (W3C DID Core shape). Pure. Method: docs/protocol/keys.md.
 *
 *   did:ghostpipe:<base32-lower-no-pad(SHA-256(SPKI DER of the ML-DSA-65 public key))>
 */
import { keyId, keyIdHex, KeyError, type KeyAlg } from './keys.js';
import { ProtocolError } from './errors.js';

export const DID_PREFIX = 'did:ghostpipe:';
/** 32-byte key id in base32 without padding is 52 characters. */
const ID_CHARS = 52;
export const MAX_DID_LENGTH = DID_PREFIX.length + ID_CHARS;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

export type DidErrorCode = 'not_a_string' | 'too_long' | 'wrong_method' | 'bad_identifier' | 'bad_document';

export class DidError extends ProtocolError<DidErrorCode> {}

export function base32Lower(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(buffer >>> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/** Strict decoder: lowercase alphabet only, no padding, unused trailing bits must be zero (one spelling per value). */
export function base32LowerDecode(text: string): Uint8Array {
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text) {
    const value = BASE32.indexOf(char);
    if (value < 0) throw new DidError('bad_identifier', `invalid base32 character ${JSON.stringify(char)}`);
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >>> bits) & 0xff);
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits >= 5 || buffer !== 0) throw new DidError('bad_identifier', 'non-canonical base32 (bad length or non-zero trailing bits)');
  return Uint8Array.from(out);
}

/** The device DID for an ML-DSA-65 public key. */
export function didFromSigningKey(signingPublicKey: Uint8Array): string {
  return DID_PREFIX + base32Lower(keyId('ML-DSA-65', signingPublicKey));
}

export interface ParsedDid {
  did: string;
  /** The 32-byte key id of the device's ML-DSA-65 public key. */
  keyId: Uint8Array;
}

/** Validates a did:ghostpipe string. No paths, queries, fragments, parameters or upper case. */
export function parseDid(did: unknown): ParsedDid {
  if (typeof did !== 'string') throw new DidError('not_a_string', 'DID must be a string');
  if (did.length > MAX_DID_LENGTH) throw new DidError('too_long', `DID is ${did.length} characters, at most ${MAX_DID_LENGTH}`);
  if (!did.startsWith(DID_PREFIX)) {
    const shown = did.slice(0, 24).replace(/[^\x20-\x7e]/g, '?');
    throw new DidError('wrong_method', `not a ${DID_PREFIX} DID: "${shown}"`);
  }
  const id = did.slice(DID_PREFIX.length);
  if (!/^[a-z2-7]*$/.test(id)) {
    throw new DidError('bad_identifier', 'DID identifier may hold only a-z and 2-7 (no path, query, fragment, ":" or upper case)');
  }
  if (id.length !== ID_CHARS) throw new DidError('bad_identifier', `DID identifier must be ${ID_CHARS} characters, got ${id.length}`);
  return { did, keyId: base32LowerDecode(id) };
}

export type KemAlg = Extract<KeyAlg, 'X-Wing' | 'ML-KEM-768'>;

/** JSON Web Key for an "Algorithm Key Pair" (AKP) public key, as the JOSE/COSE ML-DSA and ML-KEM drafts use. */
export interface AkpPublicJwk {
  kty: 'AKP';
  alg: KeyAlg;
  /** base64url, no padding: the raw public key. */
  pub: string;
  /** Our key id (hex SHA-256 of the SPKI DER). */
  kid: string;
}

export interface VerificationMethod {
  id: string;
  type: 'JsonWebKey';
  controller: string;
  publicKeyJwk: AkpPublicJwk;
}

export interface DidDocument {
  '@context': string[];
  id: string;
  verificationMethod: VerificationMethod[];
  authentication: string[];
  assertionMethod: string[];
  keyAgreement: string[];
}

export const DID_CONTEXT = ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/jws/v1'];

function method(did: string, fragment: string, alg: KeyAlg, publicKey: Uint8Array): VerificationMethod {
  return {
    id: `${did}#${fragment}`,
    type: 'JsonWebKey',
    controller: did,
    publicKeyJwk: { kty: 'AKP', alg, pub: Buffer.from(publicKey).toString('base64url'), kid: keyIdHex(alg, publicKey) },
  };
}

/** The DID document of a device: #sign (ML-DSA-65) authenticates and asserts, #kem is for key agreement. */
export function didDocument(keys: { signingPublicKey: Uint8Array; kemPublicKey: Uint8Array; kemAlg?: KemAlg }): DidDocument {
  const kemAlg = keys.kemAlg ?? 'X-Wing';
  const did = didFromSigningKey(keys.signingPublicKey);
  return {
    '@context': [...DID_CONTEXT],
    id: did,
    verificationMethod: [method(did, 'sign', 'ML-DSA-65', keys.signingPublicKey), method(did, 'kem', kemAlg, keys.kemPublicKey)],
    authentication: [`${did}#sign`],
    assertionMethod: [`${did}#sign`],
    keyAgreement: [`${did}#kem`],
  };
}

/**
 * Reads a DID document back (e.g. fetched from a relay) and checks it is self-consistent: the
 * id is the DID of the #sign key, and the document is exactly what didDocument() would produce.
 */
export function readDidDocument(doc: unknown): { did: string; signingPublicKey: Uint8Array; kemPublicKey: Uint8Array; kemAlg: KemAlg } {
  const bad = (why: string): never => {
    throw new DidError('bad_document', `DID document: ${why}`);
  };
  if (typeof doc !== 'object' || doc === null) return bad('not a JSON object');
  const { id, verificationMethod } = doc as Partial<DidDocument>;
  const { did } = parseDid(id);
  if (!Array.isArray(verificationMethod)) return bad('verificationMethod must be an array');
  const find = (fragment: string): AkpPublicJwk => {
    const vm = verificationMethod.find((m) => m && m.id === `${did}#${fragment}`);
    if (!vm || typeof vm.publicKeyJwk !== 'object' || vm.publicKeyJwk === null) return bad(`missing verification method #${fragment}`);
    return vm.publicKeyJwk;
  };
  const sign = find('sign');
  const kem = find('kem');
  if (sign.alg !== 'ML-DSA-65') return bad('#sign must be an ML-DSA-65 key');
  if (kem.alg !== 'X-Wing' && kem.alg !== 'ML-KEM-768') return bad('#kem must be an X-Wing or ML-KEM-768 key');
  const decode = (jwk: AkpPublicJwk): Uint8Array => {
    if (typeof jwk.pub !== 'string' || !/^[A-Za-z0-9_-]+$/.test(jwk.pub)) return bad(`${jwk.alg} key "pub" is not base64url`);
    return new Uint8Array(Buffer.from(jwk.pub, 'base64url'));
  };
  const keys = { signingPublicKey: decode(sign), kemPublicKey: decode(kem), kemAlg: kem.alg };
  let expected: DidDocument;
  try {
    expected = didDocument(keys);
  } catch (err) {
    if (err instanceof KeyError) return bad(err.message);
    throw err;
  }
  if (expected.id !== did) return bad('id is not the DID of its #sign key');
  if (JSON.stringify(canonical(expected)) !== JSON.stringify(canonical(doc))) return bad('fields differ from the did:ghostpipe document for these keys');
  return { did, ...keys };
}

/** Key-sorted copy, so field order does not matter when comparing documents. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}
