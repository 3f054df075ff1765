/**
 * The interval collection logic: a tap that ignores its deadline never delays the others, a tap
 * that throws or forgets a point still yields every point (bad), and a tap on a longer interval
 * repeats its last readings, stale once older than its interval. The taps here are small real
 * implementations of the Tap contract with controlled timing (no protocol needed for this logic).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectInterval, type ScheduledTap } from './collect.js';
import type { Reading, Tap, TapStatus } from './tap.js';

class TimedTap implements Tap {
  readonly kind = 'modbus' as const;
  calls = 0;
  /** Collects in progress (started, not yet returned). */
  pending = 0;
  constructor(readonly name: string, readonly points: string[], private readonly behaviour: { until?: Promise<void>; fail?: string; only?: string[] } = {}) {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  status(): TapStatus {
    return { state: 'up', requests: this.calls, peer: 'timed' };
  }
  onStatusChange(): () => void {
    return () => undefined;
  }
  async collect(): Promise<Reading[]> {
    this.calls++;
    this.pending++;
    try {
      if (this.behaviour.until) await this.behaviour.until;
    } finally {
      this.pending--;
    }
    if (this.behaviour.fail) throw new Error(this.behaviour.fail);
    return (this.behaviour.only ?? this.points).map((point, i) => ({ tap: this.name, point, value: i + this.calls * 100, quality: 'good' as const, readTime: Date.now() }));
  }
}

test('a tap that misses the deadline yields bad "deadline exceeded" and does not delay the others', async () => {
  const fast = new TimedTap('fast', ['a', 'b']);
  let release!: () => void;
  const slow = new TimedTap('slow', ['x'], { until: new Promise<void>((resolve) => (release = resolve)) });
  const start = Date.now();
  const { readings, outcomes } = await collectInterval([{ tap: fast, intervalMs: 1000 }, { tap: slow, intervalMs: 1000 }], start, start + 150);
  // The slow tap answers only when released: the collection ended by its deadline, not by the tap.
  assert.equal(slow.pending, 1, 'the collection resolved while the slow tap was still collecting');
  release(); // the late answer is dropped (outcome 'late' below)
  assert.deepEqual(readings.map((r) => [r.tap, r.point, r.quality]), [['fast', 'a', 'good'], ['fast', 'b', 'good'], ['slow', 'x', 'bad']]);
  assert.equal(readings[2]!.reason, 'deadline exceeded');
  assert.deepEqual(outcomes.map((o) => o.outcome), ['fresh', 'late']);
});

test('a tap that throws or forgets points still yields every configured point, bad with a reason', async () => {
  const broken = new TimedTap('broken', ['p', 'q'], { fail: 'socket hang up' });
  const forgetful = new TimedTap('forgetful', ['p', 'q'], { only: ['q'] });
  const { readings } = await collectInterval([{ tap: broken, intervalMs: 1000 }, { tap: forgetful, intervalMs: 1000 }], Date.now(), Date.now() + 500);
  assert.deepEqual(readings.map((r) => [r.tap, r.point, r.quality, r.reason]), [
    ['broken', 'p', 'bad', 'collect failed: socket hang up'],
    ['broken', 'q', 'bad', 'collect failed: socket hang up'],
    ['forgetful', 'p', 'bad', 'no reading returned by the tap'],
    ['forgetful', 'q', 'good', undefined],
  ]);
});

test('a tap with a longer interval repeats its last readings, stale once older than its interval', async () => {
  const tap = new TimedTap('slow-poll', ['v']);
  const s: ScheduledTap = { tap, intervalMs: 1000 };
  const t0 = Date.now();
  const first = await collectInterval([s], t0, t0 + 100);
  assert.equal(tap.calls, 1);
  assert.equal(first.readings[0]!.value, 100);
  const cached = await collectInterval([s], t0 + 400, t0 + 500, () => t0 + 400);
  assert.equal(tap.calls, 1, 'not asked again before its interval');
  assert.equal(cached.readings[0]!.value, 100);
  assert.equal(cached.readings[0]!.stale, undefined);
  assert.equal(cached.outcomes[0]!.outcome, 'cached');
  // Not due by the schedule, but the repeated readings are older than the tap's interval: stale.
  const stale = await collectInterval([s], t0 + 400, t0 + 500, () => t0 + 1600);
  assert.equal(tap.calls, 1);
  assert.equal(stale.readings[0]!.value, 100);
  assert.equal(stale.readings[0]!.stale, true);
  const due = await collectInterval([s], t0 + 1000, Date.now() + 100);
  assert.equal(tap.calls, 2, 'asked again once its interval passed');
  assert.equal(due.readings[0]!.value, 200);
});
