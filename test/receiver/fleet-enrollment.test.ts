/**
 * Reproduction 9 of issue 11: with the relay's operator key (or a compromised relay) an attacker
 * issues a device key, enrolls a new ML-DSA key through the relay API and uploads signed readings.
 * A receiver in enrolled mode pins the fleet key: it writes nothing under such a DID, whether the
 * registration has no fleet approval or one signed by another key; an approved device still flows.
 * On the code before fleet enrollment the receiver wrote the forged device's readings.
 * Also: renewing an approval (`ghostpipe device renew`), and `ghostpipe audit --fleet-key`
 * finding approvals in the signed log that the fleet key did not sign.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { approve, cleanupAll, fleetKey, makeDevice, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { generatePrivateKey, type PrivateKey } from '../../protocol/keys.js';
import { decodeEnrollmentStatement } from '../../protocol/enrollment.js';
import { didFromSigningKey } from '../../protocol/did.js';
import { approvalFileText } from '../../common/approval-file.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, run, seal, startReceiverProcess, waitFor } from '../helpers/receiver.js';

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

test('`ghostpipe audit --fleet-key`: approved devices with the end of their newest approval, unapproved ones listed (exit 0); a key that is not ML-DSA-65 is a usage error', async () => {
  // First in this file: the shared relay holds only approved devices so far.
  const approved = await makeDevice(relay, 'pro');
  const unapproved = await makeDevice(relay, 'pro', { approval: 'none' });
  const setup = await receiverSetup(relay);
  const proc = run(['audit', '--relay', relay.url, '--relay-key', setup.relayPubFile, '--fleet-key', setup.fleetPubFile]);
  const code = await proc.exited;
  assert.equal(code, 0, proc.output());
  const result = auditReport(proc.output());
  const fleet = result['fleet'] as { approved: number; unapproved: string[]; forged: unknown[]; approvedUntil: Record<string, string> };
  assert.equal(fleet.approved, 2);
  assert.deepEqual(fleet.unapproved, [unapproved.did]);
  assert.deepEqual(fleet.forged, []);
  assert.deepEqual(Object.keys(fleet.approvedUntil), [approved.did, device.did].sort());
  const until = Date.parse(fleet.approvedUntil[approved.did]!);
  assert.ok(Math.abs(until - (Date.now() + 86_400_000)) < 120_000, fleet.approvedUntil[approved.did]);
  assert.equal(result['full'], true, '--fleet-key implies --full');
  assert.match(proc.output(), /1 device\(s\) registered without a fleet approval/);
  const wrongKey = run(['audit', '--relay', relay.url, '--relay-key', setup.relayPubFile, '--fleet-key', setup.apiKeyFile]);
  assert.equal(await wrongKey.exited, 2, wrongKey.output());
  assert.match(wrongKey.output(), /--fleet-key/);
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

/** `ghostpipe device renew` as an operator runs it: the approval file, the operator key file. */
async function renew(dir: string, name: string, approval: { statement: Uint8Array; signature: Uint8Array }, fleet: PrivateKey = fleetKey()): Promise<{ code: number | null; output: string }> {
  const file = path.join(dir, `${name}.approval`);
  await writeFile(file, approvalFileText(decodeEnrollmentStatement(approval.statement), approval, fleet.publicKey));
  const keyFile = path.join(dir, 'operator.key');
  await writeFile(keyFile, relay.operatorKey, { mode: 0o600 });
  const proc = run(['device', 'renew', '--approval', file, '--relay', relay.url, '--operator-key-file', keyFile]);
  return { code: await proc.exited, output: proc.output() };
}

async function refusedWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RelayError, String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test('fleet approval renewal: an expired approval stops the device at the receiver; `ghostpipe device renew` logs a newer one and the same device flows again; a forged renewal gets nothing in', async () => {
  const setup = await receiverSetup(relay);
  const shortLived = await makeDevice(relay, 'enterprise', { approvalValidMs: 3_000 });
  const registeredAt = shortLived.leafIndex;
  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup), 'renew');
  const file = path.join(setup.dir, 'r.jsonl'); // receiverConfig's sink
  await new Promise((resolve) => setTimeout(resolve, 3_500)); // the approval ran out

  // Expired: the receiver refuses the device's envelope; nothing reaches the sink.
  await shortLived.client.upload(seal(shortLived, setup.keys, { seq: 1n }));
  await waitFor('the expired device refused', () => refusals(proc, 'bad_registration').length >= 1, 30_000, proc.output);
  assert.match(String(refusals(proc, 'bad_registration')[0]!['msg']), /expired/);
  assert.deepEqual(readLines(file), []);

  // Refused renewals: checked against the registered keys and API key; operator only.
  const other = { signing: generatePrivateKey('ML-DSA-65'), kem: generatePrivateKey('X-Wing') };
  await refusedWith(relay.operator.renewApproval(didFromSigningKey(other.signing.publicKey), approve(other, shortLived.apiKeyId)), 'not_found');
  await refusedWith(relay.operator.renewApproval(shortLived.did, approve(other, shortLived.apiKeyId)), 'bad_approval', /other device keys/);
  await refusedWith(relay.operator.renewApproval(shortLived.did, approve(shortLived, 'ffffffffffff')), 'bad_approval', /approves this device for API key ffffffffffff/);
  await refusedWith(shortLived.client.renewApproval(shortLived.did, approve(shortLived, shortLived.apiKeyId)), 'forbidden');
  await refusedWith(new RelayClient({ baseUrl: relay.url }).renewApproval(shortLived.did, approve(shortLived, shortLived.apiKeyId)), 'missing_key');

  // A forged renewal (the attacker holds the operator key, not the fleet key): the relay without a
  // fleet key logs it, the receiver refuses the device as never approved.
  const forged = await renew(setup.dir, 'forged', approve(shortLived, shortLived.apiKeyId, generatePrivateKey('ML-DSA-65'), 86_400_000));
  assert.equal(forged.code, 0, forged.output);
  const forgedLeaf = (await relay.operator.getDid(shortLived.did)).leafIndex;
  await shortLived.client.upload(seal(shortLived, setup.keys, { seq: 2n }));
  await waitFor('the forged renewal refused', () => refusals(proc, 'unenrolled_sender').some((l) => String(l['msg']).includes(shortLived.did)), 30_000, proc.output);
  assert.deepEqual(readLines(file), []);

  // The operator renews with the fleet key: a new registration leaf, the same DID, data flows.
  const genuine = approve(shortLived, shortLived.apiKeyId, fleetKey(), 2 * 86_400_000);
  const renewed = await renew(setup.dir, 'genuine', genuine);
  assert.equal(renewed.code, 0, renewed.output);
  assert.match(renewed.output, new RegExp(`renewed ${shortLived.did}: approved until \\S+, log leaf \\d+`));
  const record = await relay.operator.getDid(shortLived.did);
  assert.ok(record.leafIndex > registeredAt, `the record names the new leaf (${record.leafIndex} > ${registeredAt})`);
  assert.equal(record.fleetStatement, Buffer.from(genuine.statement).toString('base64'));
  const again = await relay.operator.renewApproval(shortLived.did, genuine); // the same approval: no new leaf
  assert.equal(again.leafIndex, record.leafIndex);
  // Never back to a shorter one (a replayed older approval cannot cut the device's validity).
  await refusedWith(relay.operator.renewApproval(shortLived.did, approve(shortLived, shortLived.apiKeyId, fleetKey(), 86_400_000)), 'bad_approval', /must hold longer/);
  await shortLived.client.upload(seal(shortLived, setup.keys, { seq: 3n }));
  await waitFor('the renewed device\'s readings', () => readLines(file).length >= 2, 30_000, proc.output);
  assert.deepEqual(readLines(file).map((l) => [l['device'], l['point']]), [[shortLived.did, 'temp-3'], [shortLived.did, 'count-3']]);
  const audited = (await relay.operator.audit({ limit: 1000 })).filter((e) => e.event === 'device_approval').map((e) => e.outcome);
  assert.deepEqual(audited, ['bad_approval', 'bad_approval', 'ok', 'ok', 'not_newer']);
  assert.equal(await proc.kill('SIGTERM'), 0);

  // An auditor with the fleet public key finds the forged renewal in the signed log (exit 1).
  const audit = await runAudit(setup);
  assert.equal(audit.code, 1, audit.output);
  assert.match(audit.output, /FORGED APPROVAL: \d+ registration\(s\) in the signed log carry a fleet approval the fleet key did not sign/);
  const report = auditReport(audit.output, 'forged_approval');
  assert.ok((report['forged'] as { leafIndex: number; did: string }[]).some((f) => f.leafIndex === forgedLeaf && f.did === shortLived.did), audit.output);
});

async function runAudit(setup: { relayPubFile: string; fleetPubFile: string }): Promise<{ code: number | null; output: string }> {
  const proc = run(['audit', '--relay', relay.url, '--relay-key', setup.relayPubFile, '--fleet-key', setup.fleetPubFile]);
  return { code: await proc.exited, output: proc.output() };
}

/** The audit's JSON log line with this reason (or the final "log consistent" line). */
function auditReport(output: string, reason?: string): Record<string, unknown> {
  const lines = output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = lines.find((l) => (reason === undefined ? String(l['msg']).startsWith('log consistent') : l['reason'] === reason));
  assert.ok(line, output);
  return line;
}

