/**
 * `npm run bench -- log`: the relay's tiled transparency log (relay/log.ts). Targets (issue 9,
 * docs/PERFORMANCE.md): append >= 20,000 leaves/s sustained with fsync batching; a real relay
 * starts in <= 2 s with <= 32 MiB of log RAM on 10,000,000 leaves; inclusion and consistency
 * proofs >= 10,000/s from tiles; <= 100 bytes of disk per transfer leaf.
 * GP_BENCH_LOG_LEAVES sets the big log's size (default 10,000,000; the tiles are generated once
 * per run in a temp folder, about 700 MB).
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { RelayLog, MAX_BATCH_LEAVES } from '../relay/log.js';
import { mlDsaNoteSigner, mlDsaNoteVerifier } from '../protocol/tlog/note.js';
import { generatePrivateKey, keyIdHex, encodePrivateKeyPem } from '../protocol/keys.js';
import { writePrivateKeyFile } from '../common/keyfile.js';
import { unitNodeFlags } from '../test/helpers/systemd-unit.js';
import { cliPath } from '../test/helpers/paths.js';
import { prng } from '../common/prng.js';
import { measure, type Row } from '../common/table.js';

const MiB = 1024 * 1024;
const BIG = Number(process.env['GP_BENCH_LOG_LEAVES'] ?? 10_000_000);
const provider = 'node:crypto';

function transferLeaf(i: number): Uint8Array {
  const data = new Uint8Array(33);
  data[0] = 1;
  new DataView(data.buffer).setFloat64(1, i);
  return data;
}

async function openLog(dir: string, origin: string, key: ReturnType<typeof generatePrivateKey>): Promise<RelayLog> {
  return RelayLog.open({ origin, signer: mlDsaNoteSigner(origin, key.seed), verifier: mlDsaNoteVerifier(origin, key.publicKey), dir, onError: (err) => { throw err; } });
}

/** Appends `count` leaves the way uploads arrive: a slice per event-loop turn; resolves when all are signed. */
async function appendSustained(log: RelayLog, count: number, perTurn = 1000): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i += perTurn) {
    for (let j = i; j < Math.min(count, i + perTurn); j++) log.append(transferLeaf(j));
    // A producer faster than the disk would only grow the unwritten backlog: wait for it.
    if (log.size - log.signedSize > 2 * MAX_BATCH_LEAVES) await log.flush();
    else await new Promise((r) => setImmediate(r));
  }
  await log.flush();
  return (performance.now() - started) / 1000;
}

async function du(dir: string): Promise<{ apparent: number; blocks: number }> {
  const run = promisify(execFile);
  const apparent = Number((await run('du', ['-sb', dir])).stdout.split('\t')[0]);
  const blocks = Number((await run('du', ['-sB1', dir])).stdout.split('\t')[0]);
  return { apparent, blocks };
}

/** Starts a real relay on a state directory; resolves with its start time and RSS once it listens. */
async function startRelay(stateDir: string): Promise<{ ms: number; rssMiB: number; logSize: number }> {
  const config = path.join(stateDir, '..', 'relay.json');
  await writeFile(config, JSON.stringify({ listen: ['127.0.0.1:0'], stateDir, logLevel: 'info' }));
  const flags = unitNodeFlags('ghostpipe-relay.service');
  const started = performance.now();
  const child = spawn(process.execPath, [...flags, cliPath, 'relay', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  let logSize = -1;
  const ms = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const entry = JSON.parse(line) as { msg?: string; logSize?: number };
        if (entry.msg === 'relay state loaded') logSize = entry.logSize ?? -1;
        if (entry.msg === 'relay listening') resolve(performance.now() - started);
      }
    });
    child.once('exit', (code) => reject(new Error(`relay exited ${code}`)));
  });
  const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
  const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return { ms, rssMiB, logSize };
}

export async function benchLog(): Promise<Row[]> {
  const rows: Row[] = [];
  const root = await mkdtemp(path.join(os.tmpdir(), 'gp-bench-log-'));
  try {
    const key = generatePrivateKey('ML-DSA-65');
    const origin = `ghostpipe-relay/${keyIdHex('ML-DSA-65', key.publicKey).slice(0, 16)}`;

    // Sustained appends on a fresh log (fsync'ed batches, one signed checkpoint per batch).
    const small = await openLog(path.join(root, 'append'), origin, key);
    const count = 300_000;
    const seconds = await appendSustained(small, count);
    rows.push({ section: 'log', name: 'append, sustained (1000 per turn, fsync batching)', provider, p50_ms: NaN, p95_ms: NaN, ops_per_s: count / seconds, note: `${count.toLocaleString('en')} leaves in ${seconds.toFixed(1)} s; worst append -> durable signed checkpoint ${Math.round(small.maxCheckpointMs)} ms (target >= 20,000/s)` });
    await small.close();

    // The big log: generated through the same code, then started as a real relay.
    const stateDir = path.join(root, 'big', 'state');
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writePrivateKeyFile(path.join(stateDir, 'relay.sign.key'), encodePrivateKeyPem(key));
    const big = await openLog(path.join(stateDir, 'log'), origin, key);
    const genSeconds = await appendSustained(big, BIG, 20_000);
    await big.close();
    const disk = await du(path.join(stateDir, 'log'));
    rows.push({ section: 'log', name: `disk per transfer leaf (${BIG.toLocaleString('en')} leaves)`, provider, p50_ms: NaN, p95_ms: NaN, note: `${(disk.apparent / BIG).toFixed(1)} B apparent, ${(disk.blocks / BIG).toFixed(1)} B in 4 KiB blocks (target <= 100); generated at ${Math.round(BIG / genSeconds).toLocaleString('en')} leaves/s` });

    const empty = path.join(root, 'empty', 'state');
    await mkdir(empty, { recursive: true, mode: 0o700 });
    await writePrivateKeyFile(path.join(empty, 'relay.sign.key'), encodePrivateKeyPem(key));
    const baseline = await startRelay(empty);
    const loaded = await startRelay(stateDir);
    if (loaded.logSize !== BIG) throw new Error(`relay loaded ${loaded.logSize} leaves, expected ${BIG}`);
    rows.push({ section: 'log', name: `relay start on ${BIG.toLocaleString('en')} leaves`, provider, p50_ms: loaded.ms, p95_ms: NaN, note: `to "relay listening" (empty log: ${Math.round(baseline.ms)} ms; target <= 2000 ms); unit flags ${unitNodeFlags('ghostpipe-relay.service').join(' ')}` });
    rows.push({ section: 'log', name: `relay RSS with ${BIG.toLocaleString('en')} leaves`, provider, p50_ms: NaN, p95_ms: NaN, note: `${loaded.rssMiB.toFixed(1)} MiB vs ${baseline.rssMiB.toFixed(1)} MiB on an empty log: log RAM ${(loaded.rssMiB - baseline.rssMiB).toFixed(1)} MiB (target <= 32 MiB)` });

    // Proofs from tiles: random leaves and sizes, so most tile reads miss the 256-tile cache.
    const reader = await openLog(path.join(stateDir, 'log'), origin, key);
    const random = prng(7);
    const size = reader.signedSize;
    const inclusion = await measure(() => reader.inclusionProof(Math.floor(random() * size), size), 20_000, 1000);
    rows.push({ section: 'log', name: 'inclusion proof from tiles (random leaf)', provider, ...inclusion, note: `${size.toLocaleString('en')} leaves (target >= 10,000/s)` });
    const recent = await measure(() => reader.inclusionProof(size - 1 - Math.floor(random() * 1000), size), 20_000, 1000);
    rows.push({ section: 'log', name: 'inclusion proof from tiles (last 1000 leaves)', provider, ...recent, note: 'what receivers ask for' });
    const consistency = await measure(() => {
      const b = 1 + Math.floor(random() * size);
      return reader.consistencyProof(1 + Math.floor(random() * b), b);
    }, 20_000, 1000);
    rows.push({ section: 'log', name: 'consistency proof from tiles (random sizes)', provider, ...consistency, note: '(target >= 10,000/s)' });
    const catchUp = await measure(() => reader.consistencyProof(size - 1 - Math.floor(random() * 10_000), size), 20_000, 1000);
    rows.push({ section: 'log', name: 'consistency proof from tiles (from the last 10,000 sizes)', provider, ...catchUp, note: 'what witnesses ask for' });
    let done = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (done < 20_000) {
        done++;
        await reader.inclusionProof(Math.floor(random() * size), size);
      }
    }));
    rows.push({ section: 'log', name: 'inclusion proof from tiles (random leaf, 16 concurrent)', provider, p50_ms: NaN, p95_ms: NaN, ops_per_s: done / ((performance.now() - started) / 1000), note: 'file reads overlap in the libuv pool' });
    rows.push({ section: 'log', name: 'log RAM estimate (in process)', provider, p50_ms: NaN, p95_ms: NaN, note: `${(reader.ramBytes() / MiB).toFixed(1)} MiB: edge + 256-tile cache + bundle cache + recent-leaf index` });
    await reader.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}
