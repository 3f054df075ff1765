import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, sleep } from './backoff.js';
import { prng as seededRandom } from './prng.js';
import { settlesAtOnce } from '../test/helpers/wait.js'; // the statistical checks see the same draws on every run

const draws = (backoff: Backoff, n: number): number[] => Array.from({ length: n }, () => backoff.next());

test('without jitter the delay grows by the factor from initialMs and stops at maxMs', () => {
  const backoff = new Backoff({ initialMs: 100, maxMs: 5_000, factor: 2, jitter: 0 });
  assert.deepEqual(draws(backoff, 9), [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]);
  assert.equal(backoff.attempts, 9);
  const triple = new Backoff({ initialMs: 10, maxMs: 1_000, factor: 3, jitter: 0 });
  assert.deepEqual(draws(triple, 6), [10, 30, 90, 270, 810, 1_000]);
});

test('defaults: 500 ms doubling to 30 s with ±20 % jitter', () => {
  const middle = new Backoff({ random: () => 0.5 });
  assert.deepEqual(draws(middle, 8), [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  const low = new Backoff({ random: () => 0 });
  assert.deepEqual(draws(low, 3), [400, 800, 1_600]);
  const high = new Backoff({ random: () => 0.999_999 });
  assert.deepEqual(draws(high, 3), [600, 1_200, 2_400]);
});

test('the cap holds after very many attempts (no Infinity or NaN)', () => {
  const backoff = new Backoff({ initialMs: 500, maxMs: 30_000, jitter: 0 });
  const delays = draws(backoff, 5_000);
  assert.equal(delays.at(-1), 30_000);
  assert.ok(delays.every((d) => Number.isFinite(d) && d <= 30_000));
});

test('jitter stays within ±jitter of the un-jittered delay, never above maxMs, and spreads over the range', () => {
  const random = seededRandom(0x5eed);
  const initialMs = 1_000;
  const maxMs = 8_000;
  const jitter = 0.2;
  const byAttempt: number[][] = [[], [], [], [], [], []]; // 1 s, 2 s, 4 s, then three at the cap
  for (let run = 0; run < 2_000; run++) {
    const backoff = new Backoff({ initialMs, maxMs, jitter, random });
    for (const bucket of byAttempt) bucket.push(backoff.next());
  }
  byAttempt.forEach((delays, attempt) => {
    const base = Math.min(maxMs, initialMs * 2 ** attempt);
    const low = Math.round(base * (1 - jitter));
    const high = Math.min(maxMs, Math.round(base * (1 + jitter)));
    const min = Math.min(...delays);
    const max = Math.max(...delays);
    assert.ok(min >= low && max <= high, `attempt ${attempt}: delays ${min}..${max} outside ${low}..${high}`);
    // Spread: 2000 uniform draws come close to both ends of the allowed range.
    const width = high - low;
    assert.ok(min - low < width * 0.02, `attempt ${attempt}: lowest delay ${min} far above ${low}`);
    assert.ok(high - max < width * 0.02, `attempt ${attempt}: highest delay ${max} far below ${high}`);
    // Below the cap the jitter is symmetric: the mean sits near the un-jittered delay.
    if (base < maxMs) {
      const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
      assert.ok(Math.abs(mean - base) < base * 0.02, `attempt ${attempt}: mean ${mean} not near ${base}`);
    }
    // Not a handful of values: jitter de-synchronises a crowd of gateways.
    assert.ok(new Set(delays).size > 200, `attempt ${attempt}: only ${new Set(delays).size} distinct delays`);
  });
});

test('maxMs bounds every delay, also with jitter at the cap', () => {
  const backoff = new Backoff({ initialMs: 500, maxMs: 2_000, jitter: 0.2, random: () => 0.999_999 });
  const delays = draws(backoff, 6);
  assert.deepEqual(delays.slice(0, 2), [600, 1_200]);
  assert.deepEqual(delays.slice(2), [2_000, 2_000, 2_000, 2_000], 'at the cap the upward jitter is cut off');
});

test('with Math.random (no injected source) every delay stays within its bounds', () => {
  const backoff = new Backoff({ initialMs: 200, maxMs: 3_000 });
  for (let i = 0; i < 1_000; i++) {
    if (i % 10 === 0) backoff.reset();
    const base = Math.min(3_000, 200 * 2 ** backoff.attempts);
    const delay = backoff.next();
    assert.ok(delay >= Math.round(base * 0.8) && delay <= Math.min(3_000, Math.round(base * 1.2)), `attempt ${i % 10}: ${delay} outside ${base} ±20 %`);
  }
});

test('reset starts the sequence over from initialMs', () => {
  const backoff = new Backoff({ initialMs: 250, maxMs: 10_000, jitter: 0 });
  assert.deepEqual(draws(backoff, 4), [250, 500, 1_000, 2_000]);
  backoff.reset();
  assert.equal(backoff.attempts, 0);
  assert.deepEqual(draws(backoff, 2), [250, 500]);
  assert.equal(backoff.attempts, 2);
});

test('sleep waits about ms, and an abort ends it early without an error', async () => {
  let start = performance.now();
  await sleep(60);
  assert.ok(performance.now() - start >= 55, 'slept the full time');

  const controller = new AbortController();
  start = performance.now();
  setTimeout(() => controller.abort(), 20);
  await sleep(10_000, controller.signal);
  assert.equal(controller.signal.aborted, true);
  // Before its own 10 s timer could have ended it: the abort did.
  assert.ok(performance.now() - start < 10_000, 'the abort ended the sleep');

  // No timer at all: it settles before a 0 ms timer fires.
  assert.equal(await settlesAtOnce(sleep(10_000, AbortSignal.abort())), true, 'an already-aborted signal returns at once');
});
