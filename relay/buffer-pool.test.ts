/** relay/buffer-pool.ts: slots are distinct, zeroed on release, and empty slabs are given back. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from './buffer-pool.js';

test('slots never overlap, are zeroed on release, and free slabs are released (one spare kept)', () => {
  const pool = new BufferPool();
  const size = 8650;
  const held = Array.from({ length: 500 }, (_, i) => {
    const b = pool.allocate(size);
    assert.equal(b.length, size);
    b.fill(i % 251 + 1);
    return b;
  });
  held.forEach((b, i) => assert.ok(b.every((x) => x === i % 251 + 1), 'no slot overlaps another'));
  const peak = pool.slabBytes;
  assert.ok(peak >= 500 * size && peak < 500 * size + 5 * 1024 * 1024);
  for (const b of held) pool.release(b);
  held.forEach((b) => assert.ok(b.every((x) => x === 0), 'released slots are zeroed'));
  assert.ok(pool.slabBytes <= 1024 * 1024, `only one spare slab kept, ${pool.slabBytes} bytes`);
  const again = pool.allocate(size);
  assert.ok(again.every((x) => x === 0));
  const big = pool.allocate(5 * 1024 * 1024);
  big.fill(7);
  pool.release(big);
  assert.ok(big.every((x) => x === 0));
});
