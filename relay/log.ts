/**
 * The relay's transparency log, stored as C2SP tlog-tiles (relay/log-store.ts) with bounded RAM:
 * the right edge of the tree (one tile per level), the tiles not yet written, a bounded cache of
 * verified tiles and bundles, and a bounded index of the most recent leaf hashes. Start reads the
 * checkpoint and the edge tiles, never every leaf.
 *
 * Appends are integrated at once (the caller gets the leaf index) and written in batches: every
 * tile and bundle of a batch is durable before the checkpoint for its size is signed and written,
 * and only then served. So a crash can lose unsigned leaves but never fork a signed history; at
 * start, complete data beyond the last checkpoint (a batch a crash cut short) is integrated when
 * its entries hash to its level-0 tile, and anything else beyond it is deleted.
 *
 * Tiles read back from the store are checked against the level above (ending at the edge, which
 * the checkpoint root covers), so a corrupt or swapped file is reported, never served as proof.
 */
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { HASH_SIZE, leafHash, TreeRangeError } from '../protocol/tlog/merkle.js';
import { sameHash } from '../protocol/tlog/proofs.js';
import {
  FULL_TILE_BYTES, MAX_ENTRY_BYTES, TILE_WIDTH, TileError, TileTree, encodeBundle, hashesAtLevel, locateSubtree, parseBundle, partialWidth, tileExistsAt,
  tilePath, tilesChanged, type TileId,
} from '../protocol/tlog/tiles.js';
import { CompactRange, consistencyPath, inclusionPath, rangeHasher, rootOf, subtreesNeeded, type RangeHasher } from '../protocol/tlog/subtrees.js';
import { openCheckpoint, signCheckpoint } from '../protocol/tlog/checkpoint.js';
import type { NoteSigner, NoteVerifier } from '../protocol/tlog/note.js';
import { DiskTileStore, MemoryTileStore, type TileFile, type TileStore } from './log-store.js';

/** At most one checkpoint per this many ms; with signing and fsync it keeps append -> signed < 250 ms. */
export const MIN_SIGN_INTERVAL_MS = 100;
/** Leaves per write batch at most (also bounds what a crash can leave beyond a checkpoint). */
export const MAX_BATCH_LEAVES = 65_536;
/** Leaf hashes indexed for re-upload detection and ?hash= lookups (about 5 MB of RAM). */
export const RECENT_LEAVES = 65_536;
/**
 * Verified full tiles kept (16 KiB each with their inner nodes): level 0 apart from the levels
 * above, so random level-0 reads never evict the few upper tiles every proof passes through
 * (152 level-1 tiles at 10 M leaves).
 */
const TILE_CACHE = 256;
const UPPER_TILE_CACHE = 1024;
/** Verified entry bundles kept, by bytes. */
const BUNDLE_CACHE_BYTES = 4 * 1024 * 1024;

/** The tile or bundle a request needs was pruned (air-gap mode at its RAM bound). HTTP 410. */
export class LogPrunedError extends Error {
  readonly code = 'log_pruned';
}

/** A stored tile or bundle is missing or does not match the signed tree. HTTP 500; the file is named. */
export class LogCorruptError extends Error {
  readonly code = 'log_corrupt';
}

/** The log cannot be opened; the message names the file. */
export class LogStartError extends Error {}

/** Latest leaf index per 32-bit hash prefix, for the last RECENT_LEAVES leaves. */
class RecentLeaves {
  private readonly ring = new Uint32Array(RECENT_LEAVES);
  private readonly latest = new Map<number, number>();

  add(hash: Uint8Array, index: number): void {
    const slot = index % RECENT_LEAVES;
    if (index >= RECENT_LEAVES) {
      const old = this.ring[slot]!;
      if (this.latest.get(old) === index - RECENT_LEAVES) this.latest.delete(old);
    }
    const key = prefix(hash);
    this.ring[slot] = key;
    this.latest.set(key, index);
  }

  candidate(hash: Uint8Array): number | undefined {
    return this.latest.get(prefix(hash));
  }
}

function prefix(hash: Uint8Array): number {
  return ((hash[0]! << 24) | (hash[1]! << 16) | (hash[2]! << 8) | hash[3]!) >>> 0;
}

/** A small LRU map. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  private bytes = 0;

  constructor(private readonly max: number, private readonly weigh: (v: V) => number = () => 1) {}

  get(key: string): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    const old = this.map.get(key);
    if (old !== undefined) this.bytes -= this.weigh(old);
    this.map.delete(key);
    this.map.set(key, value);
    this.bytes += this.weigh(value);
    for (const [k, v] of this.map) {
      if (this.bytes <= this.max || this.map.size === 1) break;
      this.map.delete(k);
      this.bytes -= this.weigh(v);
    }
  }

  get weight(): number {
    return this.bytes;
  }
}

export interface LogOptions {
  origin: string;
  signer: NoteSigner;
  /** The relay's own key: a checkpoint found on disk must verify under it. */
  verifier: NoteVerifier;
  /** Folder of the tiles; undefined = RAM only. */
  dir: string | undefined;
  /** RAM-only mode: bytes of full tiles and bundles kept before the oldest are pruned. */
  ramBytes?: number;
  onError(err: unknown): void;
  onCheckpoint?(size: number, ms: number): void;
  /** Told once at start what was found beyond the last checkpoint and what was done with it. */
  onRecovered?(info: { checkpointSize: number; integrated: number; dropped: number; from: string }): void;
  onMigrated?(info: { leaves: number; file: string }): void;
}

const key = (level: number | 'entries', index: number): string => `${level}/${index}`;

export class RelayLog {
  /** Leaves integrated (some maybe not yet signed). */
  private leafCount = 0;
  private writtenSize = 0;
  signedSize = 0;
  checkpoint = '';
  /** Append -> signed checkpoint latency of the latest batch and the worst since start, ms. */
  lastCheckpointMs = 0;
  maxCheckpointMs = 0;

  /** The right edge: the partial (or empty) tile of each level. */
  private readonly edges: TileTree[] = [];
  private edgeEntries: Uint8Array[] = [];
  private edgeEntriesIndex = 0;
  /** Tiles and bundles completed but not yet written: readable from here until they are. */
  private readonly unwrittenTiles = new Map<string, TileTree>();
  private readonly unwrittenBundles = new Map<string, Uint8Array[]>();
  private readonly leafTiles = new Lru<TileTree>(TILE_CACHE);
  private readonly upperTiles = new Lru<TileTree>(UPPER_TILE_CACHE);
  private readonly bundles = new Lru<Uint8Array[]>(BUNDLE_CACHE_BYTES, (entries) => entries.reduce((n, e) => n + e.length + 48, 0));
  private readonly recent = new RecentLeaves();

  private pendingSince = 0;
  private flushing: Promise<void> | undefined;
  private lastFlush = -Infinity;
  private failed: unknown;

  private constructor(private readonly options: LogOptions, private readonly store: TileStore) {}

  static async open(options: LogOptions): Promise<RelayLog> {
    const store = options.dir === undefined ? new MemoryTileStore(options.ramBytes ?? 64 * 1024 * 1024) : new DiskTileStore(options.dir);
    if (options.dir !== undefined) await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
    const log = new RelayLog(options, store);
    const found = await log.latestCheckpoint();
    if (found === undefined) {
      const legacy = options.dir === undefined ? undefined : path.join(options.dir, 'leaves.bin');
      if (legacy !== undefined && (await exists(legacy))) await log.migrate(legacy);
      else if ((await store.read({ level: 0, index: 0, width: TILE_WIDTH })) !== undefined || (await store.partialWidths({ level: 0, index: 0 })).length > 0) {
        throw new LogStartError(`${store.describe('checkpoint')}: missing, but the log has tiles; refusing to start a new history over them (restore the checkpoint, or move ${store.describe()} away to start a new log)`);
      }
      await log.flush();
      if (log.checkpoint === '') await log.signAndWrite(0, rootOf(0, log.edgeRange()));
    } else {
      await log.loadEdge(found.size, found.name);
      if (!sameHash(rootOf(found.size, log.edgeRange()), found.root)) {
        throw new LogStartError(`${store.describe()}: the edge tiles do not hash to the root of ${found.name} (size ${found.size}); the log's files are damaged`);
      }
      log.writtenSize = log.signedSize = found.size;
      log.checkpoint = found.text;
      // Passed over a torn current checkpoint: put the valid one back before anything is written.
      if (found.fallback) await store.repairCheckpoint(found.text);
      const integrated = await log.integrateBeyond();
      const dropped = await store.dropBeyond(log.leafCount, 2 * MAX_BATCH_LEAVES);
      if (integrated > 0 || dropped > 0 || found.fallback) options.onRecovered?.({ checkpointSize: found.size, integrated, dropped, from: found.name });
      await log.flush();
      await log.indexRecent();
    }
    if (log.failed) throw log.failed;
    return log;
  }

  get size(): number {
    return this.leafCount;
  }

  /** Leaves integrated but not yet durable and signed. */
  get backlog(): number {
    return this.leafCount - this.writtenSize;
  }

  /** True when the disk is so far behind that new appends should wait (bounds the unwritten RAM). */
  get congested(): boolean {
    return this.backlog >= 2 * MAX_BATCH_LEAVES;
  }

  /** Appends a leaf entry; returns its index. The checkpoint covering it follows within one batch. */
  append(data: Uint8Array): number {
    if (data.length === 0 || data.length > MAX_ENTRY_BYTES) throw new RangeError(`leaf data must be 1..${MAX_ENTRY_BYTES} bytes`);
    const index = this.integrate(data);
    if (!this.flushing) {
      // The first append after a quiet spell is written at once; later ones gather for up to
      // MIN_SIGN_INTERVAL_MS, so signing (ms of CPU each) stays a small share under load.
      this.pendingSince = performance.now();
      const wait = Math.max(0, this.lastFlush + MIN_SIGN_INTERVAL_MS - performance.now());
      this.flushing = new Promise((resolve) => (wait === 0 ? setImmediate(resolve) : setTimeout(resolve, wait))).then(() => this.flushLoop());
    }
    return index;
  }

  /** Waits until every append so far is on disk and signed. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.writtenSize < this.leafCount && !this.failed) {
      this.flushing = this.flushLoop();
      await this.flushing;
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }

  /** Index of a recent leaf (the last RECENT_LEAVES) with this leaf hash, if signed; older leaves: undefined. */
  async indexOfLeafHash(hash: Uint8Array): Promise<number | undefined> {
    if (hash.length !== HASH_SIZE) return undefined;
    const index = this.recent.candidate(hash);
    if (index === undefined || index >= this.signedSize) return undefined;
    const tile = await this.tileTree(0, Math.floor(index / TILE_WIDTH));
    return sameHash(tile.node(0, index % TILE_WIDTH), hash) ? index : undefined;
  }

  /** RFC 9162 inclusion proof of leaf `index` in the tree of `size` (<= signed size). */
  async inclusionProof(index: number, size: number): Promise<Uint8Array[]> {
    this.checkSigned(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new TreeRangeError(`leaf index must be in [0, ${size}), got ${index}`);
    return this.withTiles((range) => inclusionPath(index, size, range));
  }

  /** RFC 9162 consistency proof between two sizes (<= signed size). */
  async consistencyProof(size1: number, size2: number): Promise<Uint8Array[]> {
    this.checkSigned(size2);
    if (!Number.isSafeInteger(size1) || size1 < 0 || size1 > size2) throw new TreeRangeError(`size1 must be in [0, ${size2}], got ${size1}`);
    return this.withTiles((range) => consistencyPath(size1, size2, range));
  }

  /** Root of the tree of `size` leaves (<= signed size). */
  async root(size: number): Promise<Uint8Array> {
    this.checkSigned(size);
    return this.withTiles((range) => rootOf(size, range));
  }

  /** Leaf entries [start, end) (end <= signed size). */
  async entries(start: number, end: number): Promise<Uint8Array[]> {
    this.checkSigned(end);
    const out: Uint8Array[] = [];
    for (let i = start; i < end; ) {
      const bundle = await this.bundle(Math.floor(i / TILE_WIDTH));
      const from = i % TILE_WIDTH;
      const to = Math.min(TILE_WIDTH, from + (end - i));
      out.push(...bundle.slice(from, to).map((e) => e.slice()));
      i += to - from;
    }
    return out;
  }

  /** The bytes of a tile or bundle as C2SP tlog-tiles serves them; undefined beyond the signed tree. */
  async tileBytes(tile: TileId): Promise<Uint8Array | undefined> {
    if (!tileExistsAt(tile, this.signedSize)) return undefined;
    if (tile.level === 'entries') return encodeBundle((await this.bundle(tile.index)).slice(0, tile.width));
    return (await this.tileTree(tile.level, tile.index)).hashes(tile.width);
  }

  /** RAM held by the log (edge, unwritten tiles, caches, recent index), approximately. */
  ramBytes(): number {
    const tree = 2 * FULL_TILE_BYTES;
    return (this.edges.length + this.unwrittenTiles.size + this.leafTiles.weight + this.upperTiles.weight) * tree + this.bundles.weight + RECENT_LEAVES * (4 + 40);
  }

  /** Air-gap mode: the lowest leaf index whose tiles are still held (0 on disk). */
  minimumIndex(): number {
    return this.store instanceof MemoryTileStore ? this.store.prunedBelow * TILE_WIDTH : 0;
  }

  // -------------------------------------------------------------------------------------------

  private integrate(data: Uint8Array): number {
    const index = this.leafCount++;
    const hash = leafHash(data);
    this.edgeEntries.push(data.slice());
    if (this.edgeEntries.length === TILE_WIDTH) {
      this.unwrittenBundles.set(key('entries', this.edgeEntriesIndex), this.edgeEntries);
      this.edgeEntries = [];
      this.edgeEntriesIndex++;
    }
    this.pushHash(0, hash);
    this.recent.add(hash, index);
    return index;
  }

  private pushHash(level: number, hash: Uint8Array): void {
    const edge = (this.edges[level] ??= new TileTree(level, 0));
    edge.push(hash);
    if (edge.width === TILE_WIDTH) {
      this.unwrittenTiles.set(key(level, edge.index), edge);
      this.edges[level] = new TileTree(level, edge.index + 1);
      this.pushHash(level + 1, edge.node(8, 0));
    }
  }

  /** Reads tiles the edge or the unwritten set hold (all a new checkpoint's root needs). */
  private edgeRange(): RangeHasher {
    return rangeHasher((height, index) => {
      const at = locateSubtree(height, index);
      const tile = this.edges[at.level]?.index === at.tileIndex ? this.edges[at.level] : this.unwrittenTiles.get(key(at.level, at.tileIndex));
      if (!tile) throw new Error(`internal: tile ${at.level}/${at.tileIndex} is neither edge nor unwritten`);
      return tile.node(Math.log2(at.count), at.first / at.count);
    });
  }

  /** Fetches (verified) every tile `compute` reads, then runs it. */
  private async withTiles<T>(compute: (range: RangeHasher) => T): Promise<T> {
    const trees = new Map<string, TileTree>();
    for (const { height, index } of subtreesNeeded(compute)) {
      const at = locateSubtree(height, index);
      const k = key(at.level, at.tileIndex);
      if (!trees.has(k)) trees.set(k, await this.tileTree(at.level, at.tileIndex));
    }
    return compute(rangeHasher((height, index) => {
      const at = locateSubtree(height, index);
      return trees.get(key(at.level, at.tileIndex))!.node(Math.log2(at.count), at.first / at.count);
    }));
  }

  /** A tile of the tree: the edge, unwritten, cached, or read from the store and verified against its parent. */
  private async tileTree(level: number, index: number): Promise<TileTree> {
    const edge = this.edges[level];
    if (edge && edge.index === index) return edge;
    const k = key(level, index);
    const held = this.unwrittenTiles.get(k) ?? this.cacheFor(level).get(k);
    if (held) return held;
    if (!edge || index > edge.index) throw new TreeRangeError(`tile ${level}/${index} is beyond the tree`);
    const tile: TileId = { level, index, width: TILE_WIDTH };
    const bytes = await this.readStored(tile);
    if (bytes.length !== FULL_TILE_BYTES) throw new LogCorruptError(`${this.store.describe(tile)}: ${bytes.length} bytes, a full tile has ${FULL_TILE_BYTES}`);
    const tree = TileTree.from(level, index, bytes, TILE_WIDTH);
    const parent = await this.tileTree(level + 1, Math.floor(index / TILE_WIDTH));
    if (!sameHash(parent.node(0, index % TILE_WIDTH), tree.node(8, 0))) {
      throw new LogCorruptError(`${this.store.describe(tile)}: does not hash to its entry in tile ${level + 1}/${Math.floor(index / TILE_WIDTH)}; the file is damaged`);
    }
    this.cacheFor(level).set(k, tree);
    return tree;
  }

  private cacheFor(level: number): Lru<TileTree> {
    return level === 0 ? this.leafTiles : this.upperTiles;
  }

  private async bundle(index: number): Promise<Uint8Array[]> {
    if (index === this.edgeEntriesIndex) return this.edgeEntries;
    const k = key('entries', index);
    const held = this.unwrittenBundles.get(k) ?? this.bundles.get(k);
    if (held) return held;
    const tile: TileId = { level: 'entries', index, width: TILE_WIDTH };
    const bytes = await this.readStored(tile);
    let entries: Uint8Array[];
    try {
      entries = parseBundle(bytes, TILE_WIDTH);
    } catch (err) {
      throw new LogCorruptError(`${this.store.describe(tile)}: ${(err as Error).message}`);
    }
    const hashes = await this.tileTree(0, index);
    entries.forEach((entry, i) => {
      if (!sameHash(leafHash(entry), hashes.node(0, i))) throw new LogCorruptError(`${this.store.describe(tile)}: entry ${i} does not hash to tile 0/${index}; the file is damaged`);
    });
    this.bundles.set(k, entries);
    return entries;
  }

  private async readStored(tile: TileId): Promise<Uint8Array> {
    const bytes = await this.store.read(tile);
    if (bytes !== undefined) return bytes;
    if (this.store instanceof MemoryTileStore && tile.index < this.store.prunedBelow) {
      throw new LogPrunedError(`${tilePath(tile)} was pruned: this RAM-only relay keeps the newest log tiles only (minimum index ${this.minimumIndex()})`);
    }
    throw new LogCorruptError(`${this.store.describe(tile)}: missing`);
  }

  private checkSigned(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.signedSize) throw new TreeRangeError(`size must be in [0, ${this.signedSize}] (the signed tree size), got ${size}`);
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.writtenSize < this.leafCount) {
        const since = this.pendingSince;
        this.pendingSince = performance.now();
        const from = this.writtenSize;
        const to = Math.min(this.leafCount, from + MAX_BATCH_LEAVES);
        const files = this.filesFor(from, to);
        const root = rootOf(to, this.edgeRange());
        await this.store.write(files);
        await this.signAndWrite(to, root);
        // Written full tiles move to the cache (on disk; in RAM-only mode the store is RAM
        // already); their partial versions are no longer needed.
        const cache = !(this.store instanceof MemoryTileStore);
        for (const { tile } of files) {
          if (tile.width !== TILE_WIDTH) continue;
          const k = key(tile.level, tile.index);
          if (tile.level === 'entries') {
            if (cache) this.bundles.set(k, this.unwrittenBundles.get(k)!);
            this.unwrittenBundles.delete(k);
          } else {
            if (cache) this.cacheFor(tile.level).set(k, this.unwrittenTiles.get(k)!);
            this.unwrittenTiles.delete(k);
          }
          await this.store.dropPartials(tile);
        }
        this.lastFlush = performance.now();
        this.lastCheckpointMs = this.lastFlush - since;
        this.maxCheckpointMs = Math.max(this.maxCheckpointMs, this.lastCheckpointMs);
        this.options.onCheckpoint?.(to, this.lastCheckpointMs);
      }
    } catch (err) {
      this.failed = err;
      this.options.onError(err);
    } finally {
      this.flushing = undefined;
    }
  }

  /** The tiles and bundles of the tree of `to` leaves that the tree of `from` leaves lacks. */
  private filesFor(from: number, to: number): TileFile[] {
    return tilesChanged(from, to).map((tile): TileFile => {
      if (tile.level === 'entries') {
        const entries = tile.index === this.edgeEntriesIndex ? this.edgeEntries : this.unwrittenBundles.get(key('entries', tile.index))!;
        return { tile, bytes: encodeBundle(entries.slice(0, tile.width)) };
      }
      const tree = this.edges[tile.level]?.index === tile.index ? this.edges[tile.level]! : this.unwrittenTiles.get(key(tile.level, tile.index))!;
      return { tile, bytes: tree.hashes(tile.width) };
    });
  }

  private async signAndWrite(size: number, root: Uint8Array): Promise<void> {
    const text = signCheckpoint({ origin: this.options.origin, size, root }, [this.options.signer]);
    await this.store.writeCheckpoint(text);
    this.writtenSize = Math.max(this.writtenSize, size);
    this.signedSize = size;
    this.checkpoint = text;
  }

  /** The valid stored checkpoint with the largest size (the previous one if the current is torn). */
  private async latestCheckpoint(): Promise<{ size: number; root: Uint8Array; text: string; name: string; fallback: boolean } | undefined> {
    const candidates = await this.store.readCheckpoints();
    const problems: string[] = [];
    let best: { size: number; root: Uint8Array; text: string; name: string; fallback: boolean } | undefined;
    for (const [i, { name, text }] of candidates.entries()) {
      try {
        const opened = openCheckpoint(text, [this.options.verifier], this.options.origin);
        if (!best || opened.checkpoint.size > best.size) best = { size: opened.checkpoint.size, root: opened.checkpoint.root, text: opened.note, name, fallback: i > 0 };
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
      }
    }
    if (best === undefined && problems.length > 0) throw new LogStartError(`${problems.join('; ')} (no valid checkpoint; the tiles are left as they are)`);
    return best;
  }

  /** Rebuilds the right edge (and the edge bundle) of the tree of `size` leaves from the store. */
  private async loadEdge(size: number, checkpointFile: string): Promise<void> {
    for (let level = 0; level === 0 || hashesAtLevel(level, size) > 0; level++) {
      const index = Math.floor(hashesAtLevel(level, size) / TILE_WIDTH);
      const width = partialWidth(level, size);
      const hashes = width === 0 ? new Uint8Array(0) : await this.readPrefix({ level, index, width }, width * HASH_SIZE, checkpointFile);
      this.edges[level] = TileTree.from(level, index, hashes, width);
    }
    this.leafCount = size;
    this.edgeEntriesIndex = this.edges[0]!.index;
    const width = this.edges[0]!.width;
    if (width > 0) {
      const tile: TileId = { level: 'entries', index: this.edgeEntriesIndex, width };
      const bytes = await this.readPrefix(tile, undefined, checkpointFile);
      const entries = parseBundle(bytes, undefined, { prefix: true }).slice(0, width);
      if (entries.length < width) throw new LogStartError(`${this.store.describe(tile)}: ${entries.length} entries, the checkpoint covers ${width}`);
      entries.forEach((entry, i) => {
        if (!sameHash(leafHash(entry), this.edges[0]!.node(0, i))) throw new LogStartError(`${this.store.describe(tile)}: entry ${i} does not match tile 0/${tile.index}; the file is damaged`);
      });
      this.edgeEntries = entries.map((e) => e.slice());
    }
  }

  /** The partial tile of exactly this width, else the full tile, else a wider partial (a prefix serves). */
  private async readPrefix(tile: TileId, bytes: number | undefined, checkpointFile: string): Promise<Uint8Array> {
    const wider = (await this.store.partialWidths(tile)).filter((w) => w > tile.width);
    for (const width of [tile.width, TILE_WIDTH, ...wider]) {
      const found = await this.store.read({ ...tile, width });
      if (found !== undefined && (bytes === undefined || found.length >= bytes)) return bytes === undefined ? found : found.subarray(0, bytes);
    }
    throw new LogStartError(`${this.store.describe(tile)}: missing or short, but ${checkpointFile} covers it; the log's files are damaged`);
  }

  /**
   * Integrates complete data that a batch wrote beyond the last checkpoint before a crash (or
   * before a checkpoint write was torn): entries are taken while they hash to the level-0 tile
   * written with them. Returns how many leaves were integrated.
   */
  private async integrateBeyond(): Promise<number> {
    let integrated = 0;
    for (;;) {
      const index = this.edges[0]!.index;
      const have = this.edges[0]!.width;
      // The widest version alone is not enough: a crash can leave it created but empty or short,
      // and a narrower one holds what the torn checkpoint covered. The pair that proves the most
      // entries wins (a crash touches at most the newest writes: the three widest are tried).
      const bundles = await this.storedVersions({ level: 'entries', index }, 3);
      const tiles = await this.storedVersions({ level: 0, index }, 3);
      let best: Uint8Array[] = [];
      for (const bundle of bundles) {
        let entries: Uint8Array[];
        try {
          entries = parseBundle(bundle, undefined, { prefix: true });
        } catch (err) {
          if (err instanceof TileError) continue;
          throw err;
        }
        for (const tile of tiles) {
          const limit = Math.min(entries.length, Math.floor(tile.length / HASH_SIZE), TILE_WIDTH);
          let i = have;
          while (i < limit && sameHash(leafHash(entries[i]!), tile.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE))) i++;
          if (i - have > best.length) best = entries.slice(have, i);
        }
      }
      for (const entry of best) this.integrate(entry);
      integrated += best.length;
      if (have + best.length < TILE_WIDTH || best.length === 0 || integrated >= 2 * MAX_BATCH_LEAVES) break;
    }
    return integrated;
  }

  /** Up to `most` stored versions of a tile: the full one, then partials from the widest down. */
  private async storedVersions(tile: Omit<TileId, 'width'>, most: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const full = await this.store.read({ ...tile, width: TILE_WIDTH });
    if (full !== undefined) out.push(full);
    const widths = await this.store.partialWidths(tile);
    for (let w = widths.length - 1; w >= 0 && out.length < most; w--) {
      const bytes = await this.store.read({ ...tile, width: widths[w]! });
      if (bytes !== undefined) out.push(bytes);
    }
    return out;
  }

  /** Fills the recent-leaf index from the last RECENT_LEAVES leaf hashes (verified tile reads). */
  private async indexRecent(): Promise<void> {
    const first = Math.max(0, this.leafCount - RECENT_LEAVES);
    for (let t = Math.floor(first / TILE_WIDTH); t * TILE_WIDTH < this.leafCount; t++) {
      const tile = await this.tileTree(0, t);
      for (let i = Math.max(first - t * TILE_WIDTH, 0); i < tile.width; i++) this.recent.add(tile.node(0, i), t * TILE_WIDTH + i);
    }
  }

  /** Converts the leaves.bin of earlier versions ([u32 length][data] records) once, then renames it. */
  private async migrate(file: string): Promise<void> {
    const check = new CompactRange();
    let pending: Buffer = Buffer.alloc(0);
    let at = 0;
    for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
      pending = pending.length === 0 ? (chunk as Buffer) : Buffer.concat([pending, chunk as Buffer]);
      let offset = 0;
      while (offset + 4 <= pending.length) {
        const length = pending.readUInt32BE(offset);
        if (length === 0 || length > MAX_ENTRY_BYTES) throw new LogStartError(`${file}: corrupt record at byte ${at + offset} (length ${length}); not migrated, nothing changed`);
        if (offset + 4 + length > pending.length) break;
        const data = new Uint8Array(pending.subarray(offset + 4, offset + 4 + length));
        check.append(leafHash(data));
        this.integrate(data);
        offset += 4 + length;
      }
      at += offset;
      pending = pending.subarray(offset);
      if (this.leafCount - this.writtenSize >= MAX_BATCH_LEAVES) await this.flush();
    }
    // A torn last record (a crash mid-append) was never signed: it is left out, as the old relay did.
    await this.flush();
    if (this.failed) throw this.failed;
    const root = await this.root(this.signedSize);
    if (!sameHash(root, check.root())) throw new LogStartError(`${file}: the migrated tiles' root differs from the root of the old records; the old file is kept`);
    await fs.rename(file, `${file}.migrated`);
    this.options.onMigrated?.({ leaves: this.leafCount, file });
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}
