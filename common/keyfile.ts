/**
 * Key files on disk: private keys written 0600 (never overwritten unless asked), public keys
 * 0644, a warning when a private key is readable by group or others, and the key bundle layout
 * `ghostpipe keygen` writes:
 *
 *   device:   NAME.sign.key / NAME.sign.pub (ML-DSA-65) and NAME.kem.key / NAME.kem.pub (X-Wing)
 *   receiver: NAME.kem.key / NAME.kem.pub
 *   relay, firmware, fleet: NAME.sign.key / NAME.sign.pub
 *
 * See docs/protocol/keys.md.
 */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import {
  KeyError, MAX_PEM_CHARS, decodePrivateKeyPem, decodePublicKeyPem, encodePrivateKeyPem, encodePublicKeyPem,
  generatePrivateKey, type KeyAlg, type PrivateKey, type PublicKey,
} from '../protocol/keys.js';
import { didFromSigningKey } from '../protocol/did.js';

export type KeyFileErrorCode = 'not_found' | 'unreadable' | 'exists' | 'not_a_file' | 'too_large' | 'bad_key' | 'bad_name' | 'write_failed';

/** A key file problem, always naming the file. `cause` holds the KeyError for 'bad_key'. */
export class KeyFileError extends Error {
  readonly code: KeyFileErrorCode;
  readonly file: string;
  constructor(code: KeyFileErrorCode, file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options);
    this.name = 'KeyFileError';
    this.code = code;
    this.file = file;
  }
}

export type WarningListener = (message: string) => void;

export const PRIVATE_KEY_MODE = 0o600;
export const PUBLIC_KEY_MODE = 0o644;

function ioError(err: unknown, file: string, doing: string): KeyFileError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new KeyFileError('not_found', file, `${doing}: no such file or directory`);
  if (code === 'EEXIST') return new KeyFileError('exists', file, `${doing}: file exists (refusing to overwrite a key; pass overwrite/--force to replace it)`);
  if (code === 'EACCES' || code === 'EPERM') return new KeyFileError('unreadable', file, `${doing}: permission denied`);
  if (code === 'EISDIR') return new KeyFileError('not_a_file', file, `${doing}: is a directory`);
  return new KeyFileError(doing.startsWith('read') ? 'unreadable' : 'write_failed', file, `${doing}: ${code ?? (err as Error).message}`);
}

/**
 * Writes `text` with exactly `mode`. Without overwrite the file is created exclusively (O_EXCL);
 * with it, a temporary file in the same folder is renamed over the old one, so a reader never sees
 * half a key and a 0644 leftover never keeps its mode.
 */
async function writeKeyText(file: string, text: string, mode: number, overwrite: boolean): Promise<void> {
  const target = overwrite ? `${file}.tmp-${process.pid}-${Date.now()}` : file;
  let handle: fs.FileHandle | undefined;
  let created = false;
  try {
    handle = await fs.open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    created = true;
    await handle.chmod(mode); // the umask may have removed bits (never added): make the mode exact
    await handle.writeFile(text, 'utf8');
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (overwrite) await fs.rename(target, file);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    // We created it (O_EXCL): a half-written key (full disk) must not stay behind to fail the next start.
    if (created) await fs.rm(target, { force: true }).catch(() => undefined);
    throw ioError(err, file, 'write key file');
  }
}

export function writePrivateKeyFile(file: string, pem: string, options: { overwrite?: boolean } = {}): Promise<void> {
  return writeKeyText(file, pem, PRIVATE_KEY_MODE, options.overwrite ?? false);
}

export function writePublicKeyFile(file: string, pem: string, options: { overwrite?: boolean } = {}): Promise<void> {
  return writeKeyText(file, pem, PUBLIC_KEY_MODE, options.overwrite ?? false);
}

async function readKeyText(file: string): Promise<{ text: string; mode: number }> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, constants.O_RDONLY);
  } catch (err) {
    throw ioError(err, file, 'read key file');
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new KeyFileError('not_a_file', file, 'read key file: not a regular file');
    if (stat.size > MAX_PEM_CHARS) throw new KeyFileError('too_large', file, `read key file: ${stat.size} bytes is too large for a key (at most ${MAX_PEM_CHARS})`);
    const text = await handle.readFile('utf8');
    return { text, mode: stat.mode & 0o777 };
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    throw ioError(err, file, 'read key file');
  } finally {
    await handle.close();
  }
}

/** Reads a private key PEM; warns (never logs the key) when group or others may read it. */
export async function readPrivateKeyFile(file: string, onWarning?: WarningListener): Promise<string> {
  const { text, mode } = await readKeyText(file);
  warnIfExposed(file, mode, onWarning);
  return text;
}

function warnIfExposed(file: string, mode: number, onWarning?: WarningListener): void {
  if (mode & 0o077) {
    onWarning?.(`private key file ${file} is readable by group or others (mode 0${mode.toString(8)}); run: chmod 600 ${file}`);
  }
}

export async function readPublicKeyFile(file: string): Promise<string> {
  return (await readKeyText(file)).text;
}

function parsed<T>(file: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof KeyError) throw new KeyFileError('bad_key', file, err.message, { cause: err });
    throw err;
  }
}

/** A private key of one of `algs` (first one is what the error names). */
export async function loadPrivateKey(file: string, algs: readonly KeyAlg[], onWarning?: WarningListener): Promise<PrivateKey> {
  const { text, mode } = await readKeyText(file);
  const key = parsed(file, () => decodePrivateKeyPem(text));
  if (!algs.includes(key.alg)) throw new KeyFileError('bad_key', file, `expected a ${algs.join(' or ')} private key, found ${key.alg}`);
  warnIfExposed(file, mode, onWarning); // after decoding, so a wrong file gets the error, not a warning
  return key;
}

/** A public key; with `algs`, only of those algorithms. */
export async function loadPublicKey(file: string, algs?: readonly KeyAlg[]): Promise<PublicKey> {
  const pem = await readPublicKeyFile(file);
  const key = parsed(file, () => decodePublicKeyPem(pem));
  if (algs && !algs.includes(key.alg)) throw new KeyFileError('bad_key', file, `expected a ${algs.join(' or ')} public key, found ${key.alg}`);
  return key;
}

/** The ML-DSA-65 signing key of a device, relay or firmware signer. */
export const loadSigningKey = (file: string, onWarning?: WarningListener): Promise<PrivateKey> =>
  loadPrivateKey(file, ['ML-DSA-65'], onWarning);

/** A receiver's (or device's) KEM key: X-Wing, or ML-KEM-768 in the pure-PQ mode. */
export const loadReceiverKey = (file: string, onWarning?: WarningListener): Promise<PrivateKey> =>
  loadPrivateKey(file, ['X-Wing', 'ML-KEM-768'], onWarning);

// ---------- bundles ----------

export type KeyType = 'device' | 'receiver' | 'relay' | 'firmware' | 'fleet';
export const KEY_TYPES: readonly KeyType[] = ['device', 'receiver', 'relay', 'firmware', 'fleet'];
export type KemChoice = 'X-Wing' | 'ML-KEM-768';

/** Which key roles each type holds: "sign" (ML-DSA-65) and/or "kem" (X-Wing by default). */
const ROLES: Record<KeyType, readonly ('sign' | 'kem')[]> = {
  device: ['sign', 'kem'],
  receiver: ['kem'],
  relay: ['sign'],
  firmware: ['sign'],
  /** The operator's offline fleet key: approves devices (docs/PROTOCOL.md "Fleet enrollment"). */
  fleet: ['sign'],
};

export function bundlePaths(dir: string, name: string): { signKey: string; signPub: string; kemKey: string; kemPub: string } {
  return {
    signKey: path.join(dir, `${name}.sign.key`),
    signPub: path.join(dir, `${name}.sign.pub`),
    kemKey: path.join(dir, `${name}.kem.key`),
    kemPub: path.join(dir, `${name}.kem.pub`),
  };
}

/** Bundle names become file names: keep them to a safe, portable set. */
export function checkBundleName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new KeyFileError('bad_name', name, 'key name must be 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit');
  }
}

export interface WrittenBundle {
  type: KeyType;
  /** Files written, private keys first. */
  files: { path: string; alg: KeyAlg; kind: 'private' | 'public'; mode: number }[];
  /** The device/relay/firmware DID (from the ML-DSA-65 key), when there is a signing key. */
  did?: string;
  publicKeys: Partial<Record<'sign' | 'kem', { alg: KeyAlg; publicKey: Uint8Array }>>;
}

/**
 * Generates and writes a key bundle. Refuses to touch any file if one of them exists (unless
 * overwrite), so a half-replaced identity never happens by accident.
 */
export async function writeKeyBundle(type: KeyType, dir: string, name: string, options: { overwrite?: boolean; kem?: KemChoice } = {}): Promise<WrittenBundle> {
  checkBundleName(name);
  const paths = bundlePaths(dir, name);
  const roles = ROLES[type];
  const planned: WrittenBundle['files'] = [];
  const keys: { role: 'sign' | 'kem'; key: PrivateKey }[] = [];
  for (const role of roles) {
    const alg: KeyAlg = role === 'sign' ? 'ML-DSA-65' : options.kem ?? 'X-Wing';
    keys.push({ role, key: generatePrivateKey(alg) });
    planned.push({ path: role === 'sign' ? paths.signKey : paths.kemKey, alg, kind: 'private', mode: PRIVATE_KEY_MODE });
    planned.push({ path: role === 'sign' ? paths.signPub : paths.kemPub, alg, kind: 'public', mode: PUBLIC_KEY_MODE });
  }
  if (!options.overwrite) {
    for (const file of planned) {
      const exists = await fs.lstat(file.path).then(() => true, () => false);
      if (exists) throw new KeyFileError('exists', file.path, 'file exists (refusing to overwrite a key; pass --force to replace it)');
    }
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
    throw ioError(err, dir, 'create key folder');
  });
  const overwrite = options.overwrite ?? false;
  const bundle: WrittenBundle = { type, files: [], publicKeys: {} };
  for (const { role, key } of keys) {
    const keyPath = role === 'sign' ? paths.signKey : paths.kemKey;
    const pubPath = role === 'sign' ? paths.signPub : paths.kemPub;
    await writePrivateKeyFile(keyPath, encodePrivateKeyPem(key), { overwrite });
    await writePublicKeyFile(pubPath, encodePublicKeyPem(key.alg, key.publicKey), { overwrite });
    bundle.publicKeys[role] = { alg: key.alg, publicKey: key.publicKey };
    if (role === 'sign') bundle.did = didFromSigningKey(key.publicKey);
  }
  bundle.files = [...planned.filter((f) => f.kind === 'private'), ...planned.filter((f) => f.kind === 'public')];
  return bundle;
}

export interface DeviceKeys {
  did: string;
  signing: PrivateKey;
  kem: PrivateKey;
}

/**
 * A device's two keys: from a bundle folder and name (NAME.sign.key, NAME.kem.key), or from
 * explicit paths.
 */
export async function loadDeviceKeys(
  source: { dir: string; name: string } | { signKey: string; kemKey: string },
  onWarning?: WarningListener,
): Promise<DeviceKeys> {
  const files = 'dir' in source ? bundlePaths(source.dir, source.name) : source;
  const signing = await loadSigningKey(files.signKey, onWarning);
  const kem = await loadReceiverKey(files.kemKey, onWarning);
  return { did: didFromSigningKey(signing.publicKey), signing, kem };
}
