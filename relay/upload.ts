/**
 * Inbound envelopes (docs/API.md "POST /v2/envelopes"), as the ordered checks of "Checks, in this
 * order": `admit` runs those that need no body (rate, quota, media type, log congestion, enrolled,
 * not revoked, uploads in progress, declared size, the key's share, memory), `reserve` those the
 * envelope header allows (declared length, sender key id, recipient listed by a receiver key, the
 * key's share, memory) and only then reserves memory for the rest; `accept` those that need the
 * whole envelope (well-formed, still enrolled, signer, signature, not a duplicate), then appends
 * the log leaf, stores the ciphertext and counts the transfer. Nothing is reserved for an upload
 * a header check refuses (issue 11: an unenrolled key held 67 MB of reservations with slow bodies).
 * Every refusal is audited with its code as the outcome.
 */
import { timingSafeEqual } from 'node:crypto';
import { ENVELOPE_MEDIA_TYPE, type UploadBody } from '../protocol/api/index.js';
import { transferLeafFromHash } from '../protocol/log-entries.js';
import type { KeyRecord } from './api-keys.js';
import { CpuTurns } from './cpu-turns.js';
import { EnvelopeError, parseForRelay, signatureValid, type DecodedHeader } from './envelope-check.js';
import type { Plan } from './config.js';
import { ENTRY_OVERHEAD } from './store.js';
import { Refusal, keyRevoked, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

export interface UploadRequest {
  /** Content-Type without parameters, lower case. */
  mediaType: string;
  /** The declared Content-Length, if any. */
  contentLength: number | undefined;
}

/** An upload allowed to send its body: the largest envelope its plan takes, and its plan. */
export interface Admitted {
  limit: number;
  plan: Plan;
}

/** The whole envelope, in a buffer reserved in the store, and its SHA-256. */
export interface ReceivedEnvelope {
  bytes: Buffer;
  sha256: Uint8Array;
}

type AuditDetail = { did?: string; envelopeHash?: string; size?: number };

export const tooLarge = (limit: number, plan: string): Refusal =>
  new Refusal('too_large', `envelope larger than ${limit} bytes, the largest allowed for plan "${plan}"`);
export const malformed = (message: string): Refusal => new Refusal('malformed_envelope', message);
export const memoryFull = (retryAfterMs: number): Refusal => new Refusal('memory_full', 'relay memory is full; retry later', retryAfterMs);
const wrongSigner = (): Refusal => new Refusal('wrong_signer', 'envelope sender is not the device bound to this key');
/** Retry-After of a refusal that ends when one of the key's own uploads ends. */
const UPLOAD_ENDS_MS = 1000;

export class Uploads {
  /** One signature verification per event-loop turn, so timers (the checkpoint signer) stay on time. */
  private readonly cpuTurns = new CpuTurns();

  constructor(private readonly state: RelayState) {}

  admit(key: KeyRecord, request: UploadRequest): Outcome<Admitted> {
    const { plan, envelopeLimit: limit } = this.state.plan(key);
    const wait = this.state.keys.takeRateToken(key, plan);
    if (wait > 0) return this.refused(key, new Refusal('rate_limited', `plan "${key.plan}" allows ${plan.ratePerMinute} uploads per minute`, wait));
    // Retry-After: when the quota period rolls over (an operator may raise the quota sooner).
    if (!this.state.keys.quotaAllows(key, plan)) {
      return this.refused(key, new Refusal('quota_exceeded', `plan "${key.plan}" quota of ${plan.quota} transfers for this period is used up`, this.state.keys.quotaResetsInMs(key, plan)));
    }
    if (request.mediaType !== ENVELOPE_MEDIA_TYPE) return this.refused(key, new Refusal('unsupported_media_type', `expected Content-Type: ${ENVELOPE_MEDIA_TYPE}`));
    // The log's unwritten tiles are RAM: when the disk falls that far behind, uploads wait.
    if (this.state.log.congested) return this.refused(key, new Refusal('log_busy', 'the transparency log is writing a large backlog; retry shortly', 1000));
    const enrolled = this.state.devices.boundTo(key);
    if (enrolled instanceof Refusal) return this.refused(key, enrolled);
    if (this.state.keys.inProgress(key) >= plan.maxConcurrentUploads) {
      return this.refused(key, new Refusal('too_many_uploads', `plan "${key.plan}" allows ${plan.maxConcurrentUploads} uploads in progress per key`, UPLOAD_ENDS_MS));
    }
    const { contentLength } = request;
    if (contentLength !== undefined && contentLength > limit) return this.refused(key, tooLarge(limit, key.plan));
    // Full before the first byte: refuse now, reserve nothing (the HTTP layer discards the body).
    if (contentLength !== undefined) {
      const full = this.roomFor(key, plan, contentLength);
      if (full) return this.refused(key, full);
    }
    return { limit, plan };
  }

  /**
   * The checks the envelope header allows, then the reservation: the buffer of its declared length
   * to receive the body into (given back by accept() or discard()). Runs when the first 109 bytes
   * arrived; nothing of this upload is reserved before.
   */
  reserve(key: KeyRecord, admitted: Admitted, header: DecodedHeader): Outcome<Buffer> {
    const device = this.state.devices.boundTo(key);
    if (device instanceof Refusal) return device;
    const sender = Buffer.from(header.header.senderKeyId);
    const expected = Buffer.from(device.signingKeyId, 'hex');
    if (sender.length !== expected.length || !timingSafeEqual(sender, expected)) return wrongSigner();
    const recipient = Buffer.from(header.header.recipientKeyId).toString('hex');
    // Nobody could ever lease it: held for the whole TTL for nothing (issue 11's flood used such an id).
    if (!this.state.keys.recipientListed(recipient)) {
      return new Refusal('unknown_recipient', `no active receiver key lists recipient key id ${recipient}; issue the receiver key first`);
    }
    const full = this.roomFor(key, admitted.plan, header.totalLength);
    if (full) return full;
    return this.state.store.allocate(header.totalLength, key.id) ?? memoryFull(this.state.retryAfterMs());
  }

  /** Why `size` more bytes of this key do not fit now (its plan's share, then the relay's memory), or undefined. */
  private roomFor(key: KeyRecord, plan: Plan, size: number): Refusal | undefined {
    const usage = this.state.store.usage(key.id);
    if (usage.heldBytes + usage.inFlightBytes + size + ENTRY_OVERHEAD > plan.maxHeldBytes) {
      return new Refusal('key_memory_full', `this key holds ${usage.heldBytes + usage.inFlightBytes} bytes; plan "${key.plan}" allows ${plan.maxHeldBytes} held per key until receivers collect them`, this.state.retryAfterMs());
    }
    if (usage.inFlightBytes + size > plan.maxInFlightBytes) {
      return new Refusal('too_many_uploads', `plan "${key.plan}" allows ${plan.maxInFlightBytes} bytes of uploads in progress per key`, UPLOAD_ENDS_MS);
    }
    if (!this.state.store.canAllocate(size)) return memoryFull(this.state.retryAfterMs());
    return undefined;
  }


  /**
   * One upload, start to end: the checks without the body, then `receive` streams the body in
   * (the HTTP layer's part), then the checks on the whole envelope. A quota slot is held from the
   * moment admit() allowed it (nothing runs in between) until the outcome is known.
   */
  async upload(key: KeyRecord, request: UploadRequest, receive: (admitted: Admitted) => Promise<Outcome<ReceivedEnvelope>>): Promise<Outcome<UploadBody>> {
    const admitted = this.admit(key, request);
    if (admitted instanceof Refusal) return admitted;
    this.state.keys.reserveTransfer(key);
    try {
      const envelope = await receive(admitted);
      if (envelope instanceof Refusal) return this.refused(key, envelope);
      if (key.revokedAt !== undefined) {
        this.state.store.discard(envelope.bytes);
        return this.refused(key, keyRevoked());
      }
      return await this.accept(key, admitted, envelope);
    } finally {
      this.state.keys.releaseTransfer(key);
    }
  }

  /** Audits a refusal of this upload and returns it (also for those found while the body streams in). */
  refused(key: KeyRecord, refusal: Refusal, detail: AuditDetail = {}): Refusal {
    this.state.audit.record({ event: 'upload', keyId: key.id, keyLabel: key.label, ...detail, outcome: refusal.code });
    return refusal;
  }

  /** Takes over `envelope.bytes`: stored on success, discarded (zeroed) otherwise. */
  async accept(key: KeyRecord, admitted: Admitted, envelope: ReceivedEnvelope): Promise<Outcome<UploadBody>> {
    const { bytes, sha256 } = envelope;
    let stored = false;
    try {
      let env;
      try {
        env = parseForRelay(bytes, admitted.limit);
      } catch (err) {
        if (err instanceof EnvelopeError) return this.refused(key, malformed(`envelope: ${err.message}`));
        throw err;
      }
      // Checked again on the whole envelope: the device may have been revoked while the body arrived.
      const device = this.state.devices.boundTo(key);
      if (device instanceof Refusal) return this.refused(key, device);
      const did = device.did;
      const sender = Buffer.from(env.header.senderKeyId);
      const expected = Buffer.from(device.signingKeyId, 'hex');
      if (sender.length !== expected.length || !timingSafeEqual(sender, expected)) return this.refused(key, wrongSigner(), { did, size: bytes.length });
      await this.cpuTurns.next();
      if (!signatureValid(env, this.state.devices.signingKey(device))) {
        return this.refused(key, new Refusal('bad_signature', 'envelope signature does not verify'), { did, size: bytes.length });
      }
      const leaf = transferLeafFromHash(sha256);
      const id = Buffer.from(leaf.envelopeHash).toString('hex');
      if (this.state.store.seen(id)) {
        return this.refused(key, new Refusal('duplicate', 'this envelope is already held or was already delivered'), { did, envelopeHash: id, size: bytes.length });
      }
      // A re-upload of a recent envelope (held ones are refused above) keeps its leaf.
      const leafIndex = (await this.state.log.indexOfLeafHash(leaf.hash)) ?? this.state.log.append(leaf.data);
      this.state.store.add({ id, bytes, recipient: Buffer.from(env.header.recipientKeyId).toString('hex'), uploaderKeyId: key.id, leafIndex });
      stored = true;
      this.state.keys.countTransfer(key);
      this.state.usageChanged();
      this.state.audit.record({ event: 'upload', keyId: key.id, keyLabel: key.label, did, envelopeHash: id, size: bytes.length, outcome: 'ok' });
      return { id, leafIndex, size: bytes.length };
    } finally {
      if (!stored) this.state.store.discard(bytes);
    }
  }
}
