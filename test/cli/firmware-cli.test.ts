/**
 * `ghostpipe firmware root|pack|sign|verify` as processes: a 2-of-3 root, a package packed,
 * signed by two offline signers and verified; and every refusal an operator can meet on the way.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertOneLineFailure, runCli } from '../helpers/cli.js';
import { decodeManifest, openChunk, signedRootFromJson, verifyRoot } from '../../protocol/firmware/index.js';

let dir = '';
const run = (...args: string[]) => runCli(args, { cwd: dir });
const key = (name: string, part: 'key' | 'pub') => path.join('keys', `${name}.sign.${part}`);
const binary = new Uint8Array(randomBytes(2 * 65536 + 1000));

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gp-firmware-cli-'));
  for (const name of ['a', 'b', 'c', 'd']) assert.equal((await run('keygen', '--type', 'firmware', '--name', name, '--out', 'keys')).code, 0);
  await writeFile(path.join(dir, 'fw.bin'), binary);
});
after(() => rm(dir, { recursive: true, force: true }));

test('root: 2 of 3, completed by a second signer later; verify says when it is not yet valid', async () => {
  const made = await run('firmware', 'root', '--key', key('a', 'pub'), '--key', key('b', 'pub'), '--key', key('c', 'pub'), '--threshold', '2', '--sign', key('a', 'key'), '--out', 'root.json');
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stderr, /v1: 2 of 3 release keys; 1 signatures; not yet valid/);
  assertOneLineFailure(await run('firmware', 'verify', 'root.json'), /1 valid signatures by root keys, 2 required/);
  assert.equal((await run('firmware', 'sign', 'root.json', '--key', key('b', 'key'))).code, 0);
  const ok = await run('firmware', 'verify', 'root.json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout.toString(), /firmware root v1: 2 of 3 release keys; valid/);
  const root = verifyRoot(signedRootFromJson(JSON.parse(await readFile(path.join(dir, 'root.json'), 'utf8'))));
  assert.equal(root.keys.length, 3);
});

test('pack streams into chunks a device can open; sign twice; verify checks threshold, chunks and expiry', async () => {
  const packed = await run('firmware', 'pack', 'fw.bin', '--out', 'pkg', '--name', 'gw-fw', '--version', '1.2.0', '--counter', '3', '--group', 'line-a',
    '--hardware', 'rpi4b', '--hardware', 'rpi3b', '--expires', '30d', '--chunk-size', '64KiB');
  assert.equal(packed.code, 0, packed.stderr);
  assert.equal((await stat(path.join(dir, 'pkg', 'content.key'))).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(path.join(dir, 'pkg', 'chunks')), ['000000.bin', '000001.bin', '000002.bin']);
  const manifest = decodeManifest(new Uint8Array(await readFile(path.join(dir, 'pkg', 'manifest.bin'))));
  assert.deepEqual(manifest.hardware, ['rpi3b', 'rpi4b']);
  const contentKey = new Uint8Array(await readFile(path.join(dir, 'pkg', 'content.key')));
  const chunks = await Promise.all([0, 1, 2].map(async (i) => openChunk(manifest, contentKey, i, new Uint8Array(await readFile(path.join(dir, 'pkg', 'chunks', `00000${i}.bin`))))));
  assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), binary);

  assertOneLineFailure(await run('firmware', 'verify', 'pkg', '--root', 'root.json'), /0 valid signatures by root keys, 2 required/);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', key('d', 'key'))).code, 0);
  assertOneLineFailure(await run('firmware', 'verify', 'pkg', '--root', 'root.json'), /1 by keys not in the firmware root/);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', key('a', 'key'))).code, 0);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', key('a', 'key'))).code, 0); // again: replaces, counts once
  assertOneLineFailure(await run('firmware', 'verify', 'pkg', '--root', 'root.json'), /1 valid signatures by root keys, 2 required/);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', key('c', 'key'))).code, 0);
  const ok = await run('firmware', 'verify', 'pkg', '--root', 'root.json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout.toString(), /gw-fw@1\.2\.0 {2}counter 3 {2}group line-a {2}hardware rpi3b,rpi4b/);
  assert.match(ok.stdout.toString(), /3 chunks of 64KiB; every chunk matches the manifest/);
});

test('a changed manifest byte, a corrupted chunk, and an expired package fail verify', async () => {
  const manifestFile = path.join(dir, 'pkg', 'manifest.bin');
  const original = await readFile(manifestFile);
  const edited = Buffer.from(original); edited[original.indexOf('line-a')] = 'k'.charCodeAt(0); // group line-a -> kine-a
  await writeFile(manifestFile, edited);
  assertOneLineFailure(await run('firmware', 'verify', 'pkg', '--root', 'root.json'), /does not verify \(changed after signing/);
  await writeFile(manifestFile, original);
  const chunkFile = path.join(dir, 'pkg', 'chunks', '000001.bin');
  const chunk = await readFile(chunkFile);
  await writeFile(chunkFile, Buffer.concat([chunk.subarray(0, 10), Buffer.from([chunk[10]! ^ 1]), chunk.subarray(11)]));
  assertOneLineFailure(await run('firmware', 'verify', 'pkg', '--root', 'root.json'), /chunk 1 does not match its hash/);
  await writeFile(chunkFile, chunk);
  assert.equal((await run('firmware', 'verify', 'pkg', '--root', 'root.json')).code, 0);

  assert.equal((await run('firmware', 'pack', 'fw.bin', '--out', 'old', '--name', 'gw-fw', '--version', '1.1.0', '--counter', '2', '--group', 'line-a', '--hardware', 'rpi3b', '--expires', '2020-01-01T00:00:00Z')).code, 0);
  const signedOld = await run('firmware', 'sign', 'old', '--key', key('a', 'key'));
  assert.match(signedOld.stderr, /expired at 2020-01-01T00:00:00.000Z; devices will refuse it/);
  await run('firmware', 'sign', 'old', '--key', key('b', 'key'));
  const expired = await run('firmware', 'verify', 'old', '--root', 'root.json');
  assert.equal(expired.code, 1);
  assert.match(expired.stdout.toString(), /EXPIRED: devices refuse it/);
});

test('rotation: the next root chains only with the old threshold and its own', async () => {
  const rotate = (...signers: string[]) => run('firmware', 'root', '--key', key('d', 'pub'), '--rotate', 'root.json', '--out', 'root2.json', ...signers.flatMap((s) => ['--sign', key(s, 'key')]));
  assert.match((await rotate('a', 'd')).stderr, /v2: 1 of 1 release keys; 2 signatures; not yet valid \(firmware root v2 \(by the keys of v1\): 1 valid/);
  assertOneLineFailure(await run('firmware', 'verify', 'root2.json', '--root', 'root.json'), /by the keys of v1/);
  assert.match((await rotate('a', 'b')).stderr, /not yet valid \(firmware root v2 \(by its own keys\)/);
  assert.match((await rotate('a', 'b', 'd')).stderr, /v2: 1 of 1 release keys; 3 signatures; complete/);
  const ok = await run('firmware', 'verify', 'root2.json', '--root', 'root.json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout.toString(), /valid, chains to v1/);
});

test('bad input: one clear line, exit 2 for usage, nothing written', async () => {
  assertOneLineFailure(await run('firmware', 'launch'), /unknown action "launch"; use root, pack, sign, verify/, 2);
  assertOneLineFailure(await run('firmware', 'root', '--key', key('a', 'pub'), '--threshold', '2'), /--threshold must be 1\.\.1/, 2);
  assertOneLineFailure(await run('firmware', 'root', '--key', key('a', 'key')), /expected a ML-DSA-65 public key|PUBLIC KEY/, 2);
  const packArgs = ['firmware', 'pack', 'fw.bin', '--name', 'gw-fw', '--version', '1.3.0', '--group', 'line-a', '--hardware', 'rpi3b', '--expires', '30d'];
  assertOneLineFailure(await run(...packArgs, '--out', 'p1', '--counter', '0'), /--counter must be a whole number >= 1/, 2);
  assertOneLineFailure(await run(...packArgs, '--out', 'p2', '--counter', '4', '--chunk-size', '100'), /chunk size must be 4096\.\.8388608 bytes, got 100/);
  assertOneLineFailure(await run(...packArgs, '--out', 'pkg', '--counter', '4'), /pkg: exists and is not empty/);
  assertOneLineFailure(await run('firmware', 'pack', 'missing.bin', '--out', 'p3', '--name', 'gw-fw', '--version', '1.3', '--counter', '4', '--group', 'g', '--hardware', 'h', '--expires', '1d'), /missing\.bin: no such file/);
  assertOneLineFailure(await run(...packArgs.map((a) => (a === '1.3.0' ? 'v1.3' : a)), '--out', 'p4', '--counter', '4'), /version "v1\.3" is not a semantic version/);
  assertOneLineFailure(await run('firmware', 'verify', 'keys', '--root', 'root.json'), /no manifest\.bin: not a firmware package/);
  for (const refused of ['p1', 'p2', 'p3', 'p4']) await assert.rejects(stat(path.join(dir, refused)), { code: 'ENOENT' }, `${refused} was not written`);
  assertOneLineFailure(await run('firmware', 'sign', 'pkg'), /--key FILE \(one release private key\) is required/, 2);
  await writeFile(path.join(dir, 'garbage.json'), '{"root": "AAAA", "signatures": []}');
  assertOneLineFailure(await run('firmware', 'verify', 'garbage.json'), /garbage\.json: firmware root ends inside the header|not a firmware root/);
});
