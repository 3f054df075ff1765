/** The Modbus tap against real Modbus TCP servers (modbus-serial ServerTCP) on 127.0.0.1. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { ModbusMemory, startModbusTcpServer, startSilentTcpServer } from '../../test/helpers/modbus-server.js';
import { followedTap } from '../../test/helpers/followed-tap.js';
import { reservePort } from '../../test/helpers/ports.js';
import type { Reading, Tap } from '../tap.js';
import { BYTE_ORDERS, encodeRegisters, type ByteOrder, type DecodedValue, type RegisterType } from './decode.js';
import { createModbusTap, modbusTapSchema } from './index.js';
import { until } from '../../test/helpers/wait.js';

function tapConfig(fields: Record<string, unknown>) {
  return validate(modbusTapSchema, { name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', addressBase: 0, backoff: { initial: '50ms', max: '200ms' }, ...fields });
}

function makeTap(fields: Record<string, unknown>): Tap {
  return createModbusTap(tapConfig(fields), { logger: silentLogger() });
}

function byName(readings: Reading[]): Map<string, Reading> {
  return new Map(readings.map((r) => [r.point, r]));
}

async function startedTap(fields: Record<string, unknown>): Promise<Tap> {
  const tap = makeTap(fields);
  await tap.start();
  await until('tap up', () => tap.status().state === 'up');
  return tap;
}

const samples: { type: RegisterType; value: DecodedValue; length?: number }[] = [
  { type: 'int16', value: -12345 },
  { type: 'uint16', value: 54321 },
  { type: 'int32', value: -123456789 },
  { type: 'uint32', value: 3735928559 },
  { type: 'int64', value: -9007199254740993n },
  { type: 'uint64', value: 18446744073709551557n },
  { type: 'float32', value: Math.fround(123.456) },
  { type: 'float64', value: -0.1 },
  { type: 'string', value: 'Pump-07', length: 9 },
];

test('every type in every byte order decodes from a real server, in merged requests', async () => {
  const memory = new ModbusMemory();
  const points: Record<string, unknown>[] = [];
  const expected = new Map<string, DecodedValue>();
  let address = 0;
  for (const order of BYTE_ORDERS) {
    for (const s of samples) {
      const words = encodeRegisters(s.value, s.type, order, s.length ? { length: s.length } : {});
      memory.setRegisters('holding', address, words);
      memory.setRegisters('input', address, words);
      for (const table of ['holding', 'input']) {
        const name = `${table}-${s.type}-${order}`;
        points.push({ name, table, address, type: s.type, byteOrder: order, ...(s.length && { length: s.length }) });
        expected.set(name, s.value);
      }
      address += words.length;
    }
  }
  // Bits of a register: 0xA005 has bits 0, 2, 13, 15 set.
  memory.setRegisters('holding', 500, [0xa005]);
  for (const bit of [0, 1, 2, 13, 14, 15]) {
    points.push({ name: `bit${bit}`, table: 'holding', address: 500, type: 'bit', bit, byteOrder: 'ABCD' });
    expected.set(`bit${bit}`, [0, 2, 13, 15].includes(bit));
  }
  // With the tap's default DCBA the register reads byte-swapped, 0x05A0: bit 8 set, bit 0 clear.
  points.push({ name: 'swapped-bit8', table: 'holding', address: 500, type: 'bit', bit: 8 }, { name: 'swapped-bit0', table: 'holding', address: 500, type: 'bit', bit: 0 });
  expected.set('swapped-bit8', true).set('swapped-bit0', false);
  // Coils come back from modbus-serial as whole bytes; 3 requested bits must give 3 values.
  memory.setBits('coil', 10, [true, false, true, true, true, true, true, true]);
  memory.setBits('discrete', 7, [false, true]);
  points.push({ name: 'c10', table: 'coil', address: 10, type: 'bool' }, { name: 'c11', table: 'coil', address: 11, type: 'bool' }, { name: 'c12', table: 'coil', address: 12, type: 'bool' });
  points.push({ name: 'd7', table: 'discrete', address: 7, type: 'bool' }, { name: 'd8', table: 'discrete', address: 8, type: 'bool' });
  expected.set('c10', true).set('c11', false).set('c12', true).set('d7', false).set('d8', true);

  const server = await startModbusTcpServer(memory);
  const tap = await startedTap({ port: server.port, byteOrder: 'DCBA', points });
  try {
    server.requests.length = 0;
    const readings = await tap.collect(Date.now() + 3000);
    assert.equal(readings.length, points.length);
    for (const r of readings) {
      assert.equal(r.quality, 'good', `${r.point}: ${r.reason}`);
      assert.equal(r.value, expected.get(r.point), r.point);
      assert.equal(r.tap, 'plc');
    }
    assert.equal(typeof byName(readings).get('holding-uint64-CDAB')!.value, 'bigint');
    // 4 orders × 25 registers: holding 0..99 and input 0..99 are one request each, the bit
    // register a third, coils and discrete inputs one each.
    assert.equal(address, 100);
    const seen = server.requests.map((r) => `${r.functionCode}:${r.address}+${r.count}`).sort();
    assert.deepEqual(seen, ['1:10+3', '2:7+2', '3:0+100', '3:500+1', '4:0+100']);
    assert.equal(tap.status().requests, 5);
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('addressBase 1, tap default order, per-point unit id, scale and offset', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, encodeRegisters(Math.fround(20.5), 'float32', 'CDAB'));
  memory.setRegisters('holding', 2, [1234]);
  memory.setRegisters('holding', 3, [0xffff, 0xffff, 0xffff, 0xfff6]); // int64 -10
  memory.setRegisters('input', 9, [500], 7);
  const server = await startModbusTcpServer(memory);
  const tap = await startedTap({
    port: server.port,
    addressBase: 1,
    byteOrder: 'CDAB',
    points: [
      { name: 'temp', table: 'holding', address: 1, type: 'float32', unit: 'degC' },
      { name: 'flow', table: 'holding', address: 3, type: 'uint16', scale: 0.1, unit: 'm3/h' },
      { name: 'count', table: 'holding', address: 4, type: 'int64', byteOrder: 'ABCD' },
      { name: 'count-scaled', table: 'holding', address: 4, type: 'int64', byteOrder: 'ABCD', scale: 2, offset: 1 },
      { name: 'level', table: 'input', address: 10, type: 'uint16', unitId: 7, scale: 0.5, offset: -100 },
    ],
  });
  try {
    server.requests.length = 0;
    const r = byName(await tap.collect(Date.now() + 2000));
    assert.equal(r.get('temp')!.value, 20.5);
    assert.equal(r.get('temp')!.unit, 'degC');
    assert.equal(r.get('flow')!.value, 123.4);
    assert.equal(r.get('count')!.value, -10n);
    assert.equal(r.get('count-scaled')!.value, -19);
    assert.equal(r.get('level')!.value, 150);
    assert.deepEqual(
      server.requests.map((q) => [q.unitId, q.functionCode, q.address, q.count]).sort(),
      [
        [1, 3, 0, 7],
        [7, 4, 9, 1],
      ],
    );
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('maxGap merges nearby points; the server sees exactly the planned requests', async () => {
  const memory = new ModbusMemory();
  for (let a = 0; a < 300; a++) memory.setRegisters('holding', a, [a]);
  const server = await startModbusTcpServer(memory);
  const points = [0, 3, 10, 11, 130, 200, 204].map((address) => ({ name: `r${address}`, table: 'holding', address, type: 'uint16' }));
  for (const [maxGap, wanted] of [
    [0, ['0+1', '3+1', '10+2', '130+1', '200+1', '204+1']],
    [6, ['0+12', '130+1', '200+5']],
    // 130 is within the gap of 0..11 but 0..130 would exceed 125 registers.
    [124, ['0+12', '130+75']],
  ] as const) {
    const tap = await startedTap({ port: server.port, maxGap, points });
    try {
      server.requests.length = 0;
      const readings = await tap.collect(Date.now() + 2000);
      for (const r of readings) assert.equal(r.value, Number(r.point.slice(1)), r.point);
      assert.deepEqual(server.requests.map((q) => `${q.address}+${q.count}`), wanted, `maxGap ${maxGap}`);
    } finally {
      await tap.stop();
    }
  }
  await server.stop();
});

test('a Modbus exception marks only the points of that request', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [42]);
  memory.setRegisters('holding', 100, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  memory.failRange('holding', 100, 10, 2);
  memory.failRange('coil', 5, 1, 4);
  const server = await startModbusTcpServer(memory);
  const tap = await startedTap(
    {
      port: server.port,
      points: [
        { name: 'ok', table: 'holding', address: 0, type: 'uint16' },
        { name: 'a', table: 'holding', address: 100, type: 'uint32' },
        { name: 'b', table: 'holding', address: 102, type: 'float32' },
        { name: 'c', table: 'holding', address: 104, type: 'string', length: 12 },
        { name: 'coil', table: 'coil', address: 5, type: 'bool' },
      ],
    },
  );
  try {
    const r = byName(await tap.collect(Date.now() + 2000));
    assert.equal(r.get('ok')!.quality, 'good');
    assert.equal(r.get('ok')!.value, 42);
    for (const name of ['a', 'b', 'c']) {
      assert.equal(r.get(name)!.quality, 'bad');
      assert.equal(r.get(name)!.value, null);
      assert.equal(r.get(name)!.reason, 'modbus exception 2 (illegal data address) for holding 100..109');
    }
    assert.equal(r.get('coil')!.reason, 'modbus exception 4 (server device failure) for coil 5');
    assert.equal(tap.status().state, 'up', 'an exception is an answer: the device is up');
    assert.equal(tap.status().requests, 3, 'exceptions are not retried');
    memory.clearFailures();
    const again = byName(await tap.collect(Date.now() + 2000));
    assert.equal(again.get('a')!.value, 0x00010002);
    assert.equal(again.get('coil')!.value, false);
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('server stop and restart: bad while down with the reason, good again after reconnect', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [7]);
  const server = await startModbusTcpServer(memory);
  // Followed as the agent follows it: the transitions are the agent's `tap up`/`tap down` lines.
  const { tap, transitions } = followedTap((logger) => createModbusTap(tapConfig({ port: server.port, points: [{ name: 'x', table: 'holding', address: 0, type: 'uint16' }] }), { logger }));
  await tap.start();
  await until('tap up', () => tap.status().state === 'up');
  try {
    assert.equal((await tap.collect(Date.now() + 1000))[0]!.value, 7);
    await server.stop();
    await until('tap down', () => tap.status().state === 'down');
    const down = (await tap.collect(Date.now() + 1000))[0]!;
    assert.equal(down.quality, 'bad');
    assert.equal(down.value, null);
    assert.match(down.reason!, /^not connected: tcp 127\.0\.0\.1:\d+: /);
    assert.match(tap.status().reason!, /tcp 127\.0\.0\.1:\d+/);
    memory.setRegisters('holding', 0, [8]);
    await server.restart();
    await until('tap up again', () => tap.status().state === 'up');
    const up = (await tap.collect(Date.now() + 1000))[0]!;
    assert.equal(up.quality, 'good');
    assert.equal(up.value, 8);
    assert.deepEqual(
      transitions.map((e) => e.state),
      ['up', 'down', 'up'],
    );
    assert.match(transitions[1]!.reason!, /tcp 127\.0\.0\.1:\d+/);
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('nothing listening: collect returns bad readings naming the refused connection', async () => {
  const port = await reservePort(); // nothing listens there, and no other bind or connection can take it
  const tap = makeTap({ port, points: [{ name: 'x', table: 'holding', address: 0, type: 'uint16' }, { name: 'y', table: 'coil', address: 0, type: 'bool' }] });
  await tap.start();
  try {
    await until('first connect attempt', () => /ECONNREFUSED/.test(tap.status().reason ?? ''));
    const readings = await tap.collect(Date.now() + 500);
    assert.deepEqual(readings.map((r) => [r.point, r.quality]), [['x', 'bad'], ['y', 'bad']]);
    assert.match(readings[0]!.reason!, new RegExp(`^not connected: tcp 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    assert.equal(tap.status().state, 'down');
  } finally {
    await tap.stop();
  }
});

test('a server that accepts but never answers: timeouts, retries, then reconnect', async () => {
  const silent = await startSilentTcpServer();
  const tap = makeTap({ port: silent.port, timeout: '200ms', retries: 1, points: [{ name: 'x', table: 'holding', address: 0, type: 'uint16' }, { name: 'y', table: 'input', address: 0, type: 'uint16' }] });
  await tap.start();
  try {
    await until('connected', () => tap.status().state === 'up');
    const started = Date.now();
    const deadline = started + 30_000; // far beyond the two 200 ms timeouts: the tap ends this collect itself
    const readings = await tap.collect(deadline);
    const took = Date.now() - started;
    for (const r of readings) {
      assert.equal(r.quality, 'bad');
      assert.match(r.reason!, /^timeout after 200 ms \(unit 1, holding 0\)$/);
    }
    // One request plus one retry for the first table; the unit is then skipped for this collect.
    assert.equal(tap.status().requests, 2);
    // A timer never fires early: a request and its retry took at least their two 200 ms timeouts.
    assert.ok(took >= 400, `took ${took} ms`);
    // Ended by the tap (unit skipped), not by the collect deadline.
    assert.ok(Date.now() < deadline, `resolved ${took} ms after the start, not before its deadline`);
    assert.equal(tap.status().state, 'down');
    assert.match(tap.status().reason!, /no unit answered on tcp 127\.0\.0\.1:\d+: timeout after 200 ms/);
    // The silent connection is dropped and a new one made.
    await until('reconnected', () => silent.connections() >= 2);
  } finally {
    await tap.stop();
    await silent.close();
  }
});

test('collect resolves by its deadline even when every request would time out', async () => {
  const silent = await startSilentTcpServer();
  const points = Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, table: 'holding', address: i * 10, type: 'uint16', unitId: i + 1 }));
  const tap = makeTap({ port: silent.port, timeout: '2s', retries: 2, points });
  await tap.start();
  try {
    await until('connected', () => tap.status().state === 'up');
    const deadline = Date.now() + 300;
    const readings = await tap.collect(deadline);
    // Each request would wait 2 s (3 tries, 5 units). Timers fire in order, so whatever the load
    // the collect's 300 ms deadline ended it while the first request was still waiting: its
    // timeout would have sent a retry.
    assert.equal(tap.status().requests, 1, 'resolved at its deadline, before the first request timed out');
    assert.equal(readings.length, 5);
    for (const r of readings) {
      assert.equal(r.quality, 'bad');
      assert.equal(r.reason, 'deadline reached before the point was read');
    }
  } finally {
    await tap.stop();
    await silent.close();
  }
});

test('one silent unit id behind a gateway does not take the others down', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [11], 1);
  memory.setRegisters('holding', 0, [33], 3);
  memory.silentUnits.add(2);
  const server = await startModbusTcpServer(memory);
  const tap = await startedTap({
    port: server.port,
    timeout: '400ms',
    retries: 0,
    points: [
      { name: 'u1', table: 'holding', address: 0, type: 'uint16', unitId: 1 },
      { name: 'u2a', table: 'holding', address: 0, type: 'uint16', unitId: 2 },
      { name: 'u2b', table: 'input', address: 0, type: 'uint16', unitId: 2 },
      { name: 'u3', table: 'holding', address: 0, type: 'uint16', unitId: 3 },
    ],
  });
  try {
    server.requests.length = 0;
    const r = byName(await tap.collect(Date.now() + 2000));
    assert.equal(r.get('u1')!.value, 11);
    assert.equal(r.get('u3')!.value, 33);
    assert.equal(r.get('u2a')!.reason, 'timeout after 400 ms (unit 2, holding 0)');
    assert.equal(r.get('u2b')!.reason, 'timeout after 400 ms (unit 2, holding 0)', 'the silent unit is skipped for the rest of the collect');
    assert.deepEqual(server.requests.map((q) => q.unitId), [1, 2, 3]);
    assert.equal(tap.status().state, 'up');
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('NaN from the device is a bad reading, not a number', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [0x7fc0, 0x0000]);
  const server = await startModbusTcpServer(memory);
  const tap = await startedTap({ port: server.port, points: [{ name: 'f', table: 'holding', address: 0, type: 'float32' }] });
  try {
    const [r] = await tap.collect(Date.now() + 1000);
    assert.equal(r!.quality, 'bad');
    assert.equal(r!.value, null);
    assert.equal(r!.reason, 'value is NaN (float32 at holding 0)');
  } finally {
    await tap.stop();
    await server.stop();
  }
});

test('collect before start and after stop answers bad; stop is idempotent', async () => {
  const tap = makeTap({ port: 1, points: [{ name: 'x', table: 'holding', address: 0, type: 'uint16' }] });
  assert.equal((await tap.collect(Date.now() + 100))[0]!.reason, 'tap not started');
  await tap.start();
  await tap.stop();
  await tap.stop();
  assert.equal((await tap.collect(Date.now() + 100))[0]!.reason, 'tap stopped');
});

test('every byte order constant is covered', () => {
  assert.deepEqual([...BYTE_ORDERS].sort(), ['ABCD', 'BADC', 'CDAB', 'DCBA'] satisfies ByteOrder[]);
});

test('logs: up/down with reasons at info/warn, values only at debug', async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [31337]);
  const server = await startModbusTcpServer(memory);
  for (const level of ['info', 'debug'] as const) {
    const config = validate(modbusTapSchema, { name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: server.port, addressBase: 0, points: [{ name: 'secret-ish', table: 'holding', address: 0, type: 'uint16' }] });
    // The up line is the agent's (agent/tap-health.ts), naming the link the driver reports.
    const { tap, lines, text } = followedTap((logger) => createModbusTap(config, { logger }), level);
    await tap.start();
    await until('up', () => tap.status().state === 'up');
    assert.equal((await tap.collect(Date.now() + 1000))[0]!.value, 31337);
    await tap.stop();
    await new Promise((r) => setImmediate(r));
    assert.ok(lines.some((l) => l['msg'] === 'tap up' && l['level'] === 30 && l['peer'] === `tcp 127.0.0.1:${server.port}`), text());
    if (level === 'info') assert.ok(!text().includes('31337'), 'no reading value above debug');
    else assert.ok(lines.some((l) => l['msg'] === 'modbus reading' && l['level'] === 20 && text().includes('31337')));
  }
  await server.stop();
});

test('a blocked event loop right after connecting is not mistaken for a connect timeout', async () => {
  // Importing node-opcua blocks the loop for seconds on a Pi; the kernel completes the TCP
  // handshake meanwhile, and the tap must see that instead of its own overdue timer. A counting
  // TCP relay in front of the server shows whether the tap gave up and dialled again.
  const server = await startModbusTcpServer(new ModbusMemory());
  const sockets = new Set<Socket>();
  let accepted = 0;
  const front = createServer((sock) => {
    accepted++;
    const back = connect(server.port, '127.0.0.1');
    for (const s of [sock, back]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => (sock.destroy(), back.destroy()));
    }
    sock.pipe(back).pipe(sock);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const port = (front.address() as AddressInfo).port;
  const tap = makeTap({ port, timeout: '200ms', points: [{ name: 'p', table: 'holding', address: 0, type: 'uint16' }] });
  try {
    await tap.start();
    await new Promise((r) => process.nextTick(r)); // net issues connect() on the next tick
    const end = Date.now() + 800;
    while (Date.now() < end); // block the loop for 4x the timeout
    await until('tap up', () => tap.status().state === 'up');
    const [reading] = await tap.collect(Date.now() + 1000);
    assert.equal(reading!.quality, 'good');
    assert.equal(accepted, 1, 'one connection: the first connect was not abandoned as timed out');
  } finally {
    await tap.stop();
    for (const s of sockets) s.destroy();
    await new Promise((r) => front.close(r));
    await server.stop();
  }
});
