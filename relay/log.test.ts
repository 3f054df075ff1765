/**
 * The relay's tiled transparency log (relay/log.ts over relay/log-store.ts), in-process on a temp
 * folder: roots and proofs equal the in-RAM MerkleTree's for every size, reopen loops keep the
 * history (the leaves.bin bug broke on the second restart), torn and garbled files beyond the
 * checkpoint are survived, damaged covered files are reported by name, leaves.bin is migrated,
 * and RAM-only mode prunes at its bound.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readdir, writeFile, readFile, truncate, cp, stat, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RelayLog, LogCorruptError, LogPrunedError, LogStartError, MAX_BATCH_LEAVES } from './log.js';
import { MerkleTree, leafHash } from '../protocol/tlog/merkle.js';
import { openCheckpoint } from '../protocol/tlog/checkpoint.js';
import { mlDsaNoteSigner, mlDsaNoteVerifier } from '../protocol/tlog/note.js';
import { generatePrivateKey } from '../protocol/keys.js';
import { verifyConsistency, verifyInclusion } from '../protocol/tlog/proofs.js';
import { tilePath } from '../protocol/tlog/tiles.js';
import { prng } from '../common/prng.js';

const key = generatePrivateKey('ML-DSA-65');
const ORIGIN = 'test.example/log';
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-tlog-'));
  dirs.push(dir);
  return dir;
}

function open(dir: string | undefined, extra: Partial<Parameters<typeof RelayLog.open>[0]> = {}): Promise<RelayLog> {
  return RelayLog.open({
    origin: ORIGIN, signer: mlDsaNoteSigner(ORIGIN, key.seed), verifier: mlDsaNoteVerifier(ORIGIN, key.publicKey), dir,
    onError: (err) => { throw err; }, ...extra,
  });
}

/** Leaf data like the relay's: transfer leaves (33 bytes) with a registration now and then. */
function leaf(i: number): Uint8Array {
  const data = new Uint8Array(i % 97 === 0 ? 120 : 33);
  data[0] = i % 97 === 0 ? 2 : 1;
  new DataView(data.buffer).setUint32(1, i);
  return data;
}

function signedSizeOf(log: RelayLog): number {
  return openCheckpoint(log.checkpoint, [mlDsaNoteVerifier(ORIGIN, key.publicKey)], ORIGIN).checkpoint.size;
}

async function checkAgainst(log: RelayLog, tree: MerkleTree, random: () => number, samples = 20): Promise<void> {
  const size = log.signedSize;
  assert.equal(signedSizeOf(log), size);
  assert.deepEqual(await log.root(size), tree.root(size));
  for (let s = 0; s < samples; s++) {
    const n = 1 + Math.floor(random() * size);
    const i = Math.floor(random() * n);
    const proof = await log.inclusionProof(i, n);
    assert.deepEqual(proof, tree.inclusionProof(i, n), `inclusion ${i} in ${n}`);
    verifyInclusion(tree.leafHashAt(i), i, n, proof, tree.root(n));
    const m = 1 + Math.floor(random() * n);
    assert.deepEqual(await log.consistencyProof(m, n), tree.consistencyProof(m, n), `consistency ${m} -> ${n}`);
    const [entry] = await log.entries(i, i + 1);
    assert.deepEqual(leafHash(entry!), tree.leafHashAt(i));
  }
}

test('roots and proofs from tiles equal the in-RAM tree across tile boundaries; 30 reopen cycles keep the history', async () => {
  const dir = await tempDir();
  const random = prng(9);
  const tree = new MerkleTree();
  let log = await open(dir);
  let next = 0;
  const first = { size: 0, root: new Uint8Array(0) };
  for (let cycle = 0; cycle < 30; cycle++) {
    // Batches that end on and across tile edges of every level we reach (256, 65,536).
    const count = [1, 255, 1, 256, 700, 3, 66_000][cycle % 7]!;
    for (let i = 0; i < count; i++) {
      tree.append(leafHash(leaf(next)));
      assert.equal(log.append(leaf(next)), next);
      next++;
    }
    await log.close();
    assert.equal(log.signedSize, next);
    if (cycle === 1) Object.assign(first, { size: next, root: tree.root(next) });
    log = await open(dir);
    assert.equal(log.size, next, `cycle ${cycle}: size after reopen`);
    await checkAgainst(log, tree, random, 5);
    // The history signed before the first restart is a prefix of today's log.
    if (first.size > 0) verifyConsistency(first.size, next, await log.consistencyProof(first.size, next), first.root, tree.root(next));
  }
  await checkAgainst(log, tree, random, 50);
  // Tiles on disk are the spec's paths; partial tiles of full tiles are gone.
  const level0 = await readdir(path.join(dir, 'tile', '0'));
  assert.ok(level0.includes('000') && level0.includes('x001'), level0.slice(0, 5).join(','));
  assert.ok(!level0.includes('000.p'), 'partials of a full tile are dropped');
  await log.close();
});

test('a tree served as tiles: files are byte-identical to what the log answers', async () => {
  const dir = await tempDir();
  const log = await open(dir);
  for (let i = 0; i < 70_000; i++) log.append(leaf(i));
  await log.close();
  for (const tile of [{ level: 0, index: 3, width: 256 }, { level: 0, index: 273, width: 112 }, { level: 1, index: 1, width: 17 }, { level: 2, index: 0, width: 1 }, { level: 'entries' as const, index: 273, width: 112 }]) {
    assert.deepEqual(await log.tileBytes(tile), new Uint8Array(await readFile(path.join(dir, tilePath(tile)))), tilePath(tile));
  }
  assert.equal(await log.tileBytes({ level: 0, index: 274, width: 1 }), undefined, 'beyond the signed tree');
});

async function crashedCopy(dir: string, before: string): Promise<void> {
  // The tiles of the newer batch are on disk but its checkpoint is not (a crash between the two).
  await cp(path.join(before, 'checkpoint'), path.join(dir, 'checkpoint'));
  await rm(path.join(dir, 'checkpoint.prev'), { force: true });
}

test('a crash between tiles and checkpoint: the complete batch is integrated; torn or garbled files beyond are dropped; signed history unchanged', async () => {
  for (const damage of ['none', 'truncate-bundle', 'garble-tile', 'garble-checkpoint', 'half-checkpoint-tmp', 'empty-widest-bundle'] as const) {
    const dir = await tempDir();
    const snapshot = await tempDir();
    const tree = new MerkleTree();
    let log = await open(dir);
    for (let i = 0; i < 1000; i++) tree.append(leafHash(leaf(i))), log.append(leaf(i));
    await log.close();
    const signedRoot = tree.root(1000);
    await cp(dir, snapshot, { recursive: true });
    log = await open(dir);
    for (let i = 1000; i < 1300; i++) tree.append(leafHash(leaf(i))), log.append(leaf(i));
    await log.close();
    let expectedMin = 1000;
    let expectedMax = 1300;
    if (damage !== 'garble-checkpoint') await crashedCopy(dir, snapshot);
    if (damage === 'none') expectedMin = 1300;
    if (damage === 'truncate-bundle') {
      const file = path.join(dir, 'tile/entries/005.p/20'); // leaves 1280..1299
      await truncate(file, (await stat(file)).size - 10);
      expectedMax = 1299;
    }
    if (damage === 'garble-tile') {
      const file = path.join(dir, 'tile/0/005.p/20');
      const bytes = await readFile(file);
      bytes[5 * 32]! ^= 0xff; // leaf 1285
      await writeFile(file, bytes);
      expectedMax = 1285;
    }
    if (damage === 'garble-checkpoint') {
      await writeFile(path.join(dir, 'checkpoint'), 'ghostpipe garbage\n'); // falls back to checkpoint.prev
      expectedMin = 1300;
    }
    if (damage === 'empty-widest-bundle') {
      // The next batch's bundle and tile created but not yet written when the crash came: the
      // narrower ones still hold the batch before it (a torn-write fault loop lost a signed leaf here).
      await writeFile(path.join(dir, 'tile/entries/005.p/21'), new Uint8Array(0));
      await writeFile(path.join(dir, 'tile/0/005.p/21'), new Uint8Array(0));
      expectedMin = 1300;
    }
    if (damage === 'half-checkpoint-tmp') {
      await writeFile(path.join(dir, 'checkpoint.tmp'), (await readFile(path.join(snapshot, 'checkpoint'))).subarray(0, 40));
      expectedMin = 1300;
    }
    const recovered: unknown[] = [];
    log = await open(dir, { onRecovered: (info) => recovered.push(info) });
    assert.ok(log.size >= expectedMin && log.size <= expectedMax, `${damage}: size ${log.size} in [${expectedMin}, ${expectedMax}]`);
    assert.equal(log.signedSize, log.size);
    assert.deepEqual(await log.root(1000), signedRoot, `${damage}: the signed root of size 1000 is unchanged`);
    assert.deepEqual(await log.root(log.size), tree.root(log.size));
    assert.equal(recovered.length, 1, damage);
    // The log continues: new leaves at the recovered size, consistent with the signed history.
    for (let i = 0; i < 10; i++) log.append(Uint8Array.of(9, damage.length, i));
    await log.close();
    const again = await open(dir);
    verifyConsistency(1000, again.size, await again.consistencyProof(1000, again.size), signedRoot, await again.root(again.size));
    await again.close();
  }
});

// A deadline of its own: once (loaded run Q) this file outlived the 600 s guard in this test; a
// recurrence then names the test and, by its diagnostics, the last cycle reached.
test('a torn current checkpoint is repaired at the start that passed over it: torn again after every restart x20, the log starts and only extends', { timeout: 240_000 }, async (t) => {
  // CI found it: a start that fell back to checkpoint.prev wrote its own checkpoint at once,
  // keeping the torn one as .prev; a relay killed before its next write and torn again had no
  // valid checkpoint left (exit 65). Cycles without appends are that case.
  const dir = await tempDir();
  const tree = new MerkleTree();
  let log = await open(dir);
  for (let i = 0; i < 300; i++) tree.append(leafHash(leaf(i))), log.append(leaf(i));
  await log.close();
  const firstRoot = tree.root(300);
  for (let cycle = 0; cycle < 20; cycle++) {
    const file = path.join(dir, 'checkpoint');
    const note = await readFile(file);
    // A new inode, as a torn rename leaves it (checkpoint and .prev may share one).
    await writeFile(file + '.torn', note.subarray(0, 1 + (cycle * 37) % (note.length - 2)));
    await rename(file + '.torn', file);
    const recovered: { from: string }[] = [];
    t.diagnostic(`cycle ${cycle}: torn to ${1 + (cycle * 37) % (note.length - 2)} of ${note.length} bytes, opening`);
    log = await open(dir, { onRecovered: (info) => recovered.push(info) });
    assert.equal(recovered[0]?.from, file + '.prev', `cycle ${cycle}: started from checkpoint.prev`);
    assert.deepEqual(await readFile(file, 'utf8'), log.checkpoint, `cycle ${cycle}: the current checkpoint is the valid one again`);
    const before = log.size;
    for (let i = 0; i < cycle % 3; i++) tree.append(leafHash(leaf(before + i))), log.append(leaf(before + i));
    await log.close();
    log = await open(dir);
    verifyConsistency(300, log.size, await log.consistencyProof(300, log.size), firstRoot, await log.root(log.size));
    assert.deepEqual(await log.root(log.size), tree.root(log.size));
    await log.close();
  }
});

test('checkpoint.prev is replaced by a rename, never removed first; a link a crash left behind is cleared at start', async () => {
  // A SIGKILL between removing .prev and linking the new one (seen once in 20 loaded fault runs),
  // then a torn checkpoint, left no valid checkpoint: now .prev.tmp is linked, then renamed.
  const dir = await tempDir();
  let log = await open(dir);
  for (let i = 0; i < 10; i++) log.append(leaf(i));
  await log.close();
  const file = path.join(dir, 'checkpoint');
  const older = await readFile(file, 'utf8');
  log = await open(dir);
  log.append(leaf(10));
  await log.close();
  assert.equal(await readFile(file + '.prev', 'utf8'), older, '.prev holds the checkpoint before the newest');
  assert.ok(!(await readdir(dir)).includes('checkpoint.prev.tmp'));
  // The crash between link and rename: a stale .prev.tmp, and then a torn checkpoint.
  await writeFile(file + '.prev.tmp', 'stale');
  await writeFile(file + '.torn', (await readFile(file)).subarray(0, 40));
  await rename(file + '.torn', file);
  const recovered: { from: string }[] = [];
  log = await open(dir, { onRecovered: (info) => recovered.push(info) });
  assert.equal(recovered[0]?.from, file + '.prev');
  assert.ok(!(await readdir(dir)).includes('checkpoint.prev.tmp'), 'the stale link is removed at start');
  await log.close();
});

test('damaged files the checkpoint covers are named: at start (edge, recent window) or when read (older tile)', async () => {
  const dir = await tempDir();
  let log = await open(dir);
  for (let i = 0; i < 70_000; i++) log.append(leaf(i));
  await log.close();
  const damage = async (file: string) => {
    const bytes = await readFile(file);
    bytes[0]! ^= 1;
    await writeFile(file, bytes);
  };
  const older = path.join(dir, 'tile/0/002');
  await damage(older);
  log = await open(dir);
  await assert.rejects(log.inclusionProof(600, 70_000), (err: unknown) => err instanceof LogCorruptError && err.message.includes(older));
  await assert.rejects(log.entries(600, 601), (err: unknown) => err instanceof LogCorruptError);
  assert.equal((await log.inclusionProof(69_990, 70_000)).length > 0, true, 'other leaves still prove');
  await log.close();
  const recent = path.join(dir, 'tile/0/270');
  await damage(recent);
  await assert.rejects(open(dir), (err: unknown) => err instanceof LogCorruptError && err.message.includes(recent));
  await damage(recent);
  const edge = path.join(dir, 'tile/0/273.p/112');
  await writeFile(edge, (await readFile(edge)).subarray(0, 100));
  await assert.rejects(open(dir), (err: unknown) => err instanceof LogStartError && err.message.includes('tile/0/273'));
  await rm(path.join(dir, 'checkpoint'));
  await rm(path.join(dir, 'checkpoint.prev'), { force: true });
  await assert.rejects(open(dir), (err: unknown) => err instanceof LogStartError && /checkpoint: missing, but the log has tiles/.test(err.message));
});

test('a checkpoint under another key or origin is refused with the file named', async () => {
  const dir = await tempDir();
  const log = await open(dir);
  log.append(leaf(1));
  await log.close();
  await assert.rejects(RelayLog.open({ origin: 'other/origin', signer: mlDsaNoteSigner('other/origin', key.seed), verifier: mlDsaNoteVerifier('other/origin', key.publicKey), dir, onError: () => undefined }),
    (err: unknown) => err instanceof LogStartError && err.message.includes(path.join(dir, 'checkpoint')));
});

test('leaves.bin of earlier versions is converted once, root checked, origin kept', async () => {
  const dir = await tempDir();
  const tree = new MerkleTree();
  const records: Buffer[] = [];
  for (let i = 0; i < 5000; i++) {
    const data = leaf(i);
    tree.append(leafHash(data));
    const header = Buffer.alloc(4);
    header.writeUInt32BE(data.length);
    records.push(header, Buffer.from(data));
  }
  records.push(Buffer.from([0, 0, 0, 33, 1, 2])); // a torn last record: never signed, left out
  await writeFile(path.join(dir, 'leaves.bin'), Buffer.concat(records));
  const migrated: unknown[] = [];
  const log = await open(dir, { onMigrated: (info) => migrated.push(info) });
  assert.equal(log.size, 5000);
  assert.deepEqual(await log.root(5000), tree.root(5000));
  assert.equal(migrated.length, 1);
  await log.close();
  assert.ok((await readdir(dir)).includes('leaves.bin.migrated'));
  const reopened = await open(dir);
  assert.equal(reopened.size, 5000);
  await reopened.close();
  // A corrupt old file is refused, not half-migrated.
  const bad = await tempDir();
  await writeFile(path.join(bad, 'leaves.bin'), Buffer.from([0, 1, 0, 0, 1]));
  await assert.rejects(open(bad), /leaves\.bin: corrupt record at byte 0/);
});

test('RAM-only: the log is bounded; at the bound the oldest level-0 tiles are pruned (410), recent proofs work', async () => {
  const log = await open(undefined, { ramBytes: 1024 * 1024 });
  const tree = new MerkleTree();
  for (let i = 0; i < 40_000; i++) log.append(leaf(i)), tree.append(leafHash(leaf(i)));
  await log.close();
  assert.ok(log.minimumIndex() > 0, 'pruned');
  await assert.rejects(log.inclusionProof(5, 40_000), (err: unknown) => err instanceof LogPrunedError);
  assert.deepEqual(await log.inclusionProof(39_000, 40_000), tree.inclusionProof(39_000, 40_000));
  assert.deepEqual(await log.consistencyProof(39_500, 40_000), tree.consistencyProof(39_500, 40_000));
  assert.deepEqual(await log.root(40_000), tree.root(40_000));
});

test('recent leaves are found by hash without a per-leaf index; a batch never exceeds MAX_BATCH_LEAVES', async () => {
  const dir = await tempDir();
  const log = await open(dir);
  for (let i = 0; i < 70_000; i++) log.append(leaf(i));
  await log.close();
  assert.equal(await log.indexOfLeafHash(leafHash(leaf(69_999))), 69_999);
  assert.equal(await log.indexOfLeafHash(leafHash(leaf(10))), undefined, 'older than the recent window');
  const reopened = await open(dir);
  assert.equal(await reopened.indexOfLeafHash(leafHash(leaf(68_000))), 68_000, 'rebuilt at start from the edge tiles');
  assert.ok(MAX_BATCH_LEAVES <= 65_536);
  await reopened.close();
});
