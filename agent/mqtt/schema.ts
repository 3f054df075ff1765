/**
 * Config schema of an MQTT tap (`type: mqtt` entry under `taps:`). Topic filters and JSON paths
 * are checked here, so a typo stops the agent at start with file:line:col instead of
 * surfacing as a bad point at run time.
 */
import { s, type Infer, type RefineIssue } from '../../common/schema.js';
import { parseJsonPath } from './json-path.js';
import { topicFilterError } from './topic.js';

const MIB = 1024 * 1024;

const topicFilter = s.refine(s.string({ minLength: 1, hint: 'an MQTT topic filter like "plant/line1/+/temperature" or "plant/#"' }), topicFilterError);

const jsonPath = s.refine(s.string({ minLength: 1, hint: 'a JSON path like "$.temperature" or "$.sensors[0].value"' }), (text) => {
  const parsed = parseJsonPath(text);
  return typeof parsed === 'string' ? parsed : undefined;
});

const qos = s.union(s.literal(0), s.literal(1), s.literal(2));
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

export const mqttTapSchema = s.refine(
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

export type MqttTapConfig = Infer<typeof mqttTapSchema>;
export type MqttPointConfig = Infer<typeof mqttPointSchema>;
