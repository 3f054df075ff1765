/** agent/firmware/staging.ts: chunks appended durably, resumed after a torn write, checked whole, one package at a time. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeRelease } from '../../test/helpers/firmware-release.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { PART_FILE, STAGED_FILE, StagedDownload } from './staging.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function root(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-staging-'));
  dirs.push(d);
  return path.join(d, 'staging');
}
const signer = generatePrivateKey('ML-DSA-65');
const r = makeRelease({ counter: 1, size: 10_000, chunkSize: 4096, signers: [signer] });
const piece = (i: number) => r.plaintext.subarray(i * 4096, Math.min(10_000, (i + 1) * 4096));

test('chunks go on disk in order; a torn chunk is cut off at the resume; the whole file is checked and renamed', async () => {
  const dir = await root();
  let staged = await StagedDownload.open(dir, r.id, r.manifest);
  assert.equal(staged.chunksDone, 0);
  assert.equal(staged.chunks, 3);
  await staged.append(0, piece(0));
  await assert.rejects(staged.append(2, piece(2)), /chunk 2 is not the next one \(1 on disk\)/);
  await staged.append(1, piece(1));
  // A crash in the middle of chunk 2's write: half of it on disk.
  await appendFile(path.join(dir, r.id, PART_FILE), piece(2).subarray(0, 500));
  staged = await StagedDownload.open(dir, r.id, r.manifest);
  assert.equal(staged.chunksDone, 2);
  assert.equal((await stat(path.join(dir, r.id, PART_FILE))).size, 8192);
  assert.equal((await stat(path.join(dir, r.id))).mode & 0o777, 0o700);
  await staged.append(2, piece(2));
  assert.equal(await staged.finish(), undefined);
  assert.deepEqual(new Uint8Array(await readFile(staged.file)), r.plaintext);
  assert.equal(path.basename(staged.file), STAGED_FILE);
  // Finished and then restarted before the install: complete, checked again.
  staged = await StagedDownload.open(dir, r.id, r.manifest);
  assert.equal(staged.chunksDone, 3);
  assert.equal(await staged.finish(), undefined);
  await staged.remove();
  assert.deepEqual(await readdir(dir), []);
});

test('a staged file that does not match the manifest is named; another package\'s staging is removed', async () => {
  const dir = await root();
  await mkdir(path.join(dir, 'f'.repeat(64)), { recursive: true });
  await writeFile(path.join(dir, 'f'.repeat(64), PART_FILE), 'an abandoned download');
  let staged = await StagedDownload.open(dir, r.id, r.manifest);
  assert.deepEqual(await readdir(dir), [r.id]);
  const wrong = new Uint8Array(piece(0));
  wrong[0]! ^= 1;
  await staged.append(0, wrong);
  await staged.append(1, piece(1));
  await staged.append(2, piece(2));
  assert.match((await staged.finish())!, /does not match the manifest's SHA-512/);
  await truncate(path.join(dir, r.id, PART_FILE), 9_999);
  staged = await StagedDownload.open(dir, r.id, r.manifest);
  assert.equal(staged.chunksDone, 2, 'the short last chunk is fetched again');
  await StagedDownload.discard(dir, r.id);
  assert.deepEqual(await readdir(dir), []);
});
