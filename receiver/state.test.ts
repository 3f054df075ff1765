import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fingerprint } from './replay-window.js';
import { StateFileError } from '../common/state-errors.js';
import { ReplayStore } from './state.js';

test('replay store survives a restart and a torn journal line, and refuses a corrupt one', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-replay-'));
  try {
    let store = await ReplayStore.open(dir, 16, 3);
    for (let i = 1n; i <= 5n; i++) await store.record('k', i, fingerprint(String(i)));
    // simulate a crash: no close(), plus a torn append
    await appendFile(path.join(dir, 'replay.journal'), '{"k":"k","s":"6"');
    store = await ReplayStore.open(dir, 16, 3);
    for (let i = 1n; i <= 5n; i++) assert.equal(store.window.check('k', i, fingerprint(String(i))), 'duplicate');
    assert.equal(store.window.check('k', 6n, fingerprint('6')), 'new', 'the torn record was never acknowledged');
    await store.close();
    await writeFile(path.join(dir, 'replay.journal'), 'garbage\n');
    await assert.rejects(ReplayStore.open(dir, 16), StateFileError);
    await writeFile(path.join(dir, 'replay.journal'), '');
    await writeFile(path.join(dir, 'replay.json'), '{');
    await assert.rejects(ReplayStore.open(dir, 16), /refusing to start/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
