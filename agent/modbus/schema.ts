/**
 * The `taps:` entry of a Modbus tap. Field-level rules live in the schema; the rules that tie
 * fields together (transport needs host or serial, a point's type fits its table, addresses fit
 * the address base) run in one refine step so every problem is reported at its own path.
 */
import { s, type Infer, type RefineIssue } from '../../common/schema.js';
import { BYTE_ORDERS, POINT_TYPES } from './decode.js';
import { TABLES } from './plan.js';
import { MAX_STRING_LENGTH, resolvePoints } from './points.js';

export const TRANSPORTS = ['tcp', 'rtu', 'rtu-over-tcp'] as const;

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

function crossCheck(tap: Infer<typeof modbusTapObject>): RefineIssue[] | undefined {
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
  issues.push(...resolvePoints(tap.points, tap).issues);
  return issues.length > 0 ? issues : undefined;
}

export const modbusTapSchema = s.refine(modbusTapObject, crossCheck);
export type ModbusTapConfig = Infer<typeof modbusTapSchema>;
