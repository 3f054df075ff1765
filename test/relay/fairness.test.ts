/**
 * Issue 11's reproductions against real relay processes: what one key can take from the others.
 * Each asserts the bound it restores (accepted count, held bytes), never a timing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { RelayError } from '../../common/relay-client.js';
import { ENVELOPE_MEDIA_TYPE } from '../../protocol/api/index.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { until } from '../helpers/conduit.js';
import { cliPath } from '../helpers/paths.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, type Receiver, type RelayProcess } from '../helpers/relay.js';

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
  // No minimum upload rate: the half upload below waits for the revocation, not for a cut-off.
  const relay = await startRelay({ limits: { minUploadRate: 0 } });
  const receiver = await makeReceiver(relay);
  const device = await makeDevice(relay);
  // The old relay answered this lease with the envelope uploaded after the revocation.
  const waiting = receiver.client.lease(receiver.recipientKeyId, { waitMs: 30_000 }).then(() => 'leased', (err: unknown) => (err instanceof RelayError ? `${err.status} ${err.code}` : String(err)));
  await until('the lease is waiting at the relay', async () => (await relay.operator.stats()).envelopes.waiting === 1, 10_000, 20);
  // A second receiver key for the same recipient stays active: uploads to it are still accepted.
  await makeReceiver(relay, receiver.kem);
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

const MiB = 1024 * 1024;
/** Bookkeeping the relay charges per held envelope (relay/store.ts ENTRY_OVERHEAD). */
const ENTRY_OVERHEAD = 640;
/** A plaintext that fills the 1 MiB bucket: envelopes of 1,053,130 bytes. */
const big = (marker: string): Uint8Array => markedPlaintext(marker, 1_000_000);

/**
 * An upload over a raw socket that sends its headers and the first `first` bytes of `envelope`,
 * then `drip` bytes every 200 ms (a stimulus, never measured) until the relay answers or closes.
 */
function slowUpload(relay: RelayProcess, apiKey: string, envelope: Uint8Array, first: number, drip = 0): { text: () => string; closed: Promise<void>; destroy(): void } {
  let text = '';
  let timer: NodeJS.Timeout | undefined;
  const socket = net.connect(relay.port, '127.0.0.1', () => {
    socket.write(`POST /v2/envelopes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${apiKey}\r\ncontent-type: ${ENVELOPE_MEDIA_TYPE}\r\ncontent-length: ${envelope.length}\r\n\r\n`);
    socket.write(envelope.subarray(0, first));
    let sent = first;
    if (drip > 0) {
      timer = setInterval(() => {
        if (!socket.destroyed && text === '') socket.write(envelope.subarray(sent, (sent += drip)));
      }, 200);
    }
  });
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.on('close', () => {
    clearInterval(timer);
    resolve();
  }));
  return { text: () => text, closed, destroy: () => socket.destroy() };
}

async function auditOutcomes(relay: RelayProcess, keyId: string, event = 'upload'): Promise<string[]> {
  return (await relay.operator.audit({ key: keyId })).filter((e) => e.event === event).map((e) => e.outcome);
}

test('reproduction 1: one key cannot fill memory for the TTL; uploads to a recipient no receiver key lists are refused', async () => {
  // The share (3 MiB) holds two 1 MiB-bucket envelopes; memoryCap (8 MiB) would take seven.
  const relay = await startRelay({
    memoryCap: '8MiB',
    plans: {
      pro: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '1MiB' },
      flood: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '1MiB', maxHeldBytes: '3MiB' },
    },
  });
  const receiver = await makeReceiver(relay); // lists a recipient, and never reads
  const flooder = await makeDevice(relay, 'flood');
  const tenant = await makeDevice(relay, 'pro');

  // Ten uploads in a row, within rate and burst: the old relay stored seven and then refused everyone.
  const flood: string[] = [];
  let size = 0;
  for (let i = 0; i < 10; i++) {
    const envelope = flooder.seal(big(`flood ${i}`), receiver, undefined, MiB);
    size = envelope.length;
    flood.push(...(await outcomes([flooder.client.upload(envelope)])));
  }
  assert.deepEqual(flood, [...Array(2).fill('201'), ...Array(8).fill('507 key_memory_full')]);
  const stats = await relay.operator.stats();
  assert.equal(stats.byKey[flooder.apiKeyId]?.heldBytes, 2 * (size + ENTRY_OVERHEAD), 'held bytes stop at the share');
  assert.ok(stats.byKey[flooder.apiKeyId]!.heldBytes <= 3 * MiB);
  assert.equal(stats.memory.heldBytes, 2 * (size + ENTRY_OVERHEAD));

  // Another tenant still gets its 1 MiB envelope in.
  assert.deepEqual(await outcomes([tenant.client.upload(tenant.seal(big('another tenant'), receiver, undefined, MiB))]), ['201']);
  assert.equal((await relay.operator.stats()).byKey[tenant.apiKeyId]?.heldBytes, size + ENTRY_OVERHEAD);

  // Addressed to a recipient key id no receiver key lists: nobody could collect it (the old relay held it 24 h).
  const nobody = { kem: generatePrivateKey('X-Wing') } as Receiver;
  assert.deepEqual(await outcomes([tenant.client.upload(tenant.seal(big('to nobody'), nobody, undefined, MiB))]), ['422 unknown_recipient']);
  assert.equal((await relay.operator.stats()).memory.heldBytes, 3 * (size + ENTRY_OVERHEAD), 'nothing more held');
  assert.equal(await relay.stop(), 0);
});

test('reproduction 2: an unenrolled key is refused before anything is reserved, so its slow bodies block nobody', async () => {
  // In-flight limit 3 MiB: the old relay reserved 1,053,130 bytes for each slow body below as
  // soon as its envelope header arrived, and refused the tenant's upload with 507.
  const relay = await startRelay({ limits: { maxInFlightBytes: '3MiB', minUploadRate: 0 }, plans: { pro: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '1MiB' } } });
  const receiver = await makeReceiver(relay);
  const unenrolled = await makeDevice(relay, 'pro', { enroll: false });
  const tenant = await makeDevice(relay, 'pro');
  const slow = [0, 1, 2].map((i) => slowUpload(relay, unenrolled.apiKey, unenrolled.seal(big(`slow ${i}`), receiver, undefined, MiB), 4096));
  try {
    // Either the refusals are recorded (new) or bytes were reserved (old): then look.
    await until('the three slow uploads refused or reserved', async () => {
      const refused = (await auditOutcomes(relay, unenrolled.apiKeyId)).filter((o) => o === 'device_not_enrolled').length;
      return refused === 3 || (await relay.operator.stats()).memory.inFlightBytes > 0;
    }, 30_000);
    const stats = await relay.operator.stats();
    assert.equal(stats.memory.inFlightBytes, 0, 'nothing reserved for the unenrolled key');
    assert.equal(stats.byKey[unenrolled.apiKeyId], undefined);
    assert.deepEqual(await auditOutcomes(relay, unenrolled.apiKeyId), Array(3).fill('device_not_enrolled'));
    assert.deepEqual(await outcomes([tenant.client.upload(tenant.seal(big('tenant'), receiver, undefined, MiB))]), ['201']);
  } finally {
    slow.forEach((s) => s.destroy());
  }
  assert.equal(await relay.stop(), 0);
});

test('reproduction 2: a trickling body is cut off by the minimum rate (408 too_slow), its reservation given back', async () => {
  // 1 KiB/s in windows of 3 s: the first window brings 4 KiB, the next about 75 bytes.
  const relay = await startRelay({ limits: { minUploadRate: '1KiB', uploadRateWindow: '3s' } });
  const receiver = await makeReceiver(relay);
  const device = await makeDevice(relay);
  const envelope = device.seal(big('trickle'), receiver, undefined, MiB);
  const trickle = slowUpload(relay, device.apiKey, envelope, 4096, 5);
  try {
    await until('the trickling upload reserved its length', async () => (await relay.operator.stats()).memory.inFlightBytes === envelope.length, 20_000, 20);
    // The old relay let it trickle until requestTimeout (60 s).
    await until('the relay cut the trickling upload off', () => trickle.text() !== '', 30_000);
    await trickle.closed;
  } finally {
    trickle.destroy();
  }
  assert.match(trickle.text(), /^HTTP\/1\.1 408 /);
  assert.match(trickle.text(), /connection: close/i);
  assert.match(trickle.text(), /"error":"too_slow"/);
  const stats = await relay.operator.stats();
  assert.equal(stats.byKey[device.apiKeyId], undefined, 'reservation and upload slot given back');
  assert.equal(stats.memory.inFlightBytes, 0);
  assert.equal(stats.connections.slowUploads, 1);
  assert.deepEqual(await auditOutcomes(relay, device.apiKeyId), ['too_slow']);
  // The same 1 MiB envelope sent at once passes the rule.
  assert.deepEqual(await outcomes([device.client.upload(envelope)]), ['201']);
  assert.equal(await relay.stop(), 0);
});

test('reproduction 2: a key at its plan\'s uploads in progress is refused (429 too_many_uploads) while another key\'s upload succeeds', async () => {
  const relay = await startRelay({
    limits: { minUploadRate: 0 },
    plans: { pro: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB' }, two: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB', maxConcurrentUploads: 2 } },
  });
  const receiver = await makeReceiver(relay);
  const greedy = await makeDevice(relay, 'two');
  const other = await makeDevice(relay, 'pro');
  const held = [0, 1].map((i) => greedy.seal(markedPlaintext(`held open ${i}`), receiver));
  const slow = held.map((envelope) => slowUpload(relay, greedy.apiKey, envelope, 1000));
  try {
    await until('two uploads of the key in progress (both reserved)', async () => (await relay.operator.stats()).memory.inFlightBytes === held[0]!.length + held[1]!.length, 20_000, 20);
    assert.deepEqual(await outcomes([greedy.client.upload(greedy.seal(markedPlaintext('third'), receiver))]), ['429 too_many_uploads']);
    assert.deepEqual(await outcomes([other.client.upload(other.seal(markedPlaintext('other key'), receiver))]), ['201']);
    assert.equal((await relay.operator.stats()).byKey[greedy.apiKeyId]?.uploads, 2);
  } finally {
    slow.forEach((s) => s.destroy());
  }
  await until('the cut uploads gave their slots and bytes back', async () => {
    const stats = await relay.operator.stats();
    return stats.byKey[greedy.apiKeyId] === undefined && stats.memory.inFlightBytes === 0;
  });
  assert.deepEqual(await outcomes([greedy.client.upload(greedy.seal(markedPlaintext('later'), receiver))]), ['201']);
  assert.equal(await relay.stop(), 0);
});

test('purge: `ghostpipe keys purge ID` burns what one key holds, audited; other keys untouched', async () => {
  const relay = await startRelay();
  const receiver = await makeReceiver(relay);
  const flooder = await makeDevice(relay);
  const other = await makeDevice(relay);
  let size = 0;
  for (let i = 0; i < 5; i++) {
    const envelope = flooder.seal(markedPlaintext(`flood ${i}`), receiver);
    size = envelope.length;
    await flooder.client.upload(envelope);
  }
  await other.client.upload(other.seal(markedPlaintext('keep me'), receiver));
  assert.equal((await relay.operator.stats()).memory.heldBytes, 6 * (size + ENTRY_OVERHEAD));

  // The operator's remedy: revoke (stops new uploads), then purge (frees what it holds now).
  await relay.operator.revokeKey(flooder.apiKeyId);
  const { stdout } = await promisify(execFile)(process.execPath, [
    cliPath, 'keys', 'purge', flooder.apiKeyId, '--relay', relay.url, '--operator-key-file', path.join(path.dirname(relay.stateDir), 'operator.key'),
  ]);
  assert.equal(stdout.trim(), `purged ${flooder.apiKeyId}: 5 envelopes, ${5 * (size + ENTRY_OVERHEAD)} bytes burned`);

  const stats = await relay.operator.stats();
  assert.equal(stats.byKey[flooder.apiKeyId], undefined, 'held bytes back to 0 for the purged key');
  assert.equal(stats.byKey[other.apiKeyId]?.heldBytes, size + ENTRY_OVERHEAD);
  assert.equal(stats.memory.heldBytes, size + ENTRY_OVERHEAD);
  assert.deepEqual([stats.envelopes.pending, stats.envelopes.purged], [1, 5]);
  const audit = (await relay.operator.audit({ key: flooder.apiKeyId })).filter((e) => e.event === 'key_purged');
  assert.deepEqual(audit.map((e) => [e.outcome, e.count, e.size]), [['ok', 5, 5 * (size + ENTRY_OVERHEAD)]]);
  // The other tenant's envelope is still delivered.
  const lease = await receiver.client.lease(receiver.recipientKeyId);
  assert.ok(lease);
  await receiver.client.ack(lease.leaseId);
  assert.equal(await relay.stop(), 0);
});
