/**
 * Reproduction 9 of issue 11: with the relay's operator key (or a compromised relay) an attacker
 * issues a device key, enrolls a new ML-DSA key through the relay API and uploads signed readings.
 * A receiver in enrolled mode pins the fleet key: it writes nothing under such a DID, whether the
 * registration has no fleet approval or one signed by another key; an approved device still flows.
 * On the code before fleet enrollment the receiver wrote the forged device's readings.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cleanupAll, makeDevice, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, seal, startReceiverProcess, waitFor } from '../helpers/receiver.js';

let relay: RelayProcess;
let device: Device;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  device = await makeDevice(relay, 'enterprise'); // approved by the test fleet key
});

after(async () => {
  await killAllChildren();
  await cleanupAll();
});

test('a relay compromise forges no device: devices enrolled without the fleet key\'s approval get nothing into the sink', async () => {
  const setup = await receiverSetup(relay);
  // The attacker holds the operator key: issue device keys and enroll keys of its own.
  const unapproved = await makeDevice(relay, 'enterprise', { approval: 'none' });
  const selfApproved = await makeDevice(relay, 'enterprise', { approval: generatePrivateKey('ML-DSA-65') });
  await unapproved.client.upload(seal(unapproved, setup.keys, { seq: 1n }));
  await selfApproved.client.upload(seal(selfApproved, setup.keys, { seq: 1n }));
  await device.client.upload(seal(device, setup.keys, { seq: 1n }));

  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup));
  const file = path.join(setup.dir, 'r.jsonl');
  await waitFor('the approved device\'s readings and two refusals', () => readLines(file).length >= 2 && refusals(proc, 'unenrolled_sender').length >= 2, 30_000, proc.output);
  const lines = readLines(file);
  assert.deepEqual(lines.filter((l) => l['device'] !== device.did), [], 'nothing under a forged DID');
  assert.deepEqual(lines.map((l) => l['point']), ['temp-1', 'count-1'], 'the approved device flows');
  const refused = refusals(proc, 'unenrolled_sender').map((l) => String(l['msg']));
  assert.equal(refused.length, 2, refused.join('\n'));
  assert.ok(refused.some((m) => m.includes(unapproved.did) && /without a fleet approval/.test(m)), refused.join('\n'));
  assert.ok(refused.some((m) => m.includes(selfApproved.did) && /fleet signature does not verify/.test(m)), refused.join('\n'));
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('enrolled mode without a pinned fleet key is a config error naming the setting', async () => {
  const setup = await receiverSetup(relay);
  const config = receiverConfig(relay, setup, { trust: { enrolled: true, refresh: '0s' } });
  const proc = await startReceiverProcess(setup, config, 'nofleet');
  assert.equal(await proc.exited, 2, proc.output());
  assert.match(proc.output(), /trust.*enrolled: true needs fleetPublicKey/s);
});
