/**
 * The agent against a real relay process, a real Modbus TCP server and a real mosquitto broker:
 * frames arrive and open with the receiver key; the relay never sees a plaintext value; a relay
 * killed with SIGKILL and restarted loses no frame.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { cleanupAll, startRelay } from '../helpers/relay.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { reservePort } from '../helpers/ports.js';
import { agentConfig, cli, frameSequences, killAllAgents, makeAgentEnv, startAgent, until, untilRelayDrained, writeAgentConfig, processMemoryContains } from '../helpers/agent.js';
import { startAgentReceiver } from '../helpers/agent-receiver.js';

const MARKER = `PLAINTEXT-MARKER-${Math.random().toString(36).slice(2)}`;
let modbus: ModbusTcpTestServer | undefined;
let broker: MosquittoBroker | undefined;

after(async () => {
  await killAllAgents();
  await modbus?.stop();
  await broker?.close();
  await cleanupAll();
});

function taps(modbusPort: number, mqttUrl: string): unknown[] {
  return [
    {
      name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: modbusPort, addressBase: 0, timeout: '200ms',
      points: [
        { name: 'flow', table: 'holding', address: 0, type: 'uint16', unit: 'm3/h' },
        { name: 'energy', table: 'holding', address: 4, type: 'uint64', unit: 'Wh' },
        { name: 'tag', table: 'holding', address: 10, type: 'string', length: 8 },
      ],
    },
    { name: 'broker', type: 'mqtt', url: mqttUrl, staleAfter: '1h', points: [{ name: 'label', topic: 'plant/label', type: 'string' }, { name: 'temp', topic: 'plant/temp', unit: 'degC' }] },
  ];
}

test('frames reach the receiver through a real relay, survive a relay SIGKILL, and never show plaintext to the relay', { timeout: 90_000 }, async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [1234]);
  memory.setRegisters('holding', 4, [0xffff, 0xffff, 0xffff, 0xfffe]); // uint64 beyond 2^53: must stay exact
  memory.setRegisters('holding', 10, [...Buffer.from('MB-' + MARKER.slice(0, 5))].reduce<number[]>((w, b, i, all) => (i % 2 ? w : [...w, (b << 8) | (all[i + 1] ?? 0)]), []));
  modbus = await startModbusTcpServer(memory);
  broker = await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  await publisher.publishAsync('plant/label', MARKER, { retain: true, qos: 1 });
  await publisher.publishAsync('plant/temp', '21.5', { retain: true, qos: 1 });
  await publisher.endAsync();

  const port = await reservePort();
  let relay = await startRelay({ listen: [`127.0.0.1:${port}`] });
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, taps(modbus.port, broker.url)));
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.match(enrolled.stdout, new RegExp(`enrolled ${env.did}`));

  const rx = await startAgentReceiver(env, relay);
  const agent = startAgent(env.configFile);
  await agent.waitFor((l) => l.msg === 'device enrolled with the relay', 10_000, 'enrollment check');
  const allGood = () => rx.received.find((r) => r.frames[0]!.readings.length === 5 && r.frames[0]!.readings.every((x) => x.quality === 'good'));
  await until(() => allGood() !== undefined, 15_000, () => `a frame with every point good; last: ${JSON.stringify(rx.received.at(-1)?.frames[0]?.readings, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);

  // Readings: every point present, typed, with quality; the string point carries the marker.
  const frame = allGood()!.frames[0]!;
  const byName = new Map(frame.readings.map((r) => [`${r.tap}/${r.point}`, r]));
  assert.deepEqual([...byName.keys()].sort(), ['broker/label', 'broker/temp', 'plc/energy', 'plc/flow', 'plc/tag']);
  assert.equal(byName.get('plc/flow')!.value, 1234);
  assert.equal(byName.get('plc/flow')!.unit, 'm3/h');
  assert.equal(byName.get('plc/flow')!.quality, 'good');
  assert.equal(byName.get('plc/energy')!.value, 0xfffffffffffffffen);
  assert.equal(byName.get('broker/label')!.value, MARKER);
  assert.equal(byName.get('broker/temp')!.value, 21.5);
  assert.equal(frame.intervalMs, 400);
  // Constant size on the wire: every envelope so far has the same length (every one the relay
  // leased to the receiver, duplicates included).
  assert.equal(new Set(rx.received.map((r) => r.bytes)).size, 1);
  assert.deepEqual([...new Set(rx.tap.leases.map((l) => l.bytes.length))], [rx.received[0]!.bytes]);

  // Pause the receiver so the relay holds undelivered envelopes, then kill it hard: they are lost
  // with its RAM. Bring it back on the same port and state directory; the agent must re-send them.
  await rx.stop(); // exit 0, nothing refused
  const before = rx.received.length;
  // Two envelopes accepted and held: the agent uploads one at a time, so the first one's
  // acceptance reached it before the second was sent.
  let held = 0;
  await until(async () => (held = (await relay.operator.stats()).envelopes.pending) >= 2, 20_000, () => `2 envelopes held by the relay (${held})`);
  await relay.stop('SIGKILL');
  const relayOutputBefore = relay.output();
  // The agent notices the relay is gone before it comes back.
  await agent.waitFor((l) => l.msg === 'relay unreachable; frames are kept in the RAM backlog', 20_000, 'unreachable log');
  relay = await startRelay({ listen: [`127.0.0.1:${port}`] }, { dir: relay.dir });
  const resent = await agent.waitFor((l) => l.msg.startsWith('relay no longer knows accepted envelopes'), 10_000, 're-send after the relay restart');
  assert.ok((resent['envelopes'] as number) >= 1);
  // The same receiver (same key: the relay kept its key hashes; same replay state and sink) again.
  await rx.start();
  await until(() => rx.received.length >= before + 6, 30_000, 'frames after the restart');

  // Stop the agent: SIGTERM flushes; then wait until the receiver drained the relay.
  assert.equal(await agent.stop('SIGTERM'), 0);
  const stopped = agent.lines.find((l) => l.msg.startsWith('agent stopped'))!;
  assert.equal(stopped['flushed'], true);
  await untilRelayDrained(relay);
  await rx.stop(); // exit 0, nothing refused

  // The receiver's replay window dropped any exact re-delivery (counted in its log, not in the sink).
  const sequences = frameSequences(rx.received);
  assert.equal(new Set(sequences).size, sequences.length, 'no frame twice once exact duplicate envelopes are dropped');
  const envelopeSequences = rx.received.map((r) => r.envelopeSequence);
  for (const dup of rx.duplicates()) assert.ok(envelopeSequences.includes(dup), `the receiver dropped envelope ${dup} as a duplicate of one it never delivered`);
  const sorted = [...sequences].sort((a, b) => (a < b ? -1 : 1));
  for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i], sorted[i - 1]! + 1n, `frame ${sorted[i - 1]! + 1n} is missing`);
  assert.equal(sorted[0], 1n, 'a fresh device starts at frame 1');
  assert.ok(sorted.length >= before + 6);

  // The relay only ever handled ciphertext: the marker is in no relay log line, nor in the agent's info log.
  assert.ok(!relayOutputBefore.includes(MARKER) && !relay.output().includes(MARKER), 'relay log holds a plaintext value');
  assert.ok(!agent.output().includes(MARKER), 'agent info log holds a reading value');
  // Nor in its RAM: the scan finds the device's DID (which the relay does hold), never the marker.
  assert.ok(processMemoryContains(relay.child.pid!, env.did), 'the memory scan works: the DID is found');
  assert.ok(!processMemoryContains(relay.child.pid!, MARKER), 'relay memory holds a plaintext value');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('relay.allowPlainHttp: plain HTTP to a relay off loopback is refused by the config check, and accepted with a warning at every start when allowed', { timeout: 60_000 }, async () => {
  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  // Loopback underneath, but not a name the rule counts as loopback: it stands for a relay across the network.
  const url = relay.url.replace('127.0.0.1', '[::ffff:127.0.0.1]');
  const taps = [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: await reservePort(), addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }];
  const base = agentConfig(env, url, taps);
  await writeAgentConfig(env, base);
  const refused = await cli(['agent', '--config', env.configFile, '--check']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /relay\.url: plain HTTP is only allowed to a loopback address \(127\.0\.0\.1, ::1, localhost\); use https:\/\/ with a pinned ca for \[::ffff:7f00:1\], or set relay\.allowPlainHttp: true/);
  await writeAgentConfig(env, { ...base, relay: { ...(base['relay'] as Record<string, unknown>), allowPlainHttp: true } });
  for (let start = 0; start < 2; start++) {
    const agent = startAgent(env.configFile);
    const line = await agent.waitFor((l) => l.msg.startsWith('relay.allowPlainHttp: the API key travels unprotected'), 20_000, `the plain-HTTP warning at start ${start + 1}`);
    assert.equal(line.level, 40);
    assert.equal(line['relay'], new URL(url).origin);
    assert.equal(agent.output().includes((await readFile(env.apiKeyFile, 'utf8')).trim()), false, 'the key itself is never logged');
    assert.equal(await agent.stop(), 0);
  }
});
