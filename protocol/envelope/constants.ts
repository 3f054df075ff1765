/** Envelope format v1 constants. See docs/protocol/envelope.md. */
import { ML_DSA65, ML_KEM768 } from '../crypto/sizes.js';
import { XWING } from '../crypto/xwing.js';

export const FORMAT_VERSION = 1;
export const MAGIC = new Uint8Array([0x47, 0x50, 0x45, 0x56]); // "GPEV": Ghost Pipe EnVelope
export const HEADER_LENGTH = 109;

export const KEM = { XWING: 0x647a, MLKEM768: 0x0041 } as const;
export const KDF = { HKDF_SHA256: 0x0001 } as const;
export const AEAD = { AES256GCM: 0x0002, CHACHA20POLY1305: 0x0003 } as const;
export const CONTENT_TYPE = { OPAQUE: 0, READINGS: 1, CONFIG: 2, FIRMWARE_KEY: 3 } as const;

/** Encapsulated key length per envelope KEM; also the list of KEMs the format accepts. */
export const ENC_LENGTH: Readonly<Record<number, number>> = { [KEM.XWING]: XWING.ciphertext, [KEM.MLKEM768]: ML_KEM768.ciphertext };
export const KEM_KEY_ALG = { [KEM.XWING]: 'X-Wing', [KEM.MLKEM768]: 'ML-KEM-768' } as const;
export const AEAD_IDS: readonly number[] = [AEAD.AES256GCM, AEAD.CHACHA20POLY1305];
export const TAG_LENGTH = 16;
export const SIGNATURE_LENGTH = ML_DSA65.signature;

/** ML-DSA-65 context string (FIPS 204 ctx) for envelope signatures. */
export const SIGNATURE_CONTEXT = new Uint8Array(Buffer.from('ghostpipe/envelope/v1'));
/** HPKE info = INFO_LABEL || header bytes. */
export const INFO_LABEL = new Uint8Array(Buffer.from('ghostpipe/envelope/v1/hpke-info'));

export const DEFAULT_BUCKETS: readonly number[] = [4096, 65536, 1048576, 5242880];
/** Format limits for any configured bucket: 4-byte length prefix plus at least 60 bytes, at most 64 MiB. */
export const MIN_BUCKET = 64;
export const MAX_BUCKET = 64 * 1024 * 1024;
export const PADDING_PREFIX_LENGTH = 4;
