/**
 * The content key, wrapped to one device: an envelope (protocol/envelope, content type
 * firmware-key, HPKE to the device's X-Wing or ML-KEM-768 key) whose plaintext binds the key to
 * the manifest it opens. A relay that withholds it, or serves another device's, leaves the device
 * with nothing it can open; one that serves a key of its own making cannot match the chunk hashes.
 *
 *   plaintext = magic "GPFK" (4) || version 0x01 (1) || SHA-256(manifest bytes) (32) || content key (32)
 *
 * The envelope is signed by the publisher's ML-DSA-65 key. Integrity does not rest on it (the
 * release keys sign the manifest, and the manifest pins every chunk); it records who wrapped.
 */
import { timingSafeEqual } from 'node:crypto';
import { CONTENT_TYPE } from '../envelope/constants.js';
import { openEnvelope } from '../envelope/open.js';
import { parseEnvelope } from '../envelope/parse.js';
import { sealEnvelope, type RecipientPrivate, type RecipientPublic, type Sender } from '../envelope/seal.js';
import { Reader, Writer } from './codec.js';
import { CONTENT_KEY_LENGTH } from './chunks.js';
import { fail } from './errors.js';

export const KEY_WRAP_MAGIC = new Uint8Array([0x47, 0x50, 0x46, 0x4b]); // "GPFK"
export const KEY_WRAP_VERSION = 1;

export interface WrapOptions {
  manifestDigest: Uint8Array;
  contentKey: Uint8Array;
  recipient: RecipientPublic;
  sender: Sender;
  /** The release counter: the envelope's sequence, so wraps of one device sort by release. */
  counter: number;
}

export function wrapContentKey(o: WrapOptions): Uint8Array {
  if (o.manifestDigest.length !== 32 || o.contentKey.length !== CONTENT_KEY_LENGTH) fail('bad_field', 'a key wrap holds a 32-byte manifest digest and a 32-byte content key');
  const plaintext = new Writer().bytes(KEY_WRAP_MAGIC).u8(KEY_WRAP_VERSION).bytes(o.manifestDigest).bytes(o.contentKey).finish();
  try {
    return sealEnvelope({ plaintext, recipient: o.recipient, sender: o.sender, streamId: 0, sequence: BigInt(o.counter), contentType: CONTENT_TYPE.FIRMWARE_KEY });
  } finally {
    plaintext.fill(0);
  }
}

/** Opens a wrap meant for this device and this manifest; anything else is `wrong_key`. */
export function unwrapContentKey(envelope: Uint8Array, recipient: RecipientPrivate, publisherPublicKey: Uint8Array, manifestDigest: Uint8Array): Uint8Array {
  let plaintext: Uint8Array;
  try {
    const parsed = parseEnvelope(envelope);
    if (parsed.header.contentType !== CONTENT_TYPE.FIRMWARE_KEY) throw new Error(`content type ${parsed.header.contentType}`);
    plaintext = openEnvelope(parsed, recipient, publisherPublicKey);
  } catch (err) {
    return fail('wrong_key', `the wrapped content key does not open for this device: ${(err as Error).message}`);
  }
  try {
    const r = new Reader(plaintext, 'key wrap');
    r.header(KEY_WRAP_MAGIC, KEY_WRAP_VERSION);
    const digest = r.bytes(32, 'the manifest digest');
    const key = r.bytes(CONTENT_KEY_LENGTH, 'the content key');
    r.end();
    if (!timingSafeEqual(digest, manifestDigest)) fail('wrong_key', 'the wrapped content key belongs to another manifest');
    return key;
  } finally {
    plaintext.fill(0);
  }
}
