/** Small helpers shared by the protocol tests (not a test file itself). */
import assert from 'node:assert/strict';

/** mulberry32: a small seeded PRNG, so every randomized run reproduces from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Asserts that fn throws an instance of ErrorClass with exactly this code (and a message matching pattern). */
export function assertThrowsCode<E extends Error & { code: string }>(
  fn: () => unknown, ErrorClass: abstract new (...args: never[]) => E, code: E['code'], pattern?: RegExp,
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}
