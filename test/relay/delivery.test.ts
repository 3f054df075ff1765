/** Lease expiry and requeue, long-poll, two competing receivers without double delivery, SIGTERM. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { until } from '../helpers/wait.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, rawRequest, startRelay, type RelayProcess, type Device, type Receiver } from '../helpers/relay.js';

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

/** Until the relay counts a waiting long-poll (stats `envelopes.waiting`, docs/API.md). */
async function untilPollWaiting(): Promise<void> {
  await until('a long-poll waiting at the relay', async () => (await relay.operator.stats()).envelopes.waiting >= 1);
}

test('long-poll: inbox and lease wake up when an envelope arrives', async () => {
  // A long-poll that runs out answers [] (inbox) or null (lease): an answer holding the envelope
  // uploaded after the poll began was woken by its arrival. No clock is read.
  let listed = false;
  const listing = receiver.client.inbox(receiver.recipientKeyId, { waitMs: 60_000 }).finally(() => (listed = true));
  await untilPollWaiting(); // the poll reached the relay and waits there
  assert.equal(listed, false, 'an empty inbox long-poll waits');
  const up = await device.client.upload(device.seal(markedPlaintext('long-poll list'), receiver));
  const list = await listing;
  assert.deepEqual(list.map((e) => e.id), [up.id]);
  const first = await receiver.client.lease(receiver.recipientKeyId);
  await receiver.client.ack(first!.leaseId);

  let leased = false;
  const waiting = receiver.client.lease(receiver.recipientKeyId, { waitMs: 60_000 }).finally(() => (leased = true));
  await untilPollWaiting(); // as above
  assert.equal(leased, false, 'an empty lease long-poll waits');
  const up2 = await device.client.upload(device.seal(markedPlaintext('long-poll lease'), receiver));
  const lease = await waiting;
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

test('SIGTERM: an upload in flight finishes, long-polls end, new connections are refused, everything held is burned, exit 0', async () => {
  const SHUTDOWN_GRACE_MS = 20_000;
  const closing = await startRelay({ limits: { shutdownGrace: `${SHUTDOWN_GRACE_MS}ms` } });
  const sender = await makeDevice(closing);
  const reader = await makeReceiver(closing);
  await sender.client.upload(sender.seal(markedPlaintext('held at shutdown'), reader));
  const other = await makeReceiver(closing);
  const longPoll = other.client.lease(other.recipientKeyId, { waitMs: 30_000 });

  // Half an upload on the wire when the signal arrives; the rest follows 300 ms later.
  const envelope = sender.seal(markedPlaintext('in flight'), reader);
  const socket = net.connect(closing.port, '127.0.0.1');
  let answer = '';
  socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.write(`POST /v2/envelopes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${sender.apiKey}\r\ncontent-type: application/vnd.ghostpipe.envelope\r\ncontent-length: ${envelope.length}\r\n\r\n`);
  socket.write(envelope.subarray(0, 1000));
  await until('the half upload reserved at the relay', async () => (await closing.operator.stats()).memory.inFlightBytes > 0);
  const exited = closing.stop('SIGTERM');
  const started = Date.now();
  assert.equal(await longPoll, null, 'the long-poll ends at once with nothing');
  // Causal, not a speed target: ended by the shutdown, not by the end of the grace (20 s here).
  assert.ok(Date.now() - started < SHUTDOWN_GRACE_MS, 'the long-poll ended before the shutdown grace ran out');
  const probe = () => new Promise<string>((resolve) => {
    const socket = net.connect(closing.port, '127.0.0.1', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  await until('the listener closed', async () => (await probe()) === 'ECONNREFUSED');
  assert.equal(closing.child.exitCode, null, 'no new connections while stopping (the relay still waits for the upload in flight)');
  // A request on a connection that was already open is answered 503 shutting_down.
  const late = await rawRequest(`${closing.url}/healthz`, {}).catch(() => undefined);
  assert.ok(late === undefined || late.status === 503, `late request: ${late?.status}`);
  socket.end(envelope.subarray(1000));
  await closed;
  assert.match(answer, /^HTTP\/1\.1 201 /, 'the in-flight upload completed');
  assert.equal(await exited, 0);
  assert.match(closing.output(), /"burned":2/, 'both held envelopes burned');
});
