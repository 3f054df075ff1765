/**
 * OPC-UA DataValue -> Reading. Kept apart from the driver so the mapping is easy to audit:
 * status severity -> quality, Variant -> ReadingValue, timestamps kept.
 */
import type { Quality, Reading, ReadingValue } from '../tap.js';

/** The parts of a node-opcua DataValue this mapping uses (structural, so no import is needed). */
export interface DataValueLike {
  value: { dataType: number; arrayType: number; value: unknown };
  statusCode: { value: number; name: string };
  sourceTimestamp?: Date | null;
  serverTimestamp?: Date | null;
}

/** Severity is the top two bits of a StatusCode (Part 4, 7.39): 00 good, 01 uncertain, 1x bad. */
export function qualityOf(statusCode: number): Quality {
  const severity = statusCode >>> 30;
  return severity === 0 ? 'good' : severity === 1 ? 'uncertain' : 'bad';
}

// OPC-UA built-in DataType ids (Part 6, 5.1.2).
const enum Builtin {
  Null = 0, Boolean = 1, SByte = 2, Byte = 3, Int16 = 4, UInt16 = 5, Int32 = 6, UInt32 = 7, Int64 = 8, UInt64 = 9,
  Float = 10, Double = 11, String = 12, DateTime = 13, Guid = 14, ByteString = 15, XmlElement = 16, NodeId = 17,
  ExpandedNodeId = 18, StatusCode = 19, QualifiedName = 20, LocalizedText = 21,
}

/** A Variant's value as a ReadingValue, or an error string when the type is not carried (arrays, structures). */
export function readingValueOf(variant: DataValueLike['value']): { value: ReadingValue } | { error: string } {
  if (variant.arrayType !== 0) return { error: 'unsupported value: arrays are not carried' };
  const v = variant.value;
  switch (variant.dataType) {
    case Builtin.Null:
      return { value: null };
    case Builtin.Boolean:
      return { value: Boolean(v) };
    case Builtin.SByte: case Builtin.Byte: case Builtin.Int16: case Builtin.UInt16: case Builtin.Int32: case Builtin.UInt32:
    case Builtin.Float: case Builtin.Double:
      return { value: Number(v) };
    case Builtin.Int64: case Builtin.UInt64:
      return { value: int64Of(v, variant.dataType === Builtin.Int64) };
    case Builtin.String: case Builtin.XmlElement:
      return { value: v == null ? null : String(v) };
    case Builtin.DateTime:
      return { value: v instanceof Date ? v.getTime() : null };
    case Builtin.ByteString:
      return { value: Buffer.isBuffer(v) ? v.toString('base64') : null };
    case Builtin.Guid: case Builtin.NodeId: case Builtin.ExpandedNodeId:
      return { value: v == null ? null : String(v) };
    case Builtin.StatusCode:
      return { value: (v as { name?: string } | null)?.name ?? null };
    case Builtin.QualifiedName: case Builtin.LocalizedText:
      return { value: (v as { name?: string; text?: string } | null)?.text ?? (v as { name?: string } | null)?.name ?? null };
    default:
      return { error: `unsupported value: data type ${variant.dataType} (structures are not carried)` };
  }
}

/** node-opcua represents 64-bit integers as [high, low] 32-bit words; bigint keeps them exact. */
function int64Of(v: unknown, signed: boolean): bigint {
  if (typeof v === 'bigint') return v;
  if (Array.isArray(v) && v.length === 2) {
    const raw = (BigInt((v[0] as number) >>> 0) << 32n) | BigInt((v[1] as number) >>> 0);
    return signed ? BigInt.asIntN(64, raw) : raw;
  }
  return BigInt(Math.trunc(Number(v)));
}

/** One Reading from a DataValue. Bad: value null, reason = status name. Uncertain keeps the value. */
export function readingOf(tap: string, point: string, unit: string | undefined, dv: DataValueLike, readTime: number): Reading {
  const quality = qualityOf(dv.statusCode.value);
  const reading: Reading = { tap, point, value: null, quality, readTime };
  if (unit !== undefined) reading.unit = unit;
  if (dv.sourceTimestamp) reading.sourceTime = dv.sourceTimestamp.getTime();
  if (dv.serverTimestamp) reading.serverTime = dv.serverTimestamp.getTime();
  if (quality !== 'good') reading.reason = dv.statusCode.name;
  if (quality === 'bad') return reading;
  const converted = readingValueOf(dv.value);
  if ('error' in converted) {
    reading.quality = 'bad';
    reading.reason = converted.error;
    return reading;
  }
  reading.value = converted.value;
  return reading;
}
