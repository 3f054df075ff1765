/**
 * Config schema of an OPC-UA tap (one entry of `taps:` with `type: opcua`). Everything that can
 * be checked without the server is checked here: node id syntax, security mode/policy pairs,
 * exactly one password source, unique point names, deadbands only in subscribe mode.
 */
import { s, type Infer, type RefineIssue } from '../../common/schema.js';
import { parseNodeId } from './node-id.js';

export const securityModes = ['None', 'Sign', 'SignAndEncrypt'] as const;
/** Current policies only: Basic128Rsa15 and Basic256 are deprecated (SHA-1) and refused. */
export const securityPolicies = ['None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'] as const;

/** Where the agent keeps its OPC-UA client certificate and trust lists unless pkiDir says otherwise. */
export const defaultPkiDir = '/var/lib/ghostpipe/opcua-pki';

const path = s.string({ minLength: 1, maxLength: 4096, hint: 'a file path' });

const nodeId = s.refine(s.string({ minLength: 1, maxLength: 4200, hint: 'an OPC-UA node id like "ns=2;s=Line1.Temperature"' }), (text) => {
  const parsed = parseNodeId(text);
  return typeof parsed === 'string' ? `invalid node id: ${parsed}` : undefined;
});

const auth = s.oneOf('type', {
  anonymous: s.object({ type: s.literal('anonymous') }),
  username: s.refine(
    s.object({
      type: s.literal('username'),
      username: s.string({ minLength: 1, maxLength: 256 }),
      /** Inline password: allowed, but passwordFile (mode 0600) keeps it out of the config. */
      password: s.optional(s.string({ maxLength: 1024, secret: true })),
      passwordFile: s.optional(path),
    }),
    (a) => ((a.password === undefined) === (a.passwordFile === undefined) ? 'must have exactly one of password, passwordFile' : undefined),
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

export const opcuaTapSchema = s.refine(
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

export type OpcuaTapConfig = Infer<typeof opcuaTapSchema>;
export type OpcuaPointConfig = OpcuaTapConfig['points'][number];
