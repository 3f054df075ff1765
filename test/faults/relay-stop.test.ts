/**
 * Relay SIGTERM + restart cycles, and a relay killed while writing its log: what followed the
 * last durable checkpoint (a tile, an entry bundle, a checkpoint being replaced) is truncated or
 * garbled before the restart, as a torn write leaves it. The relay must start, and nothing signed
 * changes: the durable checkpoint is extended by a verified consistency proof and every full
 * tile it covers is byte-for-byte the same. Loop: test/helpers/relay-cycles.ts.
 */
import { after, before, describe, test } from 'node:test';
import { plantForFile, schedule, withSeed } from '../helpers/faults.js';
import { finishRelayScenario, relayCycles, tornWrites } from '../helpers/relay-cycles.js';

const TERM_CYCLES = 20;
const TORN_CYCLES = 10;

describe('faults: relay SIGTERM and torn writes under traffic', { concurrency: false }, () => {
  const plant = plantForFile();
  before(() => plant.start());
  after(() => plant.stop());

  test(`relay SIGTERM x${TERM_CYCLES}, state directory: clean stops, the log only extends, every frame once`, async (t) => {
    const s = schedule(t, 'relay SIGTERM state-dir');
    const rig = await plant.rig('term-statedir');
    await withSeed(s, async () => {
      await relayCycles(t, rig, s, { signal: 'SIGTERM', cycles: TERM_CYCLES });
      await finishRelayScenario(t, rig);
    });
  });

  test(`relay killed mid-write x${TORN_CYCLES}: torn tile, bundle or checkpoint; the relay starts and nothing signed changes`, async (t) => {
    const s = schedule(t, 'relay torn writes');
    const rig = await plant.rig('torn');
    const tears: string[] = [];
    await withSeed(s, async () => {
      await relayCycles(t, rig, s, { signal: 'SIGKILL', cycles: TORN_CYCLES, whileDown: tornWrites(rig, s, tears) });
      t.diagnostic(`tears: ${tears.join(' | ')}`);
      await finishRelayScenario(t, rig);
    });
  });
});
