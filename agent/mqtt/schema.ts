/**
 * Config of an MQTT tap (`type: mqtt` entry under `taps:`), checked and processed once
 * (Telegraf's check → process). Topic filters and JSON paths are checked (and the paths
 * compiled) here, so a typo stops the agent at start with file:line:col instead of surfacing
 * as a bad point at run time; processMqttTap() then resolves what the driver runs on
 * (MqttTapSettings: per-point QoS and decoding, the subscriptions, the client id).
 */
import { randomBytes } from 'node:crypto';
import { s, type Infer, type Processed, type RefineIssue } from '../../common/schema.js';
import type { DecodeSpec } from './decode.js';
import { parseJsonPath } from './json-path.js';
import { topicFilterError } from './topic.js';

const MIB = 1024 * 1024;

const topicFilter = s.refine(s.string({ minLength: 1, hint: 'an MQTT topic filter like "plant/line1/+/temperature" or "plant/#"' }), topicFilterError);

/** Compiled once here; the driver evaluates the compiled path. */
const jsonPath = s.process(s.string({ minLength: 1, hint: 'a JSON path like "$.temperature" or "$.sensors[0].value"' }), (text) => {
  const parsed = parseJsonPath(text);
  return typeof parsed === 'string' ? { ok: false, issues: [{ path: [], message: parsed }] } : { ok: true, value: parsed };
});

const qos = s.union(s.literal(0), s.literal(1), s.literal(2));
export type QoS = Infer<typeof qos>;
const file = s.string({ minLength: 1, hint: 'a file path' });

export const mqttPointSchema = s.refine(
  s.object({
    name: s.string({ minLength: 1, maxLength: 128 }),
    topic: topicFilter,
    /** Where the value sits in a JSON payload; absent: the whole payload is the value. */
    json: s.optional(jsonPath),
    type: s.optional(s.enum(['number', 'string', 'boolean'] as const)),
    qos: s.optional(qos),
    unit: s.optional(s.string({ minLength: 1, maxLength: 32 })),
    scale: s.optional(s.number()),
    offset: s.optional(s.number()),
    /** Where the source timestamp sits in the JSON payload (number or ISO 8601 string). */
    timestamp: s.optional(jsonPath),
    timestampUnit: s.optional(s.enum(['ms', 's'] as const)),
  }),
  (point) => {
    const issues: RefineIssue[] = [];
    if (point.timestamp !== undefined && point.json === undefined) issues.push({ path: ['timestamp'], message: 'needs a JSON payload: set json as well' });
    if (point.timestampUnit !== undefined && point.timestamp === undefined) issues.push({ path: ['timestampUnit'], message: 'only applies with timestamp' });
    const numeric = point.type === undefined || point.type === 'number';
    if (!numeric && point.scale !== undefined) issues.push({ path: ['scale'], message: `only applies to numbers; this point has type ${point.type}` });
    if (!numeric && point.offset !== undefined) issues.push({ path: ['offset'], message: `only applies to numbers; this point has type ${point.type}` });
    return issues;
  },
);

const mqttTapObject = s.refine(
  s.object({
    name: s.string({ minLength: 1, maxLength: 64 }),
    type: s.literal('mqtt'),
    interval: s.optional(s.duration({ min: 100 })),
    /** mqtt://host:1883 or mqtts://host:8883 (TLS). Credentials go in username/passwordFile, not here. */
    url: s.url({ protocols: ['mqtt', 'mqtts'] }),
    protocolVersion: s.withDefault(s.union(s.literal(5), s.literal(4)), 5),
    clientId: s.optional(s.string({ minLength: 1, maxLength: 128, pattern: /^[\x21-\x7e]+$/, hint: 'a client id of 1 to 128 printable ASCII characters' })),
    username: s.optional(s.string({ minLength: 1, maxLength: 256 })),
    passwordFile: s.optional(file),
    tls: s.optional(
      s.object({
        caFile: s.optional(file),
        certFile: s.optional(file),
        keyFile: s.optional(file),
        servername: s.optional(s.string({ minLength: 1, maxLength: 253 })),
      }),
    ),
    qos: s.withDefault(qos, 1),
    keepalive: s.withDefault(s.duration({ min: 1000, max: 65_535_000 }), 30_000),
    connectTimeout: s.withDefault(s.duration({ min: 100, max: 300_000 }), 10_000),
    /** While connected, a value older than this is reported stale (uncertain); while down, points are bad. Default: the tap's interval. */
    staleAfter: s.optional(s.duration({ min: 1 })),
    maxMessageSize: s.withDefault(s.size({ min: 16, max: 64 * MIB }), 256 * 1024),
    reconnect: s.withDefault(
      s.object({
        initial: s.withDefault(s.duration({ min: 10, max: 3_600_000 }), 1_000),
        max: s.withDefault(s.duration({ min: 10, max: 3_600_000 }), 30_000),
      }),
      { initial: 1_000, max: 30_000 },
    ),
    points: s.array(mqttPointSchema, { minItems: 1, maxItems: 10_000 }),
  }),
  (tap) => {
    const issues: RefineIssue[] = [];
    const url = new URL(tap.url);
    if (url.username || url.password) issues.push({ path: ['url'], message: 'must not contain credentials; use username and passwordFile' });
    if (url.pathname !== '' && url.pathname !== '/') issues.push({ path: ['url'], message: 'must not have a path; write mqtt://host:port' });
    if (tap.tls && url.protocol !== 'mqtts:') issues.push({ path: ['tls'], message: 'needs an mqtts:// url' });
    if (tap.tls?.certFile !== undefined && tap.tls.keyFile === undefined) issues.push({ path: ['tls', 'keyFile'], message: 'required when certFile is set' });
    if (tap.tls?.keyFile !== undefined && tap.tls.certFile === undefined) issues.push({ path: ['tls', 'certFile'], message: 'required when keyFile is set' });
    if (tap.passwordFile !== undefined && tap.username === undefined) issues.push({ path: ['username'], message: 'required when passwordFile is set' });
    if (tap.reconnect.initial > tap.reconnect.max) issues.push({ path: ['reconnect', 'initial'], message: `must not exceed reconnect.max` });
    const seen = new Map<string, number>();
    tap.points.forEach((point, index) => {
      const first = seen.get(point.name);
      if (first !== undefined) issues.push({ path: ['points', index, 'name'], message: `"${point.name}" is already used by points[${first}]` });
      else seen.set(point.name, index);
    });
    return issues;
  },
);

/** An MQTT tap as written, checked, with defaults applied (JSON paths compiled). */
export type MqttTapConfig = Infer<typeof mqttTapObject>;
export type MqttPointConfig = Infer<typeof mqttPointSchema>;

export interface MqttPointSettings {
  name: string;
  /** The topic filter that feeds the point. */
  topic: string;
  /** The point's own QoS, else the tap's. */
  qos: QoS;
  unit?: string;
  /** How a payload becomes the value: JSON path, type, scale, offset, source timestamp. */
  decode: DecodeSpec;
}

/** What the driver runs on: durations in ms, sizes in bytes, every default applied. */
export interface MqttTapSettings {
  name: string;
  type: 'mqtt';
  interval?: number;
  url: string;
  protocolVersion: 4 | 5;
  /** As configured, or ghostpipe-<tap>-<8 random hex> (a new suffix at every config load). */
  clientId: string;
  username?: string;
  passwordFile?: string;
  tls?: MqttTapConfig['tls'];
  keepalive: number;
  connectTimeout: number;
  /** As configured; absent: the tap's effective interval, which the agent passes at creation (agent/taps.ts). */
  staleAfter?: number;
  maxMessageSize: number;
  reconnect: { initial: number; max: number };
  points: MqttPointSettings[];
  /** One subscription per topic filter, at the highest QoS any of its points asks for. */
  subscriptions: { filter: string; qos: QoS }[];
}

/** The checked tap → the settings the driver runs on. Every rule was checked above: nothing can fail here. */
export function processMqttTap(tap: MqttTapConfig): Processed<MqttTapSettings> {
  const points = tap.points.map(({ name, topic, qos, unit, ...decode }): MqttPointSettings => ({ name, topic, qos: qos ?? tap.qos, ...(unit !== undefined && { unit }), decode }));
  const subscriptions = new Map<string, QoS>();
  for (const point of points) subscriptions.set(point.topic, Math.max(point.qos, subscriptions.get(point.topic) ?? 0) as QoS);
  // The tap's qos lives on in each point's; the rest is kept as checked.
  const { qos: _tapQos, points: _configured, clientId, ...kept } = tap;
  return {
    ok: true,
    value: {
      ...kept,
      clientId: clientId ?? `ghostpipe-${tap.name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 32)}-${randomBytes(4).toString('hex')}`,
      points,
      subscriptions: [...subscriptions].map(([filter, qos]) => ({ filter, qos })),
    },
  };
}

export const mqttTapSchema = s.process(mqttTapObject, processMqttTap);
