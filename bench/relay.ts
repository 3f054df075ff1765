/**
 * Relay benchmarks (docs/PERFORMANCE.md has the targets): upload -> lease -> ack round trip per
 * bucket with 1 and 16 concurrent clients, sustained 4 KiB uploads per second (signature
 * verified by the relay), idle RSS, and the bookkeeping overhead of 100,000 held 4 KiB envelopes.
 * A real relay process (RAM-only) on 127.0.0.1; the held-envelope count runs in a child process
 * over the relay's own store and log so RSS is not muddied by this process.
 */
import { spawn, execFile } from 'node:child_process';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { percentile, type Row } from '../common/table.js';
import { RelayClient } from '../common/relay-client.js';
import { getProvider } from '../protocol/crypto/provider.js';
import { generatePrivateKey, type PrivateKey } from '../protocol/keys.js';
import { enrollParty } from '../common/relay-bench.js';
import { CONTENT_TYPE, DEFAULT_BUCKETS, KEM, sealEnvelope } from '../protocol/envelope/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const cliPath = path.join(here, '..', 'cli', 'ghostpipe.js');
const MiB = 1024 * 1024;
const HELD = 100_000;
/**
 * V8 flags for the relay process, as the systemd unit should run it (docs/RELAY.md): a 1 MiB
 * semi-space keeps the young generation (and the socket chunks it keeps alive) small. Override
 * with GP_RELAY_NODE_FLAGS="" to measure Node's defaults.
 */
const RELAY_FLAGS = (process.env['GP_RELAY_NODE_FLAGS'] ?? '--max-semi-space-size=1').split(' ').filter(Boolean);

async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

interface Bench {
  url: string;
  pid: number;
  operator: RelayClient;
  stop(): Promise<void>;
}

async function startBenchRelay(): Promise<Bench> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gp-bench-relay-'));
  const config = path.join(dir, 'relay.json');
  const operatorKeyFile = path.join(dir, 'operator.key');
  writeFileSync(config, JSON.stringify({
    listen: ['127.0.0.1:0'], ramOnly: true, operatorKeyFile, logLevel: 'info', memoryCap: '2GiB',
    // Keep-alive longer than the pauses in which the bench seals its next batch (seconds on
    // noble): otherwise a reused socket can race the server closing it (ECONNRESET).
    limits: { maxInFlightBytes: '512MiB', maxConnections: 4096, keepAliveTimeout: '60s', idleTimeout: '120s' },
    // One key drives 32 connections at once: its fair shares (docs/RELAY.md) must allow that.
    plans: { bench: { quota: 0, ratePerMinute: 6_000_000, burst: 1_000_000, maxBlob: '5MiB', maxHeldBytes: '1GiB', maxInFlightBytes: '256MiB', maxConcurrentUploads: 64 } },
  }));
  // Production log level (info: every audit event is a line), written to a file, not a pipe.
  const logFile = path.join(dir, 'relay.log');
  const out = openSync(logFile, 'w');
  const child = spawn(process.execPath, [...RELAY_FLAGS, cliPath, 'relay', '--config', config], { stdio: ['ignore', out, 'inherit'] });
  closeSync(out);
  const port = await new Promise<number>((resolve, reject) => {
    const deadline = Date.now() + 20_000;
    const poll = async () => {
      if (child.exitCode !== null) return reject(new Error('bench relay exited'));
      const text = await readFile(logFile, 'utf8');
      const m = /"port":(\d+),"tls":false,"msg":"relay listening"/.exec(text);
      if (m) return resolve(Number(m[1]));
      if (Date.now() > deadline) return reject(new Error('bench relay did not start'));
      setTimeout(poll, 50);
    };
    void poll();
  });
  const url = `http://127.0.0.1:${port}`;
  const operator = new RelayClient({ baseUrl: url, apiKey: (await readFile(operatorKeyFile, 'utf8')).trim() });
  return {
    url, pid: child.pid!, operator,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      if (process.env["GP_BENCH_KEEP"]) process.stderr.write(`relay log kept in ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** utime + stime of a process in ms (Linux clock ticks are 10 ms). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** One request over node:http keep-alive: a lean client, so the figures are the relay's. */
function request(agent: http.Agent, method: string, url: string, apiKey: string, body?: Uint8Array): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${apiKey}` };
    if (body) Object.assign(headers, { 'content-type': 'application/vnd.ghostpipe.envelope', 'content-length': body.length });
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function postEnvelope(url: string, apiKey: string, body: Uint8Array, agent: http.Agent): Promise<number> {
  return (await request(agent, 'POST', `${url}/v2/envelopes`, apiKey, body)).status;
}

interface Party {
  apiKey: string;
  receiverKey: string;
  agent: http.Agent;
  url: string;
  device: RelayClient;
  receiver: RelayClient;
  recipientKeyId: string;
  signing: PrivateKey;
  kem: PrivateKey;
  sequence: bigint;
}

async function makeParty(relay: Bench): Promise<Party> {
  const { deviceKey, receiverKey, recipientKeyId, signing, kem, device, receiver } = await enrollParty({ baseUrl: relay.url }, relay.operator, 'bench', 'bench');
  return { apiKey: deviceKey.key, receiverKey: receiverKey.key, agent: new http.Agent({ keepAlive: true, maxSockets: 2 }), url: relay.url, device, receiver, recipientKeyId, signing, kem, sequence: 0n };
}

function seal(party: Party, bucket: number): Uint8Array {
  return sealEnvelope({
    plaintext: new Uint8Array(Math.min(1000, bucket - 4)),
    recipient: { kemId: KEM.XWING, publicKey: party.kem.publicKey },
    sender: { seed: party.signing.seed, publicKey: party.signing.publicKey },
    streamId: 1, sequence: ++party.sequence, contentType: CONTENT_TYPE.READINGS, bucket,
  });
}

/** upload -> lease (bytes received) -> ack, over node:http keep-alive. */
async function roundTrip(party: Party, envelope: Uint8Array): Promise<number> {
  const t0 = performance.now();
  const up = await request(party.agent, 'POST', `${party.url}/v2/envelopes`, party.apiKey, envelope);
  if (up.status !== 201) throw new Error(`round trip: upload HTTP ${up.status} ${up.body.toString()}`);
  const lease = await request(party.agent, 'POST', `${party.url}/v2/inbox/${party.recipientKeyId}/lease`, party.receiverKey);
  if (lease.status !== 200 || lease.body.length !== envelope.length) throw new Error(`round trip: lease HTTP ${lease.status}`);
  const ack = await request(party.agent, 'POST', `${party.url}/v2/leases/${String(lease.headers['ghostpipe-lease-id'])}/ack`, party.receiverKey);
  if (ack.status !== 204) throw new Error(`round trip: ack HTTP ${ack.status}`);
  return performance.now() - t0;
}

/** The same through RelayClient (common/http-client.ts: JSON parsing, error mapping), as the daemons do. */
async function roundTripClient(party: Party, envelope: Uint8Array): Promise<number> {
  const t0 = performance.now();
  await party.device.upload(envelope);
  const lease = await party.receiver.lease(party.recipientKeyId);
  if (!lease) throw new Error('round trip: nothing to lease');
  await party.receiver.ack(lease.leaseId);
  return performance.now() - t0;
}

const bucketName = (b: number) => (b >= MiB ? `${b / MiB} MiB` : `${b / 1024} KiB`);

export async function benchRelay(): Promise<Row[]> {
  if (process.env['GP_BENCH_HELD_CHILD'] === '1') return [];
  const provider = getProvider().name;
  const rows: Row[] = [];
  const relay = await startBenchRelay();
  let parties: Party[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500));
    const idle = await rssOf(relay.pid);
    rows.push({ section: 'relay', name: 'idle RSS', provider, p50_ms: NaN, p95_ms: NaN, note: `${(idle / MiB).toFixed(1)} MB (target <= 60 MB); node flags: ${RELAY_FLAGS.join(' ') || 'none'}` });

    parties = await Promise.all(Array.from({ length: 16 }, () => makeParty(relay)));
    const plan: Record<number, [number, number]> = { 4096: [100, 8], 65536: [50, 4], 1048576: [20, 2], 5242880: [8, 1] };
    for (const bucket of DEFAULT_BUCKETS) {
      const [single, perClient] = plan[bucket] ?? [10, 2];
      const lone = parties[0]!;
      const warmUp = bucket <= 65536 ? 20 : 3; // JIT and socket warm-up, not measured
      const envelopes = Array.from({ length: single + warmUp }, () => seal(lone, bucket));
      const samples: number[] = [];
      for (const [i, env] of envelopes.entries()) {
        const ms = await roundTrip(lone, env);
        if (i >= warmUp) samples.push(ms);
      }
      rows.push({ section: 'relay', name: `round trip ${bucketName(bucket)}, 1 client`, provider, p50_ms: percentile(samples, 50), p95_ms: percentile(samples, 95), ops_per_s: 1000 / percentile(samples, 50), note: `${envelopes[0]!.length} B envelope; target p50 ${bucket === 4096 ? '<= 3 ms' : bucket === 5242880 ? '<= 60 ms' : 'n/a'}` });

      if (bucket === 4096) {
        const viaClient: number[] = [];
        for (let i = 0; i < single; i++) viaClient.push(await roundTripClient(lone, seal(lone, bucket)));
        rows.push({ section: 'relay', name: 'round trip 4 KiB, 1 client, via RelayClient', provider, p50_ms: percentile(viaClient, 50), p95_ms: percentile(viaClient, 95), ops_per_s: 1000 / percentile(viaClient, 50), note: 'client-side overhead included' });
      }

      const batches = parties.map((p) => Array.from({ length: perClient }, () => seal(p, bucket)));
      const many: number[] = [];
      const started = performance.now();
      await Promise.all(parties.map(async (p, i) => {
        for (const env of batches[i]!) many.push(await roundTrip(p, env));
      }));
      const seconds = (performance.now() - started) / 1000;
      rows.push({ section: 'relay', name: `round trip ${bucketName(bucket)}, 16 clients`, provider, p50_ms: percentile(many, 50), p95_ms: percentile(many, 95), ops_per_s: many.length / seconds });
    }

    // Sustained 4 KiB uploads with signature verification, 32 keep-alive connections over
    // node:http (lighter than fetch, so the load generator is less of a bottleneck). The relay's
    // own CPU time gives its one-core capacity independent of this client.
    const count = provider === 'native' ? 3000 : 300; // sealing them (client side) dominates the bench time on noble
    const up = parties[1]!;
    const envelopes = Array.from({ length: count }, () => seal(up, 4096));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const latencies: number[] = [];
    let next = 0;
    const cpuBefore = await cpuMs(relay.pid);
    const started = performance.now();
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < envelopes.length) {
        const env = envelopes[next++]!;
        const t0 = performance.now();
        const status = await postEnvelope(relay.url, up.apiKey, env, agent);
        if (status !== 201) throw new Error(`sustained upload: HTTP ${status}`);
        latencies.push(performance.now() - t0);
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const relayCpu = (await cpuMs(relay.pid)) - cpuBefore;
    const { log } = await relay.operator.stats();
    rows.push({ section: 'relay', name: 'append -> signed checkpoint (worst, whole run)', provider, p50_ms: NaN, p95_ms: NaN, note: `max ${log.checkpointLatencyMs.max} ms over ${log.size} leaves (target < 250 ms)` });
    agent.destroy();
    rows.push({ section: 'relay', name: 'sustained 4 KiB uploads (verify + log)', provider, p50_ms: percentile(latencies, 50), p95_ms: percentile(latencies, 95), ops_per_s: count / seconds, note: `${count} uploads, 32 connections; relay CPU ${(relayCpu / count).toFixed(3)} ms/upload = ${Math.round((count * 1000) / relayCpu)}/s on one core (target >= 1500/s)` });
  } finally {
    await relay.stop();
    for (const p of parties) p.agent.destroy();
  }

  const held = await heldChild();
  rows.push({
    section: 'relay', name: `RSS with ${HELD.toLocaleString('en')} held 4 KiB envelopes`, provider, p50_ms: NaN, p95_ms: NaN,
    note: `${(held.rssAfter / MiB).toFixed(0)} MB total; ${held.overheadPerEnvelope.toFixed(0)} B/envelope beyond its ${held.envelopeBytes} B (target <= 512)`,
  });
  return rows;
}

/** Runs this file in a child with GP_BENCH_HELD_CHILD=1 and --expose-gc; returns its measurement. */
function heldChild(): Promise<{ rssBefore: number; rssAfter: number; envelopeBytes: number; overheadPerEnvelope: number }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...RELAY_FLAGS, '--expose-gc', fileURLToPath(import.meta.url)], { env: { ...process.env, GP_BENCH_HELD_CHILD: '1' }, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return reject(err);
      resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

async function measureHeld(): Promise<void> {
  const { EnvelopeStore } = await import('../relay/store.js');
  const { RelayLog } = await import('../relay/log.js');
  const { mlDsaNoteSigner, mlDsaNoteVerifier } = await import('../protocol/tlog/note.js');
  const { transferLeaf } = await import('../protocol/log-entries.js');
  const { envelopeLength } = await import('../protocol/envelope/index.js');
  const gc = (globalThis as { gc?: () => void }).gc!;
  const size = envelopeLength(4096, KEM.XWING);
  const store = new EnvelopeStore(64 * 1024 * MiB, 64 * 1024 * MiB, 86_400_000, 30_000, 1_000_000, { onExpired: () => undefined, onLeaseExpired: () => undefined });
  const key = generatePrivateKey('ML-DSA-65');
  const log = await RelayLog.open({ origin: 'bench', signer: mlDsaNoteSigner('bench', key.seed), verifier: mlDsaNoteVerifier('bench', key.publicKey), dir: undefined, onError: (e) => { throw e; } });
  const recipients = Array.from({ length: 16 }, (_, i) => i.toString(16).padStart(64, '0'));
  gc();
  await new Promise((r) => setTimeout(r, 100));
  const before = process.memoryUsage();
  const rssBefore = before.rss;
  for (let i = 0; i < HELD; i++) {
    const bytes = store.allocate(size)!;
    bytes.fill(i & 0xff);
    bytes.writeUInt32BE(i, 0);
    const leaf = transferLeaf(bytes);
    const leafIndex = log.append(leaf.data);
    store.add({ id: Buffer.from(leaf.envelopeHash).toString('hex'), bytes, recipient: recipients[i % 16]!, uploaderKeyId: 'abcdefabcdef', leafIndex });
    if (i % 5000 === 0) await new Promise((r) => setImmediate(r));
  }
  await log.flush();
  gc();
  await new Promise((r) => setTimeout(r, 100));
  const afterAll = process.memoryUsage();
  const rssAfter = afterAll.rss;
  const overheadPerEnvelope = (rssAfter - rssBefore - HELD * size) / HELD;
  const heapPerEnvelope = (afterAll.heapUsed - before.heapUsed) / HELD;
  const externalPerEnvelope = (afterAll.external - before.external) / HELD - size;
  process.stdout.write(JSON.stringify({ rssBefore, rssAfter, envelopeBytes: size, overheadPerEnvelope, heapPerEnvelope, externalPerEnvelope, held: store.count }) + '\n');
}

if (process.env['GP_BENCH_HELD_CHILD'] === '1' && process.argv[1] === fileURLToPath(import.meta.url)) await measureHeld();
