/**
 * Small durable-file helpers for control-plane state (never payloads): relay key hashes and log,
 * receiver witness and replay window. A crash leaves the old or the new file, never half of one.
 */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

/** temp file (exclusive, 0600 by default) + fsync + rename + fsync of the folder. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    // A full disk: leave no half-written temp file behind (it would hold the space and confuse an operator).
    await handle.close().catch(() => undefined);
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
}

/** Makes a rename or a new file in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await handle.close();
  }
}

/** Reads a file as UTF-8; undefined when it does not exist. */
export async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Creates the folder 0700 (and checks it is a folder we can write). */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.access(dir, constants.W_OK);
}
