/**
 * The agent's commands as an operator runs them: `agent --check`, `enroll`, the refusal to send
 * before enrollment, SIGHUP reloads (bad and good), `doctor` and its exit codes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { cleanupAll, startRelay } from '../helpers/relay.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { agentConfig, cli, frameSequences, killAllAgents, makeAgentEnv, startAgent, until, writeAgentConfig } from '../helpers/agent.js';
import { startAgentReceiver } from '../helpers/agent-receiver.js';

let modbus: ModbusTcpTestServer | undefined;
after(async () => {
  await killAllAgents();
  await modbus?.stop();
  await cleanupAll();
});

const plcTap = (port: number, name = 'plc', address = 0) => ({
  name, type: 'modbus', transport: 'tcp', host: '127.0.0.1', port, addressBase: 0, timeout: '200ms', retries: 0,
  points: [{ name: 'flow', table: 'holding', address, type: 'uint16', unit: 'm3/h' }, { name: 'running', table: 'coil', address: 1, type: 'bool' }],
});

test('agent --check validates config and key files without touching a sensor', { timeout: 30_000 }, async () => {
  modbus = await startModbusTcpServer(new ModbusMemory());
  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [plcTap(modbus.port)]));
  const ok = await cli(['agent', '--config', env.configFile, '--check']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /config OK: 1 taps, 2 points, 1 recipients, device did:ghostpipe:/);
  assert.equal(modbus.requests.length, 0, 'no Modbus request during --check');

  await writeFile(env.configFile, stringify({ ...agentConfig(env, relay.url, [plcTap(modbus.port)]), intervall: '5s' }));
  const bad = await cli(['agent', '--config', env.configFile, '--check']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /agent\.yaml:\d+:1: intervall: unknown key; .*did you mean "interval"\?/);

  await writeAgentConfig(env, agentConfig(env, relay.url, [plcTap(modbus.port)], { recipients: [{ name: 'it', publicKey: env.dir + '/missing.pub' }] }));
  const missing = await cli(['agent', '--config', env.configFile, '--check']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /agent\.yaml:\d+:\d+: recipients\[0\]\.publicKey: .*missing\.pub: read key file: no such file or directory/);

  // Starting with a broken config exits non-zero before any sensor is touched.
  await writeFile(env.configFile, 'taps: 3\n');
  const start = startAgent(env.configFile);
  assert.notEqual(await new Promise((resolve) => start.child.once('exit', resolve)), 0);
  assert.match(start.output(), /taps: must be a list; found 3/);
  assert.equal(modbus.requests.length, 0);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('the agent refuses to send before enrollment and starts once enrolled; SIGHUP reloads', { timeout: 60_000 }, async () => {
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [42]);
  memory.setRegisters('holding', 10, [4242]);
  modbus ??= await startModbusTcpServer(memory);
  modbus.memory.setRegisters('holding', 0, [42]);
  modbus.memory.setRegisters('holding', 10, [4242]);
  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  const config = agentConfig(env, relay.url, [plcTap(modbus.port)]);
  await writeAgentConfig(env, config);
  const rx = await startAgentReceiver(env, relay);
  const agent = startAgent(env.configFile);
  const refusal = await agent.waitFor((l) => l.msg.startsWith('device is not enrolled: refusing to send'), 10_000, 'the refusal');
  assert.equal(refusal['did'], env.did);
  // An absence after a condition: the agent read the PLC 3 more times (3 frames it could have sent).
  const readsAtRefusal = modbus.requests.length;
  await until(() => modbus!.requests.length >= readsAtRefusal + 3, 20_000, '3 collections while not enrolled');
  assert.equal(rx.received.length, 0, 'nothing was sent before enrollment');
  const { pending, leased, delivered } = (await relay.operator.stats()).envelopes;
  assert.deepEqual({ pending, leased, delivered }, { pending: 0, leased: 0, delivered: 0 }, 'the relay got no envelope before enrollment');

  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  await agent.waitFor((l) => l.msg === 'device enrolled with the relay', 10_000, 'the agent noticing the enrollment');
  await until(() => frameSequences(rx.received).includes(1n), 10_000, 'frame 1 (kept in the backlog while not enrolled)');

  // A bad config on SIGHUP is reported and the running one keeps going.
  await writeFile(env.configFile, stringify({ ...config, taps: [{ ...plcTap(modbus.port), transport: 'udp' }] }));
  agent.child.kill('SIGHUP');
  const failed = await agent.waitFor((l) => l.msg === 'config reload failed; the running config stays in effect', 10_000, 'the reload failure');
  assert.match(String((failed['errors'] as string[])[0]), /taps\[0\]\.transport: must be one of tcp, rtu, rtu-over-tcp; found "udp"/);
  const count = rx.received.length;
  await until(() => rx.received.length >= count + 3, 10_000, 'frames after the bad reload');

  // A good one replaces the taps; the sequence does not restart.
  const lastBefore = frameSequences(rx.received).reduce((a, b) => (a > b ? a : b));
  // plc is up when the reload comes (on a loaded machine it may have gone down and up before).
  const health = (tap: string, from = 0) => agent.lines.slice(from).filter((l) => (l.msg === 'tap up' || l.msg === 'tap down') && l['tap'] === tap);
  await until(() => health('plc').at(-1)?.msg === 'tap up', 10_000, 'plc up before the reload');
  const mark = agent.lines.length;
  await writeAgentConfig(env, { ...config, taps: [plcTap(modbus.port), plcTap(modbus.port, 'plc2', 10)] });
  agent.child.kill('SIGHUP');
  await agent.waitFor((l) => l.msg === 'config reloaded', 10_000, 'the reload');
  // Every new tap's first state is logged, plc's too although it was up before the reload (the
  // old code logged nothing for plc here). agent/tap-health.test.ts pins the rule exactly.
  const ups = (tap: string) => health(tap, mark).filter((l) => l.msg === 'tap up');
  await agent.waitFor(() => ups('plc').length >= 1 && ups('plc2').length >= 1, 10_000, '"tap up" for both taps of the new config');
  assert.deepEqual(ups('plc2').map((l) => l['peer']).slice(0, 1), [`tcp 127.0.0.1:${modbus.port}`]);
  await until(() => rx.received.some((r) => r.frames[0]!.readings.some((x) => x.tap === 'plc2' && x.value === 4242)), 10_000, 'a frame with the new tap');
  const withNew = rx.received.find((r) => r.frames[0]!.readings.some((x) => x.tap === 'plc2'))!;
  assert.ok(withNew.frames[0]!.sequence > lastBefore, 'sequence continues after reload');
  assert.equal(await agent.stop(), 0);
  await rx.stop(); // exit 0, nothing refused
  assert.deepEqual(rx.duplicates(), [], 'nothing was delivered twice');
  assert.equal(agent.lines.filter((l) => l.msg.startsWith('state saved')).length, 2, 'one write at boot, one for the enrollment');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});

test('doctor prints every point with value, quality and latency; exit code says healthy or not', { timeout: 60_000 }, async () => {
  modbus ??= await startModbusTcpServer(new ModbusMemory());
  modbus.memory.setRegisters('holding', 0, [77]);
  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [plcTap(modbus.port)]));

  const unenrolled = await cli(['doctor', '--config', env.configFile]);
  assert.equal(unenrolled.code, 1);
  assert.match(unenrolled.stdout, /device did:ghostpipe:\S+: NOT ENROLLED/);

  assert.equal((await cli(['enroll', '--config', env.configFile])).code, 0);
  const healthy = await cli(['doctor', '--config', env.configFile]);
  assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
  assert.match(healthy.stdout, /TAP\s+POINT\s+VALUE\s+UNIT\s+QUALITY\s+LATENCY/);
  assert.match(healthy.stdout, /plc\s+flow\s+77\s+m3\/h\s+good\s+\d+ ms/);
  assert.match(healthy.stdout, /plc\s+running\s+false\s+good/);
  assert.match(healthy.stdout, /relay http:\/\/127\.0\.0\.1:\d+: reachable/);
  assert.match(healthy.stdout, /\nhealthy\n$/);

  await modbus.stop();
  const down = await cli(['doctor', '--config', env.configFile]);
  assert.equal(down.code, 1);
  assert.match(down.stdout, /plc\s+flow\s+-\s+bad\s+\d+ ms\s+not connected: .*ECONNREFUSED/);
  assert.match(down.stdout, /NOT HEALTHY/);
  await modbus.restart();

  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  const noRelay = await cli(['doctor', '--config', env.configFile]);
  assert.equal(noRelay.code, 1);
  assert.match(noRelay.stdout, /relay http:\/\/127\.0\.0\.1:\d+: UNREACHABLE/);
});

test('log level debug: one summary line per interval, and reading values only in debug lines', { timeout: 60_000 }, async () => {
  modbus ??= await startModbusTcpServer(new ModbusMemory());
  modbus.memory.setRegisters('holding', 5, [31337]); // a value no other field would contain
  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [plcTap(modbus.port, 'plc', 5)], { logLevel: 'debug' }));
  assert.equal((await cli(['enroll', '--config', env.configFile])).code, 0);
  const agent = startAgent(env.configFile);
  await agent.waitFor((l) => l.msg === 'readings' && JSON.stringify(l).includes('31337'), 15_000, 'a debug readings line with the value');
  await agent.waitFor((l) => l.msg === 'interval' && l['good'] === 2, 5_000, 'an interval summary with both points good');
  await until(() => agent.lines.filter((l) => l.msg === 'interval').length >= 2, 5_000, 'a second interval summary');
  assert.equal(await agent.stop(), 0);
  const summaries = agent.lines.filter((l) => l.msg === 'interval');
  assert.equal(new Set(summaries.map((l) => l['frame'])).size, summaries.length, 'one summary per interval (frame)');
  for (const l of summaries) {
    assert.equal(l.level, 20, 'the summary is at debug');
    for (const field of ['frame', 'readings', 'good', 'uncertain', 'bad', 'bytes', 'tookMs', 'backlogBytes']) assert.ok(field in l, `summary has ${field}`);
    assert.ok(!JSON.stringify(l).includes('31337'), 'the summary carries counts, not values');
  }
  const withValue = agent.lines.filter((l) => JSON.stringify(l).includes('31337'));
  assert.ok(withValue.length > 0 && withValue.every((l) => (l.level as number) <= 20), 'reading values appear only at debug level');
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});
