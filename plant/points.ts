/**
 * The plant's point map: which value sits where on which protocol, and how it is encoded.
 * One source of truth for the servers (plant/*.ts), the demo's agent config (plant/agent-taps.ts)
 * and the tests. Documented in plant/README.md.
 */
import { pumpedLitresU32, statusText, type PlantState } from './model.js';

// ---- Modbus TCP (unit id 1; addresses are protocol addresses, base 0) ----
export const MODBUS = {
  /** input register 0, uint16, millimetres. */
  levelMm: { table: 'input', address: 0 },
  /** input registers 2-3, float32 ABCD, amperes. */
  pumpCurrent: { table: 'input', address: 2 },
  /** holding registers 10-11, uint32 CDAB (low word first), litres pumped. */
  flowTotalL: { table: 'holding', address: 10 },
  /** holding registers 20-23, uint64 ABCD, millilitres pumped. */
  pumpedMl: { table: 'holding', address: 20 },
  /** coil 0: pump running. */
  pumpRunning: { table: 'coil', address: 0 },
  /** discrete input 0: low-level alarm. */
  lowLevelAlarm: { table: 'discrete', address: 0 },
} as const;

// ---- OPC-UA (namespace urn:ghostpipe:plant, string node ids) ----
export const OPCUA_NAMESPACE = 'urn:ghostpipe:plant';
export const OPCUA_PATH = '/ghostpipe-plant';
export const OPCUA = {
  tankTemperature: 'Tank1.Temperature',
  motorTemperature: 'Pump1.MotorTemperature',
  status: 'Tank1.Status',
} as const;

// ---- MQTT (JSON, retained, once a second) ----
export const MQTT_TOPICS = {
  valve: 'plant/area1/valve1/telemetry',
  outlet: 'plant/area1/outlet1/telemetry',
} as const;

/** float32 as two registers, big-endian (ABCD). */
export function float32Words(value: number): [number, number] {
  const b = Buffer.alloc(4);
  b.writeFloatBE(value);
  return [b.readUInt16BE(0), b.readUInt16BE(2)];
}

/** uint32 as two registers, low word first (CDAB). */
export function uint32WordsCdab(value: number): [number, number] {
  return [value & 0xffff, (value >>> 16) & 0xffff];
}

/** uint64 as four registers, big-endian (ABCD). */
export function uint64Words(value: bigint): [number, number, number, number] {
  const v = BigInt.asUintN(64, value);
  return [Number((v >> 48n) & 0xffffn), Number((v >> 32n) & 0xffffn), Number((v >> 16n) & 0xffffn), Number(v & 0xffffn)];
}

/** float32 rounding, so a test can predict what a float32 register decodes to. */
export const toFloat32 = (x: number): number => Math.fround(x);

export const levelMm = (s: PlantState): number => Math.round(s.levelM * 1000);

/** Every value as an agent reading it through the demo config would see it (tap, point) -> value. */
export function expectedReadings(s: PlantState): Record<string, number | bigint | boolean | string> {
  return {
    'plc1/level': levelMm(s) * 0.001,
    'plc1/pump-current': toFloat32(s.pumpCurrentA),
    'plc1/flow-total': pumpedLitresU32(s),
    'plc1/pumped-ml': s.pumpedMl,
    'plc1/pump-running': s.pumpRunning,
    'plc1/low-level-alarm': s.lowLevelAlarm,
    'opcua1/tank-temperature': roundTo(s.tankTempC, 2),
    'opcua1/motor-temperature': roundTo(s.motorTempC, 2),
    'opcua1/status': statusText(s),
    'mqtt1/valve-position': roundTo(s.valvePercent, 1),
    'mqtt1/outlet-flow': roundTo(s.outletFlowM3h, 2),
  };
}

/** Values served over OPC-UA and MQTT are rounded like a real transmitter's resolution. */
export function roundTo(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
