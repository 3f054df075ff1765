/**
 * RFC 9180 §5.1 key schedule, base mode only (mode 0x00, empty psk and psk_id), and the
 * encryption context of §5.2 (nonce = base_nonce XOR I2OSP(seq, Nn)) with the §5.3 exporter.
 */
import { aeadOpen, aeadSeal, getAead } from './aead.js';
import { HpkeError } from './errors.js';
import { ascii, concat, HASH_LENGTH, i2osp, KDF_HKDF_SHA256, labeledExpand, labeledExtract } from './kdf.js';

export const MODE_BASE = 0x00;
const EMPTY = new Uint8Array(0);

export function hpkeSuiteId(kemId: number, kdfId: number, aeadId: number): Uint8Array {
  return concat(ascii('HPKE'), i2osp(kemId, 2), i2osp(kdfId, 2), i2osp(aeadId, 2));
}

export interface KeySchedule { suiteId: Uint8Array; keyScheduleContext: Uint8Array; secret: Uint8Array; key: Uint8Array; baseNonce: Uint8Array; exporterSecret: Uint8Array }

export function keyScheduleBase(kemId: number, kdfId: number, aeadId: number, sharedSecret: Uint8Array, info: Uint8Array): KeySchedule {
  if (kdfId !== KDF_HKDF_SHA256) throw new HpkeError('unsupported_suite', `unsupported HPKE KDF id 0x${kdfId.toString(16).padStart(4, '0')}`);
  const aead = getAead(aeadId);
  const suiteId = hpkeSuiteId(kemId, kdfId, aeadId);
  const pskIdHash = labeledExtract(suiteId, EMPTY, 'psk_id_hash', EMPTY);
  const infoHash = labeledExtract(suiteId, EMPTY, 'info_hash', info);
  const keyScheduleContext = concat(Uint8Array.of(MODE_BASE), pskIdHash, infoHash);
  const secret = labeledExtract(suiteId, sharedSecret, 'secret', EMPTY);
  return {
    suiteId, keyScheduleContext, secret,
    key: labeledExpand(suiteId, secret, 'key', keyScheduleContext, aead.keyLength),
    baseNonce: labeledExpand(suiteId, secret, 'base_nonce', keyScheduleContext, aead.nonceLength),
    exporterSecret: labeledExpand(suiteId, secret, 'exp', keyScheduleContext, HASH_LENGTH),
  };
}

/** One HPKE encryption context. Sender and receiver differ only in which of seal/open they call. */
export class HpkeContext {
  private sequence = 0n;
  constructor(readonly aeadId: number, private readonly schedule: KeySchedule) {}

  get key(): Uint8Array { return this.schedule.key; }
  get baseNonce(): Uint8Array { return this.schedule.baseNonce; }
  get exporterSecret(): Uint8Array { return this.schedule.exporterSecret; }

  private nextNonce(): Uint8Array {
    if (this.sequence >= (1n << 96n) - 1n) throw new HpkeError('message_limit', 'HPKE sequence number overflow');
    const nonce = Uint8Array.from(this.schedule.baseNonce);
    for (let i = nonce.length - 1, s = this.sequence; i >= 0 && s > 0n; i--, s >>= 8n) nonce[i]! ^= Number(s & 0xffn);
    return nonce;
  }

  seal(aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const ct = aeadSeal(this.aeadId, this.schedule.key, this.nextNonce(), aad, plaintext);
    this.sequence++;
    return ct;
  }

  open(aad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const pt = aeadOpen(this.aeadId, this.schedule.key, this.nextNonce(), aad, ciphertext);
    this.sequence++; // only after success, as RFC 9180 §5.2 requires
    return pt;
  }

  export(exporterContext: Uint8Array, length: number): Uint8Array {
    return labeledExpand(this.schedule.suiteId, this.schedule.exporterSecret, 'sec', exporterContext, length);
  }
}
