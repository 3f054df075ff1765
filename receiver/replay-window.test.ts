import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow, fingerprint } from './replay-window.js';

test('replay window: new, duplicate, conflicting and too-old sequences', () => {
  const w = new ReplayWindow(4);
  const a = fingerprint('a'), b = fingerprint('b');
  assert.equal(w.check('k', 10n, a), 'new');
  w.mark('k', 10n, a);
  assert.equal(w.check('k', 10n, a), 'duplicate');
  assert.equal(w.check('k', 10n, b), 'replay_conflict');
  assert.equal(w.check('k', 8n, b), 'new', 'late but inside the window');
  w.mark('k', 8n, b);
  assert.equal(w.check('k', 8n, b), 'duplicate');
  assert.equal(w.check('k', 6n, a), 'replay_old', '10 - 4 = 6 is outside');
  assert.equal(w.check('k', 11n, a), 'new');
  w.mark('k', 20n, a);
  assert.equal(w.check('k', 10n, a), 'replay_old', 'slid forward');
  assert.equal(w.check('other', 1n, a), 'new', 'streams are independent');
  const max = (1n << 64n) - 1n;
  w.mark('k', max, a);
  assert.equal(w.check('k', max, a), 'duplicate');
  const restored = ReplayWindow.fromJSON(JSON.parse(JSON.stringify(w)), 4);
  assert.equal(restored.check('k', max, a), 'duplicate');
  assert.equal(restored.check('k', max, b), 'replay_conflict');
  assert.throws(() => ReplayWindow.fromJSON({ version: 2 }, 4), /replay state/);
  assert.throws(() => ReplayWindow.fromJSON({ version: 1, streams: { k: { highest: '-1', seen: [] } } }, 4), /malformed/);
});
