/** Pure parts of the receiver: the anti-replay window, the replay journal, file-sink crash recovery, loopback rule. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ReplayWindow, fingerprint } from '../../receiver/replay-window.js';
import { ReplayStore, StateError } from '../../receiver/state.js';
import { FileSink } from '../../receiver/sinks/file.js';
import { isLoopbackHost, checkTransport, TransportError } from '../../receiver/config.js';
import type { ReadingRecord } from '../../receiver/records.js';
import { CompactRange } from '../../protocol/tlog/subtrees.js';
import { MerkleTree, leafHash } from '../../protocol/tlog/merkle.js';

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
    await assert.rejects(ReplayStore.open(dir, 16), StateError);
    await writeFile(path.join(dir, 'replay.journal'), '');
    await writeFile(path.join(dir, 'replay.json'), '{');
    await assert.rejects(ReplayStore.open(dir, 16), /refusing to start/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('file sink: a torn last line is cut, lines already written are not written twice', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-file-'));
  try {
    const file = path.join(dir, 'out.jsonl');
    const rec = (point: string) => ({ device: 'd', tap: 't', point, envelope: 'e1' }) as unknown as ReadingRecord;
    let sink = new FileSink({ path: file, maxSize: 1 << 20, keep: 2 });
    await sink.open();
    await sink.write([rec('a'), rec('b')]);
    await sink.close();
    await appendFile(file, '{"device":"d","tap":"t","po'); // crash mid-append
    sink = new FileSink({ path: file, maxSize: 1 << 20, keep: 2 });
    await sink.open();
    await sink.write([rec('a'), rec('b'), rec('c')]); // the same envelope again after the crash
    await sink.close();
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l).point);
    assert.deepEqual(lines, ['a', 'b', 'c']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('plain HTTP only to loopback', () => {
  for (const h of ['127.0.0.1', '127.9.9.9', '::1', '[::1]', 'localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['10.0.0.1', '128.0.0.1', 'relay.local', '::ffff:8.8.8.8', '0.0.0.0']) assert.ok(!isLoopbackHost(h), h);
  assert.doesNotThrow(() => checkTransport('http://127.0.0.1:8787', 'relay.url'));
  assert.doesNotThrow(() => checkTransport('https://relay.example.net', 'relay.url'));
  assert.throws(() => checkTransport('http://relay.example.net', 'relay.url'), TransportError);
});

test('compact Merkle range (revocation scan) gives the RFC 9162 root for every size', () => {
  const tree = new MerkleTree();
  const range = new CompactRange();
  assert.deepEqual(range.root(), tree.root());
  for (let i = 0; i < 70; i++) {
    const leaf = leafHash(new Uint8Array([i, i >> 8, 7]));
    tree.append(leaf);
    range.append(leaf);
    assert.deepEqual(range.root(), tree.root(), `size ${i + 1}`);
  }
  assert.equal(range.size, 70);
  assert.deepEqual(range.subtrees.map((s) => s.height), [6, 2, 1], '70 = 64 + 4 + 2');
});
