/** relay/store.ts in process: compact bookkeeping keeps ids, bytes and states right; tombstones stay bounded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EnvelopeStore, ENTRY_OVERHEAD } from './store.js';

const RECIPIENT = 'ab'.repeat(32);

function put(store: EnvelopeStore, fill: number, uploader = 'aaaaaaaaaaaa', size = 8650): { id: string; bytes: Buffer } {
  const bytes = store.allocate(size)!;
  bytes.fill(fill);
  const id = createHash('sha256').update(bytes).digest('hex');
  store.add({ id, bytes, recipient: RECIPIENT, uploaderKeyId: uploader, leafIndex: fill });
  return { id, bytes };
}

test('held envelopes keep their id, bytes and arrival; ack burns (zeroes) and leaves a bounded tombstone', () => {
  const store = new EnvelopeStore(1 << 30, 1 << 30, 60_000, 30_000, 2, { onExpired: () => undefined, onLeaseExpired: () => undefined });
  const before = Date.now();
  const a = put(store, 1);
  const b = put(store, 2, 'bbbbbbbbbbbb', 300_000); // not pooled: its own buffer
  assert.equal(store.heldBytes, 8650 + 300_000 + 2 * ENTRY_OVERHEAD);
  const [first, second] = store.list(RECIPIENT, 10);
  assert.equal(first!.id, a.id);
  assert.equal(second!.id, b.id);
  assert.equal(first!.size, 8650);
  assert.ok(first!.receivedAt >= before && first!.receivedAt <= Date.now());
  assert.ok(first!.bytes.every((x) => x === 1));
  assert.equal(store.status(a.id, 'aaaaaaaaaaaa'), 'pending');
  assert.equal(store.status(a.id, 'bbbbbbbbbbbb'), 'unknown', "another uploader's id answers like an unknown one");

  const lease = store.lease(RECIPIENT, 'rrrrrrrrrrrr')!;
  assert.equal(lease.held.id, a.id);
  assert.equal(store.status(a.id, 'aaaaaaaaaaaa'), 'leased');
  const view = lease.held.bytes;
  store.ack(lease);
  assert.ok(view.every((x) => x === 0), 'burned: the memory was overwritten');
  assert.equal(lease.held.size, 0);
  assert.equal(store.status(a.id, 'aaaaaaaaaaaa'), 'delivered');
  assert.equal(store.status(a.id, 'bbbbbbbbbbbb'), 'unknown');
  assert.ok(store.seen(a.id));

  // Expiry: everything older than the TTL is burned and remembered as expired.
  store.sweep(Date.now() + 61_000);
  assert.ok(b.bytes.every((x) => x === 0));
  assert.equal(store.status(b.id, 'bbbbbbbbbbbb'), 'expired');
  assert.equal(store.heldBytes, 0);

  // statusMemory = 2: a third tombstone drops the oldest.
  const c = put(store, 3);
  store.ack(store.lease(RECIPIENT, 'rrrrrrrrrrrr')!);
  assert.equal(store.status(c.id, 'aaaaaaaaaaaa'), 'delivered');
  assert.equal(store.status(b.id, 'bbbbbbbbbbbb'), 'expired');
  assert.equal(store.status(a.id, 'aaaaaaaaaaaa'), 'unknown', 'the oldest tombstone was dropped');
  assert.equal(store.seen(a.id), false);
});

test('memory accounting refuses what does not fit, before and after allocation', () => {
  const store = new EnvelopeStore(3 * (8650 + ENTRY_OVERHEAD), 1 << 30, 60_000, 30_000, 10, { onExpired: () => undefined, onLeaseExpired: () => undefined });
  put(store, 1);
  put(store, 2);
  assert.equal(store.canAllocate(8650), true);
  const reserved = store.allocate(8650)!;
  assert.equal(store.canAllocate(8650), false);
  assert.equal(store.allocate(8650), undefined);
  store.discard(reserved);
  assert.equal(store.inFlightBytes, 0);
  assert.equal(store.canAllocate(8650), true);
});

test('queues: a leased, acknowledged or expired envelope leaves its queue at once, and empty queues are dropped', async () => {
  const store = new EnvelopeStore(1 << 30, 1 << 30, 60_000, 30_000, 10, { onExpired: () => undefined, onLeaseExpired: () => undefined });
  const other = 'cd'.repeat(32);
  const a = put(store, 1);
  const b = put(store, 2);
  const bytes = store.allocate(100)!;
  store.add({ id: createHash('sha256').update(bytes).digest('hex'), bytes, recipient: other, uploaderKeyId: 'aaaaaaaaaaaa', leafIndex: 3 });
  assert.equal(store.queueCount, 2);
  assert.deepEqual(store.stats().queues, { [RECIPIENT]: { pending: 2, leased: 0 }, [other]: { pending: 1, leased: 0 } });

  // Leased: out of the pending list; released: back in front, before newer ones.
  const lease = store.lease(RECIPIENT, 'rrrrrrrrrrrr')!;
  assert.deepEqual(store.list(RECIPIENT, 10).map((h) => h.id), [b.id]);
  store.release(lease);
  assert.deepEqual(store.list(RECIPIENT, 10).map((h) => h.id), [a.id, b.id]);
  store.ack(store.lease(RECIPIENT, 'rrrrrrrrrrrr')!);
  store.ack(store.lease(RECIPIENT, 'rrrrrrrrrrrr')!);
  assert.equal(store.queueCount, 1, 'the drained queue is gone');
  assert.deepEqual(store.stats().queues, { [other]: { pending: 1, leased: 0 } });

  // Expired, unread: the queue goes with its last envelope.
  store.sweep(Date.now() + 61_000);
  assert.equal(store.queueCount, 0);
  assert.equal(store.count, 0);

  // A long-poll keeps its queue while it waits, and drops it when it ends with nothing.
  const ended = new AbortController();
  const waiting = store.waitFor(other, 60_000, ended.signal);
  assert.equal(store.queueCount, 1);
  ended.abort();
  await waiting;
  assert.equal(store.queueCount, 0);
  await store.waitFor(other, 0, ended.signal);
  assert.equal(store.queueCount, 0, 'a wait that returns at once makes no queue');
});

test('heap stays flat: 100,000 envelopes to 100,000 recipients that nobody reads, all expired', (t) => {
  const store = new EnvelopeStore(1 << 30, 1 << 30, 60_000, 30_000, 1_000, { onExpired: () => undefined, onLeaseExpired: () => undefined });
  const gc = (globalThis as { gc?: () => void }).gc ?? (setFlagsFromString('--expose-gc'), runInNewContext('gc') as () => void);
  const round = (base: number): void => {
    for (let i = 0; i < 100_000; i++) {
      const bytes = store.allocate(64)!;
      bytes.writeUInt32BE(base + i);
      store.add({ id: createHash('sha256').update(bytes).digest('hex'), bytes, recipient: createHash('sha256').update(`r${base + i}`).digest('hex'), uploaderKeyId: 'aaaaaaaaaaaa', leafIndex: i });
    }
    store.sweep(Date.now() + 61_000 * (base / 100_000 + 1));
  };
  round(0); // warms up pools and maps to their working size
  gc();
  const before = process.memoryUsage().heapUsed;
  round(100_000);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.diagnostic(`heap after 100,000 more expired envelopes: ${grown >= 0 ? '+' : ''}${grown} bytes`);
  assert.equal(store.count, 0);
  assert.equal(store.queueCount, 0, 'no queue is left behind');
  assert.equal(store.heldBytes, 0);
  // Tombstones are bounded by statusMemory (1,000 here); the old code kept ~154-515 B per envelope (15-50 MB).
  assert.ok(grown < 2 * 1024 * 1024, `heap grew ${grown} bytes over 100,000 expired envelopes`);
});
