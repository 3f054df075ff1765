/**
 * `ghostpipe groups` and `ghostpipe firmware publish|status|widen` as processes against a real
 * relay; the two devices are protocol code (the agent's side is tested with the agent). A staged
 * rollout: published to one device first, its receipt, widened, the second receipt, the burn.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assertOneLineFailure, runCli } from '../helpers/cli.js';
import { cleanupAll, fleetKey, makeDevice, startRelay, tempDir, type Device, type RelayProcess } from '../helpers/relay.js';
import { downloadAsDevice, sendReceipt } from '../helpers/firmware-device.js';
import { encodePublicKeyPem, generatePrivateKey } from '../../protocol/keys.js';
import { signedRootFromJson, verifyRoot } from '../../protocol/firmware/index.js';

after(cleanupAll);

let dir = '';
let relay: RelayProcess;
let a: Device, b: Device;
const binary = new Uint8Array(randomBytes(70_000));
const run = (...args: string[]) => runCli(args, { cwd: dir, timeoutMs: 60_000 });
const op = () => ['--relay', relay.url, '--operator-key-file', 'operator.key'];

before(async () => {
  dir = await tempDir();
  relay = await startRelay();
  [a, b] = await Promise.all([makeDevice(relay), makeDevice(relay)]);
  await writeFile(path.join(dir, 'operator.key'), relay.operatorKey, { mode: 0o600 });
  await writeFile(path.join(dir, 'fleet.pub'), encodePublicKeyPem('ML-DSA-65', fleetKey().publicKey));
  await writeFile(path.join(dir, 'other-fleet.pub'), encodePublicKeyPem('ML-DSA-65', generatePrivateKey('ML-DSA-65').publicKey));
  await writeFile(path.join(dir, 'fw.bin'), binary);
  for (const name of ['release', 'publisher']) assert.equal((await run('keygen', '--type', 'firmware', '--name', name, '--out', 'keys')).code, 0);
  assert.equal((await run('firmware', 'root', '--key', 'keys/release.sign.pub', '--sign', 'keys/release.sign.key', '--out', 'root.json')).code, 0);
  assert.equal((await run('firmware', 'pack', 'fw.bin', '--out', 'pkg', '--name', 'gw-fw', '--version', '2.0.0', '--counter', '20', '--group', 'line-a',
    '--hardware', 'hw1', '--expires', '1d', '--chunk-size', '32KiB')).code, 0);
  assert.equal((await run('firmware', 'sign', 'pkg', '--key', 'keys/release.sign.key')).code, 0);
});

/** A gateway installing package `id`: the plaintext must be the packed binary; then its receipt. */
async function install(device: Device, id: string): Promise<void> {
  const root = verifyRoot(signedRootFromJson(JSON.parse(await readFile(path.join(dir, 'root.json'), 'utf8'))));
  assert.deepEqual(await downloadAsDevice(device, id, root), binary);
  await sendReceipt(device, id, 'installed');
}

test('groups add, list and remove through the CLI', async () => {
  const added = await run('groups', 'add', 'line-a', a.did, b.did, ...op());
  assert.equal(added.code, 0, added.stderr);
  assert.equal((await run('groups', 'add', 'spare', a.did, ...op())).code, 0);
  assert.equal((await run('groups', 'remove', 'spare', a.did, ...op())).code, 0);
  const listed = await run('groups', 'list', '--json', ...op());
  assert.deepEqual(JSON.parse(listed.stdout.toString()).groups, { 'line-a': [a.did, b.did].sort() });
  assertOneLineFailure(await run('groups', 'add', 'line-a', ...op()), /a GROUP and at least one DID are required/, 2);
  assertOneLineFailure(await run('groups', 'add', 'Line A', a.did, ...op()), /group must match/);
});

test('publish staged to one device, status per device, widen, burn after both receipts', async () => {
  assertOneLineFailure(await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--fleet-key', 'other-fleet.pub', ...op()), /fleet signature does not verify/);
  const published = await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--fleet-key', 'fleet.pub', '--first', '1', '--root-chain', 'root.json', ...op());
  assert.equal(published.code, 0, published.stderr);
  assert.match(published.stderr, /chunks 3\/3\n/);
  assert.match(published.stderr, /key wraps 2\/2\n/);
  const id = /\(([0-9a-f]{64})\)/.exec(published.stdout.toString())![1]!;
  const offered = (await a.client.firmwareRollouts()).length === 1 ? a : b;
  const held = offered === a ? b : a;
  assert.deepEqual(await held.client.firmwareRollouts(), []);
  // --root-chain travels with the offer, as the root file holds it.
  assert.deepEqual((await offered.client.firmwareOffer(id)).roots, [JSON.parse(await readFile(path.join(dir, 'root.json'), 'utf8'))]);
  await install(offered, id);

  const partial = await run('firmware', 'status', 'gw-fw@2.0.0', ...op());
  assert.equal(partial.code, 1, 'not every device installed it yet');
  assert.match(partial.stdout.toString(), new RegExp(`${offered.did} +installed +3/3 +receipt leaf \\d+`));
  assert.match(partial.stdout.toString(), new RegExp(`${held.did} +held_back +0/3`));
  assert.match(partial.stdout.toString(), /1 installed, 1 held_back|1 held_back, 1 installed/);

  assert.equal((await run('firmware', 'widen', 'gw-fw@2.0.0', ...op())).code, 0);
  await install(held, id);
  const done = await run('firmware', 'status', id, '--json', ...op());
  assert.equal(done.code, 0, done.stdout.toString());
  const body = JSON.parse(done.stdout.toString());
  assert.equal(body.burned.reason, 'receipts');
  assert.deepEqual(body.devices.map((d: { state: string }) => d.state), ['installed', 'installed']);
  assertOneLineFailure(await run('firmware', 'status', 'gw-fw@9.9.9', ...op()), /holds no rollout gw-fw@9\.9\.9: burned and forgotten, or lost in a relay restart/);
});

test('publish refuses an unsigned package and a bad --first before touching the relay', async () => {
  assert.equal((await run('firmware', 'pack', 'fw.bin', '--out', 'unsigned', '--name', 'gw-fw', '--version', '2.0.1', '--counter', '21', '--group', 'line-a', '--hardware', 'hw1', '--expires', '1d')).code, 0);
  assertOneLineFailure(await run('firmware', 'publish', 'unsigned', '--publisher-key', 'keys/publisher.sign.key', ...op()), /unsigned is not signed/);
  assertOneLineFailure(await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--first', '0', ...op()), /--first must be a whole number >= 1/, 2);
  assertOneLineFailure(await run('firmware', 'publish', 'pkg', ...op()), /--publisher-key FILE is required/, 2);
  assertOneLineFailure(await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--root-chain', 'missing.json', ...op()), /cannot read missing\.json: ENOENT/, 2);
  assertOneLineFailure(await run('firmware', 'publish', 'pkg', '--publisher-key', 'keys/publisher.sign.key', '--root-chain', 'fw.bin', ...op()), /fw\.bin: /);
});
