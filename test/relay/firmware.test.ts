/**
 * Firmware through a real relay process (docs/API.md "Groups", "Firmware"): groups, a staged
 * publish, chunks and key wraps checked on the way in, devices served only what targets them, a
 * download that completes once, signed receipts logged as 0x06 leaves, the burn, the halt on a
 * failure, the expiry, a restart (packages are RAM only) and the refusals of each endpoint.
 * The devices here are protocol code; the agent's side is tested with the agent.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupAll, makeDevice, refused, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { until } from '../helpers/wait.js';
import { downloadAsDevice, sendReceipt } from '../helpers/firmware-device.js';
import { RelayClient } from '../../common/relay-client.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { decodeLogEntry } from '../../protocol/log-entries.js';
import { encodeReceipt, RECEIPT_CONTEXT, manifestDigest, signReceipt } from '../../protocol/firmware/index.js';
import { makeRelease } from '../helpers/firmware-release.js';
import { audit } from '../../receiver/audit.js';
import { loadPublicKey } from '../../common/keyfile.js';
import path from 'node:path';

after(cleanupAll);

const release = generatePrivateKey('ML-DSA-65');
const root = { version: 1, threshold: 1, keys: [release.publicKey] };
const publisher = generatePrivateKey('ML-DSA-65');
let relay: RelayProcess;
let a: Device, b: Device, outsider: Device;

before(async () => {
  relay = await startRelay({ firmware: { ttl: '3s' } });
  [a, b, outsider] = await Promise.all([makeDevice(relay), makeDevice(relay), makeDevice(relay)]);
});

/** A package as `ghostpipe firmware pack` makes it, in memory: 10,000 bytes in 3 chunks of 4 KiB. */
function makePackage(counter: number, group = 'line-a', expires = Date.now() + 3_600_000) {
  const r = makeRelease({ counter, group, expires, signers: [release] });
  return {
    ...r,
    wrapFor: (device: Device) => r.wrapFor(device.kem.publicKey, publisher),
    request: (targets: Device[], first?: number) => r.request(targets.map((d) => d.did), publisher, first ? { first } : {}),
  };
}

async function upload(pkg: ReturnType<typeof makePackage>, wrapsFor: Device[]) {
  for (const [i, chunk] of pkg.chunks.entries()) await relay.operator.putFirmwareChunk(pkg.id, i, chunk);
  for (const device of wrapsFor) await relay.operator.putFirmwareWrap(pkg.id, device.did, pkg.wrapFor(device));
}

test('groups: operator only, persisted in the device records, audited', async () => {
  await refused(a.client.setGroup('line-a', a.did, true), 403, 'forbidden');
  await refused(relay.operator.setGroup('Line A', a.did, true), 400, 'bad_request');
  await refused(relay.operator.setGroup('line-a', 'did:ghostpipe:nobody', true), 404, 'not_found');
  for (const d of [a, b]) assert.deepEqual(await relay.operator.setGroup('line-a', d.did, true), { group: 'line-a', did: d.did, member: true });
  await relay.operator.setGroup('line-b', outsider.did, true);
  assert.deepEqual((await relay.operator.groups()).groups['line-a'], [a.did, b.did].sort());
  const events = await relay.operator.audit();
  assert.equal(events.filter((e) => e.event === 'group_added' && e.group === 'line-a').length, 2);
});

test('staged publish: chunks and wraps checked on arrival; only offered targets see it; one download, then 410', async () => {
  const pkg = makePackage(2);
  await refused(relay.operator.publishFirmware(pkg.request([a, outsider])), 422, 'not_in_group');
  await refused(a.client.publishFirmware(pkg.request([a])), 403, 'forbidden');
  assert.match((await refused(relay.operator.publishFirmware({ ...pkg.request([a]), roots: [{ root: 'AAAA', signatures: [] }] }), 400, 'bad_request')).message, /roots\[0\]: /);
  // Twice at once (a retried CLI): one rollout, one log leaf; and publishing again releases nobody.
  const [published, again] = await Promise.all([relay.operator.publishFirmware(pkg.request([a, b], 1)), relay.operator.publishFirmware(pkg.request([a, b], 1))]);
  assert.equal(again.leafIndex, published.leafIndex);
  assert.equal(published.id, pkg.id);
  assert.equal(published.ready, false);
  const entry = decodeLogEntry((await relay.operator.entries(published.leafIndex, published.leafIndex + 1))[0]!.data);
  assert.deepEqual(entry, { type: 'firmware', manifestHash: manifestDigest(pkg.bytes) });

  assert.deepEqual(await a.client.firmwareRollouts(), []);
  await refused(a.client.firmwareOffer(pkg.id), 409, 'incomplete_package');
  const corrupted = pkg.chunks[1]!.slice(); corrupted[0]! ^= 1;
  assert.match((await refused(relay.operator.putFirmwareChunk(pkg.id, 1, corrupted), 400, 'bad_request')).message, /chunk 1 does not match its hash/);
  await refused(relay.operator.putFirmwareChunk(pkg.id, 3, pkg.chunks[0]!), 400, 'bad_request');
  await refused(relay.operator.putFirmwareWrap(pkg.id, a.did, pkg.wrapFor(b)), 400, 'bad_request');
  await refused(relay.operator.putFirmwareWrap(pkg.id, outsider.did, pkg.wrapFor(outsider)), 404, 'not_found');
  await upload(pkg, [a, b]);
  assert.deepEqual((await a.client.firmwareOffer(pkg.id)).roots, [], 'no rotations were published');

  assert.deepEqual((await a.client.firmwareRollouts()).map((r) => r.id), [pkg.id]);
  assert.deepEqual(await b.client.firmwareRollouts(), [], 'b is held back');
  await refused(b.client.firmwareOffer(pkg.id), 404, 'not_found');
  await refused(outsider.client.firmwareOffer(pkg.id), 404, 'not_found');
  await refused(outsider.client.firmwareChunk(pkg.id, 0), 404, 'not_found');
  await refused(a.client.firmwareChunk(pkg.id, 3), 404, 'not_found');

  assert.deepEqual(await downloadAsDevice(a, pkg.id, root), pkg.plaintext);
  let status = await relay.operator.rolloutStatus(pkg.id);
  assert.deepEqual(status.devices.map((d) => [d.did === a.did ? 'a' : 'b', d.state, d.chunksDone]).sort(), [['a', 'downloading', 3], ['b', 'held_back', 0]]);
  await a.client.firmwareDownloaded(pkg.id);
  await refused(a.client.firmwareChunk(pkg.id, 0), 410, 'download_complete');
  await refused(a.client.firmwareOffer(pkg.id), 410, 'download_complete');

  const logged = await sendReceipt(a, pkg.id, 'installed');
  assert.equal(decodeLogEntry((await relay.operator.entries(logged.leafIndex, logged.leafIndex + 1))[0]!.data).type, 'receipt');
  await refused(sendReceipt(a, pkg.id, 'installed'), 409, 'duplicate');

  await relay.operator.widenRollout(pkg.id, []);
  assert.deepEqual(await downloadAsDevice(b, pkg.id, root), pkg.plaintext);
  await sendReceipt(b, pkg.id, 'installed');
  status = await relay.operator.rolloutStatus(pkg.id);
  assert.equal(status.held, false);
  assert.equal(status.burned?.reason, 'receipts');
  assert.deepEqual(status.devices.map((d) => d.state), ['installed', 'installed']);
  await refused(b.client.firmwareOffer(pkg.id), 404, 'not_found');
  assert.ok((await relay.operator.audit()).some((e) => e.event === 'firmware_burned' && e.packageId === pkg.id && e.outcome === 'receipts'));
  // An auditor checks both receipts from the log alone (the devices' keys are in their 0x05 leaves).
  const relayKey = await loadPublicKey(path.join(relay.stateDir, 'relay.sign.pub'), ['ML-DSA-65']);
  const audited = await audit({ client: new RelayClient({ baseUrl: relay.url }), relayPublicKey: relayKey.publicKey, full: true });
  assert.deepEqual(audited.receipts, { verified: 2, unverifiable: 0, forged: [] });
});

test('a failure halts the staged rollout; forged and foreign receipts are refused', async () => {
  const pkg = makePackage(3);
  await relay.operator.publishFirmware(pkg.request([a, b], 1));
  await upload(pkg, [a, b]);
  await downloadAsDevice(a, pkg.id, root);
  const forged = encodeReceipt({ did: a.did, manifestDigest: new Uint8Array(Buffer.from(pkg.id, 'hex')), outcome: 'installed', runningVersion: '1.3.0', runningCounter: 3, time: Date.now(), reason: '' });
  // a's receipt signed by b's key; and a's genuine receipt sent with b's API key
  await refused(a.client.firmwareReceipt(pkg.id, forged, getProvider().mlDsa65.sign(b.signing.seed, forged, RECEIPT_CONTEXT)), 403, 'bad_signature');
  await refused(b.client.firmwareReceipt(pkg.id, forged, signReceipt(a.signing.seed, forged)), 403, 'bad_signature');
  await sendReceipt(a, pkg.id, 'rolled_back', 'health command exited 1');
  assert.match((await refused(relay.operator.widenRollout(pkg.id, []), 409, 'rollout_halted')).message, /reported rolled_back \(health command exited 1\)/);
  const status = await relay.operator.rolloutStatus(pkg.id);
  assert.deepEqual(status.devices.find((d) => d.did === a.did)?.reason, 'health command exited 1');
  assert.equal(status.held, true, 'b has not reported: the package stays until the TTL');
});

test('the TTL burns what nobody finished; a restart loses held packages and keeps groups', async () => {
  const pkg = makePackage(4);
  // Earlier tests' packages burn by the 3 s TTL: from nothing held, the count is exact.
  await until('earlier packages burned', async () => (await relay.operator.stats()).memory.firmwareBytes === 0, 20_000, 100);
  const before = 0;
  await relay.operator.publishFirmware(pkg.request([a]));
  await upload(pkg, [a]);
  // Every chunk is reserved at publish; the wrap is counted as it arrives.
  const wrapBytes = pkg.wrapFor(a).length;
  assert.equal((await relay.operator.stats()).memory.firmwareBytes - before, pkg.chunks.reduce((n, c) => n + c.length, 0) + wrapBytes);
  const burned = await until('the 3 s TTL burns the package', async () => {
    const s = await relay.operator.rolloutStatus(pkg.id);
    return s.held ? undefined : s;
  }, 30_000, 200);
  assert.equal(burned.burned?.reason, 'expired');
  assert.deepEqual(burned.devices.map((d) => d.state), ['expired']);
  assert.equal((await relay.operator.stats()).memory.firmwareBytes, before, 'the burn returns what the package held');

  const held = makePackage(5);
  await relay.operator.publishFirmware(held.request([a]));
  await relay.stop('SIGTERM');
  relay = await startRelay({ firmware: { ttl: '3s' } }, { dir: relay.dir });
  await refused(relay.operator.rolloutStatus(held.id), 404, 'not_found');
  assert.deepEqual((await relay.operator.groups()).groups['line-a'], [a.did, b.did].sort());
  // Publishing again after the restart works and logs the manifest again.
  const again = await relay.operator.publishFirmware(held.request([a]));
  assert.equal(again.id, held.id);
});

test('bad input: expired or malformed manifests, oversized packages, bad ids, no key', async () => {
  const expired = makePackage(6, 'line-a', Date.now() - 1000);
  assert.match((await refused(relay.operator.publishFirmware(expired.request([a])), 400, 'bad_request')).message, /expired/);
  const pkg = makePackage(7);
  await refused(relay.operator.publishFirmware({ ...pkg.request([a]), manifest: Buffer.from(pkg.bytes.subarray(0, 50)).toString('base64') }), 400, 'bad_request');
  await refused(relay.operator.publishFirmware({ ...pkg.request([a]), targets: [] }), 400, 'bad_request');
  await refused(relay.operator.publishFirmware({ ...pkg.request([a]), first: 0 }), 400, 'bad_request');
  await refused(relay.operator.publishFirmware({ ...pkg.request([a]), publisherPublicKey: 'AAAA' }), 400, 'bad_request');
  await refused(relay.operator.rolloutStatus('ab'.repeat(32)), 404, 'not_found');
  const deviceA = new RelayClient({ baseUrl: relay.url, apiKey: a.apiKey }); // the relay restarted on another port
  await refused(deviceA.firmwareOffer('not-hex'), 404, 'not_found');
  await refused(new RelayClient({ baseUrl: relay.url }).firmwareRollouts(), 401, 'missing_key');

  const small = await startRelay({ firmware: { maxPackageSize: '8KiB' } });
  const device = await makeDevice(small);
  await small.operator.setGroup('line-a', device.did, true);
  assert.match((await refused(small.operator.publishFirmware(pkg.request([device])), 413, 'too_large')).message, /firmware\.maxPackageSize/);
});
