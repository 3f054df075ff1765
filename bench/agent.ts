/**
 * Agent benchmark against real local peers: 10 Modbus TCP servers x 50 registers, one OPC-UA
 * server with 100 variables, mosquitto with 50 retained topics, and a real relay process.
 *   - one interval end to end: poll every tap, build and encode the frame, seal, sign, upload
 *   - Modbus requests per interval for that set (the request planner merges neighbours)
 *   - RSS of a real `ghostpipe agent` process with all three tap kinds active
 * Targets (docs/PERFORMANCE.md): interval <= 250 ms on x86, RSS <= 100 MB.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { measure, percentile, type Row } from '../common/table.js';
import { silentLogger } from '../common/log.js';
import { validate } from '../common/schema.js';
import { codeSource } from '../common/config-file.js';
import { agentConfigSchema, loadAgentSecrets } from '../agent/config.js';
import { Agent } from '../agent/agent.js';
import { enrollDevice } from '../agent/enroll.js';
import { RelayClient } from '../common/relay-client.js';
import { cleanupAll, startRelay } from '../test/helpers/relay.js';
import { ModbusMemory, startModbusTcpServer, type ModbusTcpTestServer } from '../test/helpers/modbus-server.js';
import { connectTestClient, startMosquitto } from '../test/helpers/mosquitto.js';
import { startOpcuaServer } from '../test/helpers/opcua-server.js';
import { agentConfig, makeAgentEnv, startAgent, writeAgentConfig, killAllAgents } from '../test/helpers/agent.js';
import { unitNodeFlags } from '../test/helpers/systemd-unit.js';

const ITERATIONS = 20;
/** The node flags of systemd/ghostpipe-agent.service (ExecStart and NODE_OPTIONS; docs/AGENT.md, "Memory"). */
const UNIT_FLAGS = unitNodeFlags('ghostpipe-agent.service');

export async function benchAgent(): Promise<Row[]> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-agent-bench-'));
  const modbus: ModbusTcpTestServer[] = [];
  const opcuaNames = Array.from({ length: 100 }, (_, i) => `Node${i}`);
  const opcua = await startOpcuaServer({ pkiDir: path.join(tmp, 'opcua-server'), variables: opcuaNames.map((name, i) => ({ name, value: i })), securityModes: ['None'], securityPolicies: ['None'] });
  const broker = await startMosquitto();
  const relay = await startRelay();
  const rows: Row[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const memory = new ModbusMemory();
      memory.setRegisters('holding', 0, Array.from({ length: 50 }, (_, j) => j * 10 + i));
      modbus.push(await startModbusTcpServer(memory));
    }
    const publisher = await connectTestClient(broker.url);
    for (let i = 0; i < 50; i++) await publisher.publishAsync(`bench/t${i}`, String(i * 1.5), { retain: true, qos: 1 });
    await publisher.endAsync();

    const taps = [
      ...modbus.map((server, i) => ({
        name: `plc${i}`, type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: server.port, addressBase: 0, timeout: '1s', maxGap: 4,
        points: Array.from({ length: 50 }, (_, j) => ({ name: `r${j}`, table: 'holding', address: j, type: 'uint16', unit: 'bar' })),
      })),
      { name: 'opcua', type: 'opcua', endpoint: opcua.endpoint, securityMode: 'None', pkiDir: path.join(tmp, 'opcua-client'), points: opcuaNames.map((name) => ({ name, nodeId: `ns=2;s=${name}` })) },
      { name: 'mqtt', type: 'mqtt', url: broker.url, staleAfter: '1h', points: Array.from({ length: 50 }, (_, i) => ({ name: `t${i}`, topic: `bench/t${i}` })) },
    ];
    const env = await makeAgentEnv(relay);
    const raw = agentConfig(env, relay.url, taps, { interval: '1s', deadline: 0.9 });
    const config = validate(agentConfigSchema, raw);
    const secrets = await loadAgentSecrets(config, codeSource('bench'), () => undefined);
    await enrollDevice(new RelayClient({ baseUrl: relay.url, apiKey: secrets.apiKey }), secrets.device);

    // In-process: time runInterval (collect by the deadline, encode, seal, sign, upload).
    const agent = new Agent({ config, secrets, logger: silentLogger(), manual: true });
    await agent.start();
    for (let i = 0; i < 40 && !(await allGood(agent)); i++) await new Promise((resolve) => setTimeout(resolve, 250));
    const requestsBefore = modbus.reduce((n, s) => n + s.requests.length, 0);
    // Interval starts one config interval apart, so every tap is due each time (collect.ts repeats
    // the last readings of a tap asked less than an interval ago, which would time nothing).
    let intervals = 0;
    let start = Date.now();
    const timing = await measure(() => (intervals++, agent.runInterval((start += config.interval))), ITERATIONS, 2);
    const requests = (modbus.reduce((n, s) => n + s.requests.length, 0) - requestsBefore) / intervals;
    await agent.stop();
    rows.push({ section: 'agent', name: 'one interval: poll + build + seal + upload (10x50 Modbus, 100 OPC-UA, 50 MQTT)', provider: process.version, ...timing, note: `target <= 250 ms on x86; ${agent.delivery.stats.uploaded} uploads` });

    // A real agent process: RSS with all three tap kinds active after a few intervals, with node's
    // defaults and with the node flags of systemd/ghostpipe-agent.service (UNIT_FLAGS). At debug
    // level (more logging than the default info: a conservative RSS) its per-interval summary
    // gives the daemon's own interval time, from interval start to upload answered.
    const variants: [string, string[]][] = [
      ['node defaults', []],
      ['systemd unit flags', UNIT_FLAGS],
      ['unit flags without --jitless', UNIT_FLAGS.filter((f) => f !== '--jitless')],
    ];
    for (const [n, [label, flags]] of variants.entries()) {
      await writeAgentConfig(env, { ...raw, logLevel: 'debug', stateDir: path.join(env.dir, `state-rss-${n}`) });
      const child = startAgent(env.configFile, [...flags]);
      await child.waitFor((l) => l.msg === 'device enrolled with the relay', 30_000, 'agent start');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const peak = { rss: 0, anon: 0, file: 0 };
      for (let i = 0; i < 20; i++) { // ten 1 s intervals, sampled every 500 ms
        await new Promise((resolve) => setTimeout(resolve, 500));
        const status = readFileSync(`/proc/${child.child.pid}/status`, 'utf8');
        const mb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
        if (mb('VmRSS') > peak.rss) Object.assign(peak, { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') });
      }
      await child.stop();
      const took = child.lines.filter((l) => l.msg === 'interval').slice(-10).map((l) => Number(l['tookMs']));
      rows.push({ section: 'agent', name: `agent process interval, from its debug summary (${label})`, provider: [process.version, ...flags].join(' '), p50_ms: percentile(took, 50), p95_ms: percentile(took, 95), note: `last ${took.length} intervals; target <= 250 ms on x86` });
      rows.push({ section: 'agent', name: `agent process RSS, Modbus + OPC-UA + MQTT active (${label})`, provider: [process.version, ...flags].join(' '), p50_ms: NaN, p95_ms: NaN, note: `peak ${peak.rss.toFixed(1)} MB = ${peak.anon.toFixed(1)} anon + ${peak.file.toFixed(1)} file-backed (target <= 100 MB)` });
    }
    rows.push({ section: 'agent', name: 'Modbus requests per interval (10 devices x 50 registers)', provider: 'modbus-serial 8.0.25', p50_ms: NaN, p95_ms: NaN, note: `${requests} requests per interval (${intervals} intervals, in-process agent)` });
  } finally {
    await killAllAgents();
    for (const server of modbus) await server.stop();
    await opcua.stop();
    await broker.close();
    await cleanupAll();
    await rm(tmp, { recursive: true, force: true });
  }
  return rows;
}

async function allGood(agent: Agent): Promise<boolean> {
  // A throwaway interval: the readings it built tell whether every tap is connected.
  const before = agent.framesBuilt;
  await agent.runInterval(Date.now());
  return agent.framesBuilt > before && agent.lastQuality.bad === 0 && agent.lastQuality.uncertain === 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { formatTable } = await import('../common/table.js');
  console.log(formatTable(await benchAgent()));
}
