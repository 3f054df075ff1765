/**
 * Reading frames: the plaintext the agent seals into an envelope (content type READINGS).
 * Pure: bytes in, bytes out. Layout and rationale: docs/protocol/frame.md.
 *
 *   batch   = "GPFR" | version u8 (1) | frameCount varint (>= 1) | frame*
 *   frame   = sequence u64 BE | time varint | intervalMs varint
 *             | stringCount varint | (length varint | UTF-8)* | readingCount varint | reading*
 *   reading = tap idx | point idx | flags u8 | [unit idx] | [reason idx] | value
 *             | readTime - time (zigzag) | [sourceTime - readTime (zigzag)] | [serverTime - readTime (zigzag)]
 *
 * The encoding is canonical: one value has exactly one encoding, and the decoder refuses every
 * other (overlong varints, unused or out-of-order strings, a float64 holding an integer, ...),
 * so decode(bytes) succeeding implies encode(decode(bytes)) equals bytes.
 */
import { ProtocolError } from './errors.js';

export type Quality = 'good' | 'uncertain' | 'bad';
/** A reading's value after type decoding, scale and offset. 64-bit integers stay exact as bigint. */
export type ReadingValue = number | bigint | boolean | string | null;

/** One reading: what a tap returns (agent/tap.ts) and what a frame carries, unchanged. */
export interface Reading {
  /** Tap name from the config. */
  tap: string;
  /** Point name from the config (unique within its tap). */
  point: string;
  /** Decoded value; null when quality is bad and no value exists. */
  value: ReadingValue;
  unit?: string;
  quality: Quality;
  /** Why the quality is not good, e.g. "timeout after 1000 ms", "modbus exception 2 (illegal data address)". */
  reason?: string;
  /** When the value was produced at the source (device or OPC-UA source timestamp), ms since epoch. */
  sourceTime?: number;
  /** OPC-UA server timestamp, ms since epoch. */
  serverTime?: number;
  /** When the agent obtained the value, ms since epoch. */
  readTime: number;
  /** True when the value was not refreshed within the interval (MQTT, subscriptions). */
  stale?: boolean;
}

export interface Frame {
  /** Frame sequence number of the sending device, u64. */
  sequence: bigint;
  /** Start of the interval the frame covers, ms since the Unix epoch. */
  time: number;
  /** Length of that interval, ms. */
  intervalMs: number;
  readings: Reading[];
}

export type FrameErrorCode = 'truncated' | 'bad_magic' | 'unsupported_version' | 'too_large' | 'malformed' | 'trailing_bytes' | 'bad_value';

export class FrameError extends ProtocolError<FrameErrorCode> {
  /** Byte offset where decoding failed (decode only). */
  readonly offset: number | undefined;
  constructor(code: FrameErrorCode, message: string, offset?: number) {
    super(code, offset === undefined ? message : `${message} (at byte ${offset})`);
    this.offset = offset;
  }
}

export const FRAME_MAGIC = new Uint8Array([0x47, 0x50, 0x46, 0x52]); // "GPFR"
export const FRAME_VERSION = 1;
/** Decoder limits; a sealed frame never exceeds the largest envelope bucket (64 MiB format limit). */
export const FRAME_LIMITS = {
  maxBytes: 64 * 1024 * 1024,
  maxFrames: 100_000,
  maxReadings: 1_000_000,
  maxStrings: 1_000_000,
  /** UTF-8 bytes of one name, unit, reason or string value. */
  maxStringBytes: 65_535,
} as const;

const QUALITIES: readonly Quality[] = ['good', 'uncertain', 'bad'];
const FLAG = { stale: 0x04, unit: 0x08, reason: 0x10, sourceTime: 0x20, serverTime: 0x40 } as const;
const TAG = { null: 0, false: 1, true: 2, int: 3, float64: 4, bigint: 5, string: 6 } as const;
const MAX_U64 = (1n << 64n) - 1n;
/** Bigint values: anything an int64 or uint64 register can hold. */
const MIN_BIGINT = -(1n << 63n);
const MAX_TIME = Number.MAX_SAFE_INTEGER;
const CANONICAL_NAN = new Uint8Array([0x7f, 0xf8, 0, 0, 0, 0, 0, 0]);

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------------------------------------
// Encoding

class Writer {
  private buf = new Uint8Array(256);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  byte(b: number): void {
    this.room(1);
    this.buf[this.length++] = b;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** Unsigned LEB128 of a non-negative bigint. */
  varint(v: bigint | number): void {
    let n = BigInt(v);
    while (n >= 0x80n) {
      this.byte(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.byte(Number(n));
  }
  zigzag(v: bigint | number): void {
    const n = BigInt(v);
    this.varint(n >= 0n ? n << 1n : ((-n) << 1n) - 1n);
  }
  u64(v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v);
    this.bytes(b);
  }
  float64(v: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v);
    this.bytes(b);
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function bad(message: string): never {
  throw new FrameError('bad_value', message);
}

function checkTime(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`${what} must be a whole number of ms since the epoch, found ${String(v)}`);
  return v;
}

function checkString(v: unknown, what: string): Uint8Array {
  if (typeof v !== 'string') bad(`${what} must be a string`);
  const bytes = utf8.encode(v);
  if (bytes.length > FRAME_LIMITS.maxStringBytes) bad(`${what} is ${bytes.length} bytes of UTF-8; the limit is ${FRAME_LIMITS.maxStringBytes}`);
  // TextEncoder turns a lone surrogate into U+FFFD: refuse rather than change the text silently.
  if (fromUtf8.decode(bytes) !== v) bad(`${what} is not well-formed Unicode (lone surrogate)`);
  return bytes;
}

/** A number is stored as a zigzag varint when it is a safe integer (and not -0), else as float64. */
const isIntNumber = (v: number) => Number.isSafeInteger(v) && !Object.is(v, -0);

function encodeFrame(w: Writer, frame: Frame, index: number): void {
  const at = `frames[${index}]`;
  if (typeof frame.sequence !== 'bigint' || frame.sequence < 0n || frame.sequence > MAX_U64) bad(`${at}.sequence must be a bigint in [0, 2^64)`);
  const time = checkTime(frame.time, `${at}.time`);
  if (!Number.isSafeInteger(frame.intervalMs) || frame.intervalMs < 0) bad(`${at}.intervalMs must be a non-negative integer`);
  if (!Array.isArray(frame.readings) || frame.readings.length > FRAME_LIMITS.maxReadings) bad(`${at}.readings must be a list of at most ${FRAME_LIMITS.maxReadings}`);

  // String table in first-use order: tap, point, unit, reason of each reading in turn.
  const table = new Map<string, number>();
  const strings: Uint8Array[] = [];
  const intern = (s: unknown, what: string): number => {
    const bytes = checkString(s, what);
    let i = table.get(s as string);
    if (i === undefined) {
      i = strings.length;
      table.set(s as string, i);
      strings.push(bytes);
    }
    return i;
  };
  const body = new Writer();
  frame.readings.forEach((r, i) => {
    const rat = `${at}.readings[${i}]`;
    body.varint(intern(r.tap, `${rat}.tap`));
    body.varint(intern(r.point, `${rat}.point`));
    const q = QUALITIES.indexOf(r.quality);
    if (q < 0) bad(`${rat}.quality must be good, uncertain or bad`);
    let flags = q;
    if (r.stale === true) flags |= FLAG.stale;
    if (r.unit !== undefined) flags |= FLAG.unit;
    if (r.reason !== undefined) flags |= FLAG.reason;
    if (r.sourceTime !== undefined) flags |= FLAG.sourceTime;
    if (r.serverTime !== undefined) flags |= FLAG.serverTime;
    body.byte(flags);
    if (r.unit !== undefined) body.varint(intern(r.unit, `${rat}.unit`));
    if (r.reason !== undefined) body.varint(intern(r.reason, `${rat}.reason`));
    encodeValue(body, r.value, `${rat}.value`);
    const readTime = checkTime(r.readTime, `${rat}.readTime`);
    body.zigzag(readTime - time);
    if (r.sourceTime !== undefined) body.zigzag(checkTime(r.sourceTime, `${rat}.sourceTime`) - readTime);
    if (r.serverTime !== undefined) body.zigzag(checkTime(r.serverTime, `${rat}.serverTime`) - readTime);
  });
  if (strings.length > FRAME_LIMITS.maxStrings) bad(`${at} has ${strings.length} distinct strings; the limit is ${FRAME_LIMITS.maxStrings}`);

  w.u64(frame.sequence);
  w.varint(time);
  w.varint(frame.intervalMs);
  w.varint(strings.length);
  for (const s of strings) {
    w.varint(s.length);
    w.bytes(s);
  }
  w.varint(frame.readings.length);
  w.bytes(body.done());
}

function encodeValue(w: Writer, v: unknown, what: string): void {
  if (v === null) return w.byte(TAG.null);
  if (v === false) return w.byte(TAG.false);
  if (v === true) return w.byte(TAG.true);
  if (typeof v === 'number') {
    if (isIntNumber(v)) {
      w.byte(TAG.int);
      return w.zigzag(v);
    }
    w.byte(TAG.float64);
    // NaN and ±Infinity are legitimate sensor floats; NaN payloads are not kept (one canonical NaN).
    return Number.isNaN(v) ? w.bytes(CANONICAL_NAN) : w.float64(v);
  }
  if (typeof v === 'bigint') {
    if (v < MIN_BIGINT || v > MAX_U64) bad(`${what} bigint is outside the int64/uint64 range`);
    w.byte(TAG.bigint);
    return w.zigzag(v);
  }
  if (typeof v === 'string') {
    const bytes = checkString(v, what);
    w.byte(TAG.string);
    w.varint(bytes.length);
    return w.bytes(bytes);
  }
  bad(`${what} must be a number, bigint, boolean, string or null`);
}

/** Encodes one or more frames (a batch: backlog frames are coalesced into one envelope). */
export function encodeFrames(frames: readonly Frame[]): Uint8Array {
  if (!Array.isArray(frames) || frames.length === 0) bad('a batch needs at least one frame');
  if (frames.length > FRAME_LIMITS.maxFrames) bad(`a batch holds at most ${FRAME_LIMITS.maxFrames} frames`);
  const w = new Writer();
  w.bytes(FRAME_MAGIC);
  w.byte(FRAME_VERSION);
  w.varint(frames.length);
  frames.forEach((frame, i) => encodeFrame(w, frame, i));
  if (w.length > FRAME_LIMITS.maxBytes) throw new FrameError('too_large', `encoded batch is ${w.length} bytes; the limit is ${FRAME_LIMITS.maxBytes}`);
  return w.done();
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  fail(code: FrameErrorCode, message: string, at = this.pos): never {
    throw new FrameError(code, message, at);
  }
  byte(what: string): number {
    if (this.pos >= this.buf.length) this.fail('truncated', `truncated: ${what} missing`);
    return this.buf[this.pos++]!;
  }
  bytes(n: number, what: string): Uint8Array {
    if (n > this.remaining) this.fail('truncated', `truncated: ${what} needs ${n} bytes, ${this.remaining} left`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Canonical unsigned LEB128, at most `maxBits` wide. */
  varint(what: string, maxBits = 64): bigint {
    const start = this.pos;
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.byte(what);
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) {
        if (b === 0 && shift > 7n) this.fail('malformed', `${what}: overlong varint`, start);
        break;
      }
      if (shift >= BigInt(maxBits) + 7n) this.fail('malformed', `${what}: varint longer than ${maxBits} bits`, start);
    }
    if (result >> BigInt(maxBits) !== 0n) this.fail('malformed', `${what}: varint exceeds ${maxBits} bits`, start);
    return result;
  }
  /** A varint that must fit a safe integer no larger than `max`. */
  count(what: string, max: number): number {
    const start = this.pos;
    const v = this.varint(what, 53);
    if (v > BigInt(max)) this.fail('too_large', `${what} ${v} exceeds the limit of ${max}`, start);
    return Number(v);
  }
  zigzag(what: string, maxBits = 64): bigint {
    const v = this.varint(what, maxBits + 1);
    return v & 1n ? -((v + 1n) >> 1n) : v >> 1n;
  }
  u64(what: string): bigint {
    return new DataView(this.bytes(8, what).slice().buffer).getBigUint64(0);
  }
  float64(what: string): number {
    return new DataView(this.bytes(8, what).slice().buffer).getFloat64(0);
  }
  /** After float64(): were those 8 bytes 7ff8000000000000, the NaN the encoder writes? */
  lastWasCanonicalNaN(): boolean {
    const b = this.buf.subarray(this.pos - 8, this.pos);
    return b[0] === 0x7f && b[1] === 0xf8 && b.subarray(2).every((x) => x === 0);
  }
  string(what: string): string {
    const length = this.count(`${what} length`, FRAME_LIMITS.maxStringBytes);
    const start = this.pos;
    const bytes = this.bytes(length, what);
    try {
      return fromUtf8.decode(bytes);
    } catch {
      return this.fail('malformed', `${what} is not valid UTF-8`, start);
    }
  }
}

function time(r: Reader, base: number, delta: bigint, what: string, at: number): number {
  const t = BigInt(base) + delta;
  if (t < 0n || t > BigInt(MAX_TIME)) r.fail('malformed', `${what} is outside the representable time range`, at);
  return Number(t);
}

function decodeValue(r: Reader, what: string): ReadingValue {
  const at = r.pos;
  const tag = r.byte(`${what} type`);
  switch (tag) {
    case TAG.null: return null;
    case TAG.false: return false;
    case TAG.true: return true;
    case TAG.int: {
      const v = r.zigzag(what, 53);
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) r.fail('malformed', `${what}: integer beyond the safe range (must be a bigint)`, at);
      return Number(v);
    }
    case TAG.float64: {
      const v = r.float64(what);
      if (isIntNumber(v)) r.fail('malformed', `${what}: integral float64 must be encoded as an integer`, at);
      if (Number.isNaN(v) && r.lastWasCanonicalNaN() === false) r.fail('malformed', `${what}: NaN must be the canonical quiet NaN`, at);
      return v;
    }
    case TAG.bigint: {
      const v = r.zigzag(what, 65);
      if (v < MIN_BIGINT || v > MAX_U64) r.fail('malformed', `${what}: bigint outside the int64/uint64 range`, at);
      return v;
    }
    case TAG.string: return r.string(what);
    default: return r.fail('malformed', `${what}: unknown value type ${tag}`, at);
  }
}

function decodeFrame(r: Reader, index: number): Frame {
  const at = `frames[${index}]`;
  const sequence = r.u64(`${at}.sequence`);
  const base = r.count(`${at}.time`, MAX_TIME);
  const intervalMs = r.count(`${at}.intervalMs`, MAX_TIME);
  // Every string takes at least one byte: a count beyond the bytes left is a lie, refused before allocating.
  const stringCount = r.count(`${at} string count`, Math.min(FRAME_LIMITS.maxStrings, r.remaining));
  const strings: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < stringCount; i++) {
    const start = r.pos;
    const s = r.string(`${at}.strings[${i}]`);
    if (seen.has(s)) r.fail('malformed', `${at}.strings[${i}] repeats an earlier string`, start);
    seen.add(s);
    strings.push(s);
  }
  const readingCount = r.count(`${at} reading count`, Math.min(FRAME_LIMITS.maxReadings, Math.floor(r.remaining / 5)));
  let used = 0; // strings must be referenced first in table order (canonical form)
  const ref = (what: string): string => {
    const start = r.pos;
    const i = r.count(what, Number.MAX_SAFE_INTEGER);
    if (i > used || i >= stringCount) r.fail('malformed', `${what}: string index ${i} out of order or out of range`, start);
    if (i === used) used++;
    return strings[i]!;
  };
  const readings: Reading[] = [];
  for (let i = 0; i < readingCount; i++) {
    const rat = `${at}.readings[${i}]`;
    const tap = ref(`${rat}.tap`);
    const point = ref(`${rat}.point`);
    const flagsAt = r.pos;
    const flags = r.byte(`${rat}.flags`);
    const q = flags & 0x03;
    if (q === 3 || (flags & 0x80) !== 0) r.fail('malformed', `${rat}: invalid flags 0x${flags.toString(16)}`, flagsAt);
    const reading: Reading = { tap, point, value: null, quality: QUALITIES[q]!, readTime: 0 };
    if (flags & FLAG.unit) reading.unit = ref(`${rat}.unit`);
    if (flags & FLAG.reason) reading.reason = ref(`${rat}.reason`);
    reading.value = decodeValue(r, `${rat}.value`);
    let tAt = r.pos;
    reading.readTime = time(r, base, r.zigzag(`${rat}.readTime`), `${rat}.readTime`, tAt);
    if (flags & FLAG.sourceTime) {
      tAt = r.pos;
      reading.sourceTime = time(r, reading.readTime, r.zigzag(`${rat}.sourceTime`), `${rat}.sourceTime`, tAt);
    }
    if (flags & FLAG.serverTime) {
      tAt = r.pos;
      reading.serverTime = time(r, reading.readTime, r.zigzag(`${rat}.serverTime`), `${rat}.serverTime`, tAt);
    }
    if (flags & FLAG.stale) reading.stale = true;
    readings.push(reading);
  }
  if (used !== stringCount) r.fail('malformed', `${at}: ${stringCount - used} unused strings in the string table`);
  return { sequence, time: base, intervalMs, readings };
}

export interface DecodeFramesOptions {
  /** Refuse input larger than this many bytes (default FRAME_LIMITS.maxBytes). */
  maxBytes?: number;
}

/** Decodes a batch strictly; every failure is a FrameError naming what and where. */
export function decodeFrames(bytes: Uint8Array, options: DecodeFramesOptions = {}): Frame[] {
  if (!(bytes instanceof Uint8Array)) throw new FrameError('malformed', 'frame batch must be a Uint8Array');
  const maxBytes = Math.min(options.maxBytes ?? FRAME_LIMITS.maxBytes, FRAME_LIMITS.maxBytes);
  if (bytes.length > maxBytes) throw new FrameError('too_large', `frame batch of ${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  const r = new Reader(bytes);
  for (let i = 0; i < FRAME_MAGIC.length; i++) {
    if (r.byte('magic') !== FRAME_MAGIC[i]) r.fail('bad_magic', 'not a Ghost Pipe frame batch (magic "GPFR" expected)', i);
  }
  const version = r.byte('version');
  if (version !== FRAME_VERSION) r.fail('unsupported_version', `frame format version ${version} is not supported (expected ${FRAME_VERSION})`, 4);
  const frameCount = r.count('frame count', Math.min(FRAME_LIMITS.maxFrames, r.remaining));
  if (frameCount === 0) r.fail('malformed', 'a batch holds at least one frame', 5);
  const frames: Frame[] = [];
  for (let i = 0; i < frameCount; i++) frames.push(decodeFrame(r, i));
  if (r.remaining > 0) r.fail('trailing_bytes', `${r.remaining} bytes after the last frame`);
  return frames;
}

/**
 * Joins batches into one (the frames in order) without decoding the frames: the agent keeps
 * backlog frames encoded and coalesces them when the relay is back. Each input is checked only
 * for its header; decodeFrames on the result checks everything.
 */
export function joinFrameBatches(batches: readonly Uint8Array[]): Uint8Array {
  if (batches.length === 0) bad('nothing to join');
  let total = 0;
  const bodies: Uint8Array[] = [];
  for (const batch of batches) {
    const r = new Reader(batch);
    for (let i = 0; i < FRAME_MAGIC.length; i++) if (r.byte('magic') !== FRAME_MAGIC[i]) r.fail('bad_magic', 'not a Ghost Pipe frame batch', i);
    if (r.byte('version') !== FRAME_VERSION) r.fail('unsupported_version', 'unsupported frame batch version', 4);
    total += r.count('frame count', FRAME_LIMITS.maxFrames);
    bodies.push(batch.subarray(r.pos));
  }
  if (total > FRAME_LIMITS.maxFrames) bad(`a batch holds at most ${FRAME_LIMITS.maxFrames} frames`);
  const w = new Writer();
  w.bytes(FRAME_MAGIC);
  w.byte(FRAME_VERSION);
  w.varint(total);
  for (const body of bodies) w.bytes(body);
  if (w.length > FRAME_LIMITS.maxBytes) throw new FrameError('too_large', `joined batch is ${w.length} bytes; the limit is ${FRAME_LIMITS.maxBytes}`);
  return w.done();
}

/** Bytes joinFrameBatches adds or removes: the header of the joined batch is at most 8 bytes. */
export const FRAME_BATCH_HEADER_MAX = 4 + 1 + 3;
