/**
 * The receive loop: lease -> check -> open -> sinks -> persist replay state -> ack.
 *
 * Checks, in order (docs/RECEIVER.md): envelope id matches the bytes, structure, trusted and
 * non-revoked sender, ML-DSA-65 signature, creation time window, inclusion of the envelope hash in
 * a checkpoint consistent with the trusted one, anti-replay window, decryption, frame decoding.
 * A refused envelope is logged with its reason, counted and acknowledged (the relay burns it, the
 * log keeps its hash). A transient problem (sink down, proof not signed yet, relay unreachable)
 * releases the lease and backs off. A relay answer that proves nothing (unsigned or malformed
 * checkpoint, garbage proof: UnprovenAnswers) is treated the same way, counted and alerted on: it
 * could come from anyone on the path. Only signed conflicting history (fork, rollback) stops the
 * receiver, with the evidence saved: nothing more is opened until an operator looks.
 */
import type { Logger } from '../common/log.js';
import { Backoff, sleep } from '../common/backoff.js';
import { RelayClient, RelayError, type Lease } from '../common/relay-client.js';
import { CONTENT_TYPE, EnvelopeError, envelopeId, openEnvelope, parseEnvelope, verifyEnvelope, type RecipientPrivate } from '../protocol/envelope/index.js';
import { decodeFrames, FrameError } from '../protocol/frame.js';
import { transferLeaf } from '../protocol/log-entries.js';
import { LogIntegrityError, NotYetLoggedError, type LogTrust } from '../common/log-trust.js';
import { DeviceTrust, TrustError, type TrustedDevice } from './trust.js';
import { fingerprint, streamKey } from './replay-window.js';
import type { ReplayStore } from './state.js';
import { toRecords } from './records.js';
import { SinkError, type Sink } from './sinks/sink.js';
import { StateFileError } from '../common/state-errors.js';
import { saveEvidence } from './state.js';
import { UnprovenAnswers, type Source } from './unproven.js';

export type RefusalCode =
  | 'id_mismatch' | 'malformed' | 'untrusted_sender' | 'unenrolled_sender' | 'revoked_sender' | 'bad_registration'
  | 'bad_signature' | 'wrong_signer' | 'too_old' | 'from_future' | 'replay' | 'wrong_recipient' | 'decrypt_failed'
  | 'bad_padding' | 'unsupported_content_type' | 'bad_frame';

export class Refusal extends Error {
  constructor(readonly code: RefusalCode, message: string) {
    super(message);
    this.name = 'Refusal';
  }
}

export type Outcome = 'delivered' | 'duplicate' | 'refused' | 'retry';

/** The relay refuses this receiver's key (401) or its role (403 forbidden): an operator must act. */
export function refusesReceiver(err: RelayError): boolean {
  return err.kind === 'unauthorized' || err.code === 'forbidden';
}

export interface ReceiverOptions {
  client: RelayClient;
  recipient: RecipientPrivate;
  recipientKeyId: string;
  log: LogTrust;
  trust: DeviceTrust;
  replay: ReplayStore;
  sinks: Sink[];
  logger: Logger;
  stateDir: string;
  maxAgeMs: number;
  maxFutureMs: number;
  waitMs: number;
  checkpointIntervalMs: number;
  retry: { initialMs: number; maxMs: number };
  /** Relay answers that prove nothing: counted, warned about, alerted on (relay.unprovenAlertAfter); shared with the start. */
  unproven: UnprovenAnswers;
  now?: () => number;
}

/**
 * A leaf not yet in a signed checkpoint is normal for a few hundred ms after an upload; only when
 * the relay keeps not signing for this long is it worth a warning (a stuck or misbehaving relay).
 */
export const NOT_YET_LOGGED_WARN_MS = 10_000;

/** Exit codes of `ghostpipe receive`. */
export const EXIT = { ok: 0, integrity: 3, relayAuth: 4 } as const;

export class Receiver {
  readonly counts = { delivered: 0, readings: 0, duplicates: 0, refused: 0, retries: 0, notYetLogged: 0, lateAcks: 0, goneAtAck: 0, didFromLog: 0 };
  readonly refusals: Partial<Record<RefusalCode, number>> = {};
  private readonly now: () => number;
  private readonly stopping = new AbortController();
  /** Why run() stopped on a local write failure (for the CLI's one-line error). */
  stoppedBy: string | undefined;
  /** Since when envelopes keep waiting for a signed checkpoint (undefined: none waiting). */
  private notLoggedSince: number | undefined;
  /** Relay answers that proved nothing: their count and alerts are in status(). */
  readonly unproven: UnprovenAnswers;

  constructor(private readonly o: ReceiverOptions) {
    this.now = o.now ?? Date.now;
    this.unproven = o.unproven;
  }

  /** The counters of the `receiver stopped` line (and of any status output): envelopes and unproven answers. */
  status(): Record<string, unknown> {
    return { ...this.counts, unproven: this.unproven.count, alerts: this.unproven.alerts, refusals: this.refusals };
  }

  stop(): void {
    this.stopping.abort();
  }

  /** Runs until stop() (exit 0) or a condition an operator must handle (non-zero exit code). */
  async run(): Promise<number> {
    const { logger } = this.o;
    const backoff = new Backoff({ initialMs: this.o.retry.initialMs, maxMs: this.o.retry.maxMs });
    let lastCheckpoint = 0;
    while (!this.stopping.signal.aborted) {
      let stage: Source = 'checkpoint';
      try {
        if (this.now() - lastCheckpoint >= this.o.checkpointIntervalMs) {
          const { size, changed } = await this.o.log.refresh();
          if (changed) logger.debug({ size }, 'checkpoint trusted');
          this.unproven.verified('checkpoint');
          lastCheckpoint = this.now();
        }
        stage = 'envelope';
        const wait = Math.min(this.o.waitMs, this.o.checkpointIntervalMs);
        const lease = await this.untilStopped(this.o.client.lease(this.o.recipientKeyId, { waitMs: wait }));
        if (lease === undefined || lease === null) continue;
        const outcome = await this.handle(lease);
        if (outcome === 'retry') {
          this.counts.retries++;
          await sleep(backoff.next(), this.stopping.signal);
        } else {
          backoff.reset();
        }
      } catch (err) {
        if (err instanceof LogIntegrityError && err.kind !== 'unproven') return this.integrityFailure(err);
        if (isUnproven(err)) {
          this.unproven.failed(stage, err instanceof LogIntegrityError ? err.code : 'bad_response', (err as Error).message);
          await sleep(backoff.next(), this.stopping.signal);
          continue;
        }
        if (err instanceof StateFileError || (err instanceof SinkError && err.localFailure)) {
          // A local write failed (full disk): the in-memory state is ahead of the disk, so stop (docs/RELIABILITY.md).
          const exitCode = err instanceof StateFileError ? err.exitCode : err.localFailure!.exitCode;
          logger.fatal({ exitCode }, `${err.message}; stopping`);
          this.stoppedBy = err.message;
          return exitCode;
        }
        // not_found: the recipient is not on this key (the relay answers as if the inbox did not exist).
        if (err instanceof RelayError && (refusesReceiver(err) || err.code === 'not_found')) {
          logger.fatal({ reason: err.code, status: err.status }, `the relay refuses this receiver: ${err.message}`);
          return EXIT.relayAuth;
        }
        const delay = backoff.next();
        logger.warn({ reason: err instanceof RelayError ? err.code : (err as Error).name, retryInMs: delay }, `relay: ${(err as Error).message}`);
        await sleep(delay, this.stopping.signal);
      }
    }
    return EXIT.ok;
  }

  private async untilStopped<T>(promise: Promise<T>): Promise<T | undefined> {
    const signal = this.stopping.signal;
    if (signal.aborted) return undefined;
    let onAbort!: () => void;
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    // A lease that arrives after stop is simply not acknowledged: the relay re-queues it after its lease timeout.
    promise.catch(() => undefined);
    try {
      return await Promise.race([promise, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async integrityFailure(err: LogIntegrityError): Promise<number> {
    let evidenceFile: string | undefined;
    if (err.evidence) evidenceFile = await saveEvidence(this.o.stateDir, err.code, err.evidence, err.message).catch(() => undefined);
    this.o.logger.fatal(
      { reason: err.code, trustedSize: this.o.log.trusted.size, evidence: evidenceFile },
      `transparency log check failed (${err.code}): ${err.message}; refusing to open anything until an operator investigates`,
    );
    return EXIT.integrity;
  }

  /** Processes one leased envelope. Throws only a signed LogIntegrityError and relay errors outside the envelope's fault. */
  async handle(lease: Lease): Promise<Outcome> {
    const { logger } = this.o;
    const bytes = lease.bytes;
    const id = envelopeId(bytes);
    let context: Record<string, unknown> = { envelope: lease.envelopeId, leafIndex: lease.leafIndex };
    try {
      if (id !== lease.envelopeId) throw new Refusal('id_mismatch', `relay says envelope ${lease.envelopeId}, the bytes hash to ${id}`);
      const env = this.step(() => parseEnvelope(bytes));
      const h = env.header;
      context = { ...context, stream: h.streamId, seq: h.sequence.toString() };
      const device = await this.resolve(h.senderKeyId, context);
      context = { ...context, device: device.did };
      this.step(() => verifyEnvelope(env, device.signingPublicKey));
      const now = this.now();
      if (now - h.createdAt > this.o.maxAgeMs) throw new Refusal('too_old', `created ${new Date(h.createdAt).toISOString()}, older than ${this.o.maxAgeMs} ms`);
      if (h.createdAt - now > this.o.maxFutureMs) throw new Refusal('from_future', `created ${new Date(h.createdAt).toISOString()}, more than ${this.o.maxFutureMs} ms ahead of this clock`);
      await this.o.log.proveIncluded(transferLeaf(bytes).hash, lease.leafIndex);
      this.notLoggedSince = undefined;
      await this.o.trust.checkLogRevocation(h.senderKeyId);
      this.unproven.verified('envelope'); // after both proofs: lying entries must not end a run of failures

      const key = streamKey(Buffer.from(h.senderKeyId).toString('hex'), h.streamId);
      const fp = fingerprint(id);
      const verdict = this.o.replay.window.check(key, h.sequence, fp);
      if (verdict === 'duplicate') {
        this.counts.duplicates++;
        logger.debug(context, 'duplicate envelope dropped (already delivered)');
        await this.ack(lease, context);
        return 'duplicate';
      }
      if (verdict !== 'new') {
        throw new Refusal('replay', verdict === 'replay_old'
          ? `sequence ${h.sequence} is older than the replay window (highest ${this.o.replay.window.highest(key)})`
          : `sequence ${h.sequence} was already delivered with another envelope`);
      }

      const plaintext = this.step(() => openEnvelope(env, this.o.recipient, device.signingPublicKey));
      if (h.contentType !== CONTENT_TYPE.READINGS) throw new Refusal('unsupported_content_type', `content type ${h.contentType} is not readings (${CONTENT_TYPE.READINGS})`);
      let records;
      try {
        records = toRecords(decodeFrames(plaintext), { device: device.did, seq: h.sequence, stream: h.streamId, envelope: id });
      } catch (err) {
        if (err instanceof FrameError) throw new Refusal('bad_frame', `frame ${err.code}: ${err.message}`);
        throw err;
      } finally {
        plaintext.fill(0);
      }

      for (const sink of this.o.sinks) await sink.write(records);
      await this.o.replay.record(key, h.sequence, fp); // durable before the ack: a re-delivery is then a duplicate
      this.counts.delivered++;
      this.counts.readings += records.length;
      logger.debug({ ...context, readings: records.length }, 'envelope delivered');
      await this.ack(lease, context);
      return 'delivered';
    } catch (err) {
      if (err instanceof Refusal || err instanceof TrustError) {
        const code = err.code as RefusalCode;
        this.counts.refused++;
        this.refusals[code] = (this.refusals[code] ?? 0) + 1;
        logger.warn({ ...context, reason: code }, `envelope refused: ${err.message}`);
        await this.ack(lease, context);
        return 'refused';
      }
      if (err instanceof NotYetLoggedError) {
        this.counts.notYetLogged++;
        this.notLoggedSince ??= this.now();
        const waitedMs = this.now() - this.notLoggedSince;
        const level = waitedMs >= NOT_YET_LOGGED_WARN_MS ? 'warn' : 'debug';
        logger[level]({ ...context, reason: 'not_yet_logged', waitedMs, count: this.counts.notYetLogged }, `envelope not in a signed checkpoint yet, will retry: ${err.message}`);
        await this.o.client.release(lease.leaseId).catch(() => undefined);
        return 'retry';
      }
      if (isUnproven(err)) {
        // Not opened, not acknowledged: the envelope stays at the relay for an answer that proves its inclusion.
        await this.o.client.release(lease.leaseId).catch(() => undefined);
        this.unproven.failed('envelope', err instanceof LogIntegrityError ? err.code : 'bad_response', (err as Error).message, context);
        return 'retry';
      }
      if ((err instanceof SinkError && !err.localFailure) || (err instanceof RelayError && !refusesReceiver(err))) {
        logger.warn({ ...context, reason: err instanceof SinkError ? 'sink_failed' : err.code }, `envelope not delivered yet, will retry: ${err.message}`);
        await this.o.client.release(lease.leaseId).catch(() => undefined);
        return 'retry';
      }
      await this.o.client.release(lease.leaseId).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The sender device. A refusal that rests only on the relay's unsigned DID answer is checked
   * against the verified log first: when the log holds the device's valid fleet-approved
   * registration, the relay contradicted its own log and the logged registration is used.
   */
  private async resolve(senderKeyId: Uint8Array, context: Record<string, unknown>): Promise<TrustedDevice> {
    try {
      return await this.o.trust.resolve(senderKeyId);
    } catch (err) {
      if (!(err instanceof TrustError) || !err.relayAnswer) throw err;
      const device = await this.o.trust.fromLog(senderKeyId);
      if (device === undefined) throw err;
      this.counts.didFromLog++;
      this.o.logger.warn({ ...context, reason: 'did_answer_contradicts_log', relayAnswer: err.code }, `the relay's DID answer contradicts its signed log (${err.message}); using the device's logged registration`);
      return device;
    }
  }

  private step<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof EnvelopeError) {
        const code: RefusalCode = ['bad_signature', 'wrong_signer', 'wrong_recipient', 'decrypt_failed', 'bad_padding'].includes(err.code) ? (err.code as RefusalCode) : 'malformed';
        throw new Refusal(code, `${err.code}: ${err.message}`);
      }
      throw err;
    }
  }

  private async ack(lease: Lease, context: Record<string, unknown>): Promise<void> {
    try {
      await this.o.client.ack(lease.leaseId);
    } catch (err) {
      if (err instanceof RelayError && err.code === 'lease_expired') {
        // Already handled here; if another receiver leased it meanwhile, it may deliver it once more.
        this.counts.lateAcks++;
        this.o.logger.warn({ ...context, reason: 'lease_expired' }, 'lease expired before the acknowledgement; raise the relay leaseTimeout if this repeats');
        return;
      }
      if (err instanceof RelayError && err.code === 'not_found') {
        // The relay let go of the envelope while we held it (its TTL ended, an operator purged it,
        // or the relay restarted). It was handled here: nothing to retry, and the relay's status
        // for it (and so the agent's count) says expired although it was delivered.
        this.counts.goneAtAck++;
        this.o.logger.warn({ ...context, reason: 'gone_at_ack' }, 'the relay no longer held the envelope at the acknowledgement (its TTL ended, it was purged, or the relay restarted); it was handled here, and its sender may count it as expired');
        return;
      }
      throw err;
    }
  }
}

/** A log answer that proves nothing, or a relay answer that is not even well-formed. */
function isUnproven(err: unknown): boolean {
  return (err instanceof LogIntegrityError && err.kind === 'unproven') || (err instanceof RelayError && err.code === 'bad_response');
}
