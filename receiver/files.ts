/** Small file helpers for the receiver's state: atomic replace and durable append. */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';

/** temp file + fsync + rename + fsync of the folder: a crash leaves the old or the new file, never half. */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const temp = `${file}.tmp-${process.pid}`;
  const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, file);
  await syncDir(path.dirname(file));
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // some file systems refuse fsync on a folder; the rename is still atomic
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
