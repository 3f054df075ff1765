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

/**
 * The code of what fn throws (it must be an ErrorClass with a message naming the problem), or
 * 'no error': lets a test list many refusals as `assert.equal(thrownCode(…), 'expired')`.
 */
export function thrownCode<E extends Error & { code: string }>(fn: () => unknown, ErrorClass: abstract new (...args: never[]) => E): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ErrorClass, `expected ${ErrorClass.name}, got ${String(err)}`);
    assert.ok(err.message.length > 10, `the message names the problem: ${err.message}`);
    return err.code;
  }
  return 'no error';
}
