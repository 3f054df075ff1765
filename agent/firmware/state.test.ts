/** agent/firmware/state.ts: the rollback floor persists and never goes down; a damaged file stops, it is not repaired. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StateFileError } from '../../common/state-errors.js';
import { encodeManifest, manifestDigest, type FirmwareManifest } from '../../protocol/firmware/index.js';
import { FirmwareState, MAX_STORED_RECEIPTS } from './state.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function dir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-fwstate-'));
  dirs.push(d);
  return path.join(d, 'firmware');
}
const id = (n: number) => n.toString(16).padStart(64, '0');
const receipt = (n: number, outcome: 'installed' | 'refused' | 'rolled_back' | 'failed') => ({ id: id(n), outcome, receipt: 'AA==', signature: 'AA==' });

test('the installed counter, root, pending install and receipts survive a restart; the counter never goes down', async () => {
  const d = await dir();
  const state = await FirmwareState.open(d);
  assert.equal(state.installed.counter, 0);
  await state.recordOutcome(receipt(1, 'installed'), { id: id(1), name: 'gw-fw', version: '1.2.0', counter: 12 });
  await assert.rejects(state.recordOutcome(receipt(2, 'installed'), { id: id(2), name: 'gw-fw', version: '1.1.0', counter: 11 }), /release counter 11 does not exceed the installed 12/);
  await assert.rejects(state.recordOutcome(receipt(2, 'installed'), { id: id(2), name: 'gw-fw', version: '1.2.1', counter: 12 }), /does not exceed/);
  await state.recordPending({ id: id(3), name: 'gw-fw', version: '1.3.0', counter: 13, startedAt: new Date().toISOString() });
  await state.recordOutcome(receipt(4, 'refused'));
  const again = await FirmwareState.open(d);
  assert.equal(again.installed.counter, 12);
  assert.equal(again.installed.version, '1.2.0');
  assert.equal(again.pending?.counter, 13);
  assert.deepEqual(again.receipts.map((r) => r.id), [id(1), id(4)]);
  // Deciding the pending install clears it and keeps its receipt, in one write.
  await again.recordOutcome(receipt(3, 'rolled_back'));
  await again.removeReceipt(id(1));
  await again.removeReceipt(id(4));
  const third = await FirmwareState.open(d);
  assert.equal(third.pending, undefined);
  assert.deepEqual(third.receipts.map((r) => r.id), [id(3)]);
  assert.equal(third.installed.counter, 12);
  assert.equal((await stat(again.file)).mode & 0o777, 0o600);
  assert.equal((await stat(d)).mode & 0o777, 0o700);
});

const manifest: FirmwareManifest = {
  name: 'gw-fw', version: '1.4.0', counter: 14, group: 'line-a', hardware: ['hw1'], aeadId: 3, chunkSize: 4096, expires: Date.now() + 3_600_000,
  installType: 'command', installHint: '', size: 10, sha512: new Uint8Array(64), chunkHashes: [new Uint8Array(32)],
};
const manifestBytes = encodeManifest(manifest);
const stagedRecord = { id: Buffer.from(manifestDigest(manifestBytes)).toString('hex'), manifest: Buffer.from(manifestBytes).toString('base64') };

test('a verified download waiting for its install survives a restart; starting the install clears it in the same write, and a loss report does too', async () => {
  const d = await dir();
  const state = await FirmwareState.open(d);
  await state.recordStaged(stagedRecord);
  const again = await FirmwareState.open(d);
  assert.equal(again.staged?.id, stagedRecord.id);
  assert.equal(again.staged?.manifest, stagedRecord.manifest);
  await again.recordPending({ id: stagedRecord.id, name: 'gw-fw', version: '1.4.0', counter: 14, startedAt: new Date().toISOString() });
  const third = await FirmwareState.open(d);
  assert.equal(third.staged, undefined);
  assert.equal(third.pending?.id, stagedRecord.id);
  await third.recordStaged(stagedRecord);
  await third.recordOutcome({ ...receipt(0, 'failed'), id: stagedRecord.id });
  const fourth = await FirmwareState.open(d);
  assert.equal(fourth.staged, undefined);
  assert.equal(fourth.pending, undefined);
  assert.equal(fourth.receipts.length, 1);
});

test('receipts are bounded: the oldest is dropped and returned', async () => {
  const state = await FirmwareState.open(await dir());
  for (let i = 0; i < MAX_STORED_RECEIPTS; i++) assert.equal(await state.recordOutcome(receipt(i, 'refused')), undefined);
  assert.equal((await state.recordOutcome(receipt(999, 'failed')))?.id, id(0));
  assert.equal(state.receipts.length, MAX_STORED_RECEIPTS);
});

test('a damaged state file is refused with the file named, never taken as "nothing installed"', async () => {
  const d = await dir();
  const state = await FirmwareState.open(d);
  await state.recordOutcome(receipt(1, 'installed'), { id: id(1), name: 'gw-fw', version: '1.0.0', counter: 3 });
  const good = JSON.parse(await readFile(state.file, 'utf8')) as Record<string, unknown>;
  const damaged: [string, string][] = [
    ['', 'not valid JSON'],
    ['{"version":1', 'not valid JSON'],
    ['null', 'unknown layout'],
    [JSON.stringify({ ...good, version: 2 }), 'unknown layout'],
    [JSON.stringify({ ...good, installed: { ...(good['installed'] as object), counter: -1 } }), 'installed is not'],
    [JSON.stringify({ ...good, installed: undefined }), 'installed is not'],
    [JSON.stringify({ ...good, root: { root: 'AAAA', signatures: [] } }), 'root:'],
    [JSON.stringify({ ...good, pending: { id: 'x' } }), 'pending is not'],
    [JSON.stringify({ ...good, staged: { id: stagedRecord.id } }), 'staged is not'],
    [JSON.stringify({ ...good, staged: { ...stagedRecord, manifest: 'AAAA', at: '' } }), 'staged.manifest:'],
    [JSON.stringify({ ...good, staged: { ...stagedRecord, id: id(5), at: '' } }), 'staged.manifest is not the manifest of staged.id'],
    [JSON.stringify({ ...good, receipts: [{ id: id(1), outcome: 'exploded', receipt: '', signature: '' }] }), 'receipts is not'],
  ];
  for (const [text, problem] of damaged) {
    await writeFile(state.file, text);
    await assert.rejects(FirmwareState.open(d), (err: unknown) => {
      assert.ok(err instanceof StateFileError, String(err));
      assert.ok(err.message.startsWith(state.file), err.message);
      assert.match(err.message, new RegExp(problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.match(err.message, /never delete it/);
      return true;
    }, text);
  }
});
