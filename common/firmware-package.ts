/**
 * The firmware package folder that `ghostpipe firmware pack` writes and `sign`, `verify` and
 * `publish` read (docs/FIRMWARE.md):
 *
 *   DIR/manifest.bin       the canonical manifest (protocol/firmware/manifest.ts)
 *   DIR/signatures.json    the release keys' signatures over it, one per `firmware sign`
 *   DIR/chunks/NNNNNN.bin  the encrypted chunks, in order
 *   DIR/content.key        the package's content key (0600): only `publish` needs it, to wrap it to
 *                          each device; the offline signers need manifest.bin and signatures.json only
 *
 * Packing streams: one chunk of plaintext in memory at a time, whatever the firmware's size.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import {
  CONTENT_KEY_LENGTH, decodeManifest, encodeManifest, encryptChunk, sha256, signaturesFromJson, signaturesToJson,
  type FirmwareManifest, type KeySignature, type SignedManifest,
} from '../protocol/firmware/index.js';

export const PACKAGE_FILES = { manifest: 'manifest.bin', signatures: 'signatures.json', contentKey: 'content.key', chunks: 'chunks' } as const;

export class PackageError extends Error {
  constructor(readonly dir: string, message: string) {
    super(`${dir}: ${message}`);
    this.name = 'PackageError';
  }
}

export function chunkFile(dir: string, index: number): string {
  return path.join(dir, PACKAGE_FILES.chunks, `${String(index).padStart(6, '0')}.bin`);
}

export type PackFields = Omit<FirmwareManifest, 'size' | 'sha512' | 'chunkHashes'>;

/** Encrypts `binary` into a new package folder `dir` (which must not exist, or be empty). */
export async function packFirmware(binary: string, dir: string, fields: PackFields): Promise<SignedManifest> {
  const { size } = await fs.stat(binary).catch((err: NodeJS.ErrnoException) => { throw new PackageError(binary, err.code === 'ENOENT' ? 'no such file' : err.message); });
  // Every field checked before anything is written: a refused pack leaves no folder behind.
  const count = Number.isInteger(fields.chunkSize) && fields.chunkSize > 0 ? Math.ceil(size / fields.chunkSize) : 0;
  encodeManifest({ ...fields, size, sha512: new Uint8Array(64), chunkHashes: Array.from({ length: count }, () => new Uint8Array(32)) });
  const existing = await fs.readdir(dir).catch(() => []);
  if (existing.length > 0) throw new PackageError(dir, 'exists and is not empty; pack into a new folder');
  await fs.mkdir(path.join(dir, PACKAGE_FILES.chunks), { recursive: true, mode: 0o755 });
  const contentKey = new Uint8Array(randomBytes(CONTENT_KEY_LENGTH));
  await writeFileAtomic(path.join(dir, PACKAGE_FILES.contentKey), contentKey, 0o600);
  const whole = createHash('sha512');
  const chunkHashes: Uint8Array[] = [];
  const plain = new Uint8Array(fields.chunkSize);
  const input = await fs.open(binary, 'r');
  try {
    for (let index = 0, offset = 0; offset < size; index++) {
      const { bytesRead } = await input.read(plain, 0, Math.min(fields.chunkSize, size - offset), offset);
      if (bytesRead === 0) throw new PackageError(binary, `changed while packing (ended at byte ${offset} of ${size})`);
      const part = plain.subarray(0, bytesRead);
      whole.update(part);
      const encrypted = encryptChunk(fields.aeadId, contentKey, fields, index, part);
      chunkHashes.push(sha256(encrypted));
      await fs.writeFile(chunkFile(dir, index), encrypted, { mode: 0o644 });
      offset += bytesRead;
    }
  } finally {
    plain.fill(0);
    contentKey.fill(0);
    await input.close();
  }
  const manifest: FirmwareManifest = { ...fields, size, sha512: new Uint8Array(whole.digest()), chunkHashes };
  const bytes = encodeManifest(manifest);
  await writeFileAtomic(path.join(dir, PACKAGE_FILES.manifest), bytes, 0o644);
  await writeSignatures(dir, []);
  return { bytes, manifest, signatures: [] };
}

export async function readPackageManifest(dir: string): Promise<SignedManifest> {
  const bytes = await readIn(dir, PACKAGE_FILES.manifest);
  const signatures = JSON.parse(Buffer.from(await readIn(dir, PACKAGE_FILES.signatures)).toString('utf8')) as unknown;
  return { bytes, manifest: decodeManifest(bytes), signatures: signaturesFromJson(signatures, 'firmware manifest') };
}

export async function writeSignatures(dir: string, signatures: readonly KeySignature[]): Promise<void> {
  await writeFileAtomic(path.join(dir, PACKAGE_FILES.signatures), JSON.stringify(signaturesToJson(signatures), null, 2) + '\n', 0o644);
}

export async function readContentKey(dir: string): Promise<Uint8Array> {
  const key = await readIn(dir, PACKAGE_FILES.contentKey);
  if (key.length !== CONTENT_KEY_LENGTH) throw new PackageError(dir, `${PACKAGE_FILES.contentKey} is ${key.length} bytes, not ${CONTENT_KEY_LENGTH}`);
  return key;
}

export async function readChunk(dir: string, index: number): Promise<Uint8Array> {
  return new Uint8Array(await fs.readFile(chunkFile(dir, index)).catch((err: NodeJS.ErrnoException) => {
    throw new PackageError(dir, `chunk ${index}: ${err.code === 'ENOENT' ? 'missing' : err.message}`);
  }));
}

async function readIn(dir: string, name: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await fs.readFile(path.join(dir, name)));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PackageError(dir, code === 'ENOENT' ? `no ${name}: not a firmware package (ghostpipe firmware pack makes one)` : `${name}: ${(err as Error).message}`);
  }
}
