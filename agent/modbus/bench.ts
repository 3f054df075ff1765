/**
 * Modbus tap benchmark: 10 devices × 50 points of mixed types against real local Modbus TCP
 * servers (modbus-serial ServerTCP on 127.0.0.1). Measures one collect() of the whole set (the
 * 10 taps in parallel, as the agent core runs them) and counts the requests per interval.
 * Run alone: node dist/agent/modbus/bench.js
 */
import { pathToFileURL } from 'node:url';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { formatTable, measure, type Row } from '../../common/table.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../../test/helpers/modbus-server.js';
import type { Tap } from '../tap.js';
import { encodeRegisters } from './decode.js';
import { createModbusTap, modbusTapSchema } from './index.js';

const DEVICES = 10;
const POINTS = 50;
const ITERATIONS = 40;

/** 50 points: 20 holding and 20 input registers of mixed types in runs of 5 with 3-register holes, 5 coils, 5 spread discrete inputs. */
function devicePoints(unitId: number, prefix: string): Record<string, unknown>[] {
  const points: Record<string, unknown>[] = [];
  const types = ['float32', 'int16', 'uint32', 'int64', 'float64', 'uint16', 'int32', 'bit'] as const;
  for (const table of ['holding', 'input'] as const) {
    let address = 0;
    for (let i = 0; i < 20; i++) {
      const type = types[i % types.length]!;
      points.push({ name: `${prefix}${table}${i}`, table, address, type, unitId, ...(type === 'bit' ? { bit: i % 16 } : {}), ...(type === 'int16' ? { scale: 0.1 } : {}) });
      address += (type === 'int64' || type === 'float64' ? 4 : type === 'float32' || type === 'uint32' || type === 'int32' ? 2 : 1) + (i % 5 === 4 ? 3 : 0);
    }
  }
  for (let i = 0; i < 5; i++) points.push({ name: `${prefix}coil${i}`, table: 'coil', address: i, type: 'bool', unitId });
  for (let i = 0; i < 5; i++) points.push({ name: `${prefix}di${i}`, table: 'discrete', address: i * 3, type: 'bool', unitId });
  return points.slice(0, POINTS);
}

function fillMemory(memory: ModbusMemory, unitId: number): void {
  for (let a = 0; a < 200; a += 2) {
    const words = encodeRegisters(a * 1.25, 'float32', 'ABCD');
    memory.setRegisters('holding', a, words, unitId);
    memory.setRegisters('input', a, words, unitId);
  }
  memory.setBits('coil', 0, Array.from({ length: 20 }, (_, i) => i % 3 === 0), unitId);
  memory.setBits('discrete', 0, Array.from({ length: 20 }, (_, i) => i % 2 === 0), unitId);
}

function tapFor(name: string, port: number, points: Record<string, unknown>[], maxGap: number): Tap {
  const config = validate(modbusTapSchema, { name, type: 'modbus', transport: 'tcp', host: '127.0.0.1', port, addressBase: 0, maxGap, points });
  return createModbusTap(config, { logger: silentLogger() });
}

async function run(taps: Tap[], servers: ModbusTcpTestServer[], name: string, note: string): Promise<Row> {
  for (const tap of taps) await tap.start();
  const end = Date.now() + 5000;
  while (!taps.every((t) => t.status().state === 'up')) {
    if (Date.now() > end) throw new Error(`${name}: taps did not connect`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const collectAll = async () => {
    const results = await Promise.all(taps.map((t) => t.collect(Date.now() + 5000)));
    const bad = results.flat().filter((r) => r.quality !== 'good');
    if (bad.length > 0) throw new Error(`${name}: ${bad.length} bad readings, e.g. ${bad[0]!.point}: ${bad[0]!.reason}`);
  };
  await collectAll();
  for (const s of servers) s.requests.length = 0;
  const result = await measure(collectAll, ITERATIONS, 3);
  const perInterval = servers.reduce((n, s) => n + s.requests.length, 0) / (ITERATIONS + 3);
  for (const tap of taps) await tap.stop();
  return { section: 'modbus tap', name, provider: 'modbus-serial tcp', ...result, note: `${perInterval} requests per interval; ${note}` };
}

export async function benchModbus(): Promise<Row[]> {
  const rows: Row[] = [];
  const servers: ModbusTcpTestServer[] = [];
  try {
    for (let d = 0; d < DEVICES; d++) {
      const memory = new ModbusMemory();
      fillMemory(memory, 1);
      servers.push(await startModbusTcpServer(memory));
    }
    for (const maxGap of [0, 8]) {
      const taps = servers.map((s, d) => tapFor(`dev${d}`, s.port, devicePoints(1, ''), maxGap));
      rows.push(await run(taps, servers, `collect ${DEVICES} devices × ${POINTS} points, maxGap ${maxGap}`, `${DEVICES} taps in parallel, one connection each`));
    }
    // A gateway: one connection, ten unit ids, requests strictly one after another.
    const gatewayMemory = new ModbusMemory();
    for (let u = 1; u <= DEVICES; u++) fillMemory(gatewayMemory, u);
    const gateway = await startModbusTcpServer(gatewayMemory);
    servers.push(gateway);
    const points = Array.from({ length: DEVICES }, (_, d) => devicePoints(d + 1, `u${d + 1}-`)).flat();
    rows.push(await run([tapFor('gateway', gateway.port, points, 8)], [gateway], `collect 1 gateway × ${DEVICES} unit ids × ${POINTS} points, maxGap 8`, 'one connection, serialized'));
  } finally {
    for (const s of servers) await s.stop();
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(formatTable(await benchModbus()));
}
