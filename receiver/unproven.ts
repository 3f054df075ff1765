/**
 * Relay answers that prove nothing (docs/RECEIVER.md "Fault model"): an unsigned or malformed
 * checkpoint, another key, a garbage proof, entries that do not hash to the signed root. Anyone
 * on the path could have sent one, so none stops the receiver; this is the one owner of their
 * count and of the warn and alert lines about them.
 */
import type { Logger } from '../common/log.js';

/** checkpoint: the periodic checkpoint fetch; envelope: a lease answer or the proofs for one leased envelope. */
export type Source = 'checkpoint' | 'envelope';

export interface UnprovenOptions {
  logger: Logger;
  /** Continuous time of nothing but unproven answers after which an error-level alert is logged (and again every such period). */
  alertAfterMs: number;
  now?: () => number;
}

export class UnprovenAnswers {
  /** Answers that proved nothing, since start. */
  count = 0;
  /** Alert lines logged, since start. */
  alerts = 0;
  /** Start of the current run of failures (undefined: the last answer verified). */
  private since: number | undefined;
  private lastAlert: number | undefined;
  /** Where the last failure was: a verified checkpoint does not end a run of garbage inclusion proofs. */
  private lastSource: Source | undefined;
  private readonly now: () => number;

  constructor(private readonly o: UnprovenOptions) {
    this.now = o.now ?? Date.now;
  }

  /** True while answers keep failing (since the last verified one). */
  get failing(): boolean {
    return this.since !== undefined;
  }

  /** One more answer that proved nothing; `reason` is its code. The caller retries after its backoff. */
  failed(source: Source, reason: string, message: string, context: Record<string, unknown> = {}): void {
    const now = this.now();
    this.count++;
    this.lastSource = source;
    this.since ??= now;
    const failingMs = now - this.since;
    this.o.logger.warn({ ...context, reason, failingMs, unproven: this.count }, `relay answer proves nothing, retrying: ${message}`);
    if (failingMs >= this.o.alertAfterMs && (this.lastAlert === undefined || now - this.lastAlert >= this.o.alertAfterMs)) {
      this.alerts++;
      this.lastAlert = now;
      this.o.logger.error(
        { alert: 'relay_unproven', reason, failingMs, unproven: this.count, alertAfterMs: this.o.alertAfterMs },
        `ALERT: for ${failingMs} ms the relay has answered nothing this receiver could verify (last: ${reason}); nothing is opened or acknowledged meanwhile. Check the path to the relay and the relay itself`,
      );
    }
  }

  /**
   * An answer verified. An envelope's inclusion proven ends any run of failures; a verified
   * checkpoint ends only a run whose last failure was a checkpoint (the proofs may still be garbage).
   */
  verified(source: Source): void {
    if (this.since === undefined || (source === 'checkpoint' && this.lastSource !== 'checkpoint')) return;
    this.o.logger.info({ failedForMs: this.now() - this.since, unproven: this.count }, 'relay answers verify again');
    this.since = undefined;
    this.lastAlert = undefined;
  }
}
