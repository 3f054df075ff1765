/** relay/store.ts in process: compact bookkeeping keeps ids, bytes and states right; tombstones stay bounded. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
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
