/**
 * Restart with the log continuing and keys kept; SIGTERM burns and exits 0; RAM-only mode; no
 * payload byte (or plaintext marker) in the state directory or the relay's output.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { openCheckpoint } from '../../protocol/tlog/checkpoint.js';
import { parseVerifierKey } from '../../protocol/tlog/note.js';
import { verifyConsistency } from '../../protocol/tlog/index.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, tempDir, untilCheckpointCovers, type RelayProcess } from '../helpers/relay.js';

after(cleanupAll);

async function signedCheckpoint(relay: RelayProcess, atLeast: number) {
  const key = await relay.operator.logKey();
  const verifier = parseVerifierKey(key.verifierKey);
  await untilCheckpointCovers(relay.operator, atLeast);
  const opened = openCheckpoint(await relay.operator.checkpoint(), [verifier], key.origin).checkpoint;
  assert.ok(opened.size >= atLeast, `a checkpoint of size >= ${atLeast}`);
  return { ...opened, origin: key.origin, verifierKey: key.verifierKey };
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else out.push(full);
  }
  return out;
}

test('restart: keys and devices kept, log continues, consistency proof across the restart verifies; SIGTERM burns and exits 0', async () => {
  const dir = await tempDir();
  const MARKER = 'GHOSTPIPE-MARKER-7f3a9c';
  const first = await startRelay({ logLevel: 'trace' }, { dir });
  const device = await makeDevice(first);
  const receiver = await makeReceiver(first);
  const envelopes: Uint8Array[] = [];
  const delivered = device.seal(markedPlaintext(MARKER), receiver);
  envelopes.push(delivered);
  const upDelivered = await device.client.upload(delivered);
  const lease = await receiver.client.lease(receiver.recipientKeyId);
  assert.ok(!Buffer.from(lease!.bytes).includes(MARKER), 'the relay only ever holds ciphertext');
  await receiver.client.ack(lease!.leaseId);
  const held = device.seal(markedPlaintext(MARKER), receiver);
  envelopes.push(held);
  const upHeld = await device.client.upload(held);
  const before = await signedCheckpoint(first, upHeld.leafIndex + 1);

  assert.equal(await first.stop('SIGTERM'), 0);
  assert.match(first.output(), /"burned":1/);

  // Key files are 0600 and the folder 0700.
  for (const name of ['relay.sign.key', 'keys.json', 'devices.json', 'log/checkpoint']) {
    assert.equal((await stat(path.join(first.stateDir, name))).mode & 0o077, 0, name);
  }
  // The operator key is next to the state directory, not in it (issue 11).
  assert.equal((await stat(path.join(path.dirname(first.stateDir), 'operator.key'))).mode & 0o077, 0, 'operator.key');
  assert.equal((await stat(first.stateDir)).mode & 0o077, 0);

  const second = await startRelay({ logLevel: 'trace' }, { dir });
  assert.equal(second.operatorKey, first.operatorKey, 'the operator key is kept, not re-created');
  const client = new RelayClient({ baseUrl: second.url, apiKey: device.apiKey });
  const after1 = await signedCheckpoint(second, before.size);
  assert.equal(after1.origin, before.origin);
  assert.equal(after1.verifierKey, before.verifierKey);
  // What was held is gone (RAM only): the sender learns it and re-sends the same bytes.
  assert.deepEqual(await client.status([upHeld.id, upDelivered.id]), { [upHeld.id]: 'unknown', [upDelivered.id]: 'unknown' });
  const resent = await client.upload(held);
  assert.equal(resent.leafIndex, upHeld.leafIndex, 'a re-sent envelope keeps its leaf');
  const more = device.seal(markedPlaintext(MARKER), receiver);
  envelopes.push(more);
  const upMore = await client.upload(more);
  assert.equal(upMore.leafIndex, before.size, 'the log continues where it stopped');
  const later = await signedCheckpoint(second, upMore.leafIndex + 1);
  const proof = await second.operator.consistencyProof(before.size, later.size);
  verifyConsistency(before.size, later.size, proof.proof, before.root, later.root);
  // The DID is still registered and the receiver key still reads.
  assert.equal((await second.operator.getDid(device.did)).revoked, false);
  const again = await new RelayClient({ baseUrl: second.url, apiKey: receiver.apiKey }).lease(receiver.recipientKeyId);
  assert.ok(again);
  assert.equal(await second.stop('SIGTERM'), 0);

  // No plaintext marker and no payload byte in the state directory or in the relay's output.
  const needles = [Buffer.from(MARKER), ...envelopes.flatMap((e) => {
    const slice = Buffer.from(e.subarray(2000, 2032)); // inside the ciphertext
    return [slice, Buffer.from(slice.toString('hex')), Buffer.from(slice.toString('base64')), Buffer.from(slice.toString('base64url'))];
  })];
  const haystacks = [Buffer.from(first.output() + second.output()), ...(await Promise.all((await filesUnder(dir)).map((f) => readFile(f))))];
  for (const hay of haystacks) for (const needle of needles) assert.ok(!hay.includes(needle), `payload bytes found (${needle.subarray(0, 8).toString('hex')})`);
});

test('RAM-only mode: no state directory, a new origin and a fresh log on every boot', async () => {
  const dir = await tempDir();
  const operatorKeyFile = path.join(dir, 'op', 'operator.key');
  const config = { ramOnly: true, operatorKeyFile, stateDir: path.join(dir, 'must-not-exist') };
  await import('node:fs/promises').then((fs) => fs.mkdir(path.dirname(operatorKeyFile), { recursive: true }));
  const first = await startRelay(config, { dir });
  assert.ok(first.operatorKey.startsWith('plk_'));
  const device = await makeDevice(first);
  const receiver = await makeReceiver(first);
  await device.client.upload(device.seal(markedPlaintext('ram'), receiver));
  const key1 = await first.operator.logKey();
  const size1 = (await signedCheckpoint(first, 2)).size;
  assert.ok(size1 >= 2);
  assert.equal(await first.stop(), 0);
  assert.equal(existsSync(path.join(dir, 'must-not-exist')), false);

  const { rm } = await import('node:fs/promises');
  await rm(operatorKeyFile);
  const second = await startRelay(config, { dir });
  const key2 = await second.operator.logKey();
  assert.notEqual(key2.origin, key1.origin);
  assert.equal((await signedCheckpoint(second, 0)).size, 0);
  await assert.rejects(new RelayClient({ baseUrl: second.url, apiKey: device.apiKey }).upload(new Uint8Array(10)), (err: RelayError) => err.status === 401);
  assert.equal(await second.stop(), 0);
  assert.equal(existsSync(path.join(dir, 'must-not-exist')), false);
});
