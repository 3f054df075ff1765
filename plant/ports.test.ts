/**
 * The plant's servers never bind a port picked free earlier without a fallback: Modbus binds port 0
 * and reports the port; mosquitto and the OPC-UA server (which cannot report a port 0 bind, or
 * advertise it) try the next free port when theirs was taken in the gap, and fail on a given port
 * that is taken. "Taken" is a listening socket held by this test on a port the kernel picked.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ModbusSerial from 'modbus-serial';
import { silentLogger } from '../common/log.js';
import { freeLoopbackPort } from '../common/ports.js';
import { initialState } from './model.js';
import { PlantRegisters, startModbus } from './modbus.js';
import { startMqtt } from './mqtt.js';
import { startOpcua } from './opcua.js';
import { MODBUS } from './points.js';

const dirs: string[] = [];
const held: Server[] = [];
after(async () => {
  for (const server of held) await new Promise((resolve) => server.close(resolve));
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-plant-ports-'));
  dirs.push(dir);
  return dir;
}

/** A port another program holds: a listening socket on a port the kernel picked; counts connections. */
async function takenPort(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  held.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, connections: () => connections };
}

/** First the taken port, then free ones: what a port taken between pick and bind looks like. */
function pickingFirst(port: number): { pick: () => Promise<number>; picks: () => number } {
  let picks = 0;
  return { pick: async () => (++picks === 1 ? port : freeLoopbackPort()), picks: () => picks };
}

test('modbus: binds port 0 and reports the port it bound, which serves the registers', async () => {
  const registers = new PlantRegisters();
  registers.update(initialState(Date.now()));
  const modbus = await startModbus(registers);
  try {
    assert.notEqual(modbus.port, 0);
    assert.notEqual(modbus.port, 502, 'ServerTCP takes a port of 0 as 502');
    const client = new ModbusSerial.default();
    await client.connectTCP('127.0.0.1', { port: modbus.port });
    try {
      client.setID(1);
      const { data } = await client.readHoldingRegisters(MODBUS.flowTotalL.address, 2);
      assert.deepEqual(data, [...registers.holding.subarray(MODBUS.flowTotalL.address, MODBUS.flowTotalL.address + 2)]);
    } finally {
      await new Promise<void>((resolve) => client.close(() => resolve()));
    }
  } finally {
    await modbus.close();
  }
  const taken = await takenPort();
  await assert.rejects(startModbus(registers, taken.port), /EADDRINUSE/, 'a given port that is taken fails');
});

test('mqtt: a port taken before mosquitto bound it is retried on the next free port; a given taken port fails', async () => {
  const taken = await takenPort();
  const { pick, picks } = pickingFirst(taken.port);
  const mqtt = await startMqtt({ dir: await tempDir(), pickPort: pick });
  try {
    assert.equal(picks(), 2, 'the taken port, then another');
    assert.notEqual(mqtt.port, taken.port);
    assert.equal(mqtt.url, `mqtt://127.0.0.1:${mqtt.port}`);
    await mqtt.publish(initialState(Date.now())); // the publisher is connected to this broker
    assert.equal(taken.connections(), 0, 'readiness is mosquitto saying it runs, not a connect to whatever holds the port');
  } finally {
    await mqtt.close();
  }
  await assert.rejects(startMqtt({ dir: await tempDir(), port: taken.port }), new RegExp(`port ${taken.port} is taken: [\\s\\S]*Address already in use`));
});

test('opcua: a port taken before the server bound it is retried on the next free port; a given taken port fails', { timeout: 120_000 }, async () => {
  const taken = await takenPort();
  const { pick, picks } = pickingFirst(taken.port);
  const pkiDir = path.join(await tempDir(), 'pki');
  const opcua = await startOpcua({ pkiDir, logger: silentLogger(), pickPort: pick });
  try {
    assert.equal(picks(), 2, 'the taken port, then another');
    assert.notEqual(opcua.port, taken.port);
    assert.equal(opcua.endpoint, `opc.tcp://127.0.0.1:${opcua.port}/ghostpipe-plant`);
  } finally {
    await opcua.close();
  }
  await assert.rejects(startOpcua({ pkiDir, logger: silentLogger(), port: taken.port }), /EADDRINUSE/);
});
