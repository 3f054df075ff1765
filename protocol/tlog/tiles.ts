// C2SP tlog-tiles (c2sp.org/tlog-tiles): tile and entry-bundle paths, bundle encoding, and
// which tiles a tree of a given size consists of. Pure: no I/O.
//
//   tile/<L>/<N>[.p/<W>]          hash tile: W (1..256) consecutive hashes at Merkle level 8·L,
//                                 starting at index N·256; 256 = full, 8192 bytes
//   tile/entries/<N>[.p/<W>]      entry bundle: the W leaf entries N·256 .. N·256+W-1, each as
//                                 big-endian uint16 length || entry bytes
//
// <N> is written in zero-padded 3-digit path elements, all but the last prefixed with "x"
// (1234067 -> x001/x234/067). <L> and <W> are decimal with no leading zeros. A partial tile is
// never hashed into the level above; a tree of size s has, at level L, floor(s / 256^L) / 256
// full tiles and one partial tile of width floor(s / 256^L) mod 256 (none when that is 0).

import { HASH_SIZE, nodeHash } from './merkle.js';
import { ProtocolError } from '../errors.js';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
export const FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE;
/** An entry's length travels as a uint16. */
export const MAX_ENTRY_BYTES = 0xffff;
/** Levels 0..63 (spec); sizes here are JavaScript safe integers, so 7 levels (2^56 leaves) suffice. */
const MAX_LEVEL = 63;

export type TileErrorCode = 'bad_path' | 'bad_bundle' | 'bad_tile';
export class TileError extends ProtocolError<TileErrorCode> {}

/** A hash tile (`level` >= 0) or an entry bundle (`level` = 'entries'); `width` 1..256. */
export interface TileId {
  level: number | 'entries';
  index: number;
  width: number;
}

/** `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`. Requires a valid TileId. */
export function tilePath(tile: TileId): string {
  const level = tile.level === 'entries' ? 'entries' : String(tile.level);
  const partial = tile.width === TILE_WIDTH ? '' : `.p/${tile.width}`;
  return `tile/${level}/${encodeTileIndex(tile.index)}${partial}`;
}

/** 1234067 -> "x001/x234/067". */
export function encodeTileIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new TileError('bad_path', `tile index must be a non-negative safe integer, got ${String(index)}`);
  const groups: string[] = [];
  let rest = index;
  do {
    groups.unshift(String(rest % 1000).padStart(3, '0'));
    rest = Math.floor(rest / 1000);
  } while (rest > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/**
 * Parses the path segments after `tile/` (e.g. ['0', 'x001', '234.p', '17'] would be invalid;
 * ['0', 'x001', '234', ... ] see below). Accepts exactly the canonical encoding, refuses any other.
 */
export function parseTilePath(segments: readonly string[]): TileId {
  const fail = (why: string): never => {
    throw new TileError('bad_path', `tile path ${JSON.stringify(segments.join('/'))}: ${why}`);
  };
  if (segments.length < 2) fail('expected <L>/<N>[.p/<W>]');
  const [levelText, ...rest] = segments;
  let level: number | 'entries';
  if (levelText === 'entries') level = 'entries';
  else {
    if (!DECIMAL.test(levelText!)) fail('level must be a decimal integer without leading zeros');
    level = Number(levelText);
    if (level > MAX_LEVEL) fail(`level must be at most ${MAX_LEVEL}`);
  }
  let width = TILE_WIDTH;
  let groups = rest;
  const last = rest[rest.length - 1]!;
  const beforeLast = rest[rest.length - 2];
  if (beforeLast !== undefined && beforeLast.endsWith('.p')) {
    if (!DECIMAL.test(last)) fail('width must be a decimal integer without leading zeros');
    width = Number(last);
    if (width < 1 || width > TILE_WIDTH - 1) fail('a partial tile has a width of 1 to 255');
    groups = [...rest.slice(0, -2), beforeLast.slice(0, -2)];
  }
  if (groups.length === 0 || groups.length > 6) fail('index must have 1 to 6 path elements');
  let index = 0;
  groups.forEach((group, i) => {
    const digits = i < groups.length - 1 ? (group.startsWith('x') ? group.slice(1) : fail('all but the last index element start with "x"')) : group;
    if (!/^[0-9]{3}$/.test(digits)) fail('index elements are three digits');
    index = index * 1000 + Number(digits);
  });
  if (groups.length > 1 && groups[0] === 'x000') fail('index has a leading zero element');
  if (!Number.isSafeInteger(index)) fail('index is too large');
  return { level, index, width };
}

/** Width of the partial tile at `level` for a tree of `size` leaves (0: there is none). */
export function partialWidth(level: number, size: number): number {
  return Math.floor(size / TILE_WIDTH ** level) % TILE_WIDTH;
}

/** How many hashes a level holds for `size` leaves: floor(size / 256^level). */
export function hashesAtLevel(level: number, size: number): number {
  return Math.floor(size / TILE_WIDTH ** level);
}

/**
 * True when the tree of `size` leaves contains the tile (it is full there, or it is exactly that
 * size's partial tile, or a prefix of a wider tile the tree holds: proofs for older sizes use it).
 */
export function tileExistsAt(tile: TileId, size: number): boolean {
  const level = tile.level === 'entries' ? 0 : tile.level;
  return tile.index * TILE_WIDTH + tile.width <= hashesAtLevel(level, size);
}

/** The tiles (hash tiles of every level, and bundles) that make up a tree of `size` leaves and differ from `from`'s. */
export function tilesChanged(from: number, size: number): TileId[] {
  const out: TileId[] = [];
  for (let level = 0; hashesAtLevel(level, size) > 0; level++) {
    const first = Math.floor(hashesAtLevel(level, from) / TILE_WIDTH);
    const count = hashesAtLevel(level, size);
    for (let index = first; index * TILE_WIDTH < count; index++) {
      const width = Math.min(TILE_WIDTH, count - index * TILE_WIDTH);
      if (index * TILE_WIDTH + width <= hashesAtLevel(level, from)) continue; // unchanged
      out.push({ level, index, width });
      if (level === 0) out.push({ level: 'entries', index, width });
    }
  }
  return out;
}

/** Entry bundle: each entry as big-endian uint16 length || bytes. */
export function encodeBundle(entries: readonly Uint8Array[]): Uint8Array {
  if (entries.length < 1 || entries.length > TILE_WIDTH) throw new TileError('bad_bundle', `a bundle holds 1 to ${TILE_WIDTH} entries, got ${entries.length}`);
  const out = new Uint8Array(entries.reduce((n, e) => n + 2 + e.length, 0));
  let at = 0;
  for (const entry of entries) {
    if (entry.length === 0 || entry.length > MAX_ENTRY_BYTES) throw new TileError('bad_bundle', `an entry is 1 to ${MAX_ENTRY_BYTES} bytes, got ${entry.length}`);
    out[at] = entry.length >> 8;
    out[at + 1] = entry.length & 0xff;
    out.set(entry, at + 2);
    at += 2 + entry.length;
  }
  return out;
}

/**
 * Splits a bundle into its entries. With `width`, exactly that many entries must be there and
 * nothing after them; `prefix: true` instead returns the complete entries of a torn bundle.
 */
export function parseBundle(bytes: Uint8Array, width?: number, options: { prefix?: boolean } = {}): Uint8Array[] {
  const entries: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 2 > bytes.length) {
      if (options.prefix) break;
      throw new TileError('bad_bundle', `bundle: truncated length at byte ${at}`);
    }
    const length = (bytes[at]! << 8) | bytes[at + 1]!;
    if (length === 0) {
      if (options.prefix) break;
      throw new TileError('bad_bundle', `bundle: empty entry at byte ${at}`);
    }
    if (at + 2 + length > bytes.length) {
      if (options.prefix) break;
      throw new TileError('bad_bundle', `bundle: entry at byte ${at} runs past the end`);
    }
    entries.push(bytes.subarray(at + 2, at + 2 + length));
    at += 2 + length;
    if (entries.length === TILE_WIDTH && at < bytes.length) {
      if (options.prefix) break;
      throw new TileError('bad_bundle', `bundle: bytes after the ${TILE_WIDTH}th entry`);
    }
  }
  if (width !== undefined && !options.prefix && entries.length !== width) {
    throw new TileError('bad_bundle', `bundle: ${entries.length} entries, expected ${width}`);
  }
  return width !== undefined ? entries.slice(0, width) : entries;
}

/**
 * One tile with its inner nodes: level r holds 256 >> r hashes (r = 0 is the tile itself), so any
 * aligned run of 2^r tile hashes has its subtree root ready. Grows hash by hash (the edge).
 */
export class TileTree {
  readonly nodes = new Uint8Array((2 * TILE_WIDTH - 1) * HASH_SIZE);
  width = 0;

  constructor(readonly level: number, readonly index: number) {}

  static from(level: number, index: number, hashes: Uint8Array, width: number): TileTree {
    const tree = new TileTree(level, index);
    for (let i = 0; i < width; i++) tree.push(hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
    return tree;
  }

  push(hash: Uint8Array): void {
    let r = 0;
    let i = this.width++;
    this.nodes.set(hash, this.offset(0, i));
    while (i % 2 === 1) {
      const left = this.node(r, i - 1);
      const right = this.node(r, i);
      r++;
      i = (i - 1) / 2;
      this.nodes.set(nodeHash(left, right), this.offset(r, i));
    }
  }

  /** Root of tile hashes [i·2^r, (i+1)·2^r); requires them to be present. */
  node(r: number, i: number): Uint8Array {
    const at = this.offset(r, i);
    return this.nodes.subarray(at, at + HASH_SIZE);
  }

  hashes(width = this.width): Uint8Array {
    return this.nodes.slice(0, width * HASH_SIZE);
  }

  private offset(r: number, i: number): number {
    // Levels are stored one after the other: 256, 128, ..., 1 hashes.
    return (2 * TILE_WIDTH - (2 * TILE_WIDTH >> r) + i) * HASH_SIZE;
  }
}

/**
 * Where the perfect subtree at Merkle `height` (2^height leaves) number `index` lives: the tile
 * holding its 2^(height mod 8) descendants at the tile level below it, and their position.
 */
export function locateSubtree(height: number, index: number): { level: number; tileIndex: number; first: number; count: number } {
  const level = Math.floor(height / TILE_HEIGHT);
  const count = 2 ** (height % TILE_HEIGHT);
  const start = index * count; // position at Merkle level 8·level
  return { level, tileIndex: Math.floor(start / TILE_WIDTH), first: start % TILE_WIDTH, count };
}
