/**
 * Issue 11 item 5 against a relay process (`npm run soak:queues`, not in CI: minutes on Node 24,
 * far longer on Node 20's pure-JS crypto). N envelopes (default 102,400), each to its own
 * recipient that nobody reads, through a relay with a 2 s TTL; after each tenth of them has
 * expired the relay is made to collect garbage (SIGUSR2 via test/helpers/gc-on-signal.cjs) and
 * its heap is read from /v2/stats. All receiver keys are issued before the first upload and
 * tombstones are capped low (statusMemory), so what grows by design is in the baseline; the
 * transparency log's bounded RAM fills over its first RECENT_LEAVES leaves, so the baseline is
 * the first sample after that. Passes when the heap after all N expired is within 1 MiB of the
 * baseline (the old store kept 154-515 B per expired envelope: 4.5-15 MiB over the last 30,720)
 * and the relay holds no queue. Prints a JSON summary.
 *
 *   GHOSTPIPE_SOAK_ENVELOPES   N (default 102400: 160 receiver keys of 64 recipients per tenth; a multiple of 640)
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupAll, makeDevice, markedPlaintext, startRelay, type Receiver } from '../helpers/relay.js';
import { generatePrivateKey, keyIdHex } from '../../protocol/keys.js';
import { until } from '../helpers/wait.js';
import { RECENT_LEAVES } from '../../relay/log.js';

const N = Number(process.env['GHOSTPIPE_SOAK_ENVELOPES'] ?? 102_400);
const PER_KEY = 64; // recipients a receiver key may list
const MiB = 1024 * 1024;
const say = (msg: string) => process.stderr.write(`[queue-soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const preload = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../test/helpers/gc-on-signal.cjs');

async function main(): Promise<number> {
  if (!Number.isInteger(N) || N % (10 * PER_KEY) !== 0 || N * 0.8 < RECENT_LEAVES) throw new Error(`GHOSTPIPE_SOAK_ENVELOPES must be a multiple of ${10 * PER_KEY} of at least ${Math.ceil(RECENT_LEAVES / 0.8)} (the log's bounded RAM fills over the first ${RECENT_LEAVES})`);
  const relay = await startRelay({
    // statusMemory small: tombstones (bounded by it, ~100 B each) are full after the first tenth.
    ttl: '2s', memoryCap: '256MiB', statusMemory: 1_000,
    plans: { pro: { quota: 0, ratePerMinute: 6_000_000, burst: 1_000_000, maxBlob: '5MiB', maxHeldBytes: '128MiB', maxInFlightBytes: '64MiB', maxConcurrentUploads: 16 } },
  }, { env: { NODE_OPTIONS: `--require ${preload} --max-semi-space-size=1` } });
  const device = await makeDevice(relay);
  const heapAfterGc = async (): Promise<number> => {
    relay.child.kill('SIGUSR2');
    await new Promise((resolve) => setTimeout(resolve, 300));
    return (await relay.operator.stats()).memory.heapUsedBytes;
  };
  // Every receiver key first: the keys and the set of listed recipients are state that grows with
  // them by design, so they must be in the baseline, not in the growth.
  const started = Date.now();
  const groups: ReturnType<typeof generatePrivateKey>[][] = [];
  for (let k = 0; k < N / PER_KEY; k++) {
    const kems = Array.from({ length: PER_KEY }, () => generatePrivateKey('X-Wing'));
    await relay.operator.createKey({ role: 'receiver', plan: 'pro', label: `soak ${k}`, recipients: kems.map((kem) => keyIdHex('X-Wing', kem.publicKey)) });
    groups.push(kems);
  }
  say(`${N / PER_KEY} receiver keys listing ${N} recipients issued`);
  const samples: { envelopes: number; heapMiB: number; rssMiB: number }[] = [];
  let sent = 0;
  for (let tenth = 0; tenth < 10; tenth++) {
    for (let k = 0; k < N / 10 / PER_KEY; k++) {
      const kems = groups[tenth * (N / 10 / PER_KEY) + k]!;
      const envelopes = kems.map((kem, i) => device.seal(markedPlaintext(`soak ${sent + i}`, 64), { kem } as Receiver));
      await Promise.all(Array.from({ length: 16 }, async (_, w) => {
        for (let i = w; i < envelopes.length; i += 16) await device.client.upload(envelopes[i]!);
      }));
      sent += envelopes.length;
    }
    await until(`the first ${sent} expired`, async () => {
      const s = await relay.operator.stats();
      return s.envelopes.expired >= sent && s.memory.recipientQueues === 0;
    }, 60_000, 200);
    const stats = await relay.operator.stats();
    samples.push({ envelopes: sent, heapMiB: (await heapAfterGc()) / MiB, rssMiB: stats.memory.rssBytes / MiB });
    say(`${sent} expired: heap ${samples.at(-1)!.heapMiB.toFixed(2)} MiB after GC, RSS ${samples.at(-1)!.rssMiB.toFixed(0)} MiB`);
  }
  // Until the log holds RECENT_LEAVES leaves its bounded RAM fills (recent-leaf index, tile and
  // bundle caches: about 14 MiB, docs/RELAY.md "Memory"); from then on the heap must stay flat.
  const baseline = samples.find((x) => x.envelopes >= RECENT_LEAVES)!;
  const grownMiB = samples.at(-1)!.heapMiB - baseline.heapMiB;
  const final = await relay.operator.stats();
  const pass = grownMiB < 1 && final.memory.recipientQueues === 0 && final.memory.heldBytes === 0;
  process.stdout.write(JSON.stringify({
    pass, envelopes: N, seconds: Math.round((Date.now() - started) / 1000), node: process.version,
    baselineAt: baseline.envelopes, heapGrowthMiB: Number(grownMiB.toFixed(2)), bytesPerEnvelope: Math.round((grownMiB * MiB) / (N - baseline.envelopes)),
    recipientQueues: final.memory.recipientQueues, heldBytes: final.memory.heldBytes, samples,
  }, null, 2) + '\n');
  await relay.stop();
  return pass ? 0 : 1;
}

main().then(async (code) => {
  await cleanupAll();
  process.exit(code);
}, async (err: unknown) => {
  say(`failed: ${(err as Error).stack ?? String(err)}`);
  await cleanupAll().catch(() => undefined);
  process.exit(1);
});
