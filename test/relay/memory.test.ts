/**
 * Memory cap under a flood of 5 MiB uploads: 507 + Retry-After when full, the process stays
 * under cap + a stated overhead, keeps answering, and accepts again once drained. Queues of
 * recipients nobody reads leave nothing behind once their envelopes expire (the heap figure for
 * 100,000 of them is measured in process: relay/store.test.ts).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, type Receiver } from '../helpers/relay.js';
import { generatePrivateKey, keyIdHex } from '../../protocol/keys.js';

after(cleanupAll);

const MiB = 1024 * 1024;
const CAP = 48 * MiB;
/**
 * What a relay process may use beyond the cap (docs/RELAY.md, "Memory"): the idle runtime
 * (~60-70 MiB), socket buffers of uploads in progress and GC slack. Measured: peak 117-122 MiB
 * with 45 MiB held, i.e. ~10-15 MiB above idle + held bytes.
 */
const OVERHEAD = 112 * MiB;

async function rss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

test('memory cap: a flood of 5 MiB uploads gets 507, the relay stays bounded and recovers', async (t) => {
  // The key's own share (docs/RELAY.md "Fair shares") above the cap: this is about the relay's cap.
  const relay = await startRelay({
    memoryCap: '48MiB', limits: { maxInFlightBytes: '24MiB' },
    plans: { pro: { quota: 0, ratePerMinute: 600000, burst: 10000, maxBlob: '5MiB', maxHeldBytes: '128MiB', maxInFlightBytes: '64MiB', maxConcurrentUploads: 7 } },
  });
  const device = await makeDevice(relay);
  const receiver = await makeReceiver(relay);
  const envelopes = Array.from({ length: 14 }, (_, i) => device.seal(markedPlaintext(`flood ${i}`, 5 * MiB - 4), receiver, undefined, 5 * MiB));
  assert.equal(envelopes[0]!.length > 5 * MiB, true);

  let peak = 0;
  const sampler = setInterval(() => void rss(relay.child.pid!).then((v) => (peak = Math.max(peak, v)), () => undefined), 20);
  const outcomes: (string | number)[] = [];
  let retryAfter: number | undefined;
  const refusedIndices: number[] = [];
  try {
    // Seven clients at once, each sending its share.
    await Promise.all(Array.from({ length: 7 }, async (_, worker) => {
      for (let i = worker; i < envelopes.length; i += 7) {
        try {
          await device.client.upload(envelopes[i]!);
          outcomes.push(201);
        } catch (err) {
          assert.ok(err instanceof RelayError);
          outcomes.push(err.status);
          if (err.status === 507) {
            retryAfter = err.retryAfterMs;
            refusedIndices.push(i);
          }
        }
        // The relay keeps answering while full.
        assert.equal((await new RelayClient({ baseUrl: relay.url }).health()).status, 'ok');
      }
    }));
  } finally {
    clearInterval(sampler);
  }
  const accepted = outcomes.filter((o) => o === 201).length;
  assert.ok(outcomes.includes(507), `expected some 507s: ${outcomes.join(',')}`);
  assert.ok(outcomes.every((o) => o === 201 || o === 507), outcomes.join(','));
  assert.ok(retryAfter !== undefined && retryAfter >= 1000);
  assert.ok(accepted * (5 * MiB) <= CAP, `accepted ${accepted}`);
  assert.ok(accepted >= 5, `accepted only ${accepted}`);
  const stats = await relay.operator.stats();
  assert.ok(stats.memory.heldBytes <= CAP);
  assert.equal(stats.envelopes.pending, accepted);
  peak = Math.max(peak, await rss(relay.child.pid!));
  t.diagnostic(`accepted ${accepted} of ${envelopes.length}; peak RSS ${(peak / MiB).toFixed(0)} MiB (cap ${CAP / MiB} MiB + overhead ${OVERHEAD / MiB} MiB)`);
  assert.ok(peak < CAP + OVERHEAD, `peak RSS ${(peak / MiB).toFixed(0)} MiB over cap + overhead`);

  // Drain: everything held is delivered intact; then uploads are accepted again.
  for (;;) {
    const lease = await receiver.client.lease(receiver.recipientKeyId);
    if (!lease) break;
    await receiver.client.ack(lease.leaseId);
  }
  const drained = await relay.operator.stats();
  assert.equal(drained.memory.heldBytes, 0);
  assert.equal(drained.envelopes.delivered, accepted);
  // A refused envelope, sent again after the drain, is accepted (nothing was half-stored).
  const retry = await device.client.upload(envelopes[refusedIndices[0]!]!);
  assert.equal(retry.size, envelopes[0]!.length);
  assert.equal(await relay.stop(), 0);
});

test('queues nobody reads (issue 11 item 5), in a relay process: 192 recipients\' envelopes expire, one is delivered; recipient queues, held bytes and pending return to 0', async (t) => {
  const relay = await startRelay({
    ttl: '5s',
    plans: { pro: { quota: 0, ratePerMinute: 600000, burst: 10000, maxBlob: '5MiB', maxHeldBytes: '128MiB', maxInFlightBytes: '64MiB', maxConcurrentUploads: 8 } },
  });
  const device = await makeDevice(relay);
  // Three receiver keys listing 64 recipients each (a key lists at most 64).
  const recipients = Array.from({ length: 192 }, () => generatePrivateKey('X-Wing'));
  const reader = await makeReceiver(relay, recipients[0]!);
  for (let k = 0; k < 3; k++) {
    await relay.operator.createKey({ role: 'receiver', plan: 'pro', label: `many ${k}`, recipients: recipients.slice(k * 64, (k + 1) * 64).map((kem) => keyIdHex('X-Wing', kem.publicKey)) });
  }
  const envelopes = recipients.map((kem, i) => device.seal(markedPlaintext(`queue ${i}`, 64), { kem } as Receiver));
  // The reader's envelope last, so that it is still held when leased below (TTL 5 s).
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    for (let i = 191 - worker; i >= 0; i -= 8) await device.client.upload(envelopes[i]!);
  }));
  const full = await relay.operator.stats();
  // One queue per recipient with something pending (on a loaded machine some may have expired already).
  assert.equal(full.memory.recipientQueues, full.envelopes.pending);
  assert.equal(Object.keys(full.queues).length, full.envelopes.pending);
  const lease = await reader.client.lease(reader.recipientKeyId);
  assert.ok(lease);
  const before = (await relay.operator.stats()).memory.recipientQueues;
  await reader.client.ack(lease.leaseId);
  assert.equal((await relay.operator.stats()).memory.recipientQueues, before - 1, 'the delivered one\'s queue is dropped at once');

  const end = Date.now() + 60_000;
  let stats = await relay.operator.stats();
  while (stats.envelopes.expired < 191 && Date.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    stats = await relay.operator.stats();
  }
  t.diagnostic(`after expiry: ${JSON.stringify(stats.memory)}; heap ${full.memory.heapUsedBytes} -> ${stats.memory.heapUsedBytes} B (no forced GC)`);
  assert.deepEqual(
    { expired: stats.envelopes.expired, delivered: stats.envelopes.delivered, pending: stats.envelopes.pending, recipientQueues: stats.memory.recipientQueues, heldBytes: stats.memory.heldBytes, queues: stats.queues },
    { expired: 191, delivered: 1, pending: 0, recipientQueues: 0, heldBytes: 0, queues: {} },
  );
  assert.equal(await relay.stop(), 0);
});
