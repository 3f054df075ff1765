/**
 * The relay's transparency log: leaf data kept in RAM (compact arena) and, with a state
 * directory, appended to `log/leaves.bin` ([u32 big-endian length][data] records, no payload
 * ever). Appends that arrive together form one batch: written, fdatasync'ed, then one
 * checkpoint is signed for the new size. A checkpoint never covers a leaf that is not on disk,
 * so a crash can lose unsigned leaves but never fork a signed history.
 */
import { promises as fs, constants } from 'node:fs';
import path from 'node:path';
import { MerkleTree, leafHash } from '../protocol/tlog/merkle.js';
import { signCheckpoint } from '../protocol/tlog/checkpoint.js';
import type { NoteSigner } from '../protocol/tlog/note.js';

const MAX_LEAF_BYTES = 64 * 1024;
/** At most one checkpoint per this many ms; with signing and fsync it keeps append -> signed < 250 ms. */
export const MIN_SIGN_INTERVAL_MS = 100;

/** Append-only bytes with per-leaf offsets. */
class LeafArena {
  private data = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private offsets = new Float64Array(1024);
  count = 0;

  push(leaf: Uint8Array): void {
    if (this.used + leaf.length > this.data.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.data.length * 2, this.used + leaf.length));
      this.data.copy(grown, 0, 0, this.used);
      this.data = grown;
    }
    if (this.count + 1 >= this.offsets.length) {
      const grown = new Float64Array(this.offsets.length * 2);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.data.set(leaf, this.used);
    this.offsets[this.count] = this.used;
    this.used += leaf.length;
    this.count++;
    this.offsets[this.count] = this.used;
  }

  get(index: number): Uint8Array {
    return new Uint8Array(this.data.subarray(this.offsets[index]!, this.offsets[index + 1]!));
  }
}

/** 30 bits of a leaf hash: a small integer (no boxed double per leaf); clashes are resolved by index lists. */
function hashKey(hash: Uint8Array): number {
  return ((hash[0]! << 22) | (hash[1]! << 14) | (hash[2]! << 6) | (hash[3]! >> 2)) >>> 0;
}

export interface LogOptions {
  origin: string;
  signer: NoteSigner;
  /** Folder for leaves.bin; undefined = RAM only. */
  dir: string | undefined;
  onError(err: unknown): void;
  onCheckpoint?(size: number, ms: number): void;
}

export class RelayLog {
  readonly tree = new MerkleTree();
  private readonly leaves = new LeafArena();
  /** 30 bits of a leaf hash -> index, or indexes on a clash. */
  private readonly byHash = new Map<number, number | number[]>();
  private file: fs.FileHandle | undefined;
  private pending: Uint8Array[] = [];
  private pendingSince = 0;
  private flushing: Promise<void> | undefined;
  private lastFlush = -Infinity;
  signedSize = 0;
  checkpoint = '';
  /** Append -> signed checkpoint latency of the latest batch and the worst since start, ms. */
  lastCheckpointMs = 0;
  maxCheckpointMs = 0;

  private constructor(private readonly options: LogOptions) {}

  /** Opens (or creates) the log, replays persisted leaves and signs a checkpoint for them. */
  static async open(options: LogOptions): Promise<RelayLog> {
    const log = new RelayLog(options);
    if (options.dir !== undefined) {
      await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
      const file = path.join(options.dir, 'leaves.bin');
      const valid = await log.replay(file);
      log.file = await fs.open(file, constants.O_RDWR | constants.O_CREAT, 0o600);
      const stat = await log.file.stat();
      if (stat.size > valid) await log.file.truncate(valid); // torn tail from a crash: never signed
    }
    log.sign();
    return log;
  }

  get size(): number {
    return this.tree.size;
  }

  /** Appends leaf data; returns its index. The checkpoint covering it follows within one batch. */
  append(data: Uint8Array): number {
    if (data.length === 0 || data.length > MAX_LEAF_BYTES) throw new RangeError(`leaf data must be 1..${MAX_LEAF_BYTES} bytes`);
    const index = this.add(data);
    if (this.pending.length === 0) this.pendingSince = performance.now();
    this.pending.push(data);
    if (!this.flushing) {
      // The first append after a quiet spell is written at once; later ones gather for up to
      // MIN_SIGN_INTERVAL_MS, so signing (ms of CPU each) stays a small share under load.
      const wait = Math.max(0, this.lastFlush + MIN_SIGN_INTERVAL_MS - performance.now());
      this.flushing = new Promise((resolve) => (wait === 0 ? setImmediate(resolve) : setTimeout(resolve, wait))).then(() => this.flushLoop());
    }
    return index;
  }

  indexOfLeafHash(hash: Uint8Array): number | undefined {
    if (hash.length !== 32) return undefined;
    const found = this.byHash.get(hashKey(hash));
    const candidates = found === undefined ? [] : typeof found === 'number' ? [found] : found;
    return candidates.find((i) => Buffer.from(this.tree.leafHashAt(i)).equals(hash));
  }

  leafData(index: number): Uint8Array {
    return this.leaves.get(index);
  }

  /** Waits until every append so far is on disk and signed. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.file?.close();
    this.file = undefined;
  }

  private add(data: Uint8Array): number {
    const hash = leafHash(data);
    const index = this.tree.append(hash);
    this.leaves.push(data);
    const key = hashKey(hash);
    const found = this.byHash.get(key);
    if (found === undefined) this.byHash.set(key, index);
    else if (typeof found === 'number') this.byHash.set(key, [found, index]);
    else found.push(index);
    return index;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        const since = this.pendingSince;
        this.pending = [];
        const size = this.signedSize + batch.length;
        if (this.file) {
          const records = Buffer.allocUnsafe(batch.reduce((n, d) => n + 4 + d.length, 0));
          let at = 0;
          for (const data of batch) {
            records.writeUInt32BE(data.length, at);
            records.set(data, at + 4);
            at += 4 + data.length;
          }
          await this.file.appendFile(records);
          await this.file.datasync();
        }
        this.sign(size);
        this.lastFlush = performance.now();
        this.lastCheckpointMs = this.lastFlush - since;
        this.maxCheckpointMs = Math.max(this.maxCheckpointMs, this.lastCheckpointMs);
        this.options.onCheckpoint?.(size, this.lastCheckpointMs);
      }
    } catch (err) {
      this.options.onError(err);
    } finally {
      this.flushing = undefined;
    }
  }

  private sign(size = this.tree.size): void {
    this.checkpoint = signCheckpoint({ origin: this.options.origin, size, root: this.tree.root(size) }, [this.options.signer]);
    this.signedSize = size;
  }

  /** Reads leaves.bin; returns the byte length of its complete records. */
  private async replay(file: string): Promise<number> {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    let at = 0;
    while (at + 4 <= bytes.length) {
      const length = bytes.readUInt32BE(at);
      if (length === 0 || length > MAX_LEAF_BYTES) throw new Error(`${file}: corrupt record at byte ${at} (length ${length})`);
      if (at + 4 + length > bytes.length) break;
      this.add(new Uint8Array(bytes.subarray(at + 4, at + 4 + length)));
      at += 4 + length;
    }
    return at;
  }
}
