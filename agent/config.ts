/**
 * The agent's YAML config: schema, cross-field checks, and loading of the files it names (keys,
 * API key, recipient keys; the taps' credential and certificate files are checked to exist and
 * be readable). Every setting is shown with its default in config/agent.example.yaml.
 */
import { constants as fsConstants, promises as fs } from 'node:fs';
import { s, type Infer, type RefineIssue } from '../common/schema.js';
import { configErrorAt, loadConfigWithSource, type ConfigSource } from '../common/config-file.js';
import { loadDeviceKeys, loadPublicKey, type DeviceKeys, KeyFileError } from '../common/keyfile.js';
import { AEAD, DEFAULT_BUCKETS, KEM, MAX_BUCKET, MIN_BUCKET } from '../protocol/envelope/index.js';
import { keyIdHex } from '../protocol/keys.js';
import type { RelayClientOptions } from '../common/relay-client.js';
import { plainHttpProblem } from '../common/transport.js';
import { modbusTapSchema } from './modbus/index.js';
import { opcuaTapSchema } from './opcua/index.js';
import { mqttTapSchema } from './mqtt/index.js';
import { firmwareSchema, loadFirmwareFiles, type FirmwareSecrets } from './firmware/config.js';

const file = s.string({ minLength: 1, maxLength: 4096, hint: 'a file path' });

export const tapSchema = s.oneOf('type', { modbus: modbusTapSchema, opcua: opcuaTapSchema, mqtt: mqttTapSchema });
/** One processed tap: what its driver runs on (each driver's schema.ts checked and resolved it). */
export type TapConfig = Infer<typeof tapSchema>;
type SerialLine = Extract<Extract<TapConfig, { type: 'modbus' }>['target'], { transport: 'rtu' }>;

const AEADS = { 'aes-256-gcm': AEAD.AES256GCM, 'chacha20-poly1305': AEAD.CHACHA20POLY1305 } as const;

/** A padding bucket relays accept: any other size would be refused at upload, one frame at a time. */
const relayBucket = s.refine(s.size({ min: MIN_BUCKET, max: MAX_BUCKET }), (bytes) =>
  DEFAULT_BUCKETS.includes(bytes) ? undefined : `must be one of 4KiB, 64KiB, 1MiB, 5MiB (the buckets relays accept); found ${bytes} bytes`,
);

const agentObject = s.object({
  device: s.object({
    /** ML-DSA-65 signing key (NAME.sign.key from `ghostpipe keygen device`). */
    signKey: file,
    /** The device's X-Wing key (NAME.kem.key); its public half is registered at enrollment. */
    kemKey: file,
  }),
  relay: s.object({
    url: s.url({ protocols: ['http', 'https'] }),
    /** File holding the device's pgp_… key (mode 0600, one line). */
    apiKeyFile: file,
    /** PEM CA bundle pinned for an https:// relay (or the TLS proxy in front of it); system CAs otherwise. */
    ca: s.optional(file),
    /** Allow http:// to a relay that is not on loopback (the API key then travels unprotected). */
    allowPlainHttp: s.withDefault(s.boolean(), false),
    /** Per-request timeout. */
    timeout: s.withDefault(s.duration({ min: 100, max: 300_000 }), 10_000),
    /** How often held envelopes are checked for delivery (POST /v2/envelopes/status). */
    statusInterval: s.withDefault(s.duration({ min: 100, max: 3_600_000 }), 15_000),
    /**
     * How often to try again while the relay reports the plan's quota used up (402). Not the
     * relay's Retry-After (the period end, maybe weeks away): an operator may raise the quota any time.
     */
    quotaRetry: s.withDefault(s.duration({ min: 1_000, max: 86_400_000 }), 60_000),
  }),
  /** Every frame is sealed to each recipient (one envelope each). */
  recipients: s.array(s.object({ name: s.string({ minLength: 1, maxLength: 64 }), publicKey: file }), { minItems: 1, maxItems: 16 }),
  interval: s.withDefault(s.duration({ min: 100, max: 86_400_000 }), 15_000),
  /** Fraction of the interval after which taps that have not answered are marked bad. */
  deadline: s.withDefault(s.number({ min: 0.1, max: 0.9 }), 0.75),
  /** Envelope stream id of the readings (u32). */
  streamId: s.withDefault(s.integer({ min: 0, max: 0xffff_ffff }), 1),
  padding: s.withDefault(
    s.object({ buckets: s.withDefault(s.array(relayBucket, { minItems: 1, maxItems: 4 }), [...DEFAULT_BUCKETS]) }),
    { buckets: [...DEFAULT_BUCKETS] },
  ),
  aead: s.withDefault(s.enum(['aes-256-gcm', 'chacha20-poly1305'] as const), 'aes-256-gcm'),
  kem: s.withDefault(s.enum(['X-Wing', 'ML-KEM-768'] as const), 'X-Wing'),
  backlog: s.withDefault(s.object({ maxSize: s.withDefault(s.size({ min: 64 * 1024, max: 1024 ** 3 }), 32 * 1024 * 1024) }), { maxSize: 32 * 1024 * 1024 }),
  stateDir: s.withDefault(file, '/var/lib/ghostpipe/agent'),
  logLevel: s.withDefault(s.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const), 'info'),
  taps: s.array(tapSchema, { minItems: 1, maxItems: 1000 }),
  /** Signed firmware for this gateway's group (agent/firmware/); absent: never asked for. */
  firmware: s.optional(firmwareSchema),
});

function crossCheck(config: Infer<typeof agentObject>): RefineIssue[] | undefined {
  const issues: RefineIssue[] = [];
  const buckets = config.padding.buckets;
  buckets.forEach((b, i) => {
    if (i > 0 && b <= buckets[i - 1]!) issues.push({ path: ['padding', 'buckets', i], message: `must be larger than the bucket before it (${buckets[i - 1]} bytes); found ${b}` });
  });
  const recipientNames = new Map<string, number>();
  config.recipients.forEach((r, i) => {
    const first = recipientNames.get(r.name);
    if (first !== undefined) issues.push({ path: ['recipients', i, 'name'], message: `duplicate recipient name "${r.name}" (also recipients[${first}])` });
    else recipientNames.set(r.name, i);
  });
  const tapNames = new Map<string, number>();
  config.taps.forEach((tap, i) => {
    const first = tapNames.get(tap.name);
    if (first !== undefined) issues.push({ path: ['taps', i, 'name'], message: `duplicate tap name "${tap.name}" (also taps[${first}])` });
    else tapNames.set(tap.name, i);
    if (tap.interval !== undefined && tap.interval < config.interval) {
      issues.push({ path: ['taps', i, 'interval'], message: `must be at least the agent interval (${config.interval} ms): one frame per interval; found ${tap.interval} ms` });
    }
  });
  issues.push(...serialLineConflicts(config.taps));
  return issues.length > 0 ? issues : undefined;
}

const SERIAL_LINE_SETTINGS = ['baudRate', 'parity', 'dataBits', 'stopBits'] as const;

/**
 * RTU taps on one serial device share one bus (agent/modbus/link.ts): they must agree on its
 * line settings. Caught here so `--check` names the line in the file, not a tap failing at start.
 */
function serialLineConflicts(taps: readonly TapConfig[]): RefineIssue[] {
  const issues: RefineIssue[] = [];
  const firstOnPath = new Map<string, { index: number; name: string; line: SerialLine }>();
  taps.forEach((tap, i) => {
    if (tap.type !== 'modbus' || tap.target.transport !== 'rtu') return;
    const line = tap.target;
    const first = firstOnPath.get(line.path);
    if (first === undefined) {
      firstOnPath.set(line.path, { index: i, name: tap.name, line });
      return;
    }
    for (const setting of SERIAL_LINE_SETTINGS) {
      const theirs = first.line[setting];
      const ours = line[setting];
      if (ours !== theirs) {
        issues.push({
          path: ['taps', i, 'serial', setting],
          message: `must match tap "${first.name}" (taps[${first.index}]), which uses the same serial line ${line.path} with ${setting} ${theirs}; found ${ours}`,
        });
      }
    }
  });
  return issues;
}

export const agentConfigSchema = s.refine(agentObject, crossCheck);
export type AgentConfig = Infer<typeof agentConfigSchema>;

/**
 * Reads and validates the YAML file. Throws ConfigError (file:line:column: path: message lines).
 * `source` places the problems loadAgentSecrets finds later in the same file.
 */
/** Loads and validates; plain HTTP to a relay off loopback is refused unless relay.allowPlainHttp (common/transport.ts). */
export function loadAgentConfig(path: string): { config: AgentConfig; source: ConfigSource } {
  const { value, source } = loadConfigWithSource(path, agentConfigSchema);
  const problem = value.relay.allowPlainHttp ? undefined : plainHttpProblem(value.relay.url, 'relay.url', 'or set relay.allowPlainHttp: true to accept an unprotected path');
  if (problem !== undefined) throw configErrorAt(source, [{ path: ['relay', 'url'], message: problem.slice('relay.url: '.length) }]);
  return { config: value, source };
}

export const aeadId = (config: AgentConfig): number => AEADS[config.aead];
export const kemId = (config: AgentConfig): number => (config.kem === 'X-Wing' ? KEM.XWING : KEM.MLKEM768);

/** The effective interval of a tap (its own, or the agent's). */
export const tapInterval = (config: AgentConfig, tap: TapConfig): number => tap.interval ?? config.interval;

export interface Recipient {
  name: string;
  kemId: number;
  publicKey: Uint8Array;
  /** Lowercase hex key id, as in envelope headers and relay inbox paths. */
  keyId: string;
}

export interface AgentSecrets {
  device: DeviceKeys;
  apiKey: string;
  recipients: Recipient[];
  /** Present when the config has a firmware section. */
  firmware?: FirmwareSecrets;
  /** relay.ca, read. */
  relayCa?: Buffer;
}

/** How every relay client of the agent (delivery, enrollment, doctor, firmware) reaches the relay. */
export function relayClientOptions(config: AgentConfig, secrets: AgentSecrets, timeoutMs = config.relay.timeout): RelayClientOptions {
  return { baseUrl: config.relay.url, apiKey: secrets.apiKey, timeoutMs, ...(secrets.relayCa ? { ca: secrets.relayCa } : {}) };
}

const API_KEY = /^pgp_[0-9a-f]{12}[A-Za-z0-9_-]{43}$/;

/**
 * Loads the files the config names. Problems are ConfigErrors naming the config path and file,
 * so `--check` reports them like any other config mistake. Never puts key material in a message.
 */
export async function loadAgentSecrets(config: AgentConfig, source: ConfigSource, onWarning: (message: string) => void): Promise<AgentSecrets> {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const fail = (path: (string | number)[], err: unknown) => issues.push({ path, message: err instanceof KeyFileError ? err.message : (err as Error).message });
  let device: DeviceKeys | undefined;
  try {
    device = await loadDeviceKeys({ signKey: config.device.signKey, kemKey: config.device.kemKey }, onWarning);
  } catch (err) {
    // Point at the key the message names (it starts with that file's path).
    const key = (err as Error).message.startsWith(config.device.kemKey) ? 'kemKey' : 'signKey';
    fail(['device', key], err);
  }
  let apiKey = '';
  try {
    apiKey = await readApiKeyFile(config.relay.apiKeyFile, onWarning);
  } catch (err) {
    fail(['relay', 'apiKeyFile'], err);
  }
  const recipients: Recipient[] = [];
  for (const [i, r] of config.recipients.entries()) {
    try {
      const key = await loadPublicKey(r.publicKey, [config.kem]);
      recipients.push({ name: r.name, kemId: kemId(config), publicKey: key.publicKey, keyId: keyIdHex(key.alg, key.publicKey) });
    } catch (err) {
      fail(['recipients', i, 'publicKey'], err);
    }
  }
  for (const named of tapFiles(config)) {
    try {
      await checkTapFile(named, onWarning);
    } catch (err) {
      fail(named.path, fileProblem(named.file, err));
    }
  }
  let relayCa: Buffer | undefined;
  if (config.relay.ca !== undefined) {
    try {
      relayCa = await fs.readFile(config.relay.ca);
      if (!relayCa.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${config.relay.ca}: not a PEM certificate bundle`);
    } catch (err) {
      fail(['relay', 'ca'], fileProblem(config.relay.ca, err));
    }
  }
  let firmware: FirmwareSecrets | undefined;
  if (config.firmware) {
    const loaded = await loadFirmwareFiles(config.firmware);
    for (const problem of loaded.issues) issues.push({ path: ['firmware', problem.setting], message: problem.message });
    firmware = loaded.secrets;
  }
  if (issues.length > 0 || device === undefined) throw configErrorAt(source, issues);
  return { device, apiKey, recipients, ...(firmware ? { firmware } : {}), ...(relayCa ? { relayCa } : {}) };
}

/**
 * The device API key in `file` (at start, and again when the relay answers 401: an operator may
 * have rotated it). Errors name the file, never the key.
 */
export async function readApiKeyFile(file: string, onWarning: (message: string) => void): Promise<string> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile() || stat.size > 1024) throw new Error(`${file}: not a small regular file`);
    if (stat.mode & 0o077) onWarning(`API key file ${file} is readable by group or others (mode 0${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
    const apiKey = (await fs.readFile(file, 'utf8')).trim();
    if (!API_KEY.test(apiKey)) throw new Error(`${file}: does not hold a device API key (pgp_ followed by 55 characters)`);
    return apiKey;
  } catch (err) {
    throw fileProblem(file, err);
  }
}

/** The errors an operator can act on, in a few words; anything else keeps its own message. */
function fileProblem(file: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new Error(`${file}: no such file`);
  if (code === 'EACCES' || code === 'EPERM') return new Error(`${file}: permission denied`);
  return err as Error;
}

/** A file a tap reads when it connects: credentials, certificates. */
interface TapFile {
  tap: string;
  /** Setting within the tap, e.g. "auth.passwordFile". */
  setting: string;
  /** Config path of the setting, e.g. ['taps', 2, 'auth', 'passwordFile']. */
  path: (string | number)[];
  file: string;
  /** A password or private key: warn when group or others may read it. */
  secret: boolean;
}

/** Every file the taps name. The drivers read them at each connect; `--check` reads them now. */
function tapFiles(config: AgentConfig): TapFile[] {
  return config.taps.flatMap((tap, i): TapFile[] => {
    const at = (...setting: string[]) => ({ tap: tap.name, setting: setting.join('.'), path: ['taps', i, ...setting] });
    if (tap.type === 'opcua') {
      const auth = tap.auth;
      if (auth.type === 'username' && auth.passwordFile !== undefined) return [{ ...at('auth', 'passwordFile'), file: auth.passwordFile, secret: true }];
      if (auth.type === 'certificate') {
        return [
          { ...at('auth', 'certificateFile'), file: auth.certificateFile, secret: false },
          { ...at('auth', 'privateKeyFile'), file: auth.privateKeyFile, secret: true },
        ];
      }
      return [];
    }
    if (tap.type === 'mqtt') {
      const files: TapFile[] = [];
      if (tap.passwordFile !== undefined) files.push({ ...at('passwordFile'), file: tap.passwordFile, secret: true });
      if (tap.tls?.caFile !== undefined) files.push({ ...at('tls', 'caFile'), file: tap.tls.caFile, secret: false });
      if (tap.tls?.certFile !== undefined) files.push({ ...at('tls', 'certFile'), file: tap.tls.certFile, secret: false });
      if (tap.tls?.keyFile !== undefined) files.push({ ...at('tls', 'keyFile'), file: tap.tls.keyFile, secret: true });
      return files;
    }
    return [];
  });
}

/** Opens the file for reading (so permissions are checked as this user) and checks it is a regular file. */
async function checkTapFile(named: TapFile, onWarning: (message: string) => void): Promise<void> {
  // O_NONBLOCK: a FIFO named by mistake must fail the regular-file check, not hang --check.
  const handle = await fs.open(named.file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${named.file}: not a regular file`);
    if (named.secret && stat.mode & 0o077) {
      onWarning(`tap "${named.tap}" ${named.setting} ${named.file} is readable by group or others (mode 0${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${named.file}`);
    }
  } finally {
    await handle.close();
  }
}
