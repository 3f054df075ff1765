/**
 * Receiver configuration (YAML): schema, defaults and the checks that need more than a schema
 * (plain HTTP only to loopback). config/receiver.example.yaml documents every setting.
 */
import { s, type Infer } from '../common/schema.js';
import { loadConfigFile } from '../common/config-file.js';
import { checkTransport } from '../common/transport.js';

const MiB = 1024 * 1024;
const file = s.string({ minLength: 1 });

const stdoutSink = s.object({ type: s.literal('stdout') });
const fileSink = s.object({
  type: s.literal('file'),
  path: file,
  maxSize: s.withDefault(s.size({ min: 1024 }), 64 * MiB),
  keep: s.withDefault(s.integer({ min: 1, max: 1000 }), 5),
});
const mqttSink = s.object({
  type: s.literal('mqtt'),
  url: s.url({ protocols: ['mqtt', 'mqtts'] }),
  topic: s.withDefault(s.string({ minLength: 1, maxLength: 1024, pattern: /^[^+#\u0000]+$/, hint: 'an MQTT topic template without + or #, like "ghostpipe/{device}/{tap}/{point}"' }), 'ghostpipe/{device}/{tap}/{point}'),
  qos: s.withDefault(s.union(s.literal(0), s.literal(1), s.literal(2)), 1 as 0 | 1 | 2),
  retain: s.withDefault(s.boolean(), false),
  username: s.optional(s.string({ minLength: 1 })),
  passwordFile: s.optional(file),
  ca: s.optional(file),
  clientId: s.optional(s.string({ minLength: 1, maxLength: 128 })),
  timeout: s.withDefault(s.duration({ min: 100, max: 300_000 }), 10_000),
});
const webhookSink = s.object({
  type: s.literal('webhook'),
  url: s.url({ protocols: ['http', 'https'] }),
  timeout: s.withDefault(s.duration({ min: 100, max: 300_000 }), 10_000),
  retries: s.withDefault(s.integer({ min: 0, max: 100 }), 3),
  /** Extra headers, e.g. a static Authorization (values are never logged). */
  headers: s.withDefault(s.record(s.string({ maxLength: 8192, secret: true })), {}),
  /** A bearer token read from this file (0600) and sent as Authorization: Bearer …. */
  bearerTokenFile: s.optional(file),
  ca: s.optional(file),
});

export const receiverConfigSchema = s.object({
  relay: s.object({
    url: s.url({ protocols: ['http', 'https'] }),
    /** PEM CA bundle or the relay's own certificate, pinned for HTTPS (default: the system CAs). */
    ca: s.optional(file),
    /** File holding the pgp_… receiver API key (0600). */
    apiKeyFile: file,
    /** The relay's ML-DSA-65 public key (relay.sign.pub): verifies checkpoints. */
    publicKey: file,
    /** Expected log origin (or the base of its epochs); default: the origin the relay announces for that key. */
    origin: s.optional(s.string({ minLength: 1, maxLength: 200 })),
    /** A relay that reboots into a new log epoch (same pinned key, "<origin>/epoch/<n>"): carry on (accept) or stop (refuse). */
    newEpoch: s.withDefault(s.enum(['accept', 'refuse'] as const), 'accept'),
    /** Long-poll wait per lease request. */
    wait: s.withDefault(s.duration({ min: 0, max: 60_000 }), 20_000),
    timeout: s.withDefault(s.duration({ min: 100, max: 300_000 }), 30_000),
    /** Fetch the checkpoint at least this often, so a rollback or fork is seen even without traffic. */
    checkpointInterval: s.withDefault(s.duration({ min: 100, max: 86_400_000 }), 60_000),
    /** After this long of nothing but relay answers that prove nothing (garbage checkpoints or proofs), log an error-level alert. */
    unprovenAlertAfter: s.withDefault(s.duration({ min: 100, max: 86_400_000 }), 300_000),
    /** Allow http:// to a relay that is not on loopback (the API key and every answer then travel unprotected). */
    allowPlainHttp: s.withDefault(s.boolean(), false),
  }),
  /** The receiver's X-Wing (or ML-KEM-768) private key file. */
  receiverKey: file,
  stateDir: s.withDefault(file, './.ghostpipe/receiver'),
  trust: s.refine(
    s.object({
      /**
       * Accept any device enrolled at the relay whose registration is in the verified log and
       * carries a valid approval by the fleet key below (needs fleetPublicKey).
       */
      enrolled: s.withDefault(s.boolean(), false),
      /** The fleet public key (ML-DSA-65, `ghostpipe keygen --type fleet`) that approves enrolled devices. */
      fleetPublicKey: s.optional(file),
      /** Pinned devices: { did: did:ghostpipe:… } or { publicKey: FILE.sign.pub }. */
      devices: s.withDefault(s.array(s.union(s.object({ did: s.string({ minLength: 1, pattern: /^did:ghostpipe:[a-z2-7]{52}$/, hint: 'a did:ghostpipe: DID (66 characters)' }) }), s.object({ publicKey: file }))), []),
      /** How long a device lookup (enrollment, revocation) is trusted before it is asked again. */
      refresh: s.withDefault(s.duration({ min: 0, max: 86_400_000 }), 60_000),
    }),
    (t) => (!t.enrolled && t.devices.length === 0 ? 'trust no device? set enrolled: true or list devices (did or publicKey)'
      : t.enrolled && t.fleetPublicKey === undefined ? 'enrolled: true needs fleetPublicKey, the fleet key that approves devices (without it a compromised relay could enroll devices; docs/RECEIVER.md)'
      : undefined),
  ),
  replay: s.withDefault(
    s.object({
      /** Sequence numbers remembered per (device, stream). */
      window: s.withDefault(s.integer({ min: 1, max: 1_048_576 }), 4096),
      /** Refuse envelopes created longer ago than this… */
      maxAge: s.withDefault(s.duration({ min: 1000 }), 86_400_000),
      /** …or further in the future than this (clock skew). */
      maxFuture: s.withDefault(s.duration({ min: 0 }), 300_000),
    }),
    { window: 4096, maxAge: 86_400_000, maxFuture: 300_000 },
  ),
  sinks: s.withDefault(s.array(s.oneOf('type', { stdout: stdoutSink, file: fileSink, mqtt: mqttSink, webhook: webhookSink }), { minItems: 1, maxItems: 16 }), [{ type: 'stdout' as const }]),
  /** Backoff after a transient failure (relay unreachable, a sink refusing). */
  retry: s.withDefault(s.object({ initial: s.withDefault(s.duration({ min: 10 }), 500), max: s.withDefault(s.duration({ min: 10 }), 30_000) }), { initial: 500, max: 30_000 }),
  logLevel: s.withDefault(s.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const), 'info'),
});

export type ReceiverConfig = Infer<typeof receiverConfigSchema>;
export type SinkConfig = ReceiverConfig['sinks'][number];

/**
 * Loads and validates; plain HTTP to a non-loopback relay is refused unless relay.allowPlainHttp:
 * envelopes are safe on any path, but the API key is not, and anyone on the path can feed the
 * receiver garbage answers (which it survives, docs/RECEIVER.md, but which delay delivery).
 */
export function loadReceiverConfig(path: string): ReceiverConfig {
  const config = loadConfigFile(path, receiverConfigSchema);
  if (!config.relay.allowPlainHttp) checkTransport(config.relay.url, 'relay.url', path, 'or set relay.allowPlainHttp: true to accept an unprotected path');
  return config;
}
