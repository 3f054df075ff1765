/**
 * The Modbus tap on real serial lines: modbus-serial's ServerSerial on one end of a socat pty
 * pair, the tap on the other; and RTU over TCP through socat bridging a TCP port to the pty.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { ModbusMemory, startModbusSerialServer } from '../../test/helpers/modbus-server.js';
import { bridgeTcpToSerial, openPtyPair, socatAvailable } from '../../test/helpers/pty.js';
import type { Reading, Tap } from '../tap.js';
import { encodeRegisters } from './decode.js';
import { createModbusTap, modbusTapSchema } from './index.js';
import { until } from '../../test/helpers/wait.js';

before(() => {
  // Not a skip: without socat these tests cannot run, and that must be visible as a failure.
  assert.ok(socatAvailable(), 'socat is required for the RTU tests: run scripts/install-deps.sh --test (Debian package socat)');
});

function makeTap(fields: Record<string, unknown>): Tap {
  const config = validate(modbusTapSchema, { name: 'rtu', type: 'modbus', addressBase: 0, backoff: { initial: '50ms', max: '200ms' }, ...fields });
  return createModbusTap(config, { logger: silentLogger() });
}

function byName(readings: Reading[]): Map<string, Reading> {
  return new Map(readings.map((r) => [r.point, r]));
}

function deviceMemory(): ModbusMemory {
  const memory = new ModbusMemory();
  for (const unit of [1, 2, 3]) {
    memory.setRegisters('holding', 0, encodeRegisters(Math.fround(unit * 1.5), 'float32', 'CDAB'), unit);
    memory.setRegisters('holding', 2, encodeRegisters(-unit, 'int32', 'ABCD'), unit);
    memory.setRegisters('input', 10, encodeRegisters(`DEV${unit}`, 'string', 'ABCD', { length: 4 }), unit);
    memory.setBits('coil', 0, [unit % 2 === 1, true, false], unit);
  }
  return memory;
}

const devicePoints = (unitId: number) => [
  { name: `u${unitId}-f`, table: 'holding', address: 0, type: 'float32', byteOrder: 'CDAB', unitId },
  { name: `u${unitId}-i`, table: 'holding', address: 2, type: 'int32', unitId },
  { name: `u${unitId}-s`, table: 'input', address: 10, type: 'string', length: 4, unitId },
  { name: `u${unitId}-c0`, table: 'coil', address: 0, type: 'bool', unitId },
  { name: `u${unitId}-c1`, table: 'coil', address: 1, type: 'bool', unitId },
  { name: `u${unitId}-c2`, table: 'coil', address: 2, type: 'bool', unitId },
];

function checkDevice(r: Map<string, Reading>, unitId: number): void {
  for (const [suffix, value] of [['f', unitId * 1.5], ['i', -unitId], ['s', `DEV${unitId}`], ['c0', unitId % 2 === 1], ['c1', true], ['c2', false]] as const) {
    const reading = r.get(`u${unitId}-${suffix}`)!;
    assert.equal(reading.quality, 'good', `u${unitId}-${suffix}: ${reading.reason}`);
    assert.equal(reading.value, value, `u${unitId}-${suffix}`);
  }
}

test('RTU over a pty pair: types, merged requests, exceptions', async () => {
  const pty = await openPtyPair();
  const memory = deviceMemory();
  memory.failRange('holding', 50, 2, 3, 2);
  const server = await startModbusSerialServer(pty.a, memory, { baudRate: 19200 });
  const tap = makeTap({
    transport: 'rtu',
    serial: { path: pty.b, baudRate: 19200, parity: 'none' },
    points: [...devicePoints(1), ...devicePoints(2), { name: 'broken', table: 'holding', address: 50, type: 'uint32', unitId: 2 }],
  });
  try {
    await tap.start();
    await until('port open', () => tap.status().state === 'up');
    const r = byName(await tap.collect(Date.now() + 3000));
    checkDevice(r, 1);
    checkDevice(r, 2);
    assert.equal(r.get('broken')!.reason, 'modbus exception 3 (illegal data value) for holding 50..51');
    // Per unit: coils 0..2, holding 0..3 (and 50..51 for unit 2), input 10..11.
    assert.deepEqual(
      server.requests.map((q) => `${q.unitId}:${q.functionCode}:${q.address}+${q.count}`),
      ['1:1:0+3', '1:3:0+4', '1:4:10+2', '2:1:0+3', '2:3:0+4', '2:3:50+2', '2:4:10+2'],
    );
    assert.equal(tap.status().requests, 7);
  } finally {
    await tap.stop();
    await server.close();
    await pty.close();
  }
});

test('taps sharing one serial line never put two requests on the bus at once', async () => {
  const pty = await openPtyPair();
  const server = await startModbusSerialServer(pty.a, deviceMemory());
  // Three taps on the same path: each collect is 3 requests; concurrent collects would garble
  // frames on the line (the server reads one frame per quiet gap) if they were not serialized.
  const taps = [1, 2, 3].map((unitId) => makeTap({ name: `tap${unitId}`, transport: 'rtu', serial: { path: pty.b }, unitId, points: devicePoints(unitId) }));
  try {
    for (const tap of taps) await tap.start();
    await until('line open', () => taps.every((t) => t.status().state === 'up'));
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(taps.map((t) => t.collect(Date.now() + 5000)));
      results.forEach((readings, i) => checkDevice(byName(readings), i + 1));
    }
    assert.equal(server.requests.length, 27);
    // Stopping one tap leaves the shared line open for the others.
    await taps[0]!.stop();
    checkDevice(byName(await taps[1]!.collect(Date.now() + 2000)), 2);
  } finally {
    for (const tap of taps) await tap.stop();
    await server.close();
    await pty.close();
  }
});

test('a late answer never passes for the answer to a later request', async () => {
  const pty = await openPtyPair({ countTransfers: true });
  const memory = deviceMemory();
  // Unit 2 answers 1 s late: after our 300 ms timeout and after unit 3 was read, so its answer
  // lands in the port buffer while the line is idle, looking exactly like the next answer.
  memory.delayedUnits.set(2, 1000);
  const server = await startModbusSerialServer(pty.a, memory);
  const tap = makeTap({ transport: 'rtu', serial: { path: pty.b }, timeout: '300ms', retries: 0, points: [...devicePoints(2), ...devicePoints(3)] });
  try {
    await tap.start();
    await until('port open', () => tap.status().state === 'up');
    const first = byName(await tap.collect(Date.now() + 3000));
    for (const name of ['u2-f', 'u2-i', 'u2-s', 'u2-c0', 'u2-c1', 'u2-c2']) assert.equal(first.get(name)!.reason, 'timeout after 300 ms (unit 2, coil 0..2)', name);
    checkDevice(first, 3);
    assert.equal(tap.status().state, 'up', 'unit 3 answered');
    // The late answer is sent: it reaches the tap's port while the line is idle (the tap then
    // lets the line settle before its next request, agent/modbus/link.ts).
    await until('the late answer of unit 2 sent', () => memory.lateAnswers >= 1);
    // ... and has crossed the line: under load socat may forward it long after the device wrote
    // it, and a line that slow is not what this test is about (on a real line the delay is the
    // wire's, bounded by the baud rate).
    await until('the late answer on the tap\'s side of the line', () => pty.transferred().aToB >= server.bytesWritten());
    // Unit 2 recovers with new values; the stale answer still buffered holds the old ones.
    memory.delayedUnits.delete(2);
    memory.setBits('coil', 0, [true, false, true], 2);
    const second = byName(await tap.collect(Date.now() + 3000));
    assert.deepEqual(['u2-c0', 'u2-c1', 'u2-c2'].map((n) => second.get(n)!.value), [true, false, true]);
    assert.equal(second.get('u2-f')!.value, 3);
    checkDevice(second, 3);
  } finally {
    await tap.stop();
    await server.close();
    await pty.close();
  }
});

test('RTU over TCP: raw RTU frames through a TCP-to-serial bridge', async () => {
  const pty = await openPtyPair();
  const memory = deviceMemory();
  memory.failRange('input', 10, 1, 2, 1);
  const server = await startModbusSerialServer(pty.a, memory);
  const bridge = await bridgeTcpToSerial(pty.b);
  const tap = makeTap({ transport: 'rtu-over-tcp', host: '127.0.0.1', port: bridge.port, points: [...devicePoints(1), ...devicePoints(3)] });
  try {
    await tap.start();
    await until('connected', () => tap.status().state === 'up');
    const r = byName(await tap.collect(Date.now() + 3000));
    checkDevice(r, 3);
    assert.equal(r.get('u1-f')!.value, 1.5);
    assert.equal(r.get('u1-s')!.reason, 'modbus exception 2 (illegal data address) for input 10..11');
    // The server on the pty only speaks RTU: it saw our frames, with CRC, unwrapped.
    assert.equal(server.requests.length, 6);
  } finally {
    await tap.stop();
    await bridge.close();
    await server.close();
    await pty.close();
  }
});
