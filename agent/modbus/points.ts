/**
 * From configured points (addresses in the tap's address base, optional per-point overrides)
 * to resolved points (protocol addresses, widths, effective unit id and byte order), with the
 * cross-field rules a per-field schema cannot express. Pure.
 */
import { registerCount, type ByteOrder, type PointType } from './decode.js';
import { isBitTable, MAX_READ_BITS, MAX_READ_REGISTERS, type Table } from './plan.js';

export interface PointSettings {
  name: string;
  table: Table;
  address: number;
  type: PointType;
  /** Bit 0..15 of a register, for type 'bit'. */
  bit?: number;
  /** Characters, for type 'string' (two per register). */
  length?: number;
  byteOrder?: ByteOrder;
  unitId?: number;
  scale?: number;
  offset?: number;
  unit?: string;
}

export interface ResolvedPoint {
  name: string;
  table: Table;
  /** The address as configured (in the tap's address base), for messages. */
  configAddress: number;
  /** Protocol address, 0..65535. */
  address: number;
  /** Registers or bits occupied. */
  width: number;
  type: PointType;
  order: ByteOrder;
  unitId: number;
  bit?: number;
  length?: number;
  scale?: number;
  offset?: number;
  unit?: string;
}

export interface PointIssue {
  /** Path relative to the tap, e.g. ['points', 2, 'type']. */
  path: (string | number)[];
  message: string;
}

/** Longest string one request can read: 125 registers of two characters. */
export const MAX_STRING_LENGTH = MAX_READ_REGISTERS * 2;

export function resolvePoints(
  points: readonly PointSettings[],
  tap: { addressBase: 0 | 1; byteOrder: ByteOrder; unitId: number },
): { points: ResolvedPoint[]; issues: PointIssue[] } {
  const issues: PointIssue[] = [];
  const resolved: ResolvedPoint[] = [];
  const seen = new Map<string, number>();
  points.forEach((p, i) => {
    const at = (field: string) => ['points', i, field];
    const before = issues.length;
    const previous = seen.get(p.name);
    if (previous !== undefined) issues.push({ path: at('name'), message: `duplicate point name "${p.name}" (also points[${previous}])` });
    else seen.set(p.name, i);

    const bitTable = isBitTable(p.table);
    if (bitTable && p.type !== 'bool') issues.push({ path: at('type'), message: `a ${p.table} point must have type bool; found "${p.type}"` });
    if (!bitTable && p.type === 'bool') issues.push({ path: at('type'), message: `type bool is for coil and discrete tables; use type bit with bit: 0..15 for a bit of a ${p.table} register` });
    if (p.type === 'bit' && p.bit === undefined) issues.push({ path: at('bit'), message: 'type bit needs bit: 0..15' });
    if (p.type !== 'bit' && p.bit !== undefined) issues.push({ path: at('bit'), message: `bit is only for type bit; found type "${p.type}"` });
    if (p.type === 'string' && p.length === undefined) issues.push({ path: at('length'), message: `type string needs length (characters, 1..${MAX_STRING_LENGTH})` });
    if (p.type !== 'string' && p.length !== undefined) issues.push({ path: at('length'), message: `length is only for type string; found type "${p.type}"` });
    const noScale = p.type === 'bool' || p.type === 'bit' || p.type === 'string';
    if (noScale && p.scale !== undefined) issues.push({ path: at('scale'), message: `scale is not allowed for type ${p.type}` });
    if (noScale && p.offset !== undefined) issues.push({ path: at('offset'), message: `offset is not allowed for type ${p.type}` });
    if (bitTable && p.byteOrder !== undefined) issues.push({ path: at('byteOrder'), message: `byteOrder does not apply to ${p.table} points` });

    const width = bitTable ? 1 : registerCount(p.type === 'bool' ? 'uint16' : p.type, p.length ?? 0);
    const address = p.address - tap.addressBase;
    const last = 0xffff + tap.addressBase;
    if (address < 0 || address + width - 1 > 0xffff) {
      const span = width > 1 ? ` and its ${width} ${bitTable ? 'bits' : 'registers'}` : '';
      issues.push({ path: at('address'), message: `address ${p.address}${span} must lie within ${tap.addressBase}..${last} (addressBase ${tap.addressBase})` });
    }
    if (width > (bitTable ? MAX_READ_BITS : MAX_READ_REGISTERS)) issues.push({ path: at('length'), message: `string of ${p.length} characters is longer than one request can read (${MAX_STRING_LENGTH})` });
    if (issues.length > before) return;
    resolved.push({
      name: p.name,
      table: p.table,
      configAddress: p.address,
      address,
      width,
      type: p.type,
      order: p.byteOrder ?? tap.byteOrder,
      unitId: p.unitId ?? tap.unitId,
      ...(p.bit !== undefined && { bit: p.bit }),
      ...(p.length !== undefined && { length: p.length }),
      ...(p.scale !== undefined && { scale: p.scale }),
      ...(p.offset !== undefined && { offset: p.offset }),
      ...(p.unit !== undefined && { unit: p.unit }),
    });
  });
  return { points: resolved, issues };
}
