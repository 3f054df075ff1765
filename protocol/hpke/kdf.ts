/**
 * HKDF-SHA256 (KDF id 0x0001) and the RFC 9180 labeled wrappers (§4):
 *   LabeledExtract(salt, label, ikm)     = Extract(salt, "HPKE-v1" || suite_id || label || ikm)
 *   LabeledExpand(prk, label, info, L)   = Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)
 */
import { createHmac } from 'node:crypto';
import { concatBytes } from '../bytes.js';
import { HpkeError } from './errors.js';

export const KDF_HKDF_SHA256 = 0x0001;
export const HASH_LENGTH = 32;
const VERSION_LABEL = Buffer.from('HPKE-v1');

export function i2osp(value: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1, v = value; i >= 0; i--, v = Math.floor(v / 256)) out[i] = v & 0xff;
  return out;
}

export const concat = concatBytes;
export const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));

export function extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  // An empty salt is HMAC's zero key padding, equal to HashLen zero bytes as RFC 5869 requires.
  return new Uint8Array(createHmac('sha256', salt).update(ikm).digest());
}

export function expand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  if (length > 255 * HASH_LENGTH) throw new HpkeError('bad_input', `HKDF-Expand length ${length} exceeds 255*HashLen`);
  const out = new Uint8Array(length);
  let block = new Uint8Array(0);
  for (let offset = 0, counter = 1; offset < length; counter++) {
    block = new Uint8Array(createHmac('sha256', prk).update(block).update(info).update(Uint8Array.of(counter)).digest());
    out.set(block.subarray(0, Math.min(block.length, length - offset)), offset);
    offset += block.length;
  }
  return out;
}

export function labeledExtract(suiteId: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  return extract(salt, concat(VERSION_LABEL, suiteId, ascii(label), ikm));
}

export function labeledExpand(suiteId: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, length: number): Uint8Array {
  return expand(prk, concat(i2osp(length, 2), VERSION_LABEL, suiteId, ascii(label), info), length);
}
