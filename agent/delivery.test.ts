import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Delivery, frameRanges } from './delivery.js';
import { RelayClient } from '../common/relay-client.js';
import { createLogger } from '../common/log.js';
import { generatePrivateKey } from '../protocol/keys.js';
import { AEAD, DEFAULT_BUCKETS, KEM } from '../protocol/envelope/constants.js';
import { encodeFrames } from '../protocol/frame.js';
import { until } from '../test/helpers/wait.js';

test('frameRanges: runs of consecutive frame numbers, duplicates once, any order', () => {
  assert.equal(frameRanges([]), '');
  assert.equal(frameRanges([7n]), '7');
  assert.equal(frameRanges([3n, 1n, 2n, 7n, 9n, 8n, 2n]), '1-3,7-9');
  assert.equal(frameRanges([30002n, 30004n]), '30002,30004');
  assert.equal(frameRanges([2n ** 63n - 1n, 2n ** 63n - 2n]), '9223372036854775806-9223372036854775807');
});

/**
 * A relay stand-in (a real HTTP server on loopback) that reads each upload and answers 201 when
 * `release` is called (or at once when `holdAnswers` is false), and a Delivery that uploads to it.
 */
async function standIn(maxBytes: number, holdAnswers: boolean) {
  const uploads: Buffer[] = [];
  const held: Array<() => void> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v2/envelopes') return void res.writeHead(404).end();
      uploads.push(Buffer.concat(chunks));
      const answer = () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'x', leafIndex: uploads.length - 1, size: 1 }));
      if (holdAnswers) held.push(answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
  const signing = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  let envelopeSequence = 0n;
  const delivery = new Delivery({
    client: new RelayClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: 'pgp_test', timeoutMs: 30_000 }),
    sender: { seed: signing.seed, publicKey: signing.publicKey },
    recipients: [{ name: 'it', kemId: KEM.XWING, publicKey: kem.publicKey, keyId: 'aa' }],
    streamId: 1,
    buckets: DEFAULT_BUCKETS,
    aeadId: AEAD.AES256GCM,
    maxBytes,
    statusIntervalMs: 3_600_000,
    quotaRetryMs: 1000,
    nextEnvelopeSequence: () => ++envelopeSequence,
    logger: createLogger('delivery', 'debug', sink),
  });
  delivery.enabled = true;
  const close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return { delivery, uploads, held, lines, close };
}

/** A one-frame batch with one reading of `size` characters. */
const frame = (sequence: bigint, size: number) => ({ sequence, batch: encodeFrames([{ sequence, time: 0, intervalMs: 1000, readings: [{ tap: 't', point: 'p', quality: 'good', value: 'v'.repeat(size), readTime: 0 }] }]) });

test('the full backlog drops the oldest envelope while its upload is under way: logged as in doubt, not tracked, nothing resurrected', async () => {
  // A sealed one-frame envelope is padded to 4 KiB; each queued frame is about 1 kB.
  const { delivery, uploads, held, lines, close } = await standIn(5000, true);
  try {
    delivery.enqueue(frame(1n, 1000));
    const pumped = delivery.pump();
    await until('the upload of frame 1 under way', () => held.length === 1);
    for (let s = 2n; s <= 4n; s++) delivery.enqueue(frame(s, 1000)); // 4 KiB in flight + 1 kB > 5,000 B: the oldest goes
    const drop = lines.find((l) => String(l['msg']).startsWith('backlog full: dropped'));
    assert.ok(drop, 'a drop was logged');
    assert.deepEqual(drop['frames'], ['1']);
    assert.equal(drop['uncertain'], true, 'its upload is under way: it may arrive');
    held.shift()!(); // frame 1's upload is accepted after all
    await until('frames 2-4 uploaded, coalesced', () => held.length === 1);
    held.shift()!();
    await pumped;
    assert.equal(lines.filter((l) => l['msg'] === 'delivery failed unexpectedly').length, 0, 'the dropped head is not touched after its upload');
    assert.equal(delivery.stats.droppedFrames, 1);
    assert.equal(delivery.stats.queuedFrames, 0);
    assert.equal(uploads.length, 2, 'frame 1 once, then 2-4 together: nothing re-sent');
    assert.deepEqual(delivery.backlogFrames().undelivered, [2n, 3n, 4n], 'frame 1 is not tracked; 2-4 are');
  } finally {
    await close();
  }
});

test('a coalesced envelope is padded to at most half the backlog: draining a full backlog drops nothing', async () => {
  // 40 frames of about 3 kB wait in a 160 KiB backlog; one envelope of all of them would be padded
  // to the 1 MiB bucket and overflow the bound at once. Half the backlog allows the 64 KiB bucket.
  const { delivery, uploads, lines, close } = await standIn(160 * 1024, false);
  try {
    for (let s = 1n; s <= 40n; s++) delivery.enqueue(frame(s, 3000));
    await delivery.pump();
    assert.equal(delivery.stats.droppedFrames, 0);
    assert.equal(delivery.stats.droppedEnvelopes, 0, 'nothing the relay holds was given up either');
    assert.ok(uploads.length >= 2, `${uploads.length} envelopes`);
    for (const u of uploads) assert.ok(u.length <= 80 * 1024, `an envelope of ${u.length} bytes`);
    assert.deepEqual(delivery.backlogFrames().undelivered, Array.from({ length: 40 }, (_, i) => BigInt(i + 1)));
    assert.equal(lines.filter((l) => String(l['msg']).startsWith('backlog full')).length, 0);
  } finally {
    await close();
  }
});
