/**
 * The edge agent: every interval, collect from the taps by the deadline, build one frame, queue
 * it for every recipient and let Delivery seal and upload it. A frame goes out every interval,
 * changed or not, so the wire shows a constant cadence. See docs/AGENT.md.
 */
import type { Logger } from '../common/log.js';
import { formatDuration, formatSize } from '../common/duration.js';
import { RelayClient } from '../relay/client.js';
import { encodeFrames, type Frame } from '../protocol/frame.js';
import { aeadId, tapInterval, type AgentConfig, type AgentSecrets } from './config.js';
import { collectInterval, type ScheduledTap } from './collect.js';
import { Delivery } from './delivery.js';
import { checkEnrollment, type Enrollment } from './enroll.js';
import { AgentState } from './state.js';
import { createTap, tapEventLogger } from './taps.js';
import { startTaps, type Reading } from './tap.js';

function tapStatus(s: ScheduledTap): { state: 'up' | 'down'; reason?: string } {
  const status = s.tap.status();
  return status.state === 'up' ? { state: 'up' } : { state: 'down', reason: status.reason ?? 'down' };
}

export interface AgentOptions {
  config: AgentConfig;
  secrets: AgentSecrets;
  logger: Logger;
  /** SIGTERM: how long to keep flushing to the relay before exiting. */
  flushMs?: number;
  /** Do not schedule intervals; the caller runs runInterval() (benchmarks). */
  manual?: boolean;
}

/** Settings a SIGHUP reload cannot change (they shape keys, state or the backlog): restart instead. */
const RESTART_ONLY = ['device', 'relay', 'recipients', 'streamId', 'padding', 'aead', 'kem', 'backlog', 'stateDir'] as const;

export class Agent {
  private config: AgentConfig;
  private readonly logger: Logger;
  private readonly state: AgentState;
  private readonly client: RelayClient;
  readonly delivery: Delivery;
  private taps: ScheduledTap[] = [];
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<void> | undefined;
  private stopping = false;
  private nextStart = 0;
  private enrollment: Enrollment;
  private lastEnrollmentCheck = 0;
  private readonly onTapEvent;
  framesBuilt = 0;
  /** Quality counts of the last frame built (doctor and benchmarks). */
  lastQuality = { good: 0, uncertain: 0, bad: 0 };

  constructor(private readonly o: AgentOptions) {
    this.config = o.config;
    this.logger = o.logger;
    this.onTapEvent = tapEventLogger(o.logger);
    const { config, secrets } = o;
    this.state = new AgentState(config.stateDir, undefined, (reason, writes) => this.logger.info({ file: this.state?.path, writes }, `state saved: ${reason}`));
    this.client = new RelayClient({ baseUrl: config.relay.url, apiKey: secrets.apiKey, timeoutMs: config.relay.timeout });
    this.enrollment = { state: 'unknown', did: secrets.device.did, reason: 'not checked yet' };
    this.delivery = new Delivery({
      client: this.client,
      sender: { seed: secrets.device.signing.seed, publicKey: secrets.device.signing.publicKey },
      recipients: secrets.recipients,
      streamId: config.streamId,
      buckets: config.padding.buckets,
      aeadId: aeadId(config),
      maxBytes: config.backlog.maxSize,
      statusIntervalMs: config.relay.statusInterval,
      quotaRetryMs: config.relay.quotaRetry,
      nextEnvelopeSequence: () => this.state.take('envelope', config.streamId),
      logger: this.logger,
    });
  }

  get did(): string {
    return this.o.secrets.device.did;
  }

  async start(): Promise<void> {
    const { config } = this;
    this.state.reserve(config.streamId);
    this.logger.info(
      { did: this.did, relay: config.relay.url, interval: formatDuration(config.interval), taps: config.taps.length, recipients: this.o.secrets.recipients.map((r) => r.name), backlog: formatSize(config.backlog.maxSize) },
      'agent starting',
    );
    await this.checkEnrollment(true);
    await this.startTaps(config);
    this.nextStart = Date.now();
    if (!this.o.manual) this.schedule();
  }

  private async checkEnrollment(atStart = false): Promise<void> {
    this.lastEnrollmentCheck = Date.now();
    const result = await checkEnrollment(this.client, this.did);
    const changed = result.state !== this.enrollment.state;
    if (result.state === 'unknown') {
      // Relay unreachable: trust what this device recorded the last time it could ask.
      const recorded = this.state.enrollment;
      const trusted = recorded?.did === this.did && recorded.relay === this.config.relay.url;
      this.delivery.enabled = trusted;
      if (changed || atStart) this.logger.warn({ did: this.did, reason: result.reason, recordedEnrollment: trusted }, trusted ? 'cannot check enrollment now; the state records this device as enrolled' : 'cannot check enrollment now; not sending until the relay confirms it');
    } else if (result.state === 'enrolled') {
      this.delivery.enabled = true;
      this.state.recordEnrollment({ did: this.did, relay: this.config.relay.url, leafIndex: result.leafIndex });
      if (changed || atStart) this.logger.info({ did: this.did, leafIndex: result.leafIndex }, 'device enrolled with the relay');
    } else {
      this.delivery.enabled = false;
      this.state.recordEnrollment(undefined);
      if (changed || atStart) this.logger.error({ did: this.did, reason: result.reason }, 'device is not enrolled: refusing to send (run `ghostpipe enroll --config …`); frames stay in the RAM backlog');
    }
    this.enrollment = result;
  }

  private async startTaps(config: AgentConfig): Promise<void> {
    this.taps = config.taps.map((tc) => ({ tap: createTap(config, tc, { logger: this.logger, onEvent: this.onTapEvent }), intervalMs: tapInterval(config, tc) }));
    // start() should not reject for a dead peer; if it does, the tap reports bad readings.
    await startTaps(this.taps.map((s) => s.tap), (tap, err) => this.logger.warn({ tap: tap.name, reason: err.message }, 'tap failed to start'));
  }

  private async stopTaps(taps: ScheduledTap[]): Promise<void> {
    await Promise.all(taps.map((s) => s.tap.stop().catch((err: unknown) => this.logger.warn({ tap: s.tap.name, reason: (err as Error).message }, 'tap failed to stop'))));
  }

  private schedule(): void {
    if (this.stopping) return;
    const now = Date.now();
    // Skip interval starts that already passed (an overloaded interval): never two frames at once.
    while (this.nextStart < now - this.config.interval / 2) this.nextStart += this.config.interval;
    this.timer = setTimeout(() => {
      const start = this.nextStart;
      this.nextStart += this.config.interval;
      this.current = this.runInterval(start).finally(() => {
        this.current = undefined;
        this.schedule();
      });
    }, Math.max(0, this.nextStart - now));
  }

  /** One interval: collect by the deadline, build, queue, deliver. Never throws. */
  async runInterval(start: number): Promise<void> {
    try {
      const { config } = this;
      const deadline = start + Math.round(config.interval * config.deadline);
      const taps = this.taps;
      const { readings, outcomes } = await collectInterval(taps, start, deadline);
      for (const [i, o] of outcomes.entries()) {
        if (o.outcome === 'late' || o.outcome === 'failed') this.onTapEvent({ tap: o.tap, state: 'down', reason: o.reason ?? o.outcome });
        else if (o.outcome === 'fresh') this.onTapEvent({ tap: o.tap, ...tapStatus(taps[i]!) });
      }
      const frame: Frame = { sequence: this.state.take('frame', config.streamId), time: start, intervalMs: config.interval, readings };
      const batch = encodeFrames([frame]);
      this.framesBuilt++;
      const quality = { good: 0, uncertain: 0, bad: 0 };
      for (const r of readings) quality[r.quality]++;
      this.lastQuality = quality;
      this.delivery.enqueue({ sequence: frame.sequence, batch });
      if (!this.delivery.enabled && Date.now() - this.lastEnrollmentCheck >= config.relay.statusInterval) await this.checkEnrollment();
      await this.delivery.pump();
      this.summary(frame, batch.length, readings, start);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'interval failed');
    }
  }

  private summary(frame: Frame, bytes: number, readings: Reading[], start: number): void {
    if (!this.logger.isLevelEnabled('debug')) return;
    const count = { good: 0, uncertain: 0, bad: 0 };
    for (const r of readings) count[r.quality]++;
    const stats = this.delivery.stats;
    this.logger.debug({ frame: String(frame.sequence), readings: readings.length, ...count, bytes, tookMs: Date.now() - start, backlogBytes: stats.backlogBytes, queuedFrames: stats.queuedFrames, unconfirmed: stats.unconfirmed }, 'interval');
    this.logger.debug({ frame: String(frame.sequence), values: readings.map((r) => ({ tap: r.tap, point: r.point, value: typeof r.value === 'bigint' ? String(r.value) : r.value, quality: r.quality, ...(r.reason ? { reason: r.reason } : {}) })) }, 'readings');
  }

  /**
   * SIGHUP: a new, already validated config. Replaces the taps (stop old, start new) and the
   * interval; the sequence counters and the backlog stay. Settings that need a restart are named.
   */
  async reload(next: AgentConfig): Promise<void> {
    const ignored = RESTART_ONLY.filter((key) => JSON.stringify(next[key]) !== JSON.stringify(this.config[key]));
    if (ignored.length > 0) this.logger.warn({ settings: ignored }, 'these settings change only on restart; keeping the running values');
    const applied: AgentConfig = { ...next };
    for (const key of RESTART_ONLY) (applied as Record<string, unknown>)[key] = this.config[key];
    await this.current; // never swap taps in the middle of a collection
    const old = this.taps;
    this.taps = [];
    await this.stopTaps(old);
    this.config = applied;
    this.logger.level = applied.logLevel;
    await this.startTaps(applied);
    if (this.timer) clearTimeout(this.timer);
    this.nextStart = Date.now();
    this.schedule();
    this.logger.info({ taps: applied.taps.length, interval: formatDuration(applied.interval) }, 'config reloaded');
  }

  /** SIGTERM: finish the current interval, flush what the relay accepts within flushMs, stop taps. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    await this.current;
    const flushed = this.delivery.enabled ? await this.delivery.flush(this.o.flushMs ?? 5_000) : this.delivery.drained;
    await this.stopTaps(this.taps);
    const stats = this.delivery.stats;
    this.logger.info({ flushed, queuedFrames: stats.queuedFrames, unconfirmed: stats.unconfirmed, droppedFrames: stats.droppedFrames, stateWrites: this.state.writes }, flushed ? 'agent stopped' : 'agent stopped; frames still in the RAM backlog are lost');
  }
}
