/**
 * Delivery that loses nothing the RAM budget can hold. Per recipient:
 *
 *   queue        encoded frames not yet accepted by the relay (oldest first)
 *   head         the next envelope, sealed once and re-sent as the SAME bytes until accepted
 *                (a lost response then meets 409 duplicate, which counts as accepted)
 *   unconfirmed  accepted envelopes (exact bytes) kept until the relay reports them delivered;
 *                re-uploaded when the relay reports them unknown (it restarted and lost them)
 *
 * Order: before any newer envelope goes out, the relay is asked whether it still holds the
 * newest accepted one. If not (it restarted), everything it lost is re-sent first, oldest first,
 * so a receiver sees each stream in sequence order. (Asking only after uploading, as the periodic
 * status check does, put the re-sends behind the newer frames.)
 *
 * When several frames wait, they are coalesced into one envelope (a frame batch) in order. The
 * whole backlog is RAM only and bounded: on overflow the oldest item goes, counted and logged.
 */
import type { Logger } from '../common/log.js';
import { Backoff } from '../common/backoff.js';
import { formatDuration, formatSize } from '../common/duration.js';
import { RelayError, type RelayClient } from '../common/relay-client.js';
import type { EnvelopeStatus } from '../protocol/api/index.js';
import { CONTENT_TYPE, bucketCapacity, envelopeId, sealEnvelope, type Sender } from '../protocol/envelope/index.js';
import { FRAME_BATCH_HEADER_MAX, joinFrameBatches } from '../protocol/frame.js';
import type { Recipient } from './config.js';

export interface QueuedFrame {
  sequence: bigint;
  /** A one-frame batch (encodeFrames([frame])). */
  batch: Uint8Array;
}

interface Sealed {
  id: string;
  bytes: Uint8Array;
  /** Frame sequences inside, for logs and drop accounting. */
  frames: bigint[];
  /** Frame batches inside, to re-coalesce smaller if the relay refuses the size. */
  batches: QueuedFrame[];
  /**
   * An upload of it got no answer after the request went out (a timeout, a reset, the stop
   * budget's abort): the relay may have it. Cleared by an answer that proves it has (409) or
   * cannot have it (refused for good).
   */
  uncertain?: boolean;
  /** Its upload is under way: dropped now, it may still arrive. */
  uploading?: boolean;
}

interface RecipientLane {
  recipient: Recipient;
  queue: QueuedFrame[];
  head?: Sealed;
  /** Insertion order = age. */
  unconfirmed: Map<string, Sealed & { resend: boolean }>;
}

export interface DeliveryOptions {
  client: RelayClient;
  sender: Sender;
  recipients: Recipient[];
  streamId: number;
  buckets: readonly number[];
  aeadId: number;
  maxBytes: number;
  statusIntervalMs: number;
  /** How often to try again while the relay reports the quota used up (402); at most its Retry-After. */
  quotaRetryMs: number;
  /** Hands out envelope sequence numbers (AgentState.take('envelope', stream)). */
  nextEnvelopeSequence: () => bigint;
  /**
   * The relay refused the key (401) or bound it to no enrolled device (403 device_not_enrolled):
   * the agent re-reads its key file and re-binds after a rotation. True when something changed
   * and the request is worth repeating at once.
   */
  onAuthRefusal?: (err: RelayError) => Promise<boolean>;
  logger: Logger;
  now?: () => number;
}

export interface DeliveryStats {
  queuedFrames: number;
  /** Of queuedFrames: in an upload the stop budget cut off after it was sent (fate unknown). */
  uncertainFrames: number;
  unconfirmed: number;
  /** Frames inside the unconfirmed envelopes (the relay holds them; lost with the backlog if it loses them). */
  unconfirmedFrames: number;
  backlogBytes: number;
  maxBytes: number;
  uploaded: number;
  resent: number;
  delivered: number;
  droppedFrames: number;
  droppedEnvelopes: number;
  expired: number;
  relayReachable: boolean | undefined;
}

/** Shortest wait after a 402, whatever the relay or the config says: never a tight loop. */
const MIN_QUOTA_WAIT_MS = 1_000;
/** 429s less than this apart are one rate-limited spell, logged at warn once (uploads succeed in between). */
const RATE_LIMIT_SPELL_MS = 60_000;
const THRESHOLDS = [90, 75, 50];

/**
 * The relay is down for now: no usable answer or a 5xx, or it says it is stopping or its log is
 * behind (503). "Relay reachable" again once a request succeeds.
 */
function relayDown(err: RelayError): boolean {
  return err.kind === 'unreachable' || err.code === 'shutting_down' || err.code === 'log_busy';
}

export class Delivery {
  private readonly lanes: RecipientLane[];
  private readonly backoff = new Backoff({ initialMs: 500, maxMs: 30_000 });
  private readonly now: () => number;
  private notBefore = 0;
  private lastStatusCheck = 0;
  private pumping: Promise<void> | undefined;
  private level = 0;
  /** A 402 was logged at warn and no upload was accepted since: repeats go to debug (not a warn a minute for days). */
  private quotaRefusalLogged = false;
  /** When the last 429 came; see RATE_LIMIT_SPELL_MS. */
  private lastRateLimitedAt: number | undefined;
  /** A 401 was logged at warn and no upload was accepted since: one warn per spell. */
  private keyRefusalLogged = false;
  /** Frames go out only while this is true (the device is enrolled). */
  enabled = false;
  /** Largest joined batch for a coalesced envelope; shrinks if the relay refuses a size (413). */
  private coalesceLimit: number;
  readonly stats: DeliveryStats;

  constructor(private readonly o: DeliveryOptions) {
    this.lanes = o.recipients.map((recipient) => ({ recipient, queue: [], unconfirmed: new Map() }));
    this.now = o.now ?? Date.now;
    // A coalesced envelope is padded to its bucket: one of the largest (5 MiB) would take a small
    // backlog whole the moment it is sealed, and the bound would then drop what just drained.
    // Up to the largest bucket within half the backlog (at least the smallest bucket).
    const fits = o.buckets.filter((b) => b <= o.maxBytes / 2);
    this.coalesceLimit = bucketCapacity(fits.at(-1) ?? o.buckets[0]!);
    this.stats = { queuedFrames: 0, uncertainFrames: 0, unconfirmed: 0, unconfirmedFrames: 0, backlogBytes: 0, maxBytes: o.maxBytes, uploaded: 0, resent: 0, delivered: 0, droppedFrames: 0, droppedEnvelopes: 0, expired: 0, relayReachable: undefined };
  }

  /** Queues a frame for every recipient and enforces the backlog bound. */
  enqueue(frame: QueuedFrame): void {
    for (const lane of this.lanes) lane.queue.push(frame);
    this.enforceBound();
  }

  /** True when nothing is waiting for upload or re-upload (unconfirmed envelopes the relay holds may remain). */
  get drained(): boolean {
    return this.lanes.every((lane) => lane.queue.length === 0 && lane.head === undefined && ![...lane.unconfirmed.values()].some((sealed) => sealed.resend));
  }

  /** Uploads what it can now and polls delivery status when due. Never throws; one run at a time. */
  pump(): Promise<void> {
    this.pumping ??= this.run().finally(() => {
      this.pumping = undefined;
    });
    return this.pumping;
  }

  /** Pumps until everything waiting is accepted or `ms` passed (SIGTERM). */
  async flush(ms: number): Promise<boolean> {
    const until = this.now() + ms;
    while (!this.drained && this.now() < until) {
      await this.pump();
      if (this.drained) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(200, Math.max(0, until - this.now()))));
    }
    return this.drained;
  }

  private async run(): Promise<void> {
    if (!this.enabled || this.now() < this.notBefore) return;
    try {
      if (!(await this.relayStillHolds())) return;
      for (const lane of this.lanes) {
        if (!(await this.resendUnknown(lane))) return;
        while (lane.queue.length > 0 || lane.head) {
          const sealed = (lane.head ??= this.sealNext(lane));
          const accepted = await this.upload(lane, sealed, false);
          // The full backlog dropped it while the upload was under way (logged as in doubt): not tracked.
          if (lane.head !== sealed) continue;
          if (!accepted) return;
          lane.unconfirmed.set(sealed.id, { ...sealed, resend: false });
          lane.head = undefined;
        }
      }
      if (this.now() - this.lastStatusCheck >= this.o.statusIntervalMs && (await this.checkStatus())) {
        for (const lane of this.lanes) if (!(await this.resendUnknown(lane))) return;
      }
    } catch (err) {
      // A bug here must not stop the interval loop; the backlog keeps everything for the next run.
      this.o.logger.error({ err: (err as Error).message }, 'delivery failed unexpectedly');
    } finally {
      this.updateCounts();
    }
  }

  /** Seals the oldest queued frames (as many as fit one coalesced envelope) for this lane. */
  private sealNext(lane: RecipientLane): Sealed {
    const take: QueuedFrame[] = [];
    let size = FRAME_BATCH_HEADER_MAX;
    for (const frame of lane.queue) {
      const body = frame.batch.length - 6; // a one-frame batch has a 6-byte header
      if (take.length > 0 && size + body > this.coalesceLimit) break;
      take.push(frame);
      size += body;
    }
    lane.queue.splice(0, take.length);
    const plaintext = take.length === 1 ? take[0]!.batch : joinFrameBatches(take.map((f) => f.batch));
    const bytes = sealEnvelope({
      plaintext,
      recipient: { kemId: lane.recipient.kemId, publicKey: lane.recipient.publicKey },
      sender: this.o.sender,
      streamId: this.o.streamId,
      sequence: this.o.nextEnvelopeSequence(),
      contentType: CONTENT_TYPE.READINGS,
      buckets: this.o.buckets,
      aeadId: this.o.aeadId,
    });
    if (take.length > 1) this.o.logger.info({ recipient: lane.recipient.name, frames: take.length, firstFrame: String(take[0]!.sequence), lastFrame: String(take.at(-1)!.sequence), bytes: bytes.length }, 'coalesced backlog frames into one envelope');
    return { id: envelopeId(bytes), bytes, frames: take.map((f) => f.sequence), batches: take };
  }

  /**
   * Before anything newer goes out: does the relay still hold the newest envelope it accepted
   * (one id per recipient)? If it forgot it, it restarted since: a full check flags every lost
   * envelope for re-sending, which run() does before the newer ones. False: stop pumping for now.
   */
  private async relayStillHolds(): Promise<boolean> {
    const newest: string[] = [];
    for (const lane of this.lanes) {
      let last: string | undefined;
      for (const sealed of lane.unconfirmed.values()) if (!sealed.resend) last = sealed.id;
      if (last !== undefined) newest.push(last);
    }
    if (newest.length === 0) return true;
    const statuses = await this.statusOf(newest);
    if (statuses === undefined) return false;
    if (newest.every((id) => statuses[id] !== 'unknown' && statuses[id] !== undefined)) return true;
    return this.checkStatus();
  }

  /** POST /v2/envelopes/status; undefined when it failed (logged, and a backoff set for an outage). */
  private async statusOf(ids: string[]): Promise<Record<string, EnvelopeStatus> | undefined> {
    try {
      const statuses = await this.authorized(() => this.o.client.status(ids));
      this.reachable(true);
      return statuses;
    } catch (err) {
      if (!(err instanceof RelayError)) throw err;
      if (relayDown(err)) this.reachable(false, err.message);
      if (err.kind === 'unauthorized') this.keyRefused(err);
      else this.o.logger.debug({ err: err.message }, 'delivery status check failed');
      // An outage or a refused key: the next upload would fail the same way; wait as after a failed upload.
      this.notBefore = this.now() + Math.max(err.retryAfterMs ?? 0, this.backoff.next());
      return undefined;
    }
  }

  /** Runs a request, repeating it when the agent could act on a key refusal (see onAuthRefusal). */
  private async authorized<T>(request: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (err) {
        // Two fixes may be needed in turn: a new key (401), then binding it to the device (403).
        const authRefusal = err instanceof RelayError && (err.kind === 'unauthorized' || err.code === 'device_not_enrolled');
        if (authRefusal && attempt <= 2 && this.o.onAuthRefusal && (await this.o.onAuthRefusal(err))) continue;
        throw err;
      }
    }
  }

  /** 401: logged at warn once per spell (until an upload is accepted); the backlog stays whole. */
  private keyRefused(err: RelayError): void {
    const logged = this.keyRefusalLogged;
    this.keyRefusalLogged = true;
    this.o.logger[logged ? 'debug' : 'warn']({ status: err.status, code: err.code }, `relay refused the API key; keeping the backlog and re-reading the key file at each retry: ${err.message}`);
  }

  /** Uploads; true when the relay holds it (201 or 409 duplicate). False: stop pumping for now. */
  private async upload(lane: RecipientLane, sealed: Sealed, resend: boolean): Promise<boolean> {
    sealed.uploading = true;
    try {
      await this.authorized(() => this.o.client.upload(sealed.bytes));
    } catch (err) {
      // No answer, but the request may have arrived (connected, then a timeout, a reset, or the
      // stop budget's abort): its fate is unknown until a re-send answers (409 = it had arrived).
      if (err instanceof RelayError && err.status === 0 && err.mayHaveArrived) sealed.uncertain = true;
      if (err instanceof RelayError && err.code === 'duplicate') {
        this.o.logger.debug({ envelope: sealed.id }, 'relay already holds the envelope');
      } else {
        return this.refused(lane, sealed, err);
      }
    } finally {
      sealed.uploading = false;
    }
    this.reachable(true);
    this.backoff.reset();
    if (this.quotaRefusalLogged) this.o.logger.info({ recipient: lane.recipient.name }, 'relay accepts uploads again (quota available)');
    this.quotaRefusalLogged = false;
    this.keyRefusalLogged = false;
    if (resend) this.stats.resent++;
    else this.stats.uploaded++;
    this.o.logger.debug({ recipient: lane.recipient.name, envelope: sealed.id, frames: sealed.frames.map(String), bytes: sealed.bytes.length, resend }, 'envelope uploaded');
    return true;
  }

  private refused(lane: RecipientLane, sealed: Sealed, err: unknown): false {
    if (!(err instanceof RelayError)) throw err;
    const base = { recipient: lane.recipient.name, status: err.status, code: err.code };
    if (err.code === 'quota_exceeded' || err.code === 'rate_limited') {
      this.reachable(true);
      // Quota: retry every quotaRetry (the quota may be raised any time), sooner if the period ends sooner.
      // Rate: the relay says when a token is back; backoff keeps a crowd of agents from retrying in step.
      const wait = err.code === 'quota_exceeded'
        ? Math.max(MIN_QUOTA_WAIT_MS, Math.min(err.retryAfterMs ?? Infinity, this.o.quotaRetryMs))
        : Math.max(err.retryAfterMs ?? 0, this.backoff.next());
      this.notBefore = this.now() + wait;
      this.o.logger[this.continuesRefusal(err.code) ? 'debug' : 'warn']({ ...base, retryIn: formatDuration(wait) }, `relay refused the upload; keeping the backlog: ${err.message}`);
      return false;
    }
    if (err.kind === 'unreachable' || err.kind === 'retryAfter') {
      if (relayDown(err)) this.reachable(false, err.message);
      const wait = Math.max(err.retryAfterMs ?? 0, this.backoff.next());
      this.notBefore = this.now() + wait;
      this.o.logger[err.status === 0 ? 'debug' : 'warn']({ ...base, retryIn: formatDuration(wait) }, `relay refused the upload; keeping the backlog: ${err.message}`);
      return false;
    }
    this.reachable(true);
    const neverTaken = err.kind === 'tooLarge' || err.code === 'malformed_envelope';
    // Dropped by the full backlog while its upload was under way: its frames are counted already.
    if (neverTaken && lane.head !== sealed && !lane.unconfirmed.has(sealed.id)) return false;
    if (neverTaken && sealed.batches.length > 1) {
      // Too big for the plan (or the relay): put the frames back and coalesce smaller.
      this.coalesceLimit = Math.max(1024, Math.floor(this.coalesceLimit / 4));
      if (lane.head === sealed) lane.head = undefined;
      // A refused re-send (the plan shrank across a relay restart) must not be re-sent again, and
      // several of them re-split in turn must not land ahead of each other: merge by sequence.
      lane.unconfirmed.delete(sealed.id);
      lane.queue = [...sealed.batches, ...lane.queue].sort((a, b) => (a.sequence < b.sequence ? -1 : a.sequence > b.sequence ? 1 : 0));
      this.o.logger.warn({ ...base, coalesceLimit: formatSize(this.coalesceLimit) }, 'relay refused a coalesced envelope; coalescing smaller');
      return false;
    }
    if (neverTaken) {
      // One frame the relay will never take: keeping it would block every later frame. The same
      // bytes were never taken before either: nothing is in doubt.
      sealed.uncertain = false;
      if (lane.head === sealed) lane.head = undefined;
      lane.unconfirmed.delete(sealed.id);
      this.dropped(sealed, `relay refused the envelope for good (${err.code})`);
      return false;
    }
    // Key revoked, device not enrolled or revoked, any other refusal. Keep everything; an operator
    // must act (a rotated key file is picked up at the next retry).
    const wait = Math.max(this.backoff.next(), 5_000);
    this.notBefore = this.now() + wait;
    if (err.kind === 'unauthorized') this.keyRefused(err);
    else this.o.logger.error({ ...base, retryIn: formatDuration(wait) }, `relay refused the device: ${err.message}`);
    return false;
  }

  /** True when this 402/429 continues one already logged at warn; records it either way. */
  private continuesRefusal(code: 'quota_exceeded' | 'rate_limited'): boolean {
    if (code === 'quota_exceeded') {
      const logged = this.quotaRefusalLogged;
      this.quotaRefusalLogged = true;
      return logged;
    }
    const now = this.now();
    const previous = this.lastRateLimitedAt;
    this.lastRateLimitedAt = now;
    return previous !== undefined && now - previous < RATE_LIMIT_SPELL_MS;
  }

  private async resendUnknown(lane: RecipientLane): Promise<boolean> {
    for (const sealed of lane.unconfirmed.values()) {
      if (!sealed.resend) continue;
      if (!(await this.upload(lane, sealed, true))) return false;
      sealed.resend = false;
    }
    return true;
  }

  /** Asks the status of every unconfirmed envelope; flags the ones the relay lost. False when a request failed. */
  private async checkStatus(): Promise<boolean> {
    this.lastStatusCheck = this.now();
    const all = this.lanes.flatMap((lane) => [...lane.unconfirmed.values()].map((sealed) => ({ lane, sealed })));
    for (let i = 0; i < all.length; i += 1000) {
      const chunk = all.slice(i, i + 1000);
      const statuses = await this.statusOf(chunk.map((c) => c.sealed.id));
      if (statuses === undefined) return false;
      let unknown = 0;
      for (const { lane, sealed } of chunk) {
        const status = statuses[sealed.id];
        if (status === 'delivered') {
          lane.unconfirmed.delete(sealed.id);
          this.stats.delivered++;
        } else if (status === 'expired') {
          lane.unconfirmed.delete(sealed.id);
          this.stats.expired++;
          this.o.logger.warn({ recipient: lane.recipient.name, envelope: sealed.id, frames: sealed.frames.map(String) }, 'relay expired an envelope before any receiver took it (ttl); its frames are lost');
        } else if (status === 'unknown' || status === undefined) {
          sealed.resend = true;
          unknown++;
        }
      }
      if (unknown > 0) this.o.logger.warn({ envelopes: unknown }, 'relay no longer knows accepted envelopes (restarted?); re-sending the same bytes, oldest first, before newer frames');
    }
    return true;
  }

  /**
   * At stop: one last status check so envelopes a receiver took meanwhile are not counted as lost.
   * Best effort within the caller's budget (its abort ends it).
   */
  async confirmDelivered(): Promise<void> {
    if (this.stats.unconfirmed === 0 && this.lanes.every((lane) => lane.unconfirmed.size === 0)) return;
    try {
      if (await this.checkStatus()) for (const lane of this.lanes) if (!(await this.resendUnknown(lane))) break;
    } catch (err) {
      this.o.logger.debug({ err: (err as Error).message }, 'last delivery status check failed');
    } finally {
      this.updateCounts();
    }
  }

  private reachable(up: boolean, reason?: string): void {
    if (this.stats.relayReachable === up) return;
    this.stats.relayReachable = up;
    if (up) this.o.logger.info({ relay: this.o.client.baseUrl }, 'relay reachable');
    else this.o.logger.warn({ relay: this.o.client.baseUrl, reason }, 'relay unreachable; frames are kept in the RAM backlog');
  }

  private bytesUsed(): number {
    let total = 0;
    for (const lane of this.lanes) {
      for (const f of lane.queue) total += f.batch.length;
      if (lane.head) total += lane.head.bytes.length;
      for (const s of lane.unconfirmed.values()) total += s.bytes.length;
    }
    return total;
  }

  /** Drops the oldest items until the backlog fits: confirmed-by-relay envelopes first, then queued frames. */
  private enforceBound(): void {
    let used = this.bytesUsed();
    while (used > this.o.maxBytes) {
      const lane = this.lanes.reduce((a, b) => (this.oldestSize(b) > this.oldestSize(a) ? b : a));
      const oldest = lane.unconfirmed.values().next();
      if (!oldest.done) {
        lane.unconfirmed.delete(oldest.value.id);
        used -= oldest.value.bytes.length;
        this.stats.droppedEnvelopes++;
        this.o.logger.warn({ recipient: lane.recipient.name, envelope: oldest.value.id, frames: oldest.value.frames.map(String) }, 'backlog full: stopped tracking the oldest accepted envelope (the relay still holds it; it cannot be re-sent if the relay restarts)');
      } else if (lane.head) {
        used -= lane.head.bytes.length;
        if (lane.head.uploading) lane.head.uncertain = true;
        this.dropped(lane.head, 'backlog full');
        lane.head = undefined;
      } else if (lane.queue.length > 0) {
        const frame = lane.queue.shift()!;
        used -= frame.batch.length;
        this.stats.droppedFrames++;
        this.o.logger.warn({ recipient: lane.recipient.name, frame: String(frame.sequence), dropped: this.stats.droppedFrames }, 'backlog full: dropped the oldest frame');
      } else break;
    }
    this.updateCounts();
  }

  /**
   * The frame numbers behind the counts in stats, for the stop line: not accepted (queued or in
   * the upload under way), of those the uncertain ones, and accepted but not delivered. A frame
   * waiting for several recipients is listed once.
   */
  backlogFrames(): { unflushed: bigint[]; uncertain: bigint[]; undelivered: bigint[] } {
    const unflushed = new Set<bigint>();
    const uncertain = new Set<bigint>();
    const undelivered = new Set<bigint>();
    for (const lane of this.lanes) {
      for (const f of lane.queue) unflushed.add(f.sequence);
      for (const f of lane.head?.frames ?? []) (lane.head!.uncertain ? uncertain : unflushed).add(f);
      for (const sealed of lane.unconfirmed.values()) for (const f of sealed.frames) undelivered.add(f);
    }
    return { unflushed: [...unflushed], uncertain: [...uncertain], undelivered: [...undelivered] };
  }

  private oldestSize(lane: RecipientLane): number {
    return lane.unconfirmed.size + (lane.head ? 1 : 0) + lane.queue.length;
  }

  private dropped(sealed: Sealed, why: string): void {
    this.stats.droppedFrames += sealed.frames.length;
    // An upload that got no answer may have arrived: say so rather than claim the frames are gone.
    const doubt = sealed.uncertain ? ' whose upload is under way or got no answer (the relay may have them)' : '';
    this.o.logger.warn({ envelope: sealed.id, frames: sealed.frames.map(String), dropped: this.stats.droppedFrames, ...(sealed.uncertain ? { uncertain: true } : {}) }, `${why}: dropped ${sealed.frames.length} frame(s)${doubt}`);
  }

  private updateCounts(): void {
    this.stats.backlogBytes = this.bytesUsed();
    this.stats.queuedFrames = this.lanes.reduce((n, lane) => n + lane.queue.length + (lane.head?.frames.length ?? 0), 0);
    this.stats.uncertainFrames = this.lanes.reduce((n, lane) => n + (lane.head?.uncertain ? lane.head.frames.length : 0), 0);
    this.stats.unconfirmed = this.lanes.reduce((n, lane) => n + lane.unconfirmed.size, 0);
    this.stats.unconfirmedFrames = this.lanes.reduce((n, lane) => n + [...lane.unconfirmed.values()].reduce((m, sealed) => m + sealed.frames.length, 0), 0);
    const percent = (this.stats.backlogBytes / this.o.maxBytes) * 100;
    const level = THRESHOLDS.find((t) => percent >= t) ?? 0;
    if (level !== this.level) {
      const rising = level > this.level;
      this.level = level;
      this.o.logger[rising ? 'warn' : 'info']({ backlogBytes: this.stats.backlogBytes, maxBytes: this.o.maxBytes, percent: Math.round(percent) }, rising ? `backlog above ${level} %` : level === 0 ? 'backlog below 50 %' : `backlog down to ${level} %`);
    }
  }
}

/** Frame numbers as ranges for a log line: [1,2,3,7] -> "1-3,7" ("" for none). */
export function frameRanges(frames: readonly bigint[]): string {
  const sorted = [...new Set(frames)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1n) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
