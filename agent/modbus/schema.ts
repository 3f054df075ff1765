/**
 * The `taps:` entry of a Modbus tap, checked and processed once (Telegraf's check → process).
 * The field schema validates each setting and applies its default; processModbusTap() checks
 * the rules that tie fields together (transport needs host or serial, a point's type fits its
 * table, addresses fit the address base, unique point names), each reported at its own path,
 * and produces ModbusTapSettings: resolved points, the request plan and the link target. The
 * driver runs on those and checks nothing again.
 */
import { s, type Infer, type Processed, type RefineIssue } from '../../common/schema.js';
import { BYTE_ORDERS, POINT_TYPES } from './decode.js';
import type { LinkTarget } from './link.js';
import { planRequests, TABLES, type PlannedRequest } from './plan.js';
import { MAX_STRING_LENGTH, resolvePoints, type ResolvedPoint } from './points.js';

export const TRANSPORTS = ['tcp', 'rtu', 'rtu-over-tcp'] as const;

/** Modbus TCP's registered port; no schema default, so that transport rtu can refuse a stray `port`. */
const DEFAULT_PORT = 502;

const pointSchema = s.object({
  name: s.string({ minLength: 1, maxLength: 128 }),
  table: s.enum(TABLES),
  /** In the tap's addressBase: 0..65535 for base 0, 1..65536 for base 1 (checked in refine). */
  address: s.integer({ min: 0, max: 65536 }),
  type: s.enum(POINT_TYPES),
  bit: s.optional(s.integer({ min: 0, max: 15 })),
  length: s.optional(s.integer({ min: 1, max: MAX_STRING_LENGTH })),
  byteOrder: s.optional(s.enum(BYTE_ORDERS)),
  unitId: s.optional(s.integer({ min: 0, max: 255 })),
  scale: s.optional(s.number()),
  offset: s.optional(s.number()),
  unit: s.optional(s.string({ minLength: 1, maxLength: 32 })),
});

const serialSchema = s.object({
  path: s.string({ minLength: 1, maxLength: 256, pattern: /^\//, hint: 'an absolute device path like "/dev/ttyUSB0"' }),
  baudRate: s.withDefault(s.integer({ min: 300, max: 4_000_000 }), 9600),
  parity: s.withDefault(s.enum(['none', 'even', 'odd'] as const), 'none'),
  dataBits: s.withDefault(s.integer({ min: 7, max: 8 }), 8),
  stopBits: s.withDefault(s.integer({ min: 1, max: 2 }), 1),
});

const modbusTapObject = s.object({
  name: s.string({ minLength: 1, maxLength: 128 }),
  type: s.literal('modbus'),
  interval: s.optional(s.duration({ min: 100 })),
  transport: s.enum(TRANSPORTS),
  host: s.optional(s.string({ minLength: 1, maxLength: 253, pattern: /^[A-Za-z0-9._:%-]+$/, hint: 'a host name or IP address' })),
  port: s.optional(s.integer({ min: 1, max: 65535 })),
  serial: s.optional(serialSchema),
  unitId: s.withDefault(s.integer({ min: 0, max: 255 }), 1),
  addressBase: s.union(s.literal(0), s.literal(1)),
  byteOrder: s.withDefault(s.enum(BYTE_ORDERS), 'ABCD'),
  timeout: s.withDefault(s.duration({ min: 10, max: 60_000 }), 1000),
  retries: s.withDefault(s.integer({ min: 0, max: 5 }), 1),
  maxGap: s.withDefault(s.integer({ min: 0, max: 124 }), 0),
  backoff: s.withDefault(
    s.object({ initial: s.withDefault(s.duration({ min: 10 }), 1000), max: s.withDefault(s.duration({ min: 10 }), 60_000) }),
    { initial: 1000, max: 60_000 },
  ),
  points: s.array(pointSchema, { minItems: 1, maxItems: 10_000 }),
});

/** A Modbus tap as written, checked field by field, with defaults applied. */
export type ModbusTapConfig = Infer<typeof modbusTapObject>;

/** What the driver runs on: every default applied, every cross-field rule checked, durations in ms. */
export interface ModbusTapSettings {
  name: string;
  type: 'modbus';
  interval?: number;
  /** The connection: host and port (502 unless set), or the serial line with its settings. */
  target: LinkTarget;
  addressBase: 0 | 1;
  /** Connect and per-request timeout, ms. */
  timeout: number;
  retries: number;
  /** Reconnect delays, ms. */
  backoff: { initial: number; max: number };
  /** Protocol addresses, widths, the effective unit id and byte order of every point. */
  points: ResolvedPoint[];
  /** The merged reads, made once; their `points` index into `points`. */
  plan: PlannedRequest[];
}

/** The cross-field rules, then the settings the driver runs on. Pure. */
export function processModbusTap(tap: ModbusTapConfig): Processed<ModbusTapSettings> {
  const issues: RefineIssue[] = [];
  const serialLine = tap.transport === 'rtu';
  if (serialLine) {
    if (!tap.serial) issues.push({ path: ['serial'], message: 'required for transport rtu (serial: {path: /dev/ttyUSB0, ...})' });
    if (tap.host !== undefined) issues.push({ path: ['host'], message: 'not used by transport rtu; remove it or use transport tcp or rtu-over-tcp' });
    if (tap.port !== undefined) issues.push({ path: ['port'], message: 'not used by transport rtu; remove it or use transport tcp or rtu-over-tcp' });
  } else {
    if (tap.host === undefined) issues.push({ path: ['host'], message: `required for transport ${tap.transport}` });
    if (tap.serial !== undefined) issues.push({ path: ['serial'], message: `not used by transport ${tap.transport}; remove it or use transport rtu` });
  }
  // Serial unit ids are 1..247 (0 is broadcast and never answers a read).
  const unitOk = (id: number) => !serialLine || (id >= 1 && id <= 247);
  if (!unitOk(tap.unitId)) issues.push({ path: ['unitId'], message: `must be from 1 to 247 on a serial line; found ${tap.unitId}` });
  tap.points.forEach((p, i) => {
    if (p.unitId !== undefined && !unitOk(p.unitId)) issues.push({ path: ['points', i, 'unitId'], message: `must be from 1 to 247 on a serial line; found ${p.unitId}` });
  });
  if (tap.backoff.initial > tap.backoff.max) issues.push({ path: ['backoff', 'initial'], message: `must not exceed backoff.max (${tap.backoff.max} ms); found ${tap.backoff.initial} ms` });
  const resolved = resolvePoints(tap.points, tap);
  issues.push(...resolved.issues);
  if (issues.length > 0) return { ok: false, issues };
  // What the target, the resolved points and the plan are made of does not reach the driver.
  const { transport: _transport, host: _host, port: _port, serial: _serial, unitId: _unitId, byteOrder: _byteOrder, maxGap, points: _points, ...kept } = tap;
  return { ok: true, value: { ...kept, target: linkTarget(tap), points: resolved.points, plan: planRequests(resolved.points, { maxGap }) } };
}

/** Where the link goes; called once the rules above hold (rtu has serial, the others host). */
function linkTarget(tap: ModbusTapConfig): LinkTarget {
  if (tap.transport === 'rtu') {
    const { path, baudRate, parity, dataBits, stopBits } = tap.serial!;
    return { transport: 'rtu', path, baudRate, parity, dataBits, stopBits };
  }
  return { transport: tap.transport, host: tap.host!, port: tap.port ?? DEFAULT_PORT };
}

export const modbusTapSchema = s.process(modbusTapObject, processModbusTap);
