/**
 * Where the transparency log's tiles, entry bundles and checkpoint live: a folder laid out as
 * C2SP tlog-tiles (DiskTileStore, servable by any static file server), or RAM (MemoryTileStore,
 * air-gap mode). relay/log.ts owns what is written when; this file only stores bytes.
 *
 * Disk write order (crash safety): every tile and bundle of a batch is written and fdatasync'ed,
 * their folders fsync'ed, and only then the checkpoint: `checkpoint.tmp` written and synced,
 * the old `checkpoint` hard-linked as `checkpoint.prev.tmp` and renamed over `checkpoint.prev`
 * (so a fallback exists at every instant), the new one renamed over `checkpoint`
 * (atomic: a `checkpoint` exists at every instant), the folder synced. Files covered by a
 * checkpoint are never rewritten (tile paths are immutable).
 */
import { promises as fs, constants } from 'node:fs';
import path from 'node:path';
import { tilePath, TILE_WIDTH, type TileId } from '../protocol/tlog/tiles.js';

export interface TileFile {
  tile: TileId;
  bytes: Uint8Array;
}

export interface TileStore {
  /** The stored bytes of a tile or bundle (full: width 256), or undefined when absent. */
  read(tile: TileId): Promise<Uint8Array | undefined>;
  /** Widths of the partial versions of a tile that are stored. */
  partialWidths(tile: Omit<TileId, 'width'>): Promise<number[]>;
  /** Durable when resolved. */
  write(files: TileFile[]): Promise<void>;
  /** Atomic and durable when resolved; the previous checkpoint is kept as a fallback. */
  writeCheckpoint(text: string): Promise<void>;
  /**
   * Reinstalls `text` (the valid checkpoint a start fell back to) as the current checkpoint,
   * atomically, leaving the previous one alone: otherwise the next write would keep the torn
   * one as the fallback, and one more torn write would leave no valid checkpoint at all.
   */
  repairCheckpoint(text: string): Promise<void>;
  /** The current checkpoint text, then the previous one (either may be missing or torn). */
  readCheckpoints(): Promise<{ name: string; text: Uint8Array }[]>;
  /** Drops the partial versions of a tile once the full tile is covered by a checkpoint. */
  dropPartials(tile: Omit<TileId, 'width'>): Promise<void>;
  /**
   * Deletes every tile and bundle beyond a tree of `size` leaves that a batch of at most `span`
   * leaves could have left (a write that a crash cut short). Looks only at the right edge of each
   * level, so start time does not grow with the log.
   */
  dropBeyond(size: number, span: number): Promise<number>;
  /** Where this store lives, for messages. */
  describe(tile?: TileId | 'checkpoint'): string;
}

/** A read or write of the log's files failed; the message names the file. */
export class LogStoreError extends Error {
  constructor(readonly file: string, cause: unknown, what: string) {
    super(`${file}: ${what}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'LogStoreError';
  }
}

const WRITE_CONCURRENCY = 16;

export class DiskTileStore implements TileStore {
  private readonly knownDirs = new Set<string>();

  constructor(readonly dir: string) {}

  describe(tile?: TileId | 'checkpoint'): string {
    if (tile === undefined) return this.dir;
    return path.join(this.dir, tile === 'checkpoint' ? 'checkpoint' : tilePath(tile));
  }

  async read(tile: TileId): Promise<Uint8Array | undefined> {
    const file = this.describe(tile);
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw new LogStoreError(file, err, 'cannot read');
    }
  }

  async partialWidths(tile: Omit<TileId, 'width'>): Promise<number[]> {
    const dir = this.describe({ ...tile, width: TILE_WIDTH }) + '.p';
    try {
      return (await fs.readdir(dir)).map(Number).filter((w) => Number.isInteger(w) && w >= 1 && w < TILE_WIDTH).sort((a, b) => a - b);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
      throw new LogStoreError(dir, err, 'cannot list');
    }
  }

  async write(files: TileFile[]): Promise<void> {
    const dirs = new Set<string>();
    const queue = [...files];
    const worker = async (): Promise<void> => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const file = this.describe(next.tile);
        const dir = path.dirname(file);
        if (!this.knownDirs.has(dir)) {
          await fs.mkdir(dir, { recursive: true, mode: 0o700 }).catch((err) => {
            throw new LogStoreError(dir, err, 'cannot create folder');
          });
          this.knownDirs.add(dir);
          // A new folder's own entry must be durable too.
          dirs.add(path.dirname(dir));
        }
        dirs.add(dir);
        await writeDurably(file, next.bytes);
      }
    };
    await Promise.all(Array.from({ length: Math.min(WRITE_CONCURRENCY, files.length) }, worker));
    for (const dir of dirs) await syncDir(dir);
  }

  async writeCheckpoint(text: string): Promise<void> {
    const file = this.describe('checkpoint');
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeDurably(file + '.tmp', Buffer.from(text, 'utf8'));
    // The previous one is kept as a second name (a hard link), not moved away: `checkpoint`
    // exists at every instant, and the rename below replaces it atomically. (Renaming it to
    // .prev first left a moment without one: a SIGKILL there was survivable through .prev, but
    // anything reading the folder — an auditor, a backup, a static file server — found nothing.)
    // `.prev` itself is replaced by a rename too: removing it first left a moment without a
    // fallback, and a SIGKILL there (seen once in 20 loaded fault runs) followed by a torn
    // `checkpoint` left no valid checkpoint at all.
    try {
      await fs.rm(file + '.prev.tmp', { force: true });
      await fs.link(file, file + '.prev.tmp');
      await fs.rename(file + '.prev.tmp', file + '.prev');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new LogStoreError(file, err, 'cannot keep the previous checkpoint');
    }
    await this.install(file);
  }

  async repairCheckpoint(text: string): Promise<void> {
    const file = this.describe('checkpoint');
    await writeDurably(file + '.tmp', Buffer.from(text, 'utf8'));
    await this.install(file);
  }

  /** Renames the durable `checkpoint.tmp` over `checkpoint` and makes the rename durable. */
  private async install(file: string): Promise<void> {
    try {
      await fs.rename(file + '.tmp', file);
    } catch (err) {
      throw new LogStoreError(file, err, 'cannot install the new checkpoint');
    }
    await syncDir(this.dir);
  }

  async readCheckpoints(): Promise<{ name: string; text: Uint8Array }[]> {
    const out: { name: string; text: Uint8Array }[] = [];
    for (const name of ['checkpoint', 'checkpoint.prev']) {
      const file = path.join(this.dir, name);
      try {
        out.push({ name: file, text: new Uint8Array(await fs.readFile(file)) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new LogStoreError(file, err, 'cannot read');
      }
    }
    // Writes a crash cut short.
    await fs.rm(path.join(this.dir, 'checkpoint.tmp'), { force: true });
    await fs.rm(path.join(this.dir, 'checkpoint.prev.tmp'), { force: true });
    return out;
  }

  async dropPartials(tile: Omit<TileId, 'width'>): Promise<void> {
    await fs.rm(this.describe({ ...tile, width: TILE_WIDTH }) + '.p', { recursive: true, force: true });
  }

  async dropBeyond(size: number, span: number): Promise<number> {
    let dropped = 0;
    for (let level = 0; level === 0 || TILE_WIDTH ** level <= size + span; level++) {
      const have = Math.floor(size / TILE_WIDTH ** level);
      const first = Math.floor(have / TILE_WIDTH);
      const last = Math.floor((have + Math.ceil(span / TILE_WIDTH ** level) + 1) / TILE_WIDTH) + 1;
      for (const kind of level === 0 ? [0, 'entries' as const] : [level]) {
        for (let index = first; index <= last; index++) {
          const full = this.describe({ level: kind, index, width: TILE_WIDTH });
          if ((index + 1) * TILE_WIDTH > have && (await removed(full))) dropped++;
          for (const width of await this.partialWidths({ level: kind, index })) {
            if (index * TILE_WIDTH + width > have && (await removed(`${full}.p/${width}`))) dropped++;
          }
        }
      }
    }
    return dropped;
  }
}

async function removed(file: string): Promise<boolean> {
  try {
    await fs.rm(file, { recursive: true });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new LogStoreError(file, err, 'cannot remove');
  }
}

async function writeDurably(file: string, bytes: Uint8Array): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    await handle.writeFile(bytes);
    await handle.datasync();
  } catch (err) {
    throw new LogStoreError(file, err, 'cannot write');
  } finally {
    await handle?.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, constants.O_RDONLY);
    await handle.sync();
  } catch (err) {
    throw new LogStoreError(dir, err, 'cannot sync folder');
  } finally {
    await handle?.close();
  }
}

/**
 * Air-gap mode: full tiles and bundles in RAM (the right edge is the log's own), at most
 * `maxBytes`. At the bound the oldest level-0 tiles and entry bundles are pruned (c2sp.org/tlog-tiles
 * "Pruning": the minimum index moves up); the tiles of higher levels stay, so roots and
 * consistency proofs between sizes above the minimum index keep working.
 */
export class MemoryTileStore implements TileStore {
  private readonly files = new Map<string, Uint8Array>();
  private bytes = 0;
  /** Level-0 tiles and bundles below this tile index have been pruned. */
  prunedBelow = 0;
  private nextPrune = 0;
  private checkpoints: string[] = [];

  constructor(private readonly maxBytes: number) {}

  describe(tile?: TileId | 'checkpoint'): string {
    if (tile === undefined) return '(RAM)';
    return `(RAM) ${tile === 'checkpoint' ? 'checkpoint' : tilePath(tile)}`;
  }

  async read(tile: TileId): Promise<Uint8Array | undefined> {
    return this.files.get(tilePath(tile));
  }

  async partialWidths(): Promise<number[]> {
    return [];
  }

  async write(files: TileFile[]): Promise<void> {
    for (const { tile, bytes } of files) {
      if (tile.width !== TILE_WIDTH) continue; // partial tiles: the log's right edge serves them
      const key = tilePath(tile);
      this.bytes += bytes.length - (this.files.get(key)?.length ?? 0);
      this.files.set(key, bytes);
    }
    while (this.bytes > this.maxBytes && this.prune()) {
      // pruned one more level-0 tile and bundle
    }
  }

  async writeCheckpoint(text: string): Promise<void> {
    this.checkpoints = [text];
  }

  async repairCheckpoint(text: string): Promise<void> {
    this.checkpoints = [text];
  }

  async readCheckpoints(): Promise<{ name: string; text: Uint8Array }[]> {
    return this.checkpoints.map((text) => ({ name: 'checkpoint', text: Buffer.from(text) }));
  }

  async dropPartials(): Promise<void> {}

  async dropBeyond(): Promise<number> {
    return 0;
  }

  stats(): { bytes: number; files: number; prunedBelow: number } {
    return { bytes: this.bytes, files: this.files.size, prunedBelow: this.prunedBelow };
  }

  private prune(): boolean {
    const index = this.nextPrune;
    let freed = false;
    for (const level of [0, 'entries'] as const) {
      const key = tilePath({ level, index, width: TILE_WIDTH });
      const bytes = this.files.get(key);
      if (bytes) {
        this.bytes -= bytes.length;
        this.files.delete(key);
        freed = true;
      }
    }
    if (!freed) return false;
    this.nextPrune++;
    this.prunedBelow = this.nextPrune;
    return true;
  }
}
