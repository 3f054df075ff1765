/**
 * Seeded mutators for the fuzzer (no npm dependency). Every case draws from its own PRNG, seeded
 * from (run seed, case number), so `--seed S --only I` replays case I's mutations exactly,
 * whatever the concurrency.
 */
import { prng } from '../../common/prng.js';

export class Rng {
  readonly next: () => number;

  constructor(seed: number) {
    this.next = prng(seed);
  }

  /** Seed of case `index` of run `seed` (a splitmix-style mix, so neighbouring cases differ). */
  static forCase(seed: number, index: number): Rng {
    let x = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    return new Rng((x ^ (x >>> 16)) >>> 0);
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** Weighted choice: `[weight, value]` pairs. */
  weighted<T>(table: readonly (readonly [number, T])[]): T {
    const total = table.reduce((a, [w]) => a + w, 0);
    let r = this.next() * total;
    for (const [w, v] of table) {
      if ((r -= w) < 0) return v;
    }
    return table[table.length - 1]![1];
  }
}

/** Sizes that sit on the edges parsers get wrong: 0, 1, around powers of two and the relay's limits. */
const EDGE_LENGTHS = [0, 1, 2, 31, 32, 33, 63, 64, 65, 108, 109, 110, 255, 256, 1023, 1024, 4095, 4096, 65535, 65536, 65537];
const EDGE_NUMBERS = [0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, -0, 0.5, Number.MAX_SAFE_INTEGER + 2];
const EDGE_STRINGS = ['', ' ', '0', '-1', 'NaN', 'Infinity', '1e999', '0x10', '%00', '%', '%zz', '..', '../..', '\u0000', '\uffff', '\ud800', 'é', '\u2014 ', '+', '=', '?', '#', '&', ';', '*', '/', '\\', '[]', '{}', 'null', 'true'];

export function edgeLength(rng: Rng): number {
  return rng.pick(EDGE_LENGTHS);
}

/** Bytes: flip bits, set bytes, truncate, extend, splice, repeat a slice. Never returns the input object. */
export function mutateBytes(rng: Rng, input: Uint8Array, rounds = 1 + rng.int(3)): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input);
  for (let r = 0; r < rounds; r++) {
    const op = rng.int(8);
    const at = b.length === 0 ? 0 : rng.int(b.length);
    switch (op) {
      case 0: // bit flips
      case 1: {
        if (b.length === 0) break;
        const flips = 1 + rng.int(4);
        for (let i = 0; i < flips; i++) b[rng.int(b.length)]! ^= 1 << rng.int(8);
        break;
      }
      case 2: // interesting byte values
        if (b.length > 0) b[at] = rng.pick([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]);
        break;
      case 3: // truncate (often to an edge length)
        b = b.subarray(0, rng.chance(0.5) ? Math.min(b.length, edgeLength(rng)) : at);
        break;
      case 4: { // extend with random or zero bytes
        const extra = rng.chance(0.3) ? new Uint8Array(1 + rng.int(64)) : rng.bytes(1 + rng.int(64));
        const out = new Uint8Array(b.length + extra.length);
        out.set(b);
        out.set(extra, b.length);
        b = out;
        break;
      }
      case 5: { // delete a range
        const len = 1 + rng.int(Math.max(1, Math.min(64, b.length - at)));
        const out = new Uint8Array(Math.max(0, b.length - len));
        out.set(b.subarray(0, at));
        out.set(b.subarray(Math.min(b.length, at + len)), at);
        b = out;
        break;
      }
      case 6: { // duplicate a slice in place
        const len = Math.min(b.length - at, 1 + rng.int(32));
        const out = new Uint8Array(b.length + len);
        out.set(b.subarray(0, at + len));
        out.set(b.subarray(at, at + len), at + len);
        out.set(b.subarray(at + len), at + 2 * len);
        b = out;
        break;
      }
      default: { // overwrite a big-endian u16/u32 with an edge value (length fields)
        if (b.length < 4) break;
        const pos = rng.int(b.length - 3);
        const v = rng.pick([0, 1, 0xff, 0xffff, 0x7fffffff, 0xffffffff, b.length, b.length + 1]) >>> 0;
        new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(pos, v);
      }
    }
  }
  return b;
}

/** Text: character edits, edge strings, repetition, truncation. */
export function mutateString(rng: Rng, s: string): string {
  const op = rng.int(8);
  const at = s.length === 0 ? 0 : rng.int(s.length);
  switch (op) {
    case 0: return s.slice(0, at) + rng.pick(EDGE_STRINGS) + s.slice(at);
    case 1: return s.slice(0, at) + s.slice(at + 1 + rng.int(8));
    case 2: return s.slice(0, at);
    case 3: { // repeat a tail, at most ~100 k characters in all (bigger only costs the fuzzer RAM)
      const tail = s.slice(at) || 'x';
      return s + tail.repeat(Math.min(1 + rng.int(rng.chance(0.1) ? 2000 : 4), Math.ceil(100_000 / tail.length)));
    }
    case 4: return rng.pick(EDGE_STRINGS);
    case 5: return s.slice(0, at) + String.fromCharCode(rng.int(rng.chance(0.7) ? 128 : 0x10000)) + s.slice(at + 1);
    case 6: return s.toUpperCase();
    default: return 'x'.repeat(edgeLength(rng));
  }
}

/**
 * Any JSON value of a random type. Only the top level is ever huge (a 70 k string over the 64 KiB
 * body limit, 1001 items over the status route's 1000): nested huge values made bodies of tens of
 * MB that the relay refuses at its Content-Length check anyway and cost the fuzzer most of its time.
 */
export function randomJson(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 5 : 7)) {
    case 0: return null;
    case 1: return rng.chance(0.5);
    case 2: return rng.pick(EDGE_NUMBERS);
    case 3: return rng.pick(EDGE_STRINGS);
    case 4: return depth === 0 && rng.chance(0.05) ? 'A'.repeat(70_000) : 'A'.repeat(edgeLength(rng) % 4097);
    case 5: return Array.from({ length: depth === 0 && rng.chance(0.05) ? 1001 : rng.int(4) }, () => randomJson(rng, depth + 1));
    default: return Object.fromEntries(Array.from({ length: rng.int(4) }, (_, i) => [rng.chance(0.3) ? '__proto__' : `k${i}`, randomJson(rng, depth + 1)]));
  }
}

/** JSON: delete a field, swap its type, make it huge, add fields, or replace the whole body. */
export function mutateJson(rng: Rng, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || rng.chance(0.1)) return randomJson(rng);
  const copy: Record<string, unknown> = Array.isArray(value) ? { ...value } : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const key = keys.length > 0 && rng.chance(0.85) ? rng.pick(keys) : `extra${rng.int(3)}`;
  switch (rng.int(6)) {
    case 0: delete copy[key]; break;
    case 1: copy[key] = randomJson(rng); break;
    case 2: copy[key] = typeof copy[key] === 'string' ? mutateString(rng, copy[key] as string) : randomJson(rng); break;
    case 3: copy[key] = Array.isArray(copy[key]) ? (copy[key] as unknown[]).map((v) => (rng.chance(0.3) ? randomJson(rng) : v)) : [copy[key]]; break;
    case 4: copy[key] = { nested: copy[key] }; break;
    default: copy[key] = typeof copy[key] === 'string' ? (copy[key] as string).repeat(rng.chance(0.2) ? 40 : 2) : String(copy[key]);
  }
  return Array.isArray(value) ? Object.values(copy) : copy;
}

/** A JSON body's text: usually the mutated value, sometimes broken text. */
export function mutateJsonText(rng: Rng, value: unknown): string {
  const text = JSON.stringify(mutateJson(rng, value)) ?? 'undefined';
  if (rng.chance(0.8)) return text;
  return mutateString(rng, text);
}
