/**
 * Modbus value decoding: 16-bit registers in, typed values out. Pure functions, no I/O.
 *
 * Byte order names describe where the bytes of a value A B C D (A = most significant) sit in
 * consecutive registers, each register read as its two wire bytes (high byte first):
 *   ABCD  registers AB CD            big-endian, the Modbus standard
 *   CDAB  registers CD AB            word swap: least significant register first
 *   BADC  registers BA DC            byte swap inside every register
 *   DCBA  registers DC BA            both: fully little-endian
 * So every order is two independent flags, wordSwap (CDAB, DCBA) and byteSwap (BADC, DCBA), and
 * that is how they extend to other widths:
 *   16-bit: only byteSwap matters (BADC and DCBA read a register as its low byte first).
 *   64-bit: wordSwap reverses all four registers, so value ABCDEFGH is stored as
 *           ABCD: AB CD EF GH | CDAB: GH EF CD AB | BADC: BA DC FE HG | DCBA: HG FE DC BA.
 *   string: characters stay in register address order (wordSwap is ignored); byteSwap puts
 *           the first character of each register in its low byte instead of its high byte.
 *   bit:    the bit index counts from the least significant bit of the register value after
 *           byteSwap (bit 0 = value & 1).
 */

export const BYTE_ORDERS = ['ABCD', 'CDAB', 'BADC', 'DCBA'] as const;
export type ByteOrder = (typeof BYTE_ORDERS)[number];

export const REGISTER_TYPES = ['int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64', 'string', 'bit'] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];
export const POINT_TYPES = ['bool', ...REGISTER_TYPES] as const;
export type PointType = (typeof POINT_TYPES)[number];

export type DecodedValue = number | bigint | boolean | string;

/** Registers a value of `type` occupies; strings take ceil(length / 2). */
export function registerCount(type: RegisterType, stringLength = 0): number {
  switch (type) {
    case 'int16':
    case 'uint16':
    case 'bit':
      return 1;
    case 'int32':
    case 'uint32':
    case 'float32':
      return 2;
    case 'int64':
    case 'uint64':
    case 'float64':
      return 4;
    case 'string':
      return Math.ceil(stringLength / 2);
  }
}

function flags(order: ByteOrder): { wordSwap: boolean; byteSwap: boolean } {
  return { wordSwap: order === 'CDAB' || order === 'DCBA', byteSwap: order === 'BADC' || order === 'DCBA' };
}

export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

function checkWords(words: ArrayLike<number>, expected: number, type: string): void {
  if (words.length !== expected) throw new DecodeError(`${type} needs ${expected} registers, got ${words.length}`);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (!Number.isInteger(w) || w < 0 || w > 0xffff) throw new DecodeError(`register value ${w} is not a 16-bit unsigned integer`);
  }
}

/** The value's bytes, most significant first, from registers stored in `order`. */
export function registersToBytes(words: ArrayLike<number>, order: ByteOrder, keepWordOrder = false): Buffer {
  const { wordSwap, byteSwap } = flags(order);
  const out = Buffer.alloc(words.length * 2);
  for (let i = 0; i < words.length; i++) {
    const w = words[wordSwap && !keepWordOrder ? words.length - 1 - i : i]!;
    out[2 * i] = byteSwap ? w & 0xff : w >> 8;
    out[2 * i + 1] = byteSwap ? w >> 8 : w & 0xff;
  }
  return out;
}

/** The inverse of registersToBytes: registers, in address order, holding `bytes` in `order`. */
export function bytesToRegisters(bytes: Uint8Array, order: ByteOrder, keepWordOrder = false): number[] {
  if (bytes.length % 2 !== 0) throw new DecodeError(`byte length ${bytes.length} is odd`);
  const { wordSwap, byteSwap } = flags(order);
  const words: number[] = [];
  for (let i = 0; i < bytes.length; i += 2) {
    const hi = bytes[i]!;
    const lo = bytes[i + 1]!;
    words.push(byteSwap ? (lo << 8) | hi : (hi << 8) | lo);
  }
  return wordSwap && !keepWordOrder ? words.reverse() : words;
}

export interface DecodeOptions {
  /** Bit index 0..15 for type 'bit'. */
  bit?: number;
  /** Characters for type 'string'. */
  length?: number;
}

/**
 * Decodes one value from exactly registerCount(type) registers. Strings are latin1, end at the
 * first NUL and lose trailing spaces (PLCs pad with either).
 */
export function decodeRegisters(words: ArrayLike<number>, type: RegisterType, order: ByteOrder, options: DecodeOptions = {}): DecodedValue {
  const length = options.length ?? 0;
  checkWords(words, registerCount(type, length), type);
  if (type === 'string') {
    const bytes = registersToBytes(words, order, true).subarray(0, length);
    const nul = bytes.indexOf(0);
    return bytes.toString('latin1', 0, nul === -1 ? bytes.length : nul).replace(/ +$/, '');
  }
  const b = registersToBytes(words, order);
  switch (type) {
    case 'int16':
      return b.readInt16BE(0);
    case 'uint16':
      return b.readUInt16BE(0);
    case 'bit': {
      const bit = options.bit ?? 0;
      if (!Number.isInteger(bit) || bit < 0 || bit > 15) throw new DecodeError(`bit ${bit} is not in 0..15`);
      return ((b.readUInt16BE(0) >> bit) & 1) === 1;
    }
    case 'int32':
      return b.readInt32BE(0);
    case 'uint32':
      return b.readUInt32BE(0);
    case 'float32':
      return b.readFloatBE(0);
    case 'int64':
      return b.readBigInt64BE(0);
    case 'uint64':
      return b.readBigUInt64BE(0);
    case 'float64':
      return b.readDoubleBE(0);
  }
}

/** Registers holding `value` as `type` in `order` (for test servers and, later, writes). */
export function encodeRegisters(value: DecodedValue, type: RegisterType, order: ByteOrder, options: DecodeOptions = {}): number[] {
  if (type === 'string') {
    const length = options.length ?? String(value).length;
    const bytes = Buffer.alloc(registerCount('string', length) * 2);
    bytes.write(String(value).slice(0, length), 'latin1');
    return bytesToRegisters(bytes, order, true);
  }
  const b = Buffer.alloc(registerCount(type) * 2);
  switch (type) {
    case 'int16':
      b.writeInt16BE(Number(value));
      break;
    case 'uint16':
      b.writeUInt16BE(Number(value));
      break;
    case 'bit':
      b.writeUInt16BE(value ? 1 << (options.bit ?? 0) : 0);
      break;
    case 'int32':
      b.writeInt32BE(Number(value));
      break;
    case 'uint32':
      b.writeUInt32BE(Number(value));
      break;
    case 'float32':
      b.writeFloatBE(Number(value));
      break;
    case 'int64':
      b.writeBigInt64BE(BigInt(value as number | bigint));
      break;
    case 'uint64':
      b.writeBigUInt64BE(BigInt(value as number | bigint));
      break;
    case 'float64':
      b.writeDoubleBE(Number(value));
      break;
  }
  return bytesToRegisters(b, order);
}

/**
 * raw * scale + offset. Without scale and offset the raw value passes through unchanged, so
 * 64-bit integers stay exact bigints; with either, the result is a float64 number.
 */
export function applyScale(raw: number | bigint, scale?: number, offset?: number): number | bigint {
  if (scale === undefined && offset === undefined) return raw;
  return Number(raw) * (scale ?? 1) + (offset ?? 0);
}

export const EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  8: 'memory parity error',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

export function exceptionName(code: number): string {
  return EXCEPTION_NAMES[code] ?? 'unknown exception';
}
