/**
 * The relay's log on disk as C2SP tlog-tiles (c2sp.org/tlog-tiles), read by the torn-write
 * scenario: `log/checkpoint`, hash tiles `log/tile/<L>/<N>[.p/<W>]`, entry bundles
 * `log/tile/entries/<N>[.p/<W>]`, where N is written in groups of three digits, all but the last
 * prefixed with "x" (x001/x234/067). The test needs to know which files the last checkpoint
 * covers, to tear only what was written after it.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export const TILE_WIDTH = 256;

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

/** "x001/x234/067" -> 1234067; undefined when the segments are not a tile index. */
function parseIndex(segments: string[]): number | undefined {
  if (segments.length === 0) return undefined;
  let digits = '';
  for (const [i, seg] of segments.entries()) {
    const last = i === segments.length - 1;
    const m = last ? /^(\d{3})$/.exec(seg) : /^x(\d{3})$/.exec(seg);
    if (!m) return undefined;
    digits += m[1];
  }
  return Number(digits);
}

/** The tile path for (level, index, width), e.g. tilePath(0, 1234067, 17) = "tile/0/x001/x234/067.p/17". */
export function tilePath(level: number | 'entries', index: number, width: number): string {
  const digits = String(index).padStart(Math.max(3, Math.ceil(String(index).length / 3) * 3), '0');
  const groups = digits.match(/\d{3}/g)!;
  const n = groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
  return `tile/${level}/${n}${width === TILE_WIDTH ? '' : `.p/${width}`}`;
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
      if (parts[0] !== 'tile' || parts.length < 3) continue;
      const level = parts[1] === 'entries' ? 'entries' : /^\d+$/.test(parts[1]!) ? Number(parts[1]) : undefined;
      if (level === undefined) continue;
      let rest = parts.slice(2);
      let width = TILE_WIDTH;
      if (rest.length >= 2 && rest.at(-2)!.endsWith('.p') && /^\d+$/.test(rest.at(-1)!)) {
        width = Number(rest.at(-1));
        rest = [...rest.slice(0, -2), rest.at(-2)!.slice(0, -2)];
      }
      const index = parseIndex(rest);
      if (index === undefined || width < 1 || width > TILE_WIDTH) continue;
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
