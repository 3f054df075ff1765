/**
 * The download of one package, on disk: <staging>/<id>/firmware.part grows by one verified and
 * decrypted chunk at a time (written and fsynced before the next is fetched), so a download
 * resumes after a restart of the relay or of the agent at the first chunk not on disk, and the
 * agent never holds more than one chunk in memory. The only plaintext here is this device's own
 * firmware. When every chunk is in, the whole file is hashed (SHA-512, streamed) against the
 * manifest and renamed to firmware.bin, the file the install command gets.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, syncDir } from '../../common/atomic-file.js';
import { chunkCount, plainChunkLength, type FirmwareManifest } from '../../protocol/firmware/index.js';

export const PART_FILE = 'firmware.part';
export const STAGED_FILE = 'firmware.bin';

export class StagedDownload {
  private constructor(
    readonly dir: string,
    private readonly manifest: FirmwareManifest,
    /** Chunks on disk, in order from 0. */
    private done: number,
    private complete: boolean,
  ) {}

  /**
   * The staging of package `id`, resumed where an earlier process left it. Staging of any other
   * package is removed: one download at a time, and an abandoned one must not fill the disk.
   */
  static async open(root: string, id: string, manifest: FirmwareManifest): Promise<StagedDownload> {
    await ensurePrivateDir(root);
    for (const entry of await fs.readdir(root)) if (entry !== id) await fs.rm(path.join(root, entry), { recursive: true, force: true });
    const dir = path.join(root, id);
    await ensurePrivateDir(dir);
    if (await exists(path.join(dir, STAGED_FILE))) return new StagedDownload(dir, manifest, chunkCount(manifest.size, manifest.chunkSize), true);
    const part = path.join(dir, PART_FILE);
    const size = (await exists(part)) ? (await fs.stat(part)).size : 0;
    // Whole chunks only: a chunk torn by a crash is cut off and fetched again.
    let done = 0;
    let kept = 0;
    const total = chunkCount(manifest.size, manifest.chunkSize);
    while (done < total && kept + plainChunkLength(manifest, done) <= size) kept += plainChunkLength(manifest, done++);
    if (size !== kept) await fs.truncate(part, kept);
    return new StagedDownload(dir, manifest, done, false);
  }

  /** Removes whatever is staged for package `id`. */
  static async discard(root: string, id: string): Promise<void> {
    await fs.rm(path.join(root, id), { recursive: true, force: true });
  }

  get chunksDone(): number {
    return this.done;
  }

  get chunks(): number {
    return chunkCount(this.manifest.size, this.manifest.chunkSize);
  }

  get file(): string {
    return path.join(this.dir, STAGED_FILE);
  }

  /** Appends chunk `index` (the next one), durably. */
  async append(index: number, plaintext: Uint8Array): Promise<void> {
    if (this.complete || index !== this.done) throw new Error(`chunk ${index} is not the next one (${this.done} on disk)`);
    const handle = await fs.open(path.join(this.dir, PART_FILE), 'a', 0o600);
    try {
      await handle.write(plaintext);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    this.done++;
  }

  /**
   * Checks the whole plaintext against the manifest's size and SHA-512 and makes it firmware.bin.
   * Returns what is wrong, or undefined.
   */
  async finish(): Promise<string | undefined> {
    const m = this.manifest;
    const file = this.complete ? this.file : path.join(this.dir, PART_FILE);
    const size = (await fs.stat(file)).size;
    if (size !== m.size) return `the staged firmware is ${size} bytes; the manifest says ${m.size}`;
    const hash = createHash('sha512');
    for await (const piece of createReadStream(file)) hash.update(piece as Buffer);
    if (!hash.digest().equals(Buffer.from(m.sha512))) return 'the staged firmware does not match the manifest\'s SHA-512';
    if (!this.complete) {
      await fs.rename(file, this.file);
      await syncDir(this.dir);
      this.complete = true;
    }
    return undefined;
  }

  async remove(): Promise<void> {
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
