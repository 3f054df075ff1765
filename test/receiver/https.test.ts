/**
 * The receiver over HTTPS with a pinned CA: a real relay serving TLS with a certificate made at
 * test time (openssl CLI), a receiver pinning that CA delivers; one pinning another CA refuses to
 * talk to the relay at all (exit 1, the TLS error named), before any key leaves the process.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { makeCa } from '../helpers/tls.js';
import { approve, cleanupAll, prover, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import { RelayClient } from '../../common/relay-client.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import type { Device } from '../helpers/relay.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, seal, startReceiverProcess, waitFor } from '../helpers/receiver.js';

let relay: RelayProcess;
let tls: { ca: string; cert: string; key: string };
let otherCa: string;
let httpsRelay: RelayProcess;

before(async () => {
  const dir = await tempDir();
  tls = makeCa(dir, 'relay');
  otherCa = makeCa(dir, 'other').ca;
  relay = await startRelay({ tls: { cert: tls.cert, key: tls.key }, leaseTimeout: '2s' });
  // The harness speaks plain HTTP; the same relay over HTTPS, trusting only the test CA.
  const url = relay.url.replace('http://', 'https://');
  const ca = await readFile(tls.ca);
  httpsRelay = { ...relay, url, operator: new RelayClient({ baseUrl: url, apiKey: relay.operatorKey, ca }) };
});

after(async () => {
  await killAllChildren();
  await cleanupAll();
});

async function enrolledDevice(): Promise<Device> {
  const ca = await readFile(tls.ca);
  const issued = await httpsRelay.operator.createKey({ role: 'device', plan: 'enterprise', label: 'https device' });
  const client = new RelayClient({ baseUrl: httpsRelay.url, apiKey: issued.key, ca });
  const signing = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  const reg = await client.enroll(prover(signing, kem), approve({ signing, kem }, issued.id));
  return { client, apiKey: issued.key, apiKeyId: issued.id, signing, kem, did: reg.did, leafIndex: reg.leafIndex, seal: () => { throw new Error('unused'); } };
}

test('HTTPS relay, receiver pinning its CA: readings delivered', async () => {
  assert.match(httpsRelay.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const device = await enrolledDevice();
  const setup = await receiverSetup(httpsRelay);
  await device.client.upload(seal(device, setup.keys, { seq: 1n }));
  const base = receiverConfig(httpsRelay, setup, {}, 'https');
  const proc = await startReceiverProcess(setup, { ...base, relay: { ...(base['relay'] as object), ca: tls.ca } }, 'https');
  const lines = await waitFor('readings over HTTPS', () => readLines(path.join(setup.dir, 'https.jsonl')).length >= 2 && readLines(path.join(setup.dir, 'https.jsonl')), 20_000, proc.output);
  assert.deepEqual(lines.map((l) => l['point']), ['temp-1', 'count-1']);
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('HTTPS relay, receiver pinning another CA: exits 1 naming the certificate problem', async () => {
  const setup = await receiverSetup(httpsRelay);
  const base = receiverConfig(httpsRelay, setup, {}, 'wrong-ca');
  const proc = await startReceiverProcess(setup, { ...base, relay: { ...(base['relay'] as object), ca: otherCa } }, 'wrong-ca');
  assert.equal(await proc.exited, 1, proc.output());
  assert.match(proc.output(), /cannot start: .*(certificate|self[- ]signed)/i);
  assert.doesNotMatch(proc.output(), new RegExp(setup.keys.apiKey.slice(4)));
});

test('plain HTTP to the TLS port is not accepted as a relay', async () => {
  const setup = await receiverSetup(httpsRelay);
  const base = receiverConfig(relay, setup, {}, 'plain'); // http:// to the TLS listener
  const proc = await startReceiverProcess(setup, base, 'plain');
  assert.equal(await proc.exited, 1, proc.output());
  assert.match(proc.output(), /cannot start: /);
});
