/**
 * Relay SIGKILL + restart, 20 cycles each in state-directory mode and in RAM-only mode, under
 * real traffic at seeded random moments (test/helpers/relay-cycles.ts): the log only ever extends
 * what it signed (state directory) or starts a new epoch under the same key (RAM-only), and every
 * frame the agent sealed is in the file sink exactly once.
 */
import { after, before, describe, test } from 'node:test';
import { plantForFile, schedule, withSeed } from '../helpers/faults.js';
import { finishRelayScenario, relayCycles } from '../helpers/relay-cycles.js';

const KILL_CYCLES = 20;

describe('faults: relay SIGKILL under traffic', { concurrency: false }, () => {
  const plant = plantForFile();
  before(() => plant.start());
  after(() => plant.stop());

  test(`relay SIGKILL x${KILL_CYCLES}, state directory: the log only extends, every frame once`, async (t) => {
    const s = schedule(t, 'relay SIGKILL state-dir');
    const rig = await plant.rig('kill-statedir');
    await withSeed(s, async () => {
      await relayCycles(t, rig, s, { signal: 'SIGKILL', cycles: KILL_CYCLES });
      await finishRelayScenario(t, rig);
    });
  });

  test(`relay SIGKILL x${KILL_CYCLES}, RAM-only: a new epoch per boot under the same key, every frame once`, async (t) => {
    const s = schedule(t, 'relay SIGKILL RAM-only');
    const rig = await plant.rig('kill-ramonly', { ramOnly: true });
    await withSeed(s, async () => {
      await relayCycles(t, rig, s, { signal: 'SIGKILL', cycles: KILL_CYCLES, ramOnly: true });
      await finishRelayScenario(t, rig, true);
    });
  });
});
