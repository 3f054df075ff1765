/**
 * The edge agent: every interval, collect from the taps by the deadline, build one frame, queue
 * it for every recipient and let Delivery seal and upload it. A frame goes out every interval,
 * changed or not, so the wire shows a constant cadence. See docs/AGENT.md.
 */
import type { Logger } from '../common/log.js';
import { sleep } from '../common/backoff.js';
import { formatDuration, formatSize } from '../common/duration.js';
import { RelayClient, RelayError } from '../common/relay-client.js';
import { encodeFrames, type Frame } from '../protocol/frame.js';
import { aeadId, readApiKeyFile, relayClientOptions, tapInterval, type AgentConfig, type AgentSecrets } from './config.js';
import { plainHttpOffLoopback } from '../common/transport.js';
import { collectInterval, type ScheduledTap } from './collect.js';
import { Delivery, frameRanges } from './delivery.js';
import { checkEnrollment, enrollDevice, type Enrollment } from './enroll.js';
import { AgentState } from './state.js';
import { TapHealth } from './tap-health.js';
import { createTap } from './taps.js';
import { FirmwareUpdater } from './firmware/updater.js';
import { startTaps, type Reading } from './tap.js';

interface BuiltFrame {
  frame: Frame;
  /** Encoded size. */
  bytes: number;
  start: number;
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
const RESTART_ONLY = ['device', 'relay', 'recipients', 'streamId', 'padding', 'aead', 'kem', 'backlog', 'stateDir', 'firmware'] as const;

/**
 * SIGTERM bounds, so a stop fits systemd's TimeoutStopSec=30s whatever the interval and however
 * hung the relay: the running collection gets at most this long before uploading starts ...
 */
const STOP_COLLECTION_MAX_MS = 20_000;
/** ... uploading gets flushMs (5 s default), then the taps this long to close. */
const STOP_TAPS_MAX_MS = 2_000;

export class Agent {
  private config: AgentConfig;
  private readonly logger: Logger;
  private readonly state: AgentState;
  private readonly client: RelayClient;
  /** The key the client sends; replaced when the key file changed (re-read on 401). */
  private apiKey: string;
  /** Why the key file could not be re-read, last logged (one warn per reason). */
  private keyFileProblem: string | undefined;
  readonly delivery: Delivery;
  private taps: ScheduledTap[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The running interval's collection, build and queueing (not its upload); its end schedules the next one. */
  private current: Promise<void> | undefined;
  /** When the running interval's collection ends at the latest (its deadline). */
  private collectionEnd = 0;
  private stopping = false;
  /** A SIGHUP reload is swapping the taps: no interval may start. */
  private reloading = false;
  /** Start of the next interval on the cadence grid (start + k × interval). */
  private nextStart = 0;
  private enrollment: Enrollment;
  private lastEnrollmentCheck = 0;
  /** An enrollment check in flight (at most one, however slow the relay). */
  private enrollmentCheck: Promise<void> | undefined;
  /** The one owner of tap up/down transitions and their log lines. */
  private readonly tapHealth: TapHealth;
  /** Signed firmware for this gateway (config `firmware`); undefined when not configured. */
  private readonly firmware: FirmwareUpdater | undefined;
  framesBuilt = 0;
  /** Quality counts of the last frame built (doctor and benchmarks). */
  lastQuality = { good: 0, uncertain: 0, bad: 0 };

  constructor(private readonly o: AgentOptions) {
    this.config = o.config;
    this.logger = o.logger;
    this.tapHealth = new TapHealth(o.logger);
    const { config, secrets } = o;
    this.state = new AgentState(config.stateDir, undefined, (reason, writes) => this.logger.info({ file: this.state?.path, writes }, `state saved: ${reason}`));
    this.apiKey = secrets.apiKey;
    this.client = new RelayClient(relayClientOptions(config, secrets));
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
      onAuthRefusal: (err) => (err.kind === 'unauthorized' ? this.rereadApiKey() : this.bindRotatedKey(err)),
      logger: this.logger,
    });
    if (config.firmware && secrets.firmware) {
      this.firmware = new FirmwareUpdater({
        config: config.firmware, secrets: secrets.firmware, device: secrets.device, relay: relayClientOptions(config, secrets, config.firmware.timeout), stateDir: config.stateDir, logger: this.logger,
        // Firmware work waits for the running collection: the sensor interval never slips for it.
        quiet: () => this.current ?? Promise.resolve(),
      });
    }
  }

  /**
   * The relay refused the key (401): an operator may have rotated it. Re-reads the key file and
   * switches to the key in it if it changed (true). The key itself is never logged, only its id.
   */
  private async rereadApiKey(): Promise<boolean> {
    const file = this.config.relay.apiKeyFile;
    let key: string;
    try {
      key = await readApiKeyFile(file, (message) => this.logger.debug(message));
    } catch (err) {
      const reason = (err as Error).message;
      if (reason !== this.keyFileProblem) this.logger.warn({ file, reason }, 'cannot re-read the API key file; keeping the current key');
      this.keyFileProblem = reason;
      return false;
    }
    this.keyFileProblem = undefined;
    if (key === this.apiKey) return false;
    this.apiKey = key;
    this.client.useApiKey(key);
    this.firmware?.useApiKey(key);
    this.logger.info({ file, keyId: key.slice(4, 16) }, 'API key file changed; using the new key');
    return true;
  }

  /**
   * 403 device_not_enrolled although the relay knows this device: the key is new (rotated) and not
   * bound yet. Binds it with the enrollment proof of possession (the relay allows this only once
   * the former key is revoked). Never enrolls a device the relay does not know: that stays
   * `ghostpipe enroll`, an operator's step.
   */
  private async bindRotatedKey(err: RelayError): Promise<boolean> {
    const enrollment = await checkEnrollment(this.client, this.did);
    if (enrollment.state !== 'enrolled') return false;
    try {
      const bound = await enrollDevice(this.client, this.o.secrets.device);
      this.logger.info({ did: bound.did, keyId: this.apiKey.slice(4, 16), leafIndex: bound.leafIndex }, 'bound the new API key to this device (key rotation)');
      return true;
    } catch (bindErr) {
      const reason = bindErr instanceof RelayError ? `${bindErr.code}: ${bindErr.message}` : (bindErr as Error).message;
      this.logger.debug({ reason, refusal: err.code }, 'cannot bind the API key to this device');
      return false;
    }
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
    if (plainHttpOffLoopback(config.relay.url)) {
      this.logger.warn({ relay: new URL(config.relay.url).origin }, 'relay.allowPlainHttp: the API key travels unprotected; anyone on the path can read it and delay delivery (the readings stay sealed and signed)');
    }
    await this.checkEnrollment(true);
    this.taps = await this.startTaps(config);
    this.nextStart = Date.now();
    if (!this.o.manual) this.schedule();
    await this.firmware?.start();
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

  /**
   * Creates and starts the taps of `config`. Creating one can fail (e.g. two taps open one serial
   * line with different settings): the ones already created are stopped and the error names the tap.
   */
  private async startTaps(config: AgentConfig): Promise<ScheduledTap[]> {
    const taps: ScheduledTap[] = [];
    for (const [i, tc] of config.taps.entries()) {
      try {
        taps.push({ tap: createTap(config, tc, { logger: this.logger }), intervalMs: tapInterval(config, tc) });
      } catch (err) {
        await this.stopTaps(taps);
        throw new Error(`taps[${i}] "${tc.name}": ${(err as Error).message}`);
      }
    }
    for (const s of taps) this.tapHealth.watch(s.tap);
    // start() should not reject for a dead peer; if it does, the tap reports bad readings.
    await startTaps(taps.map((s) => s.tap), (tap, err) => this.logger.warn({ tap: tap.name, reason: err.message }, 'tap failed to start'));
    return taps;
  }

  private async stopTaps(taps: ScheduledTap[]): Promise<void> {
    await Promise.all(taps.map((s) => s.tap.stop().catch((err: unknown) => this.logger.warn({ tap: s.tap.name, reason: (err as Error).message }, 'tap failed to stop'))));
  }

  /**
   * Arms the one timer for the next interval. Not while stopping or reloading, and not while an
   * interval is collecting (its end calls this): so there is never more than one timer loop.
   */
  private schedule(): void {
    if (this.stopping || this.reloading || this.current || this.o.manual) return;
    this.clearTimer();
    const now = Date.now();
    // Skip interval starts that already passed (an overloaded interval): never two frames at once.
    let skipped = 0;
    while (this.nextStart < now - this.config.interval / 2) {
      this.nextStart += this.config.interval;
      skipped++;
    }
    if (skipped > 0) this.logger.warn({ skipped, interval: formatDuration(this.config.interval) }, 'interval starts skipped: the agent fell behind (the frame times show the gap)');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const start = this.nextStart;
      this.nextStart += this.config.interval;
      this.current = this.collectAndQueue(start)
        .then((built) => {
          // Uploads go on in the background: a slow or hung relay never delays the next interval.
          if (built) void this.deliver(built);
        })
        .finally(() => {
          this.current = undefined;
          this.schedule();
        });
    }, Math.max(0, this.nextStart - now));
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One whole interval: collect by the deadline, build, queue, deliver (benchmarks). Never throws. */
  async runInterval(start: number): Promise<void> {
    const built = await this.collectAndQueue(start);
    if (built) await this.deliver(built);
  }

  /** Collects by the deadline, builds the frame and queues it for every recipient. Never throws. */
  private async collectAndQueue(start: number): Promise<BuiltFrame | undefined> {
    try {
      const { config } = this;
      const deadline = start + Math.round(config.interval * config.deadline);
      const taps = this.taps;
      this.collectionEnd = deadline;
      const { readings, outcomes } = await collectInterval(taps, start, deadline);
      this.tapHealth.collected(outcomes);
      const frame: Frame = { sequence: this.state.take('frame', config.streamId), time: start, intervalMs: config.interval, readings };
      const batch = encodeFrames([frame]);
      this.framesBuilt++;
      const quality = { good: 0, uncertain: 0, bad: 0 };
      for (const r of readings) quality[r.quality]++;
      this.lastQuality = quality;
      this.delivery.enqueue({ sequence: frame.sequence, batch });
      return { frame, bytes: batch.length, start };
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'interval failed');
      return undefined;
    }
  }

  /** Uploads what waits (one pump at a time; Delivery coalesces). Never throws. */
  private async deliver(built: BuiltFrame): Promise<void> {
    try {
      if (!this.delivery.enabled && !this.enrollmentCheck && Date.now() - this.lastEnrollmentCheck >= this.config.relay.statusInterval) {
        this.enrollmentCheck = this.checkEnrollment().finally(() => {
          this.enrollmentCheck = undefined;
        });
      }
      await this.enrollmentCheck;
      await this.delivery.pump();
      if (this.delivery.stats.uploaded + this.delivery.stats.resent > 0) void this.firmware?.frameAccepted();
      this.summary(built.frame, built.bytes, built.frame.readings, built.start);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'delivery failed');
    }
  }

  private summary(frame: Frame, bytes: number, readings: Reading[], start: number): void {
    if (!this.logger.isLevelEnabled('debug')) return;
    const count = { good: 0, uncertain: 0, bad: 0 };
    for (const r of readings) count[r.quality]++;
    const stats = this.delivery.stats;
    this.logger.debug({ frame: String(frame.sequence), readings: readings.length, ...count, bytes, tookMs: Date.now() - start, backlogBytes: stats.backlogBytes, queuedFrames: stats.queuedFrames, unconfirmed: stats.unconfirmed, delivered: stats.delivered }, 'interval');
    this.logger.debug({ frame: String(frame.sequence), values: readings.map((r) => ({ tap: r.tap, point: r.point, value: typeof r.value === 'bigint' ? String(r.value) : r.value, quality: r.quality, ...(r.reason ? { reason: r.reason } : {}) })) }, 'readings');
  }

  /**
   * SIGHUP: a new, already validated config. Replaces the taps (stop old, start new), interval,
   * deadline and log level; the sequence counters and the backlog stay. Settings that need a
   * restart are named. No interval starts during the swap; the next one keeps the cadence grid
   * (next start = last start + old interval, then steps of the new interval). If the new taps
   * cannot be created, the error is logged and the running config's taps are started again.
   * Rejects only if even those cannot be restarted (the agent has no taps left: the caller exits).
   */
  async reload(next: AgentConfig): Promise<void> {
    if (this.stopping) return;
    const ignored = RESTART_ONLY.filter((key) => JSON.stringify(next[key]) !== JSON.stringify(this.config[key]));
    if (ignored.length > 0) this.logger.warn({ settings: ignored }, 'these settings change only on restart; keeping the running values');
    const applied: AgentConfig = { ...next };
    for (const key of RESTART_ONLY) (applied as Record<string, unknown>)[key] = this.config[key];
    this.reloading = true;
    this.clearTimer();
    let resume = true;
    try {
      await this.current; // never swap taps in the middle of a collection (an upload may go on)
      await this.stopTaps(this.taps);
      this.taps = [];
      this.tapHealth.forget(); // the new taps' first status is logged again; removed taps are gone
      try {
        this.taps = await this.startTaps(applied);
      } catch (err) {
        this.logger.error({ reason: (err as Error).message }, 'config reload failed while starting the new taps; the running config stays in effect');
        try {
          this.taps = await this.startTaps(this.config);
        } catch (restartErr) {
          resume = false;
          throw new Error(`cannot restart the running taps after a failed reload: ${(restartErr as Error).message}`);
        }
        return;
      }
      this.config = applied;
      this.logger.level = applied.logLevel;
      this.logger.info({ taps: applied.taps.length, interval: formatDuration(applied.interval) }, 'config reloaded');
    } finally {
      this.reloading = false;
      if (resume) this.schedule();
    }
  }

  /**
   * SIGTERM, bounded: the running interval finishes its collection (by its deadline, at most
   * STOP_COLLECTION_MAX_MS), then uploading (its own and the flush) gets flushMs; after that every
   * relay request is aborted. The taps get STOP_TAPS_MAX_MS to close. Frames the relay has not
   * accepted or not delivered by then are lost with the RAM backlog: the last log line counts them.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.clearTimer();
    // A download stops at once (its chunks stay staged); an install command is stopped, and the
    // next start lets the health command decide it.
    const firmwareStopped = this.firmware?.stop();
    const now = Date.now();
    const collectionEnd = this.current ? Math.min(Math.max(now, this.collectionEnd), now + STOP_COLLECTION_MAX_MS) : now;
    const uploadEnd = collectionEnd + (this.o.flushMs ?? 5_000);
    // From uploadEnd on every relay request fails at once: a hung relay cannot stretch the stop.
    // (Ending the budget early below also aborts: the client is done either way.)
    const endBudget = new AbortController();
    const budget = sleep(Math.max(0, uploadEnd - now), endBudget.signal).then(() => this.client.abort());
    const finished = this.current === undefined || (await Promise.race([this.current.then(() => true), budget.then(() => false)]));
    if (!finished) this.logger.warn('the running interval did not finish within the stop budget; its frame is lost');
    const flushed = this.delivery.enabled ? await this.delivery.flush(Math.max(0, uploadEnd - Date.now())) : this.delivery.drained;
    // Envelopes a receiver took meanwhile are not lost: one last look, within the same budget.
    if (this.delivery.enabled && Date.now() < uploadEnd) await this.delivery.confirmDelivered();
    endBudget.abort();
    await budget;
    await this.stopTapsWithin(STOP_TAPS_MAX_MS);
    await firmwareStopped;
    const stats = this.delivery.stats;
    // An upload the budget cut off after it was sent may or may not have reached the relay: its
    // frames are counted apart (uncertainFrames), so lostWithBacklog is exact, never a guess.
    const uncertainFrames = stats.uncertainFrames;
    const unflushedFrames = stats.queuedFrames - uncertainFrames + (finished ? 0 : 1);
    // Accepted but not delivered is lost too: the relay holds it in RAM only, and once this
    // process is gone nobody can re-send it if the relay loses it.
    const lostWithBacklog = unflushedFrames + stats.unconfirmedFrames;
    // Which frames, so a gap at the sink can be matched to this line (a frame the interval never
    // finished building has no number yet: it is counted, not listed).
    const backlog = this.delivery.backlogFrames();
    const fields = {
      flushed: flushed && finished, lostWithBacklog, unflushedFrames, undeliveredFrames: stats.unconfirmedFrames, uncertainFrames, undeliveredEnvelopes: stats.unconfirmed,
      lostFrameNumbers: frameRanges([...backlog.unflushed, ...backlog.undelivered]), uncertainFrameNumbers: frameRanges(backlog.uncertain),
      droppedFrames: stats.droppedFrames, expiredEnvelopes: stats.expired, stoppedInMs: Date.now() - now, stateWrites: this.state.writes,
    };
    const uncertain = uncertainFrames === 0 ? '' : `; ${uncertainFrames} more were being uploaded when the stop budget ran out (the relay may have them)`;
    if (lostWithBacklog === 0 && uncertainFrames === 0) this.logger.info(fields, 'agent stopped');
    else this.logger.warn(fields, `agent stopped; ${lostWithBacklog} frame(s) are lost with the RAM backlog: ${unflushedFrames} the relay did not accept, ${stats.unconfirmedFrames} it accepted but had not delivered${uncertain}`);
  }

  private async stopTapsWithin(ms: number): Promise<void> {
    const endLimit = new AbortController();
    const closed = await Promise.race([this.stopTaps(this.taps).then(() => true), sleep(ms, endLimit.signal).then(() => false)]);
    endLimit.abort();
    if (!closed) this.logger.warn({ waitedMs: ms }, 'taps did not close in time; exiting anyway');
  }
}
