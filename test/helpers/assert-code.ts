/** Small helpers shared by the protocol tests (not a test file itself). */
import assert from 'node:assert/strict';
import { prng } from '../../common/prng.js';

export { prng };

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
