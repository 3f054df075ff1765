/**
 * Relay configuration: the YAML schema (config/relay.example.yaml documents every setting) and
 * the defaults used when `ghostpipe relay` runs without --config.
 */
import { s, type Infer } from '../common/schema.js';
import { envelopeLimit } from './envelope-check.js';
import { ENTRY_OVERHEAD } from './store.js';

const MiB = 1024 * 1024;

const planFields = s.object({
  /** Transfers per period; 0 = unlimited. */
  quota: s.integer({ min: 0 }),
  period: s.withDefault(s.duration({ min: 60_000 }), 30 * 86_400_000),
  /** Sustained uploads per minute (token bucket refill) and bucket size. */
  ratePerMinute: s.integer({ min: 1, max: 6_000_000 }),
  burst: s.integer({ min: 1, max: 1_000_000 }),
  maxBlob: s.size({ min: 1 }),
  /**
   * Fair shares (docs/RELAY.md): what one key of this plan may hold at once. Held bytes count its
   * stored envelopes (bytes + 640 B bookkeeping each, as memory.heldBytes) plus its in-flight ones,
   * so one key cannot fill memoryCap for the TTL (issue 11: one device took 536 MB of 512 MiB).
   */
  maxHeldBytes: s.withDefault(s.size({ min: 64 * 1024 }), 64 * MiB),
  /** Bytes of this key's uploads whose body is still arriving (reserved after the header checks). */
  maxInFlightBytes: s.withDefault(s.size({ min: 16 * 1024 }), 16 * MiB),
  /** Uploads of this key in progress at once; the next one is refused 429 too_many_uploads. */
  maxConcurrentUploads: s.withDefault(s.integer({ min: 1, max: 10_000 }), 4),
});
/** A share smaller than the plan's largest envelope would refuse every such upload: said at load, not at the first upload. */
const plan = s.refine(planFields, (p) => {
  const largest = envelopeLimit(p.maxBlob);
  const issues = [];
  if (p.maxInFlightBytes < largest) issues.push({ path: ['maxInFlightBytes'], message: `must be at least ${largest} bytes, the largest envelope maxBlob allows` });
  if (p.maxHeldBytes < largest + ENTRY_OVERHEAD) issues.push({ path: ['maxHeldBytes'], message: `must be at least ${largest + ENTRY_OVERHEAD} bytes, the largest envelope maxBlob allows plus ${ENTRY_OVERHEAD} B of bookkeeping` });
  return issues;
});
export type Plan = Infer<typeof plan>;

/**
 * Defaults. A site gateway sends one frame every 15 s: 4/min, 172,800 per 30 days. That fits
 * "pro" (250,000 per 30 days, 60/min), not "free" (1,000 per 30 days).
 */
export const DEFAULT_PLANS: Record<string, Plan> = {
  free: { quota: 1_000, period: 30 * 86_400_000, ratePerMinute: 10, burst: 20, maxBlob: 5 * MiB, maxHeldBytes: 16 * MiB, maxInFlightBytes: 11 * MiB, maxConcurrentUploads: 2 },
  pro: { quota: 250_000, period: 30 * 86_400_000, ratePerMinute: 60, burst: 120, maxBlob: 5 * MiB, maxHeldBytes: 64 * MiB, maxInFlightBytes: 16 * MiB, maxConcurrentUploads: 4 },
  enterprise: {
    quota: 0, period: 30 * 86_400_000, ratePerMinute: 600_000, burst: 100_000, maxBlob: 5 * MiB, maxHeldBytes: 256 * MiB, maxInFlightBytes: 32 * MiB, maxConcurrentUploads: 16,
  },
};

const limits = s.object({
  headersTimeout: s.withDefault(s.duration({ min: 100 }), 10_000),
  /** Whole request, body included: a client trickling bytes is cut off after this. */
  requestTimeout: s.withDefault(s.duration({ min: 100 }), 60_000),
  /** No byte received for this long: connection closed. */
  idleTimeout: s.withDefault(s.duration({ min: 100 }), 15_000),
  keepAliveTimeout: s.withDefault(s.duration({ min: 100 }), 5_000),
  maxHeaderSize: s.withDefault(s.size({ min: 1024, max: 1024 * 1024 }), 16 * 1024),
  maxConnections: s.withDefault(s.integer({ min: 1, max: 1_000_000 }), 1024),
  /**
   * Open connections from one source address; more are closed at accept. A connection from a
   * trusted proxy is not counted here (its pooled connections carry many clients): its requests
   * in progress are counted per forwarded client address instead (429 too_many_connections).
   */
  maxConnectionsPerSource: s.withDefault(s.integer({ min: 1, max: 1_000_000 }), 128),
  /**
   * Slowest upload body accepted: at least minUploadRate × uploadRateWindow bytes must arrive in
   * each window, counted from when the request's headers arrived (so the first window is the
   * grace), until the body is complete; otherwise 408 too_slow and the connection is closed.
   * 0 turns the rule off.
   */
  minUploadRate: s.withDefault(s.size({ min: 0 }), 1024),
  uploadRateWindow: s.withDefault(s.duration({ min: 100, max: 600_000 }), 10_000),
  /** Upload bytes being received at once across all connections (also counted against memoryCap). */
  maxInFlightBytes: s.withDefault(s.size({ min: 1024 }), 64 * MiB),
  /** Longest long-poll a client may ask for. */
  maxWait: s.withDefault(s.duration({ min: 0, max: 300_000 }), 60_000),
  shutdownGrace: s.withDefault(s.duration({ min: 0, max: 120_000 }), 5_000),
});

/** docs/API.md "Firmware": packages live in RAM like envelopes, counted against memoryCap. */
const firmware = s.object({
  /** Largest package (encrypted chunks and key wraps); larger publishes are refused 413. */
  maxPackageSize: s.withDefault(s.size({ min: 4096 }), 64 * MiB),
  /** A package burns at this age, or at its manifest's expiry if sooner, whoever has not reported. */
  ttl: s.withDefault(s.duration({ min: 1_000 }), 7 * 86_400_000),
  /** Burned rollouts whose status is still answered (oldest forgotten first). */
  statusMemory: s.withDefault(s.integer({ min: 0, max: 10_000 }), 64),
});

/** docs/RELAY.md "Audit trail": disk use is at most keepFiles × maxFileSize. */
const auditTrail = s.object({
  /** audit.jsonl is rotated (to audit.jsonl.1, …) before a line would take it past this size. */
  maxFileSize: s.withDefault(s.size({ min: 4096, max: 1024 * MiB }), 16 * MiB),
  /** Files kept, the active one included; the oldest is deleted at rotation. */
  keepFiles: s.withDefault(s.integer({ min: 2, max: 1000 }), 8),
  /** Distinct (source address, key id, reason) auth_failed counters per minute; the rest share one "other" counter. */
  authFailureBuckets: s.withDefault(s.integer({ min: 1, max: 100_000 }), 64),
});

export const relayConfigSchema = s.object({
  /** host:port to listen on; one or more. Port 0 picks a free port (logged). */
  listen: s.withDefault(s.array(s.hostPort({ allowPortZero: true }), { minItems: 1, maxItems: 16 }), [{ host: '127.0.0.1', port: 8787 }]),
  tls: s.optional(s.object({ cert: s.string({ minLength: 1 }), key: s.string({ minLength: 1 }) })),
  /** Control-plane state (relay key, operator key, key hashes, devices, log). Ignored when ramOnly. */
  stateDir: s.withDefault(s.string({ minLength: 1 }), './.ghostpipe/relay'),
  /** Air-gap mode: payloads, the log and the audit trail in RAM only; each boot starts a new log epoch. */
  ramOnly: s.withDefault(s.boolean(), false),
  /**
   * ramOnly only: the provisioned identity (relay.sign.key, keys.json, devices.json, epoch.json,
   * operator.key; no payload, no log). Read at every boot, written back on key and device changes
   * (docs/RELAY.md "Air-gap mode"). Without it every boot is a new relay (new key, no keys, no devices).
   */
  identityDir: s.optional(s.string({ minLength: 1 })),
  /**
   * Where the first operator key (plk_…) is written, once, 0600; never inside the state or identity
   * directory. Default: operator.key next to the state directory (ramOnly: a fresh 0700 folder under
   * the OS temp dir). docs/RELAY.md "Operator key".
   */
  operatorKeyFile: s.optional(s.string({ minLength: 1 })),
  /**
   * The fleet public key (ML-DSA-65 PEM, `ghostpipe keygen --type fleet`): when set, a new device
   * registers only with a valid fleet approval (docs/RELAY.md "Fleet enrollment").
   */
  fleetPublicKey: s.optional(s.string({ minLength: 1 })),
  /** Log origin line; default "ghostpipe-relay/<first 16 hex digits of the relay key id>". */
  origin: s.optional(s.string({ minLength: 1, maxLength: 200, pattern: /^[\x21-\x7e]+$/ })),
  memoryCap: s.withDefault(s.size({ min: MiB }), 512 * MiB),
  /** ramOnly: RAM for the log's full tiles and bundles (about 68 B per leaf); past it the oldest are pruned. */
  ramOnlyLogBytes: s.withDefault(s.size({ min: MiB }), 64 * MiB),
  ttl: s.withDefault(s.duration({ min: 1_000 }), 86_400_000),
  leaseTimeout: s.withDefault(s.duration({ min: 100, max: 3_600_000 }), 30_000),
  /** Delivered/expired states remembered for status queries (at most this many, oldest dropped). */
  statusMemory: s.withDefault(s.integer({ min: 0, max: 100_000_000 }), 1_000_000),
  plans: s.withDefault(s.record(plan), DEFAULT_PLANS),
  limits: s.withDefault(limits, limits.parse({}, [], { issues: [] })),
  audit: s.withDefault(auditTrail, auditTrail.parse({}, [], { issues: [] })),
  firmware: s.withDefault(firmware, firmware.parse({}, [], { issues: [] })),
  logLevel: s.withDefault(s.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const), 'info'),
  /** Addresses of reverse proxies whose X-Forwarded-For is believed (for logs and audit). */
  trustedProxies: s.withDefault(s.array(s.string({ minLength: 1 })), []),
});

export type RelayConfig = Infer<typeof relayConfigSchema>;

/** The YAML parser is loaded only when there is a file to read (it costs ~10 MB of idle RSS). */
export async function loadRelayConfig(file: string | undefined): Promise<RelayConfig> {
  if (file === undefined) return defaultRelayConfig();
  const { loadConfigFile } = await import('../common/config-file.js');
  return loadConfigFile(file, relayConfigSchema);
}

export function defaultRelayConfig(): RelayConfig {
  return relayConfigSchema.parse({}, [], { issues: [] });
}
