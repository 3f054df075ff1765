/**
 * Config of an OPC-UA tap (one entry of `taps:` with `type: opcua`), checked and processed once
 * (Telegraf's check → process). Everything that can be checked without the server is checked
 * here: node id syntax, security mode/policy pairs, exactly one password source, unique point
 * names, deadbands only in subscribe mode. processOpcuaTap() then resolves what the driver runs
 * on (OpcuaTapSettings: node ids parsed, the effective security policy, the monitored-item groups).
 */
import { s, type Infer, type Processed, type RefineIssue } from '../../common/schema.js';
import { parseNodeId, type ParsedNodeId } from './node-id.js';

export const securityModes = ['None', 'Sign', 'SignAndEncrypt'] as const;
/** Current policies only: Basic128Rsa15 and Basic256 are deprecated (SHA-1) and refused. */
export const securityPolicies = ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'] as const;

/** Where the agent keeps its OPC-UA client certificate and trust lists unless pkiDir says otherwise. */
export const defaultPkiDir = '/var/lib/ghostpipe/opcua-pki';

const path = s.string({ minLength: 1, maxLength: 4096, hint: 'a file path' });

/** Parsed once here; the driver builds node-opcua's NodeId from the parsed form. */
const nodeId = s.process(s.string({ minLength: 1, maxLength: 4200, hint: 'an OPC-UA node id like "ns=2;s=Line1.Temperature"' }), (text) => {
  const parsed = parseNodeId(text);
  return typeof parsed === 'string' ? { ok: false, issues: [{ path: [], message: `invalid node id: ${parsed}` }] } : { ok: true, value: parsed };
});

/** A username login with its one password source: the file, or the inline password. */
export type UsernameAuth =
  | { type: 'username'; username: string; passwordFile: string; password?: undefined }
  | { type: 'username'; username: string; password: string; passwordFile?: undefined };

const auth = s.oneOf('type', {
  anonymous: s.object({ type: s.literal('anonymous') }),
  username: s.process(
    s.object({
      type: s.literal('username'),
      username: s.string({ minLength: 1, maxLength: 256 }),
      /** Inline password: allowed, but passwordFile (mode 0600) keeps it out of the config. */
      password: s.optional(s.string({ maxLength: 1024, secret: true })),
      passwordFile: s.optional(path),
    }),
    ({ type, username, password, passwordFile }): Processed<UsernameAuth> => {
      if (passwordFile !== undefined && password === undefined) return { ok: true, value: { type, username, passwordFile } };
      if (password !== undefined && passwordFile === undefined) return { ok: true, value: { type, username, password } };
      return { ok: false, issues: [{ path: [], message: 'must have exactly one of password, passwordFile' }] };
    },
  ),
  certificate: s.object({ type: s.literal('certificate'), certificateFile: path, privateKeyFile: path }),
});

const point = s.object({
  name: s.string({ minLength: 1, maxLength: 128 }),
  nodeId,
  unit: s.optional(s.string({ minLength: 1, maxLength: 32 })),
  /** Subscribe mode only. percent needs the variable's EURange (an AnalogItem) on the server. */
  deadband: s.optional(
    s.refine(s.object({ type: s.enum(['absolute', 'percent'] as const), value: s.number({ min: 0 }) }), (d) =>
      d.type === 'percent' && d.value > 100 ? [{ path: ['value'], message: `must be a number from 0 to 100 for a percent deadband; found ${d.value}` }] : undefined,
    ),
  ),
});

const opcuaTapObject = s.refine(
  s.object({
    name: s.string({ minLength: 1, maxLength: 64, pattern: /^[A-Za-z0-9_.-]+$/, hint: 'a name of letters, digits, "_", "." or "-"' }),
    type: s.literal('opcua'),
    interval: s.optional(s.duration({ min: 100, max: 86_400_000 })),
    endpoint: s.url({ protocols: ['opc.tcp'] }),
    securityMode: s.withDefault(s.enum(securityModes), 'SignAndEncrypt'),
    /** Default: None when securityMode is None, Basic256Sha256 otherwise. */
    securityPolicy: s.optional(s.enum(securityPolicies)),
    auth: s.withDefault(auth, { type: 'anonymous' as const }),
    pkiDir: s.withDefault(path, defaultPkiDir),
    mode: s.withDefault(s.enum(['read', 'subscribe'] as const), 'read'),
    samplingInterval: s.withDefault(s.duration({ min: 10, max: 3_600_000 }), 1000),
    queueSize: s.withDefault(s.integer({ min: 1, max: 1000 }), 1),
    timeout: s.withDefault(s.duration({ min: 100, max: 600_000 }), 5000),
    points: s.array(point, { minItems: 1, maxItems: 10_000 }),
  }),
  (tap) => {
    const issues: RefineIssue[] = [];
    const policy = tap.securityPolicy;
    if (policy !== undefined && (tap.securityMode === 'None') !== (policy === 'None')) {
      issues.push({
        path: ['securityPolicy'],
        message:
          tap.securityMode === 'None'
            ? `must be None when securityMode is None; found "${policy}"`
            : `must be one of ${securityPolicies.filter((p) => p !== 'None').join(', ')} when securityMode is ${tap.securityMode}; found "None"`,
      });
    }
    const seen = new Map<string, number>();
    tap.points.forEach((p, i) => {
      const first = seen.get(p.name);
      if (first !== undefined) issues.push({ path: ['points', i, 'name'], message: `duplicate point name "${p.name}" (also points[${first}])` });
      else seen.set(p.name, i);
      if (p.deadband && tap.mode !== 'subscribe') issues.push({ path: ['points', i, 'deadband'], message: 'only allowed with mode: subscribe' });
    });
    return issues.length > 0 ? issues : undefined;
  },
);

/** An OPC-UA tap as written, checked, with defaults applied (node ids parsed). */
export type OpcuaTapConfig = Infer<typeof opcuaTapObject>;
export type OpcuaPointConfig = OpcuaTapConfig['points'][number];
export type SecurityMode = (typeof securityModes)[number];
export type SecurityPolicy = (typeof securityPolicies)[number];
export type Deadband = NonNullable<OpcuaPointConfig['deadband']>;

export type OpcuaAuth = OpcuaTapConfig['auth'];

export interface OpcuaPointSettings {
  name: string;
  nodeId: ParsedNodeId;
  unit?: string;
  deadband?: Deadband;
}

/** Subscribe mode: the points monitored with one request, i.e. one filter (indexes into `points`). */
export interface MonitorGroup {
  deadband?: Deadband;
  points: number[];
}

/** What the driver runs on: durations in ms, every default applied, every rule checked. */
export interface OpcuaTapSettings {
  name: string;
  type: 'opcua';
  interval?: number;
  endpoint: string;
  securityMode: SecurityMode;
  /** As configured, else the default for the mode (defaultPolicy). */
  securityPolicy: SecurityPolicy;
  auth: OpcuaAuth;
  pkiDir: string;
  mode: 'read' | 'subscribe';
  samplingInterval: number;
  queueSize: number;
  /** Connect and per-request timeout, ms. */
  timeout: number;
  points: OpcuaPointSettings[];
  /** Subscribe mode: one group per distinct deadband, in order of first use; read mode: none. */
  monitorGroups: MonitorGroup[];
}

/** The policy when none is configured: None for securityMode None, Basic256Sha256 otherwise. */
export function defaultPolicy(mode: SecurityMode): SecurityPolicy {
  return mode === 'None' ? 'None' : 'Basic256Sha256';
}

/** The checked tap → the settings the driver runs on. Every rule was checked above: nothing can fail here. */
export function processOpcuaTap(tap: OpcuaTapConfig): Processed<OpcuaTapSettings> {
  const groups = new Map<string, MonitorGroup>();
  if (tap.mode === 'subscribe') {
    tap.points.forEach((point, index) => {
      const key = JSON.stringify(point.deadband ?? null);
      const group = groups.get(key) ?? { ...(point.deadband && { deadband: point.deadband }), points: [] };
      group.points.push(index);
      groups.set(key, group);
    });
  }
  return {
    ok: true,
    value: { ...tap, securityPolicy: tap.securityPolicy ?? defaultPolicy(tap.securityMode), monitorGroups: [...groups.values()] },
  };
}

export const opcuaTapSchema = s.process(opcuaTapObject, processOpcuaTap);
