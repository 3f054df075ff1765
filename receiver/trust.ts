/**
 * Which devices the receiver believes, by the sender key id in the envelope header:
 *   - pinned: ML-DSA-65 public key files or DIDs listed in the config;
 *   - enrolled: any device registered at the relay whose registration leaf is in the verified log.
 * Every device is looked up at the relay (GET /v2/did/{did}) and re-checked every `refreshMs`, so a
 * revocation applies within that time. A pinned public key is the trust anchor for that device:
 * the relay's document must carry exactly that key; for a pinned DID the DID itself is the
 * anchor (it is the hash of the signing key, so the relay cannot substitute another key).
 */
import { timingSafeEqual } from 'node:crypto';
import { RelayClient, RelayError } from '../common/relay-client.js';
import { base32Lower, DID_PREFIX, parseDid, readDidDocument } from '../protocol/did.js';
import { keyId } from '../protocol/keys.js';
import { encodeLogEntry } from '../protocol/log-entries.js';
import { leafHash } from '../protocol/tlog/merkle.js';
import type { LogTrust } from './log-trust.js';
import type { RevocationWatch } from './revocations.js';

export type TrustRefusal = 'untrusted_sender' | 'unenrolled_sender' | 'revoked_sender' | 'bad_registration';

export class TrustError extends Error {
  constructor(readonly code: TrustRefusal, message: string) {
    super(message);
    this.name = 'TrustError';
  }
}

export interface TrustedDevice {
  did: string;
  signingPublicKey: Uint8Array;
}

interface Cached {
  device?: TrustedDevice;
  refusal?: TrustError;
  checkedAt: number;
}

export interface DeviceTrustOptions {
  client: RelayClient;
  log: LogTrust;
  /** Accept every device enrolled at the relay (with its registration in the verified log). */
  enrolled: boolean;
  /** Pinned devices: DIDs, and public keys (whose DIDs are derived). */
  pinnedDids: string[];
  pinnedKeys: Uint8Array[];
  refreshMs: number;
  /** Revocation leaves of the verified log: catches a relay that hides a revocation in its DID record. */
  revocations: RevocationWatch;
  now?: () => number;
}

const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);

export class DeviceTrust {
  private readonly cache = new Map<string, Cached>();
  /** did -> pinned public key (undefined when only the DID was pinned). */
  private readonly pinned = new Map<string, Uint8Array | undefined>();
  private readonly now: () => number;

  constructor(private readonly o: DeviceTrustOptions) {
    this.now = o.now ?? Date.now;
    for (const did of o.pinnedDids) this.pinned.set(parseDid(did).did, undefined);
    for (const key of o.pinnedKeys) this.pinned.set(DID_PREFIX + base32Lower(keyId('ML-DSA-65', key)), key);
  }

  /** The device for a sender key id (32 bytes), or a TrustError. Network failures propagate (transient). */
  async resolve(senderKeyId: Uint8Array): Promise<TrustedDevice> {
    const did = DID_PREFIX + base32Lower(senderKeyId);
    const cached = this.cache.get(did);
    if (cached && this.now() - cached.checkedAt < this.o.refreshMs) {
      if (cached.refusal) throw cached.refusal;
      return cached.device!;
    }
    try {
      const device = await this.lookup(did);
      this.cache.set(did, { device, checkedAt: this.now() });
      return device;
    } catch (err) {
      if (err instanceof TrustError) this.cache.set(did, { refusal: err, checkedAt: this.now() });
      throw err;
    }
  }

  /**
   * Refuses a sender whose revocation is in the verified log up to the trusted checkpoint, whatever
   * the relay's DID record says. Call after the envelope's inclusion proof (the checkpoint then
   * covers the envelope, so any revocation logged before it).
   */
  async checkLogRevocation(senderKeyId: Uint8Array): Promise<void> {
    await this.o.revocations.sync(this.o.log.trusted);
    const revoked = this.o.revocations.revocation(senderKeyId);
    if (revoked) throw new TrustError('revoked_sender', `sender ${revoked.did} is revoked by log entry ${revoked.leafIndex} (the relay's DID record may say otherwise)`);
  }

  private async lookup(did: string): Promise<TrustedDevice> {
    const isPinned = this.pinned.has(did);
    if (!isPinned && !this.o.enrolled) throw new TrustError('untrusted_sender', `sender ${did} is not a trusted device`);
    let record;
    try {
      record = await this.o.client.getDid(did);
    } catch (err) {
      if (err instanceof RelayError && err.code === 'not_found') throw new TrustError('unenrolled_sender', `sender ${did} is not enrolled at the relay`);
      throw err;
    }
    if (record.revoked) throw new TrustError('revoked_sender', `sender ${did} was revoked${record.revokedAt ? ` at ${record.revokedAt}` : ''}`);
    let doc;
    try {
      doc = readDidDocument(record.document);
    } catch (err) {
      throw new TrustError('bad_registration', `relay document for ${did}: ${(err as Error).message}`);
    }
    if (doc.did !== did || record.did !== did) throw new TrustError('bad_registration', `relay answered for ${record.did}, asked for ${did}`);
    const pinnedKey = this.pinned.get(did);
    if (pinnedKey !== undefined && !equal(pinnedKey, doc.signingPublicKey)) throw new TrustError('bad_registration', `relay document for ${did} carries another signing key than the pinned one`);
    if (!isPinned) {
      // Enrolled mode: the registration must be a leaf of the verified log.
      const data = encodeLogEntry({ type: 'registration', signingKeyId: keyId('ML-DSA-65', doc.signingPublicKey), kemKeyId: keyId(doc.kemAlg, doc.kemPublicKey), did });
      if (!Number.isSafeInteger(record.leafIndex) || record.leafIndex < 0) throw new TrustError('bad_registration', `relay record for ${did} has no leaf index`);
      await this.o.log.proveIncluded(leafHash(data), record.leafIndex);
    }
    return { did, signingPublicKey: doc.signingPublicKey };
  }
}
