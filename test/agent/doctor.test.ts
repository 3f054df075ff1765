/**
 * `ghostpipe doctor` with taps that report by exception: MQTT (up at CONNACK, values come with
 * the first message) and OPC-UA subscribe (up before the first notification). Real processes:
 * the CLI, a relay, Debian's mosquitto and a node-opcua server. Healthy taps must come back good
 * (the doctor waits for every point's first value); a point that never gets one is named.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cleanupAll, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../helpers/mosquitto.js';
import { startOpcuaServer, type OpcuaTestServer } from '../helpers/opcua-server.js';
import { agentConfig, cli, makeAgentEnv, writeAgentConfig, type AgentEnv } from '../helpers/agent.js';

let broker: MosquittoBroker;
let opcua: OpcuaTestServer;
let relay: RelayProcess;
let env: AgentEnv;
let clientPki: string;

before(async () => {
  broker = await startMosquitto();
  const publisher = await connectTestClient(broker.url);
  await publisher.publishAsync('plant/boiler/temp', '71.5', { qos: 1, retain: true });
  await publisher.publishAsync('plant/boiler/state', JSON.stringify({ mode: 'run' }), { qos: 1, retain: true });
  await publisher.endAsync();
  const dir = await tempDir();
  clientPki = path.join(dir, 'client-pki');
  opcua = await startOpcuaServer({ pkiDir: dir, variables: [{ name: 'Level', value: 42.5 }, { name: 'Speed', value: 3 }] });
  relay = await startRelay();
  env = await makeAgentEnv(relay);
});

after(async () => {
  await opcua?.stop();
  await broker?.close();
  await cleanupAll();
});

const mqttTap = (extraPoints: unknown[] = []) => ({
  name: 'broker', type: 'mqtt', url: broker.url,
  points: [
    { name: 'temp', topic: 'plant/boiler/temp', unit: 'degC' },
    { name: 'mode', topic: 'plant/boiler/state', json: '$.mode', type: 'string' },
    ...extraPoints,
  ],
});

const opcuaTap = (extraPoints: unknown[] = []) => ({
  name: 'line', type: 'opcua', endpoint: opcua.endpoint, securityMode: 'None', pkiDir: clientPki, timeout: '2s',
  mode: 'subscribe', samplingInterval: '200ms',
  points: [{ name: 'level', nodeId: 'nsu=urn:ghostpipe:test;s=Level', unit: '%' }, { name: 'speed', nodeId: 'nsu=urn:ghostpipe:test;s=Speed' }, ...extraPoints],
});

/** interval 5s: long enough that a value received during the probe is never reported stale. */
const writeTaps = (taps: unknown[]) => writeAgentConfig(env, agentConfig(env, relay.url, taps, { interval: '5s' }));

test('doctor waits for the first values of MQTT and OPC-UA subscribe taps: healthy, exit 0', { timeout: 120_000 }, async () => {
  await writeTaps([mqttTap(), opcuaTap()]);
  const enrolled = await cli(['enroll', '--config', env.configFile]);
  assert.equal(enrolled.code, 0, enrolled.stdout + enrolled.stderr);
  const run = await cli(['doctor', '--config', env.configFile], { timeoutMs: 60_000 });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /TAP\s+POINT\s+VALUE\s+UNIT\s+QUALITY\s+LATENCY\s+REASON/);
  assert.match(run.stdout, /\nbroker\s+temp\s+71\.5\s+degC\s+good\s+\d+ ms\n/);
  assert.match(run.stdout, /\nbroker\s+mode\s+"run"\s+good\s+\d+ ms\n/);
  assert.match(run.stdout, /\nline\s+level\s+42\.5\s+%\s+good\s+\d+ ms\n/);
  assert.match(run.stdout, /\nline\s+speed\s+3\s+good\s+\d+ ms\n/);
  assert.match(run.stdout, /\ntap broker \(mqtt\): up, /);
  assert.match(run.stdout, /\ntap line \(opcua\): up, /);
  assert.doesNotMatch(run.stdout, /no value after waiting/);
  assert.match(run.stdout, /\nhealthy\n$/);
});

test('doctor names an MQTT point whose topic is never published: exit 1', { timeout: 120_000 }, async () => {
  await writeTaps([mqttTap([{ name: 'silent', topic: 'plant/boiler/never' }]), opcuaTap()]);
  const run = await cli(['doctor', '--config', env.configFile], { timeoutMs: 60_000 });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /\nbroker\s+temp\s+71\.5\s+degC\s+good\s+\d+ ms\n/, 'the other points are still read');
  assert.match(run.stdout, /\nbroker\s+silent\s+-\s+bad\s+\d+ ms\s+no value received yet on plant\/boiler\/never\n/);
  assert.match(run.stdout, /\ntap broker \(mqtt\): up, .*; no value after waiting \d+ ms: silent\n/);
  assert.match(run.stdout, /\nline\s+level\s+42\.5\s+%\s+good/);
  assert.match(run.stdout, /\nNOT HEALTHY\n$/);
});

test('doctor names an OPC-UA subscribe point with an unknown node id: exit 1', { timeout: 120_000 }, async () => {
  await writeTaps([mqttTap(), opcuaTap([{ name: 'ghost', nodeId: 'nsu=urn:ghostpipe:test;s=NoSuchNode' }])]);
  const run = await cli(['doctor', '--config', env.configFile], { timeoutMs: 60_000 });
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(run.stdout, /\nline\s+level\s+42\.5\s+%\s+good\s+\d+ ms\n/, 'the other points are still read');
  assert.match(run.stdout, /\nline\s+ghost\s+-\s+bad\s+\d+ ms\s+cannot monitor: BadNodeIdUnknown\n/);
  assert.match(run.stdout, /\ntap line \(opcua\): up, .*; no value after waiting \d+ ms: ghost\n/);
  assert.match(run.stdout, /\nbroker\s+temp\s+71\.5\s+degC\s+good/);
  assert.match(run.stdout, /\nNOT HEALTHY\n$/);
});
