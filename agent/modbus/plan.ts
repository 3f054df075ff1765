/**
 * The request planner: merges points into as few Modbus read requests as possible. Pure.
 *
 * Points of the same unit id and table are sorted by address and merged greedily while the
 * hole between the request so far and the next point is at most `maxGap` (in the table's own
 * units: registers or bits) and the request stays within the protocol limits (125 registers,
 * 2000 bits). Overlapping points share a request. Nothing is ever merged across unit ids or
 * tables.
 */

export const TABLES = ['coil', 'discrete', 'holding', 'input'] as const;
export type Table = (typeof TABLES)[number];

/** Protocol limits of a single read (Modbus application protocol v1.1b3, FC 1-4). */
export const MAX_READ_REGISTERS = 125;
export const MAX_READ_BITS = 2000;

export function isBitTable(table: Table): boolean {
  return table === 'coil' || table === 'discrete';
}

export interface PlanPoint {
  unitId: number;
  table: Table;
  /** Protocol address (0-based, 0..65535). */
  address: number;
  /** Registers (or bits) the point occupies. */
  width: number;
}

export interface PlannedRequest {
  unitId: number;
  table: Table;
  /** Protocol address of the first register or bit. */
  start: number;
  count: number;
  /** Indexes into the planner's input, in address order. */
  points: number[];
}

export interface PlanOptions {
  maxGap?: number;
  maxRegisters?: number;
  maxBits?: number;
}

export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

export function planRequests(points: readonly PlanPoint[], options: PlanOptions = {}): PlannedRequest[] {
  const maxGap = options.maxGap ?? 0;
  const limit = (table: Table) => (isBitTable(table) ? (options.maxBits ?? MAX_READ_BITS) : (options.maxRegisters ?? MAX_READ_REGISTERS));

  const order = points.map((_, i) => i);
  order.sort((a, b) => {
    const p = points[a]!;
    const q = points[b]!;
    return p.unitId - q.unitId || TABLES.indexOf(p.table) - TABLES.indexOf(q.table) || p.address - q.address || q.width - p.width || a - b;
  });

  const requests: PlannedRequest[] = [];
  let current: PlannedRequest | undefined;
  for (const index of order) {
    const p = points[index]!;
    const max = limit(p.table);
    if (p.width < 1 || p.width > max) throw new PlanError(`point ${index} spans ${p.width} ${isBitTable(p.table) ? 'bits' : 'registers'}; one request reads 1..${max}`);
    if (p.address < 0 || p.address + p.width > 0x10000) throw new PlanError(`point ${index} at address ${p.address} (+${p.width}) is outside 0..65535`);
    const end = p.address + p.width;
    if (current && current.unitId === p.unitId && current.table === p.table) {
      const currentEnd = current.start + current.count;
      const newCount = Math.max(currentEnd, end) - current.start;
      if (p.address - currentEnd <= maxGap && newCount <= max) {
        current.count = newCount;
        current.points.push(index);
        continue;
      }
    }
    current = { unitId: p.unitId, table: p.table, start: p.address, count: p.width, points: [index] };
    requests.push(current);
  }
  return requests;
}
