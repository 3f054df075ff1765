/**
 * The one owner of tap health: which status changes and collection outcomes become a `tap up` /
 * `tap down` line, and that a reload starts over. The taps here are small real implementations of
 * the Tap contract whose status the test sets (the drivers' own tests follow real taps).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../common/log.js';
import type { TapOutcome } from './collect.js';
import { TapHealth } from './tap-health.js';
import { StatusListeners, type Reading, type Tap, type TapState, type TapStatus } from './tap.js';

class FakeTap implements Tap {
  readonly kind = 'modbus' as const;
  readonly points = ['p'];
  private state: TapState = 'down';
  private readonly listeners = new StatusListeners();
  /** Starts as a driver does: down, "connecting", without a word (start() does not signal). */
  constructor(readonly name: string, private readonly peer = `tcp 10.0.0.5:502 (${name})`, private reason: string | undefined = 'connecting') {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async collect(): Promise<Reading[]> {
    return [{ tap: this.name, point: 'p', value: 31337, quality: 'good', readTime: Date.now() }];
  }
  status(): TapStatus {
    return { state: this.state, ...(this.reason !== undefined && { reason: this.reason }), requests: 0, peer: this.peer, details: { unitId: '1' } };
  }
  onStatusChange(listener: () => void): () => void {
    return this.listeners.add(listener);
  }
  /** What a driver does: record its status and say that it changed. */
  set(state: TapState, reason?: string): void {
    this.state = state;
    this.reason = reason;
    this.listeners.notify();
  }
}

function recorded() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const health = new TapHealth(createLogger('test', 'debug', sink));
  const settled = () => new Promise((resolve) => setImmediate(resolve));
  /** The up/down lines (and the debug ones) for `tap`, as [msg, reason]. */
  const of = async (tap: string) => {
    await settled();
    return lines.filter((l) => l['tap'] === tap && String(l['msg']).startsWith('tap ')).map((l) => [l['msg'], l['reason']]);
  };
  return { health, lines, of, settled };
}

const fresh = (tap: string): TapOutcome => ({ tap, outcome: 'fresh', latencyMs: 3 });

test('a driver status change is logged at once: tap up (info, peer and details), tap down (warn, peer and reason, no values)', async () => {
  const { health, lines, settled } = recorded();
  const plc = new FakeTap('plc');
  health.watch(plc);
  plc.set('up');
  plc.set('down', 'tcp 10.0.0.5:502: connection closed by tcp 10.0.0.5:502');
  await settled();
  assert.deepEqual(
    lines.map((l) => [l['level'], l['msg'], l['tap'], l['kind'], l['peer'], l['unitId'], l['reason']]),
    [
      [30, 'tap up', 'plc', 'modbus', 'tcp 10.0.0.5:502 (plc)', '1', undefined],
      [40, 'tap down', 'plc', 'modbus', 'tcp 10.0.0.5:502 (plc)', undefined, 'tcp 10.0.0.5:502: connection closed by tcp 10.0.0.5:502'],
    ],
  );
  assert.ok(!JSON.stringify(lines).includes('31337'), 'never values');
});

test('one line per transition: a tap that stays down is not logged again, a new reason while down goes to debug', async () => {
  const { health, lines, of } = recorded();
  const dead = new FakeTap('dead');
  health.watch(dead);
  dead.set('down', 'tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502');
  for (let i = 0; i < 10; i++) {
    health.collected([fresh('dead')]);
    dead.set('down', 'not connected: tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502'); // the reason a collection gives
    dead.set('down', 'tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502'); // and the link's, in turn
  }
  dead.set('up');
  health.collected([fresh('dead')]);
  dead.set('up');
  assert.deepEqual(await of('dead'), [
    ['tap down', 'tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502'],
    ['tap still down', 'not connected: tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502'],
    ...Array.from({ length: 19 }, (_, i) => ['tap still down', i % 2 === 0 ? 'tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502' : 'not connected: tcp 10.0.0.5:502: connect ECONNREFUSED 10.0.0.5:502']),
    ['tap up', undefined],
  ]);
  assert.equal(lines.filter((l) => l['msg'] === 'tap still down').every((l) => l['level'] === 20), true, 'reason changes only at debug');
});

test('a first "connecting" is not down, whatever the driver says meanwhile; still connecting at the next collection is', async () => {
  const { health, of } = recorded();
  // Both are still connecting at the first collection (the drivers' first reason, plain or after the link).
  const slow = new FakeTap('slow');
  const quick = new FakeTap('quick', 'tcp 10.0.0.5:502', 'tcp 10.0.0.5:502: connecting');
  health.watch(slow);
  health.watch(quick);
  // During the first collection the driver says why it could not read (Modbus names the link's reason).
  slow.set('down', 'not connected: tcp 10.0.0.5:502: connecting');
  slow.set('down', 'connecting');
  health.collected([fresh('slow'), fresh('quick')]);
  slow.set('down', 'not connected: tcp 10.0.0.5:502: connecting');
  assert.deepEqual(await of('slow'), []);
  assert.deepEqual(await of('quick'), []);
  quick.set('up');
  health.collected([fresh('slow'), fresh('quick')]);
  assert.deepEqual(await of('slow'), [['tap down', 'not connected: tcp 10.0.0.5:502: connecting']]);
  assert.deepEqual(await of('quick'), [['tap up', undefined]]);
});

test('a tap that never comes up says so once, with its first reason', async () => {
  const { health, of } = recorded();
  const tap = new FakeTap('never');
  health.watch(tap);
  tap.set('down', 'broker refused the connection: Not authorized');
  tap.set('down', 'broker refused the connection: Not authorized');
  health.collected([fresh('never'), fresh('never')]);
  assert.deepEqual(await of('never'), [['tap down', 'broker refused the connection: Not authorized']]);
});

test('collection outcomes: late and failed are down with their reason, fresh is the tap\'s status, cached changes nothing', async () => {
  const { health, of } = recorded();
  const tap = new FakeTap('plc');
  health.watch(tap);
  tap.set('up');
  health.collected([{ tap: 'plc', outcome: 'late', latencyMs: 900, reason: 'deadline exceeded' }]);
  health.collected([{ tap: 'plc', outcome: 'cached', latencyMs: 0 }]);
  health.collected([fresh('plc')]);
  health.collected([{ tap: 'plc', outcome: 'failed', latencyMs: 1, reason: 'collect failed: boom' }]);
  health.collected([{ tap: 'plc', outcome: 'failed', latencyMs: 1 }]);
  health.collected([fresh('plc'), fresh('unknown')]);
  assert.deepEqual(await of('plc'), [
    ['tap up', undefined],
    ['tap down', 'deadline exceeded'],
    ['tap up', undefined],
    ['tap down', 'collect failed: boom'],
    ['tap still down', 'failed'],
    ['tap up', undefined],
  ]);
  assert.deepEqual(await of('unknown'), [], 'a tap nobody watches is not logged');
});

test('a reload starts over: a tap up before it is logged up again after it, removed taps are forgotten', async () => {
  const { health, of } = recorded();
  const before = { plc: new FakeTap('plc'), old: new FakeTap('old') };
  for (const tap of Object.values(before)) {
    health.watch(tap);
    tap.set('up');
  }
  // The reload: old instances stopped, history forgotten, the new config's taps watched and started.
  health.forget();
  const after = new FakeTap('plc');
  health.watch(after);
  before.plc.set('down', 'stopped'); // a late word from a replaced instance is not this tap's
  before.old.set('down', 'stopped');
  health.collected([{ tap: 'old', outcome: 'late', latencyMs: 1, reason: 'deadline exceeded' }]);
  after.set('up');
  assert.deepEqual(await of('plc'), [['tap up', undefined], ['tap up', undefined]]);
  assert.deepEqual(await of('old'), [['tap up', undefined]], 'nothing after the reload removed it');
});

test('watching a tap of the same name again replaces the former instance', async () => {
  const { health, of } = recorded();
  const first = new FakeTap('plc', 'tcp 10.0.0.5:502');
  const second = new FakeTap('plc', 'tcp 10.0.0.6:502');
  health.watch(first);
  first.set('up');
  health.watch(second);
  first.set('down', 'stopped');
  second.set('up');
  health.collected([fresh('plc')]);
  assert.deepEqual(await of('plc'), [['tap up', undefined], ['tap up', undefined]]);
});
