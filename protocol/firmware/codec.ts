/**
 * Big-endian writer and reader for the firmware formats. The reader names the field and byte
 * offset of every failure, and refuses trailing bytes, so one value has one encoding.
 */
import { fail } from './errors.js';

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export class Writer {
  private readonly parts: Uint8Array[] = [];

  bytes(b: Uint8Array): this { this.parts.push(b.slice()); return this; }
  u8(n: number): this { return this.bytes(Uint8Array.of(n)); }
  u16(n: number): this { return this.bytes(Uint8Array.of(n >>> 8, n & 0xff)); }
  u32(n: number): this { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return this.bytes(b); }
  u64(n: number): this { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return this.bytes(b); }
  /** u8 length || UTF-8 text. */
  text8(s: string): this { const b = utf8.encode(s); return this.u8(b.length).bytes(b); }
  /** u16 length || UTF-8 text. */
  text16(s: string): this { const b = utf8.encode(s); return this.u16(b.length).bytes(b); }
  /** u16 length || bytes. */
  blob16(b: Uint8Array): this { return this.u16(b.length).bytes(b); }

  finish(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

export class Reader {
  private at = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array, private readonly what: string) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  /** Checks magic (4 bytes) and version (1 byte). */
  header(magic: Uint8Array, version: number): void {
    this.need(5, 'the header');
    if (!magic.every((b, i) => this.data[i] === b)) fail('bad_magic', `not a ${this.what} (magic is not "${String.fromCharCode(...magic)}")`);
    if (this.data[4] !== version) fail('bad_version', `${this.what} version ${this.data[4]} is not supported (only ${version})`);
    this.at = 5;
  }

  bytes(n: number, field: string): Uint8Array { this.need(n, field); const b = this.data.slice(this.at, this.at + n); this.at += n; return b; }
  u8(field: string): number { this.need(1, field); return this.data[this.at++]!; }
  u16(field: string): number { this.need(2, field); const v = this.view.getUint16(this.at); this.at += 2; return v; }
  u32(field: string): number { this.need(4, field); const v = this.view.getUint32(this.at); this.at += 4; return v; }
  u64(field: string): number {
    this.need(8, field);
    const v = this.view.getBigUint64(this.at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('bad_field', `${this.what} ${field} at byte ${this.at} exceeds 2^53-1`);
    this.at += 8;
    return Number(v);
  }
  text8(field: string): string { return this.decode(this.bytes(this.u8(`the ${field} length`), field), field); }
  text16(field: string): string { return this.decode(this.bytes(this.u16(`the ${field} length`), field), field); }
  blob16(field: string): Uint8Array { return this.bytes(this.u16(`the ${field} length`), field); }

  end(): void {
    if (this.at !== this.data.length) fail('trailing_bytes', `${this.data.length - this.at} bytes after the ${this.what} (byte ${this.at})`);
  }

  private decode(b: Uint8Array, field: string): string {
    try {
      return fromUtf8.decode(b);
    } catch {
      return fail('bad_field', `${this.what} ${field} is not UTF-8`);
    }
  }

  private need(n: number, field: string): void {
    if (this.at + n > this.data.length) fail('truncated', `${this.what} ends inside ${field} (byte ${this.at}, ${n} more needed, ${this.data.length - this.at} left)`);
  }
}
