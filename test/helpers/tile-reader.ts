/**
 * The relay's log on disk as C2SP tlog-tiles (c2sp.org/tlog-tiles), read by the torn-write
 * scenario: `log/checkpoint`, hash tiles `log/tile/<L>/<N>[.p/<W>]`, entry bundles
 * `log/tile/entries/<N>[.p/<W>]`, where N is written in groups of three digits, all but the last
 * prefixed with "x" (x001/x234/067; protocol/tlog/tiles.ts). The test needs to know which files
 * the last checkpoint covers, to tear only what was written after it.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { TILE_WIDTH, parseTilePath, tilePath } from '../../protocol/tlog/tiles.js';

export { TILE_WIDTH };

/** The path of a tile or bundle under the log folder, e.g. tileFile(0, 1234067, 17) = "tile/0/x001/x234/067.p/17". */
export function tileFile(level: number | 'entries', index: number, width: number): string {
  return tilePath({ level, index, width });
}

export interface TileFile {
  /** Path under the log folder, e.g. "tile/0/x001/234.p/17". */
  rel: string;
  file: string;
  /** 'entries' for an entry bundle, else the hash tile level. */
  level: number | 'entries';
  index: number;
  /** 256 for a full tile. */
  width: number;
  /** Leaves covered up to (exclusive): a file with end > checkpoint size was written after that checkpoint. */
  end: number;
  size: number;
  mtimeMs: number;
}

/** Every tile and bundle under `logDir`, with what it covers. Files that are not tiles are left out. */
export async function listTiles(logDir: string): Promise<TileFile[]> {
  const out: TileFile[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(file);
        continue;
      }
      const rel = path.relative(logDir, file).split(path.sep).join('/');
      const parts = rel.split('/');
      if (parts[0] !== 'tile') continue;
      let tile;
      try {
        tile = parseTilePath(parts.slice(1));
      } catch {
        continue; // not a tile path (a temp file, say)
      }
      const { level, index, width } = tile;
      const stat = await fs.stat(file);
      const scale = level === 'entries' ? 1 : TILE_WIDTH ** level;
      out.push({ rel, file, level, index, width, end: (index * TILE_WIDTH + width) * scale, size: stat.size, mtimeMs: stat.mtimeMs });
    }
  };
  await walk(path.join(logDir, 'tile'));
  return out;
}

/** SHA-256 of every full tile the checkpoint of `size` covers: these never change once written. */
export async function signedFullTiles(logDir: string, size: number): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (const t of await listTiles(logDir)) {
    if (t.width !== TILE_WIDTH || t.end > size) continue;
    hashes.set(t.rel, createHash('sha256').update(await fs.readFile(t.file)).digest('hex'));
  }
  return hashes;
}
