/**
 * Issue 11's reproductions against real relay processes: what one key can take from the others.
 * Each asserts the bound it restores (accepted count, held bytes), never a timing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { RelayError } from '../../common/relay-client.js';
import { ENVELOPE_MEDIA_TYPE } from '../../protocol/api/index.js';
import { until } from '../helpers/conduit.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay } from '../helpers/relay.js';

after(cleanupAll);

/** Settles every upload; returns the status of each (201 or the refusal's) with its code. */
async function outcomes(uploads: Promise<unknown>[]): Promise<string[]> {
  return Promise.all(uploads.map((p) => p.then(() => '201', (err: unknown) => {
    assert.ok(err instanceof RelayError, String(err));
    return `${err.status} ${err.code}`;
  })));
}

test('quota under concurrency: twelve uploads at once under a quota of 3 store exactly 3; refused uploads give their slot back', async () => {
  const relay = await startRelay({ plans: { pro: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB' }, three: { quota: 3, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB' } } });
  const receiver = await makeReceiver(relay);
  const device = await makeDevice(relay, 'three');
  // Sealed first, so the twelve requests leave together (the old code accepted all twelve).
  const envelopes = Array.from({ length: 12 }, (_, i) => device.seal(markedPlaintext(`burst ${i}`, 1_000_000), receiver, undefined, 1024 * 1024));
  const burst = await outcomes(envelopes.map((e) => device.client.upload(e)));
  assert.equal(burst.filter((o) => o === '201').length, 3, burst.join(','));
  assert.deepEqual(burst.filter((o) => o !== '201'), Array(9).fill('402 quota_exceeded'));
  assert.equal((await relay.operator.stats()).envelopes.pending, 3);

  // A refused upload (bad signature, after its body arrived) does not use up the quota.
  const fresh = await makeDevice(relay, 'three');
  const forged = fresh.seal(markedPlaintext('forged'), receiver);
  forged[forged.length - 10]! ^= 0xff;
  assert.deepEqual(await outcomes([fresh.client.upload(forged), fresh.client.upload(forged)]), ['403 bad_signature', '403 bad_signature']);
  const good = await outcomes([0, 1, 2, 3].map((i) => fresh.client.upload(fresh.seal(markedPlaintext(`good ${i}`), receiver))));
  assert.deepEqual(good.sort(), ['201', '201', '201', '402 quota_exceeded']);
  assert.equal(await relay.stop(), 0);
});

test('revocation at once: a waiting lease ends with 401 key_revoked and is never handed an envelope; an upload in progress is cut off', async () => {
  const relay = await startRelay();
  const receiver = await makeReceiver(relay);
  const device = await makeDevice(relay);
  // The old relay answered this lease with the envelope uploaded after the revocation.
  const waiting = receiver.client.lease(receiver.recipientKeyId, { waitMs: 30_000 }).then(() => 'leased', (err: unknown) => (err instanceof RelayError ? `${err.status} ${err.code}` : String(err)));
  await until('the lease is waiting at the relay', async () => (await relay.operator.stats()).envelopes.waiting === 1, 10_000, 20);
  await relay.operator.revokeKey(receiver.apiKeyId);
  await device.client.upload(device.seal(markedPlaintext('after the revocation'), receiver));
  assert.equal(await waiting, '401 key_revoked');
  const stats = await relay.operator.stats();
  assert.deepEqual([stats.envelopes.pending, stats.envelopes.leased], [1, 0], 'the envelope stays held for a valid key');

  // An upload whose body is still streaming when its key is revoked: 401, nothing stored.
  const envelope = device.seal(markedPlaintext('slow', 200_000), receiver, undefined, 1024 * 1024);
  const req = http.request(`${relay.url}/v2/envelopes`, { method: 'POST', headers: { authorization: `Bearer ${device.apiKey}`, 'content-type': ENVELOPE_MEDIA_TYPE, 'content-length': String(envelope.length) } });
  const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
  req.write(envelope.subarray(0, 4096));
  await until('the upload is streaming (bytes reserved)', async () => (await relay.operator.stats()).memory.inFlightBytes > 0, 5_000, 20);
  await relay.operator.revokeKey(device.apiKeyId);
  const answer = await answered;
  req.destroy();
  assert.equal(answer.status, 401, answer.body);
  assert.equal(JSON.parse(answer.body).error, 'key_revoked');
  const after = await relay.operator.stats();
  assert.deepEqual([after.envelopes.pending, after.memory.inFlightBytes], [1, 0], 'nothing stored, the reservation given back');
  assert.equal(await relay.stop(), 0);
});

test('a long-poll longer than the idle timeout is answered, not reset', async () => {
  // idleTimeout 1 s, wait 3 s: the old relay reset the socket after 1 s of silence.
  const relay = await startRelay({ limits: { idleTimeout: '1s' } });
  const receiver = await makeReceiver(relay);
  assert.equal(await receiver.client.lease(receiver.recipientKeyId, { waitMs: 3_000 }), null, '204: nothing arrived');
  assert.deepEqual(await receiver.client.inbox(receiver.recipientKeyId, { waitMs: 3_000 }), []);
  assert.equal(await relay.stop(), 0);
});
