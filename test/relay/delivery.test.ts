/** Lease expiry and requeue, long-poll, two competing receivers without double delivery. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RelayClient, RelayError } from '../../relay/client.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, type RelayProcess, type Device, type Receiver } from './harness.js';

let relay: RelayProcess;
let device: Device;
let receiver: Receiver;

before(async () => {
  relay = await startRelay({ leaseTimeout: '1500ms', plans: { pro: { quota: 0, ratePerMinute: 600000, burst: 10000, maxBlob: '5MiB' } } });
  device = await makeDevice(relay);
  receiver = await makeReceiver(relay);
});
after(cleanupAll);

test('an unacknowledged lease expires and the envelope is leased again; the old lease gets 410', async () => {
  const up = await device.client.upload(device.seal(markedPlaintext('expiry'), receiver));
  const first = await receiver.client.lease(receiver.recipientKeyId);
  assert.equal(first?.envelopeId, up.id);
  assert.equal(await receiver.client.lease(receiver.recipientKeyId), null, 'leased envelopes are not handed out twice');
  const second = await receiver.client.lease(receiver.recipientKeyId, { waitMs: 3000 });
  assert.equal(second?.envelopeId, up.id, 'the envelope came back after the lease timeout');
  assert.notEqual(second!.leaseId, first!.leaseId);
  await assert.rejects(receiver.client.ack(first!.leaseId), (err: RelayError) => err.status === 410 && err.code === 'lease_expired');
  await receiver.client.ack(second!.leaseId);
  assert.deepEqual(await device.client.status([up.id]), { [up.id]: 'delivered' });
  const events = await relay.operator.audit({ key: receiver.apiKeyId });
  assert.ok(events.some((e) => e.event === 'lease_expired' && e.envelopeHash === up.id));
});

test('long-poll: inbox and lease wake up when an envelope arrives', async () => {
  const listing = receiver.client.inbox(receiver.recipientKeyId, { waitMs: 10_000 });
  await new Promise((r) => setTimeout(r, 200));
  let started = Date.now();
  const up = await device.client.upload(device.seal(markedPlaintext('long-poll list'), receiver));
  const list = await listing;
  assert.ok(Date.now() - started < 5000);
  assert.deepEqual(list.map((e) => e.id), [up.id]);
  const first = await receiver.client.lease(receiver.recipientKeyId);
  await receiver.client.ack(first!.leaseId);

  const waiting = receiver.client.lease(receiver.recipientKeyId, { waitMs: 10_000 });
  await new Promise((r) => setTimeout(r, 200));
  started = Date.now();
  const up2 = await device.client.upload(device.seal(markedPlaintext('long-poll lease'), receiver));
  const lease = await waiting;
  assert.ok(Date.now() - started < 5000);
  assert.equal(lease?.envelopeId, up2.id);
  await receiver.client.ack(lease!.leaseId);
  const empty = Date.now();
  assert.deepEqual(await receiver.client.inbox(receiver.recipientKeyId, { waitMs: 300 }), []);
  assert.ok(Date.now() - empty >= 250, 'an empty long-poll waits');
});

test('two receivers sharing one queue: every envelope delivered exactly once', async () => {
  // A recipient of its own, read by two receiver keys.
  const one = await makeReceiver(relay);
  const second = await makeReceiverSameKey(relay, one);
  const count = 40;
  const ids = new Set<string>();
  for (let i = 0; i < count; i++) ids.add((await device.client.upload(device.seal(markedPlaintext(`shared ${i}`), one))).id);
  const got: string[] = [];
  const worker = async (client: RelayClient) => {
    for (;;) {
      const lease = await client.lease(one.recipientKeyId, { waitMs: 300 });
      if (!lease) return;
      got.push(lease.envelopeId);
      await client.ack(lease.leaseId);
    }
  };
  await Promise.all([worker(one.client), worker(second.client), worker(one.client), worker(second.client)]);
  assert.equal(got.length, count, 'no envelope delivered twice, none lost');
  assert.deepEqual(new Set(got), ids);
});

/** A second receiver key allowed for the same recipient key id. */
async function makeReceiverSameKey(relay: RelayProcess, like: Receiver): Promise<Receiver> {
  return makeReceiver(relay, like.kem);
}
