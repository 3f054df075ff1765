/**
 * The MQTT tap: subscribes to the configured topic filters, keeps the last message per point
 * and hands out a snapshot on collect(). It never publishes.
 *
 * mqtt.js reconnects at a fixed period and queues QoS 0 publishes while offline; both are off
 * here (reconnectPeriod 0, queueQoSZero false). Each connection is one mqtt.js client; when it
 * closes, the loop waits a Backoff delay (exponential, jittered) and builds a fresh one.
 */
import { readFile } from 'node:fs/promises';
import mqtt, { type IClientOptions, type MqttClient, type IPublishPacket } from 'mqtt';
import type { Logger } from '../../common/log.js';
import { Backoff, sleep } from '../../common/backoff.js';
import { StatusListeners, type Reading, type Tap, type TapState, type TapStatus } from '../tap.js';
import { decodePayload, type Decoded, type DecodeSpec } from './decode.js';
import type { MqttTapSettings } from './schema.js';
import { topicMatches } from './topic.js';

/** The processed settings (schema.ts) and the tap's effective interval, which the agent supplies. */
export type MqttTapInput = MqttTapSettings & { interval: number };

/** MQTT's largest packet (remaining length 268,435,455 plus header). */
const MQTT_MAX_PACKET = 268_435_455;

interface PointState {
  name: string;
  filter: string;
  unit?: string;
  spec: DecodeSpec;
  /** The last message; `connection` numbers the broker connection it arrived on. */
  last?: { receivedAt: number; topic: string; decoded: Decoded; connection: number };
  /** Last problem logged for this point, so a repeated bad payload is logged once. */
  loggedReason?: string;
}

/** The broker URL with any credentials removed, for logs and reasons. */
function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return '(invalid url)';
  }
}

/** CONNACK codes that mean "who you are" (3.1.1: 4, 5; MQTT 5: 134, 135). */
const AUTH_CODES = new Set([4, 5, 134, 135]);

function describeError(err: unknown): string {
  const error = err as Error & { code?: unknown };
  const message = error?.message || String(err);
  if (message.startsWith('Connection refused')) {
    const hint = AUTH_CODES.has(error.code as number) ? ' (check username, passwordFile and the broker ACL)' : '';
    return `broker refused the connection: ${message.slice('Connection refused: '.length)}${hint}`;
  }
  if (typeof error.code === 'string' && /CERT|TLS|SSL|SIGNATURE|ISSUER/.test(error.code)) return `TLS: ${message} (${error.code})`;
  return message;
}

export class MqttTap implements Tap {
  readonly kind = 'mqtt' as const;
  readonly name: string;
  readonly points: readonly string[];
  private readonly pointStates: PointState[];
  /** Topic filter → why the broker refused it in the current connection. */
  private readonly refused = new Map<string, string>();
  /** Topic filters the broker granted (SUBACK) in the current connection. */
  private readonly granted = new Set<string>();
  /** Numbers connection attempts, so a value from before a reconnect is told apart. */
  private connectionNumber = 0;
  private readonly staleAfter: number;
  private readonly maxMessageSize: number;
  private readonly clientId: string;
  private readonly brokerUrl: string;
  private state: TapState = 'down';
  private reason = 'not started';
  private readonly statusListeners = new StatusListeners();
  private requests = 0;
  private messagesReceived = 0;
  private loop?: Promise<void>;
  private readonly abort = new AbortController();
  private client?: MqttClient;

  constructor(
    private readonly config: MqttTapInput,
    private readonly deps: { logger: Logger },
  ) {
    this.name = config.name;
    this.brokerUrl = safeUrl(config.url);
    this.pointStates = config.points.map((point) => ({ name: point.name, filter: point.topic, unit: point.unit, spec: point.decode }));
    this.points = this.pointStates.map((point) => point.name);
    this.staleAfter = config.staleAfter ?? config.interval;
    this.maxMessageSize = config.maxMessageSize;
    this.clientId = config.clientId;
  }

  async start(): Promise<void> {
    if (this.loop || this.abort.signal.aborted) return;
    this.reason = 'connecting';
    this.loop = this.run();
  }

  status(): TapStatus {
    return { state: this.state, reason: this.state === 'up' ? undefined : this.reason, requests: this.requests, peer: this.brokerUrl, details: { clientId: this.clientId } };
  }

  onStatusChange(listener: () => void): () => void {
    return this.statusListeners.add(listener);
  }

  /** Messages received since start (all topics), for benchmarks and diagnostics. */
  get messages(): number {
    return this.messagesReceived;
  }

  async collect(deadline: number): Promise<Reading[]> {
    void deadline; // a snapshot of what the subscription delivered: ready at once
    const now = Date.now();
    return this.pointStates.map((point) => this.readingOf(point, now));
  }

  /**
   * Why this point cannot get messages right now (broker not connected, filter refused or not
   * yet granted), or undefined when it is subscribed. Such a point is bad whatever it held before.
   */
  private unavailableReason(point: PointState): string | undefined {
    if (this.state === 'down') return `broker down: ${this.reason}`;
    const refused = this.refused.get(point.filter);
    if (refused) return refused;
    if (!this.granted.has(point.filter)) return `not subscribed yet to ${point.filter} (waiting for SUBACK)`;
    return undefined;
  }

  private readingOf(point: PointState, now: number): Reading {
    const base = { tap: this.name, point: point.name, ...(point.unit ? { unit: point.unit } : {}) };
    const last = point.last;
    const unavailable = this.unavailableReason(point);
    if (unavailable) return this.badReading(base, point, now, unavailable);
    if (!last) return { ...base, value: null, quality: 'bad', reason: `no value received yet on ${point.filter}`, readTime: now };
    if (!last.decoded.ok) return { ...base, value: null, quality: 'bad', reason: last.decoded.reason, readTime: last.receivedAt };
    const { value, sourceTime, warning } = last.decoded;
    const age = now - Math.min(last.receivedAt, sourceTime ?? last.receivedAt);
    const reading: Reading = { ...base, value, quality: 'good', readTime: last.receivedAt, stale: false };
    if (sourceTime !== undefined) reading.sourceTime = sourceTime;
    if (last.connection !== this.connectionNumber) {
      // Messages published while we were away are lost (clean start): this value may be outdated.
      reading.quality = 'uncertain';
      reading.stale = true;
      reading.reason = `stale: no new value since the broker connection was re-established (last ${now - last.receivedAt} ms ago on topic ${last.topic})`;
    } else if (age > this.staleAfter) {
      reading.quality = 'uncertain';
      reading.stale = true;
      reading.reason = `stale: no new value within ${this.staleAfter} ms (last ${age} ms ago on topic ${last.topic})`;
    } else if (warning) {
      reading.quality = 'uncertain';
      reading.reason = warning;
    }
    return reading;
  }

  /**
   * A point the tap cannot currently receive: bad, value null like every bad reading (Modbus,
   * OPC-UA, docs/RECEIVER.md). readTime and sourceTime stay those of the last message, so the
   * receiver still sees when the point was last heard of; the reason says how long ago.
   */
  private badReading(base: Pick<Reading, 'tap' | 'point' | 'unit'>, point: PointState, now: number, cause: string): Reading {
    const last = point.last;
    if (!last) return { ...base, value: null, quality: 'bad', reason: `${cause}; no value received yet on ${point.filter}`, readTime: now };
    const reading: Reading = { ...base, value: null, quality: 'bad', reason: `${cause}; last message ${now - last.receivedAt} ms ago on topic ${last.topic}`, readTime: last.receivedAt };
    if (last.decoded.ok && last.decoded.sourceTime !== undefined) reading.sourceTime = last.decoded.sourceTime;
    return reading;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.client?.end(true);
    await this.loop;
    this.loop = undefined;
    this.client = undefined;
  }

  private async run(): Promise<void> {
    const backoff = new Backoff({ initialMs: this.config.reconnect.initial, maxMs: this.config.reconnect.max });
    while (!this.abort.signal.aborted) {
      const { reason, wasUp } = await this.connection();
      if (this.abort.signal.aborted) break;
      this.setState('down', reason);
      if (wasUp) backoff.reset(); // a working link that dropped: retry soon, then slow down
      const delay = backoff.next();
      this.deps.logger.debug({ delayMs: delay }, 'mqtt reconnect scheduled');
      await sleep(delay, this.abort.signal);
    }
    this.state = 'down';
    this.reason = 'stopped';
  }

  private async clientOptions(): Promise<IClientOptions> {
    const { config } = this;
    const version = config.protocolVersion;
    const options: IClientOptions = {
      protocolVersion: version,
      clientId: this.clientId,
      // Clean start, session expiry 0: the broker keeps no queue for us while we are away.
      // A tap reports the latest value; retained messages restore it right after subscribing.
      clean: true,
      keepalive: Math.max(1, Math.round(config.keepalive / 1000)),
      connectTimeout: config.connectTimeout,
      reconnectPeriod: 0,
      queueQoSZero: false,
      resubscribe: false,
      rejectUnauthorized: true,
      // mqtt-packet otherwise pre-builds 65,536 two-byte Buffers (one per packet id) on the first
      // packet: ~7 MB of heap the gateway cannot spare (docs/AGENT.md, "Memory").
      writeCache: false,
    };
    if (version === 5) {
      options.properties = {
        sessionExpiryInterval: 0,
        // Bounds what the broker may send; between maxMessageSize and this, points get a clear reason.
        maximumPacketSize: Math.min(MQTT_MAX_PACKET, this.maxMessageSize * 4 + 65_536),
      };
    }
    if (config.username !== undefined) options.username = config.username;
    if (config.passwordFile !== undefined) {
      options.password = await readSecretFile(config.passwordFile, 'passwordFile');
    }
    if (config.tls) {
      if (config.tls.caFile) options.ca = await readSecretFile(config.tls.caFile, 'tls.caFile', false);
      if (config.tls.certFile) options.cert = await readSecretFile(config.tls.certFile, 'tls.certFile', false);
      if (config.tls.keyFile) options.key = await readSecretFile(config.tls.keyFile, 'tls.keyFile', false);
      if (config.tls.servername) options.servername = config.tls.servername;
    }
    return options;
  }

  /** One connection from CONNECT to close. Resolves (never rejects) with why it ended. */
  private async connection(): Promise<{ reason: string; wasUp: boolean }> {
    let options: IClientOptions;
    try {
      options = await this.clientOptions();
    } catch (err) {
      return { reason: (err as Error).message, wasUp: false };
    }
    if (this.abort.signal.aborted) return { reason: 'stopped', wasUp: false };
    this.refused.clear();
    this.granted.clear();
    this.connectionNumber++;
    this.requests++; // CONNECT
    const client = mqtt.connect(this.config.url, options);
    this.client = client;
    return new Promise((resolve) => {
      let lastError: string | undefined;
      let wasUp = false;
      const onAbort = () => client.end(true);
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
      client.on('error', (err) => { lastError = describeError(err); });
      client.on('disconnect', (packet) => {
        const code = packet.reasonCode ?? 0;
        lastError = `broker sent DISCONNECT (reason code ${code}${packet.properties?.reasonString ? `: ${packet.properties.reasonString}` : ''})`;
      });
      client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
      client.on('connect', () => {
        wasUp = true;
        this.setState('up');
        this.subscribeAll(client);
      });
      client.once('close', () => {
        this.abort.signal.removeEventListener('abort', onAbort);
        client.removeAllListeners('message');
        client.end(true);
        if (this.client === client) this.client = undefined;
        const reason = lastError ?? (wasUp ? `connection to ${this.brokerUrl} closed` : `connection to ${this.brokerUrl} failed`);
        resolve({ reason, wasUp });
      });
    });
  }

  private subscribeAll(client: MqttClient): void {
    const v5 = this.config.protocolVersion === 5;
    for (const { filter, qos } of this.config.subscriptions) {
      this.requests++; // SUBSCRIBE
      // rh 0: the broker sends retained messages on every subscribe, so a value is there at once.
      const options = v5 ? { qos, rh: 0, rap: false, nl: false } : { qos };
      client.subscribe(filter, options, (err) => {
        if (client !== this.client) return;
        if (!err) {
          this.granted.add(filter);
          return;
        }
        const reason = `broker refused subscription to ${filter}: ${err.message.replace(/^Subscribe error: /, '')}`;
        this.refused.set(filter, reason);
        this.deps.logger.warn({ topic: filter, reason }, 'mqtt subscription refused');
      });
    }
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    this.messagesReceived++;
    const receivedAt = Date.now();
    for (const point of this.pointStates) {
      if (!topicMatches(point.filter, topic)) continue;
      const decoded: Decoded = payload.length > this.maxMessageSize
        ? { ok: false, reason: `message on topic ${topic} is ${payload.length} bytes, over the ${this.maxMessageSize} byte limit (maxMessageSize)` }
        : decodePayload(point.spec, topic, payload);
      point.last = { receivedAt, topic, decoded, connection: this.connectionNumber };
      if (decoded.ok) {
        this.deps.logger.debug({ point: point.name, topic, retained: packet.retain, value: decoded.value }, 'mqtt value');
        if (point.loggedReason) this.deps.logger.info({ point: point.name, topic }, 'mqtt point recovered');
        point.loggedReason = undefined;
      } else if (point.loggedReason !== decoded.reason) {
        point.loggedReason = decoded.reason;
        this.deps.logger.warn({ point: point.name, topic, reason: decoded.reason }, 'mqtt point bad');
      }
    }
  }

  /**
   * Records the connection's state; the agent core (agent/tap-health.ts) decides what to log. The
   * first failure changes the reason from "connecting", so a tap that never connects reports it.
   */
  private setState(state: TapState, reason?: string): void {
    const changed = state !== this.state || (reason !== undefined && reason !== this.reason);
    this.state = state;
    if (reason !== undefined) this.reason = reason;
    if (changed) this.statusListeners.notify();
  }
}

/** Reads a credential or TLS file; the error names the setting and file, never the content. */
async function readSecretFile(file: string, setting: string, trim = true): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(`cannot read ${setting} ${file}: ${code}`);
  }
  return trim ? text.replace(/\r?\n$/, '') : text;
}
