/**
 * Minimal DER (X.690) for key files: just the tags SPKI and PKCS#8 need. Strict on input:
 * definite, minimal lengths only (DER), at most 4 length bytes, no reading past the end.
 * Pure: bytes in, bytes out.
 */
import { ProtocolError } from './errors.js';
import { concatBytes } from './bytes.js';

export const TAG = {
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  CONTEXT_0_PRIMITIVE: 0x80, // [0] IMPLICIT OCTET STRING (ML-DSA / ML-KEM seed)
} as const;

/** Every DER problem is one code: the message says which. */
export class DerError extends ProtocolError<'bad_der'> {
  constructor(message: string) {
    super('bad_der', message);
  }
}

export interface Tlv {
  tag: number;
  /** The content octets (a view into the input). */
  content: Uint8Array;
  /** Offset just past this element in the input. */
  end: number;
}

// ---------- encoding ----------

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function tlv(tag: number, content: Uint8Array): Uint8Array {
  return concatBytes(Uint8Array.of(tag), encodeLength(content.length), content);
}

export const sequence = (...items: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, concatBytes(...items));
export const octetString = (bytes: Uint8Array): Uint8Array => tlv(TAG.OCTET_STRING, bytes);
/** A BIT STRING holding whole bytes (0 unused bits), as SPKI uses. */
export const bitString = (bytes: Uint8Array): Uint8Array => tlv(TAG.BIT_STRING, concatBytes(Uint8Array.of(0), bytes));
/** Small non-negative INTEGER (versions). */
export function smallInteger(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new DerError(`smallInteger out of range: ${value}`);
  return tlv(TAG.INTEGER, Uint8Array.of(value));
}

export function encodeOid(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^\d+$/.test(arc)) throw new DerError(`bad OID arc "${arc}" in ${dotted}`);
    return Number(arc);
  });
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined || first > 2 || (first < 2 && second > 39)) throw new DerError(`bad OID ${dotted}`);
  const body: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) base128.unshift(0x80 | (n & 0x7f));
    body.push(...base128);
  }
  return tlv(TAG.OID, Uint8Array.from(body));
}

// ---------- decoding ----------

/** Reads one element at `offset`, never past `limit`. */
export function readTlv(bytes: Uint8Array, offset = 0, limit = bytes.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated DER: need a tag and length at offset ${offset}`);
  const tag = bytes[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported multi-byte DER tag at offset ${offset}`);
  let length = bytes[offset + 1]!;
  let pos = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) throw new DerError(`indefinite DER length at offset ${offset} (not DER)`);
    if (count > 4) throw new DerError(`DER length of ${count} bytes at offset ${offset} is too large`);
    if (pos + count > limit) throw new DerError(`truncated DER length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[pos + i]!;
    if (bytes[pos] === 0 || length < 0x80) throw new DerError(`non-minimal DER length at offset ${offset}`);
    pos += count;
  }
  if (pos + length > limit) throw new DerError(`truncated DER: element at offset ${offset} needs ${length} bytes, ${limit - pos} left`);
  return { tag, content: bytes.subarray(pos, pos + length), end: pos + length };
}

/** Reads one element of the expected tag. */
export function expectTlv(bytes: Uint8Array, offset: number, tag: number, what: string): Tlv {
  const element = readTlv(bytes, offset);
  if (element.tag !== tag) {
    throw new DerError(`${what}: expected DER tag 0x${tag.toString(16).padStart(2, '0')}, found 0x${element.tag.toString(16).padStart(2, '0')}`);
  }
  return element;
}

/** The elements of a SEQUENCE's content, in order; all bytes must be consumed. */
export function readChildren(content: Uint8Array): Tlv[] {
  const children: Tlv[] = [];
  for (let offset = 0; offset < content.length; ) {
    const child = readTlv(content, offset);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** Decodes the whole input as exactly one element: trailing bytes are an error. */
export function readSingle(bytes: Uint8Array, tag: number, what: string): Tlv {
  const element = expectTlv(bytes, 0, tag, what);
  if (element.end !== bytes.length) throw new DerError(`${what}: ${bytes.length - element.end} trailing bytes after DER`);
  return element;
}

export function decodeOid(content: Uint8Array): string {
  if (content.length === 0) throw new DerError('empty OID');
  if (content[content.length - 1]! & 0x80) throw new DerError('truncated OID');
  const arcs: number[] = [];
  let value = 0;
  let started = false;
  for (const byte of content) {
    if (!started && byte === 0x80) throw new DerError('non-minimal OID arc');
    started = true;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if (!(byte & 0x80)) {
      arcs.push(value);
      value = 0;
      started = false;
    }
  }
  const [head, ...rest] = arcs as [number, ...number[]];
  const first = head < 40 ? 0 : head < 80 ? 1 : 2;
  return [first, head - first * 40, ...rest].join('.');
}

export function decodeBitStringBytes(content: Uint8Array, what: string): Uint8Array {
  if (content.length === 0 || content[0] !== 0) throw new DerError(`${what}: BIT STRING must have 0 unused bits`);
  return content.subarray(1);
}
