/**
 * MQTT sink against a real mosquitto, webhook sink against a node:http server (with failures and
 * retries), both fed by `ghostpipe receive` against a real relay.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { cleanupAll, heldFor, makeDevice, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { startMosquitto, connectTestClient, type MosquittoBroker } from '../helpers/mosquitto.js';
import { killAllChildren, receiverConfig, receiverSetup, seal, startReceiverProcess, waitFor } from '../helpers/receiver.js';
import { renderTopic } from '../../receiver/sinks/mqtt.js';
import type { ReadingRecord } from '../../receiver/records.js';

let relay: RelayProcess;
let device: Device;
let broker: MosquittoBroker | undefined;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  device = await makeDevice(relay, 'enterprise');
});

after(async () => {
  await killAllChildren();
  await broker?.close();
  await cleanupAll();
});

test('topic template fills placeholders and neutralises MQTT wildcards', () => {
  const r = { device: 'did:ghostpipe:abc', tap: 'plc/1', point: 'temp+#', stream: 3, quality: 'good' } as unknown as ReadingRecord;
  assert.equal(renderTopic('gp/{device}/{tap}/{point}/{stream}/{quality}', r), 'gp/did:ghostpipe:abc/plc_1/temp__/3/good');
});

test('MQTT sink publishes every reading with QoS 1 to the templated topic', async () => {
  broker = await startMosquitto();
  const observer = await connectTestClient(broker.url);
  const received: { topic: string; payload: Record<string, unknown>; qos: number }[] = [];
  observer.on('message', (topic, payload, packet) => received.push({ topic, payload: JSON.parse(payload.toString('utf8')) as Record<string, unknown>, qos: packet.qos }));
  await observer.subscribeAsync('plant/#', { qos: 1 });
  const setup = await receiverSetup(relay);
  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup, { sinks: [{ type: 'mqtt', url: broker.url, topic: 'plant/{tap}/{point}', qos: 1 }] }));
  for (const seq of [1n, 2n, 3n]) await device.client.upload(seal(device, setup.keys, { seq }));
  await waitFor('6 MQTT messages', () => received.length >= 6, 20_000, proc.output);
  assert.deepEqual(received.map((m) => m.topic).sort(), ['plant/plc1/count-1', 'plant/plc1/count-2', 'plant/plc1/count-3', 'plant/plc1/temp-1', 'plant/plc1/temp-2', 'plant/plc1/temp-3']);
  const count = received.find((m) => m.topic === 'plant/plc1/count-2')!;
  assert.equal(count.qos, 1);
  assert.deepEqual({ v: count.payload['value'], t: count.payload['type'], d: count.payload['device'], s: count.payload['seq'] }, { v: '18446744073709551615', t: 'bigint', d: device.did, s: '2' });

  // Broker down: nothing is acknowledged; after it comes back, the envelope is delivered.
  await broker.stop();
  await device.client.upload(seal(device, setup.keys, { seq: 4n }));
  await waitFor('sink failure logged', () => proc.logs().some((l) => l['reason'] === 'sink_failed'), 10_000, proc.output);
  // Pending and leased in one answer: two requests (the inbox, then the relay-wide leased count)
  // could each miss an envelope that moved between them (run N under load: it did).
  assert.ok((await heldFor(relay, setup.keys.recipientKeyId)) >= 1, 'the envelope the sink could not take is still held');
  await broker.start();
  const observer2 = await connectTestClient(broker.url);
  const late: string[] = [];
  observer2.on('message', (topic) => late.push(topic));
  await observer2.subscribeAsync('plant/#', { qos: 1 });
  await waitFor('seq 4 delivered after the broker came back', () => late.includes('plant/plc1/temp-4') && late.includes('plant/plc1/count-4'), 20_000, proc.output);
  await observer.endAsync(true).catch(() => undefined);
  await observer2.endAsync();
  assert.equal(await proc.kill(), 0);
});

test('webhook sink POSTs one JSON batch per envelope, retries failures, acks only on 2xx', async () => {
  const batches: { body: { readings: Record<string, unknown>[] }; auth: string | undefined }[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests++;
      if (requests <= 2) {
        res.writeHead(requests === 1 ? 503 : 500).end(); // two failures first: the sink retries
        return;
      }
      batches.push({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { readings: Record<string, unknown>[] }, auth: req.headers['authorization'] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const setup = await receiverSetup(relay);
    const { writeFile } = await import('node:fs/promises');
    const tokenFile = `${setup.dir}/webhook.token`;
    await writeFile(tokenFile, 'test-token-123\n', { mode: 0o600 });
    const proc = await startReceiverProcess(setup, receiverConfig(relay, setup, {
      sinks: [{ type: 'webhook', url: `http://127.0.0.1:${port}/ingest`, timeout: '2s', retries: 3, bearerTokenFile: tokenFile }],
    }));
    for (const seq of [10n, 11n]) await device.client.upload(seal(device, setup.keys, { seq }));
    await waitFor('two batches', () => batches.length >= 2, 20_000, proc.output);
    assert.equal(requests, 4, 'two failed attempts, then one POST per envelope');
    assert.deepEqual(batches.map((b) => b.body.readings.map((r) => r['point'])), [['temp-10', 'count-10'], ['temp-11', 'count-11']]);
    assert.equal(batches[0]!.auth, 'Bearer test-token-123');
    await waitFor('queue empty', async () => (await heldFor(relay, setup.keys.recipientKeyId)) === 0);
    assert.doesNotMatch(proc.output(), /test-token-123/);
    assert.equal(await proc.kill(), 0);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});
