/**
 * The agent as systemd/ghostpipe-agent.service runs it: node without a JIT (--jitless, the unit's
 * memory flags) under kernel-enforced W^X, the guarantee MemoryDenyWriteExecute=yes gives. With
 * Modbus, OPC-UA and MQTT taps against real peers and a real relay, frames must still arrive and
 * open. A control run shows the W^X enforcement is real: node with its JIT dies under it.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { cleanupAll, startRelay, tempDir } from '../helpers/relay.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../helpers/modbus-server.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { startOpcuaServer, type OpcuaTestServer } from '../helpers/opcua-server.js';
import { unitDirectives, unitFile, unitNodeFlags } from '../helpers/systemd-unit.js';
import { underWxorX } from '../helpers/wxorx.js';
import { agentConfig, cli, killAllAgents, makeAgentEnv, startAgent, until, writeAgentConfig } from '../helpers/agent.js';
import { startAgentReceiver } from '../helpers/agent-receiver.js';

const UNIT = 'ghostpipe-agent.service';
let modbus: ModbusTcpTestServer | undefined;
let opcua: OpcuaTestServer | undefined;
let broker: MosquittoBroker | undefined;

after(async () => {
  await killAllAgents();
  await modbus?.stop();
  await opcua?.stop();
  await broker?.close();
  await cleanupAll();
});

test('the agent unit runs node without a JIT and denies writable+executable memory', () => {
  const text = unitFile(UNIT);
  assert.deepEqual(unitDirectives(text, 'MemoryDenyWriteExecute'), ['yes']);
  // Every node the unit starts runs under MemoryDenyWriteExecute, the config check included.
  for (const line of [...unitDirectives(text, 'ExecStartPre'), ...unitDirectives(text, 'ExecStart')]) {
    if (line.startsWith('/usr/bin/node ')) assert.match(line, /^\/usr\/bin\/node (\S+ )*--jitless /, line);
  }
  const flags = unitNodeFlags(UNIT);
  for (const flag of ['--jitless', '--max-semi-space-size=1', '--optimize-for-size', '--expose-gc', '--max-old-space-size=128']) assert.ok(flags.includes(flag), `${flag} in ${flags.join(' ')}`);
});

test('control: under kernel W^X, node with its JIT cannot start; with --jitless it can', () => {
  const withJit = spawnSync(...underWxorX(process.execPath, ['-e', 'console.log("started")']), { encoding: 'utf8' });
  assert.notEqual(withJit.status, 0, 'node with a JIT must fail under W^X');
  assert.doesNotMatch(withJit.stdout, /started/);
  assert.doesNotMatch(withJit.stderr, /prctl\(PR_SET_MDWE\) failed/, 'the kernel must support PR_SET_MDWE');
  const jitless = spawnSync(...underWxorX(process.execPath, ['--jitless', '-e', 'console.log("started")']), { encoding: 'utf8' });
  assert.equal(jitless.status, 0, jitless.stderr);
  assert.match(jitless.stdout, /started/);
});

test('with the unit\'s node flags under W^X, Modbus, OPC-UA and MQTT readings arrive and open', { timeout: 150_000 }, async () => {
  const dir = await tempDir();
  const memory = new ModbusMemory();
  memory.setRegisters('holding', 0, [4321]);
  modbus = await startModbusTcpServer(memory);
  opcua = await startOpcuaServer({ pkiDir: path.join(dir, 'opcua-server'), variables: [{ name: 'Pressure', value: 6.25 }], securityModes: ['None'], securityPolicies: ['None'] });
  broker = await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  await publisher.publishAsync('plant/level', '{"m": 3.5}', { retain: true, qos: 1 });
  await publisher.endAsync();

  const relay = await startRelay();
  const env = await makeAgentEnv(relay);
  await writeAgentConfig(env, agentConfig(env, relay.url, [
    { name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: modbus.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] },
    { name: 'scada', type: 'opcua', endpoint: opcua.endpoint, securityMode: 'None', pkiDir: path.join(dir, 'opcua-client'), points: [{ name: 'pressure', nodeId: 'ns=2;s=Pressure' }] },
    { name: 'broker', type: 'mqtt', url: broker.url, staleAfter: '1h', points: [{ name: 'level', topic: 'plant/level', json: '$.m' }] },
  // 3 s, not shorter: jitless pure-JS ML-DSA (Node 20) signs in ~0.5 s idle; under load a 500 ms
  // interval missed every collection deadline (the test is about W^X and the flags, not speed).
  ], { interval: '3s' }));
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stderr);

  const rx = await startAgentReceiver(env, relay);
  const agent = startAgent(env.configFile, unitNodeFlags(UNIT), { wxorx: true });
  const good = () => rx.received.map((r) => r.frames[0]!).find((f) => f.readings.length === 3 && f.readings.every((r) => r.quality === 'good'));
  await until(() => good() !== undefined, 90_000, () => `a frame with every point good; agent output:\n${agent.output().slice(-3000)}`);
  const values = Object.fromEntries(good()!.readings.map((r) => [`${r.tap}/${r.point}`, r.value]));
  assert.deepEqual(values, { 'plc/flow': 4321, 'scada/pressure': 6.25, 'broker/level': 3.5 });
  assert.equal(await agent.stop(), 0, 'SIGTERM: clean exit');
  await rx.stop(); // exit 0, nothing refused
  assert.doesNotMatch(agent.output(), /Fatal error|Check failed/);
  // Each tap's log lines name it once (a repeated JSON key is ambiguous to log shippers).
  const tapLines = agent.output().split('\n').filter((l) => l.includes('"tap":'));
  assert.ok(tapLines.some((l) => l.includes('"tap":"scada"')) && tapLines.some((l) => l.includes('"tap":"plc"')) && tapLines.some((l) => l.includes('"tap":"broker"')));
  for (const line of tapLines) assert.equal(line.split('"tap":').length, 2, `one "tap" key: ${line}`);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});
