/**
 * Which devices the receiver believes, by the sender key id in the envelope header:
 *   - pinned: ML-DSA-65 public key files or DIDs listed in the config;
 *   - enrolled: any device registered at the relay with a valid, unexpired approval by the pinned
 *     fleet key over exactly its keys, whose registration leaf (with that approval) is in the
 *     verified log. The relay alone cannot make a device: it holds no fleet key (issue 11).
 * Every device is looked up at the relay (GET /v2/did/{did}) and re-checked every `refreshMs`, so a
 * revocation applies within that time. A pinned public key is the trust anchor for that device:
 * the relay's document must carry exactly that key; for a pinned DID the DID itself is the
 * anchor (it is the hash of the signing key, so the relay cannot substitute another key).
 */
import { timingSafeEqual } from 'node:crypto';
import { RelayClient, RelayError } from '../common/relay-client.js';
import { base32Lower, DID_PREFIX, parseDid, readDidDocument } from '../protocol/did.js';
import { keyId } from '../protocol/keys.js';
import { decodeLogEntry, encodeLogEntry, type FleetApproval } from '../protocol/log-entries.js';
import { FleetStatementError, verifyEnrollmentApproval, verifyFleetSignature } from '../protocol/enrollment.js';
import { leafHash } from '../protocol/tlog/merkle.js';
import type { LogTrust } from '../common/log-trust.js';
import type { RevocationWatch } from './revocations.js';

export type TrustRefusal = 'untrusted_sender' | 'unenrolled_sender' | 'revoked_sender' | 'bad_registration';

export class TrustError extends Error {
  /**
   * `relayAnswer`: the refusal rests on the relay's unsigned DID answer about an enrolled device
   * (404, the record, its document or approval): the verified log may say otherwise (fromLog).
   */
  constructor(readonly code: TrustRefusal, message: string, readonly relayAnswer = false) {
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
  /** Accept every device enrolled at the relay with a fleet approval (and its registration in the verified log). */
  enrolled: boolean;
  /** The fleet public key that approves enrolled devices (required for enrolled mode to accept any). */
  fleetPublicKey?: Uint8Array;
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
      // An enrolled (not pinned) device is refused on the relay's word alone: mark it for fromLog.
      const refusal = err instanceof TrustError && this.o.enrolled && !this.pinned.has(did) ? new TrustError(err.code, err.message, true) : err;
      if (refusal instanceof TrustError) this.cache.set(did, { refusal, checkedAt: this.now() });
      throw refusal;
    }
  }

  /**
   * The verified log's word on an enrolled device that the relay's DID answer refused: refreshes
   * the trusted checkpoint, reads the log up to it, and takes the signing key's newest registration
   * leaf (fetched and proved included). When it carries a fleet approval that verifies with the
   * pinned fleet key and holds now, the relay's answer contradicted its own signed log, and the
   * device is trusted from the log (cached as a lookup would be). Otherwise undefined: the log
   * agrees with the refusal. A revocation is still checked from the log afterwards.
   */
  async fromLog(senderKeyId: Uint8Array): Promise<TrustedDevice | undefined> {
    const did = DID_PREFIX + base32Lower(senderKeyId);
    if (!this.o.enrolled || this.o.fleetPublicKey === undefined || this.pinned.has(did)) return undefined;
    await this.o.log.refresh();
    await this.o.revocations.sync(this.o.log.trusted);
    const leafIndex = this.o.revocations.registration(senderKeyId);
    if (leafIndex === undefined || this.o.revocations.revocation(senderKeyId)) return undefined; // the log agrees
    const [entry] = await this.o.client.entries(leafIndex, leafIndex + 1);
    if (entry === undefined || entry.index !== leafIndex) return undefined;
    await this.o.log.proveIncluded(leafHash(entry.data), leafIndex); // entries are unsigned: proved against the signed root
    const logged = decodeLogEntry(entry.data);
    if (logged.type !== 'registration' || logged.approval === undefined || logged.did !== did) return undefined;
    let statement;
    try {
      statement = verifyFleetSignature(logged.approval.statement, logged.approval.signature, this.o.fleetPublicKey);
    } catch (err) {
      if (err instanceof FleetStatementError) return undefined;
      throw err;
    }
    const now = this.now();
    if (now < statement.notBefore || now >= statement.notAfter) return undefined;
    // decodeLogEntry matched the statement's keys to the leaf's key ids, and the DID is the signing key's.
    const device = { did, signingPublicKey: statement.signingPublicKey };
    this.cache.set(did, { device, checkedAt: now });
    return device;
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
      // Enrolled mode: a fleet approval of exactly these keys, and the registration carrying it a
      // leaf of the verified log (so what the relay showed us is what every auditor sees).
      const approval = this.approval(did, record, doc);
      const data = encodeLogEntry({ type: 'registration', signingKeyId: keyId('ML-DSA-65', doc.signingPublicKey), kemKeyId: keyId(doc.kemAlg, doc.kemPublicKey), did, approval });
      if (!Number.isSafeInteger(record.leafIndex) || record.leafIndex < 0) throw new TrustError('bad_registration', `relay record for ${did} has no leaf index`);
      await this.o.log.proveIncluded(leafHash(data), record.leafIndex);
    }
    return { did, signingPublicKey: doc.signingPublicKey };
  }

  /** The device's fleet approval, verified against the pinned fleet key; a TrustError otherwise. */
  private approval(did: string, record: { fleetStatement?: string; fleetSignature?: string }, doc: { signingPublicKey: Uint8Array; kemPublicKey: Uint8Array }): FleetApproval {
    if (this.o.fleetPublicKey === undefined) throw new TrustError('unenrolled_sender', `sender ${did}: no fleet key is pinned, so no enrolled device is trusted`);
    if (typeof record.fleetStatement !== 'string' || typeof record.fleetSignature !== 'string') {
      throw new TrustError('unenrolled_sender', `sender ${did} is enrolled at the relay without a fleet approval`);
    }
    const approval = { statement: new Uint8Array(Buffer.from(record.fleetStatement, 'base64')), signature: new Uint8Array(Buffer.from(record.fleetSignature, 'base64')) };
    try {
      verifyEnrollmentApproval(approval.statement, approval.signature, { fleetPublicKey: this.o.fleetPublicKey, signingPublicKey: doc.signingPublicKey, kemPublicKey: doc.kemPublicKey, now: this.now() });
    } catch (err) {
      if (err instanceof FleetStatementError) {
        // Signed by another key, or none: the fleet never approved this device.
        throw new TrustError(err.code === 'bad_signature' ? 'unenrolled_sender' : 'bad_registration', `sender ${did}: fleet approval refused: ${err.message}`);
      }
      throw err;
    }
    return approval;
  }
}
