/**
 * Issue 11's reproductions against real relay processes: what one key can take from the others.
 * Each asserts the bound it restores (accepted count, held bytes), never a timing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { RelayError } from '../../common/relay-client.js';
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
