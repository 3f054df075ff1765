/**
 * Reconnect discipline of the Modbus and OPC-UA taps against a real TCP peer that accepts every
 * connection and closes it at once (a device rebooting, a gateway port with nothing behind it):
 * attempts keep coming but never faster than the exponential backoff (±20 % jitter, capped), and
 * stopping the tap ends them. node-opcua's own retry loop would otherwise run forever.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { createModbusTap, modbusTapSchema } from '../../agent/modbus/index.js';
import { createOpcuaTap, opcuaTapSchema } from '../../agent/opcua/index.js';
import type { Tap } from '../../agent/tap.js';
import { cleanupAll, tempDir } from '../helpers/relay.js';
import { until } from '../helpers/wait.js';

const INITIAL_MS = 100;
const MAX_MS = 400;
const servers: net.Server[] = [];

after(async () => {
  for (const s of servers) s.close();
  await cleanupAll(); // the OPC-UA client's PKI (with its private key) lives in a tempDir()
});

/** A TCP server that records when each connection arrives and closes it immediately. */
async function slammingServer(): Promise<{ port: number; attempts: number[] }> {
  const attempts: number[] = [];
  const server = net.createServer((socket) => {
    attempts.push(performance.now());
    socket.destroy();
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, attempts };
}

/** Waits for `count` connection attempts (a condition: a loaded machine may take seconds to start the client), then stops the tap. */
async function observe(tap: Tap, attempts: number[], count: number): Promise<{ during: number[]; afterStop: number }> {
  await tap.start();
  await until(`${count} connection attempts`, () => attempts.length >= count, 40_000);
  await tap.stop();
  const during = [...attempts];
  // Absence can only be watched for: two capped backoff delays with no attempt after stop().
  await new Promise((resolve) => setTimeout(resolve, 2 * MAX_MS));
  return { during, afterStop: attempts.length - during.length };
}

function assertBackoff(kind: string, attempts: number[], afterStop: number): void {
  assert.ok(attempts.length >= 4, `${kind}: kept retrying (${attempts.length} attempts)`);
  const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
  for (const [i, gap] of gaps.entries()) {
    // Timers fire late under load, never early: the lower bound is firm, 10 ms for clock grain.
    const delay = Math.min(MAX_MS, INITIAL_MS * 2 ** i);
    assert.ok(gap >= 0.8 * delay - 10, `${kind}: attempt ${i + 2} came ${gap.toFixed(0)} ms after the previous one; backoff allows no less than ${(0.8 * delay).toFixed(0)} ms (gaps: ${gaps.map((g) => g.toFixed(0)).join(', ')})`);
  }
  assert.ok(gaps.slice(3).every((g) => g >= 0.8 * MAX_MS - 10), `${kind}: capped phase at ${MAX_MS} ms`);
  assert.equal(afterStop, 0, `${kind}: no attempt after stop()`);
}

test('Modbus TCP: reconnects with exponential backoff and jitter, capped; stop ends it', { timeout: 60_000 }, async () => {
  const { port, attempts } = await slammingServer();
  const config = validate(modbusTapSchema, {
    name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port, addressBase: 0,
    backoff: { initial: `${INITIAL_MS}ms`, max: `${MAX_MS}ms` },
    points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }],
  });
  const tap = createModbusTap(config, { logger: silentLogger() });
  const { during, afterStop } = await observe(tap, attempts, 6);
  assertBackoff('modbus', during, afterStop);
});

test('OPC-UA: one bounded attempt at a time, reconnects with backoff; stop ends it', { timeout: 60_000 }, async () => {
  const { port, attempts } = await slammingServer();
  const dir = await tempDir();
  // At the agent's default interval, 15 s (in the agent, createTap passes the tap's effective one).
  const config = { interval: 15_000, ...validate(opcuaTapSchema, {
    name: 'scada', type: 'opcua', endpoint: `opc.tcp://127.0.0.1:${port}/none`, securityMode: 'None', pkiDir: path.join(dir, 'pki'), timeout: '1s',
    points: [{ name: 'pressure', nodeId: 'ns=2;s=Pressure' }],
  }) };
  const tap = createOpcuaTap(config, { logger: silentLogger(), backoff: { initialMs: INITIAL_MS, maxMs: MAX_MS } });
  const { during, afterStop } = await observe(tap, attempts, 6);
  assertBackoff('opcua', during, afterStop);
  const readings = await tap.collect(Date.now() + 100);
  assert.equal(readings[0]!.quality, 'bad', 'a tap that cannot connect yields its points bad');
});
