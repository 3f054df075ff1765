/** Shared by seal, open and inspect: key loading with one-line errors, and suite names. */
import { CliError } from '../command.js';
import { KeyFileError, loadPublicKey, loadReceiverKey, loadSigningKey } from '../../common/keyfile.js';
import { AEAD, CONTENT_TYPE, EnvelopeError, KEM } from '../../protocol/envelope/index.js';
import type { KeyAlg, PrivateKey, PublicKey } from '../../protocol/keys.js';

const warn = (message: string): void => {
  process.stderr.write(`ghostpipe: warning: ${message}\n`);
};

export const KEM_BY_ALG: Partial<Record<KeyAlg, number>> = { 'X-Wing': KEM.XWING, 'ML-KEM-768': KEM.MLKEM768 };
export const KEM_NAMES: Record<number, string> = { [KEM.XWING]: 'X-Wing (MLKEM768-X25519)', [KEM.MLKEM768]: 'ML-KEM-768' };
export const KDF_NAMES: Record<number, string> = { 1: 'HKDF-SHA256' };
export const AEAD_NAMES: Record<number, string> = { [AEAD.AES256GCM]: 'AES-256-GCM', [AEAD.CHACHA20POLY1305]: 'ChaCha20-Poly1305' };
export const CONTENT_TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(CONTENT_TYPE).map(([name, id]) => [id, name.toLowerCase().replace(/_/g, '-')]),
);

/** Turns the typed errors of key files and envelopes into one-line CLI errors. */
export async function oneLine<T>(command: string, work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof KeyFileError) throw new CliError(`${command}: ${err.message}`);
    if (err instanceof EnvelopeError) throw new CliError(`${command}: ${err.message} (${err.code})`);
    throw err;
  }
}

export const loadSigner = (file: string): Promise<PrivateKey> => loadSigningKey(file, warn);
export const loadRecipient = (file: string): Promise<PrivateKey> => loadReceiverKey(file, warn);
export const loadSignerPublic = (file: string): Promise<PublicKey> => loadPublicKey(file, ['ML-DSA-65']);
export const loadRecipientPublic = (file: string): Promise<PublicKey> => loadPublicKey(file, ['X-Wing', 'ML-KEM-768']);

export function refuseTty(command: string, what: string): void {
  if (process.stdin.isTTY) throw new CliError(`${command}: reads ${what} from stdin; pipe or redirect it in (see ghostpipe ${command} --help)`, 2);
}

export async function writeStdout(bytes: Uint8Array): Promise<void> {
  await new Promise<void>((resolve, reject) => process.stdout.write(bytes, (err) => (err ? reject(err) : resolve())));
}
