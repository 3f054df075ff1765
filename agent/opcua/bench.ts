/**
 * OPC-UA tap benchmark: one collect() of 100 nodes in read mode and in subscribe mode against a
 * real local node-opcua server, plus the RSS cost of loading node-opcua-client (measured in a
 * fresh child process so nothing else the bench loaded is counted).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { startOpcuaServer } from '../../test/helpers/opcua-server.js';
import type { Tap } from '../tap.js';
import { createOpcuaTap, opcuaTapSchema } from './index.js';

export interface Row { section: string; name: string; provider: string; p50_ms: number; p95_ms: number; ops_per_s?: number; note?: string }

const provider = 'node-opcua-client 2.182.2';
const nodeCount = 100;
const iterations = 50;
const selfPath = fileURLToPath(import.meta.url);
/** The agent's default interval: the tap's session timeout derives from it, collect() is timed directly. */
const defaultInterval = 15_000;

export async function benchOpcua(): Promise<Row[]> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'ghostpipe-opcua-bench-'));
  const names = Array.from({ length: nodeCount }, (_, i) => `Bench${i}`);
  const server = await startOpcuaServer({ pkiDir: tmp, variables: names.map((name, i) => ({ name, value: i })) });
  const rows: Row[] = [];
  try {
    for (const mode of ['read', 'subscribe'] as const) {
      const config = { interval: defaultInterval, ...validate(opcuaTapSchema, {
        name: `bench-${mode}`, type: 'opcua', endpoint: server.endpoint, securityMode: 'None', pkiDir: path.join(tmp, 'client'),
        mode, samplingInterval: '100ms', points: names.map((name) => ({ name, nodeId: `ns=2;s=${name}` })),
      }) };
      const tap = createOpcuaTap(config, { logger: silentLogger() });
      try {
        await tap.start();
        await until(async () => (await tap.collect(Date.now() + 2000)).every((r) => r.quality === 'good'));
        const requestsBefore = tap.status().requests;
        const times: number[] = [];
        for (let i = 0; i < iterations; i++) {
          const started = performance.now();
          const readings = await tap.collect(Date.now() + 5000);
          times.push(performance.now() - started);
          if (readings.length !== nodeCount) throw new Error(`expected ${nodeCount} readings, got ${readings.length}`);
        }
        rows.push(row(`collect ${nodeCount} nodes, ${mode} mode`, times, `${(tap.status().requests - requestsBefore) / iterations} requests per collect, SecurityMode None`));
      } finally {
        await tap.stop();
      }
    }
    rows.push(...(await measureRss(server.endpoint, path.join(tmp, 'client'), names)));
  } finally {
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  return rows;
}

function row(name: string, times: number[], note: string): Row {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return { section: 'opcua tap', name, provider, p50_ms: round(at(0.5)), p95_ms: round(at(0.95)), ops_per_s: round(1000 / mean), note };
}

const round = (n: number) => Math.round(n * 1000) / 1000;

async function until(done: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > end) throw new Error('bench: the OPC-UA tap did not deliver good readings in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface RssReport { baseline: number; loaded: number; connected: number }

/** RSS of a fresh Node process: bare, with node-opcua-client imported, and with a 100-node read tap connected. */
async function measureRss(endpoint: string, pkiDir: string, names: string[]): Promise<Row[]> {
  const child = fork(selfPath, ['--opcua-rss-probe'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, GHOSTPIPE_RSS_PROBE: JSON.stringify({ endpoint, pkiDir, names }) } });
  const report = await new Promise<RssReport>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('RSS probe timed out')); }, 60_000);
    child.once('message', (m) => { clearTimeout(timer); resolve(m as RssReport); });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`RSS probe exited with ${code}`)); });
  });
  child.kill();
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return [
    { section: 'opcua tap', name: 'RSS: node-opcua-client loaded', provider, p50_ms: 0, p95_ms: 0, note: `+${mb(report.loaded - report.baseline)} over a bare Node process (${mb(report.baseline)} -> ${mb(report.loaded)})` },
    { section: 'opcua tap', name: `RSS: ${names.length}-node read tap connected`, provider, p50_ms: 0, p95_ms: 0, note: `+${mb(report.connected - report.baseline)} over a bare Node process (total ${mb(report.connected)})` },
  ];
}

async function rssProbe(): Promise<void> {
  const { endpoint, pkiDir, names } = JSON.parse(process.env.GHOSTPIPE_RSS_PROBE ?? '{}') as { endpoint: string; pkiDir: string; names: string[] };
  const settle = async () => { (globalThis as { gc?: () => void }).gc?.(); await new Promise((r) => setTimeout(r, 200)); return process.memoryUsage().rss; };
  const baseline = await settle();
  await import('node-opcua-client');
  await import('node-opcua-certificate-manager');
  const loaded = await settle();
  const config = { interval: defaultInterval, ...validate(opcuaTapSchema, { name: 'rss', type: 'opcua', endpoint, securityMode: 'None', pkiDir, points: names.map((name) => ({ name, nodeId: `ns=2;s=${name}` })) }) };
  const tap: Tap = createOpcuaTap(config, { logger: silentLogger() });
  await tap.start();
  await until(async () => (await tap.collect(Date.now() + 2000)).every((r) => r.quality === 'good'));
  const connected = await settle();
  await tap.stop();
  process.send!({ baseline, loaded, connected } satisfies RssReport);
}

if (process.argv[1] === selfPath && process.argv.includes('--opcua-rss-probe')) {
  rssProbe().catch((err: Error) => {
    console.error(err);
    process.exit(1);
  });
} else if (process.argv[1] === selfPath) {
  // `node dist/agent/opcua/bench.js` prints the rows.
  benchOpcua().then((rows) => console.table(rows), (err: Error) => { console.error(err); process.exitCode = 1; });
}
