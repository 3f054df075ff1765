/**
 * The MQTT tap against a real Debian mosquitto (started per test group on free loopback ports).
 * A plain mqtt.js client publishes; the tap is built from YAML-shaped config through the schema.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { silentLogger } from '../../common/log.js';
import { validate } from '../../common/schema.js';
import { followedTap } from '../../test/helpers/followed-tap.js';
import { connectTestClient, startMosquitto, type MosquittoBroker } from '../../test/helpers/mosquitto.js';
import { settlesAtOnce, until as waitFor } from '../../test/helpers/wait.js';
import type { Reading, Tap, TapState } from '../tap.js';
import { createMqttTap, mqttTapSchema, type MqttTapInput } from './index.js';

/** A tap from raw (YAML-like) config, with its events and logs recorded; stopped by cleanup(). */
interface TestTap {
  tap: Tap;
  events: { state: TapState; reason?: string }[];
  logs: () => string;
  read: (point: string) => Promise<Reading>;
}

/** Processed settings at the agent's default interval, 15 s (in the agent, createTap passes the tap's effective one). */
function settingsOf(raw: Record<string, unknown>): MqttTapInput {
  return { interval: 15_000, ...validate(mqttTapSchema, raw) };
}

const started: Tap[] = [];
async function makeTap(raw: Record<string, unknown>): Promise<TestTap> {
  const config = settingsOf({ name: 'mqtt-test', type: 'mqtt', reconnect: { initial: '100ms', max: '500ms' }, connectTimeout: '2s', ...raw });
  // Followed as the agent follows it: the events are the agent's `tap up`/`tap down` lines.
  const { tap, transitions: events, text } = followedTap((logger) => createMqttTap(config, { logger }));
  started.push(tap);
  await tap.start();
  const read = async (point: string) => {
    const readings = await tap.collect(Date.now() + 1000);
    const reading = readings.find((r) => r.point === point);
    assert.ok(reading, `no reading for ${point}`);
    return reading;
  };
  return { tap, events, logs: text, read };
}

async function stopAll(): Promise<void> {
  await Promise.all(started.splice(0).map((tap) => tap.stop()));
}

async function waitUp(t: TestTap): Promise<void> {
  await waitFor('tap up', () => t.tap.status().state === 'up');
}

/**
 * Waits until the broker granted every point's subscription (SUBACK): until then a point's
 * reason is "not subscribed yet to … (waiting for SUBACK)" and a message published now could be
 * missed. Subscriptions are sent right after CONNACK.
 */
async function waitSubscribed(t: TestTap): Promise<void> {
  await waitFor('every subscription granted (SUBACK)', async () => {
    const readings = await t.tap.collect(Date.now() + 1000);
    return readings.every((r) => !/not subscribed yet/.test(r.reason ?? '')) ? true : undefined;
  });
}

/** Waits until the point has a good reading satisfying `check` (value as expected). */
async function waitValue(t: TestTap, point: string, expected: unknown): Promise<Reading> {
  return waitFor(`${point} = ${String(expected)}`, async () => {
    const reading = await t.read(point);
    return reading.quality !== 'bad' && reading.value === expected ? reading : undefined;
  });
}

async function waitReason(t: TestTap, point: string, pattern: RegExp): Promise<Reading> {
  return waitFor(`${point} reason ${pattern}`, async () => {
    const reading = await t.read(point);
    return reading.reason !== undefined && pattern.test(reading.reason) ? reading : undefined;
  });
}

describe('mqtt tap, MQTT 5 and 3.1.1 against mosquitto', () => {
  let broker: MosquittoBroker;
  let publisher: MqttClient;
  const publish = (topic: string, payload: string | Buffer, retain = false) => publisher.publishAsync(topic, payload, { qos: 1, retain });

  before(async () => {
    broker = await startMosquitto();
    publisher = await connectTestClient(broker.url);
  });
  after(async () => {
    await stopAll();
    await publisher?.endAsync(true);
    await broker?.close();
  });

  test('wildcards, JSON paths and raw payloads (MQTT 5)', async () => {
    const t = await makeTap({
      url: broker.url,
      points: [
        { name: 'temp', topic: 'w/line1/+/temp', json: '$.value', unit: '°C' },
        { name: 'anything', topic: 'w/raw/#' },
        { name: 'nested', topic: 'w/nested', json: "$.sensors[1]['odd key'].v", scale: 10, offset: 1 },
        { name: 'flag', topic: 'w/flag', type: 'boolean' },
        { name: 'mode', topic: 'w/mode', type: 'string', qos: 2 },
        { name: 'stamped', topic: 'w/stamped', json: '$.v', timestamp: '$.ts' },
        { name: 'silent', topic: 'w/silent' },
      ],
    });
    await waitUp(t);
    assert.deepEqual(t.events[0], { tap: 'mqtt-test', state: 'up' });
    await waitSubscribed(t);
    await publish('w/line1/a/temp', '{"value": 21.5}');
    const temp = await waitValue(t, 'temp', 21.5);
    assert.equal(temp.quality, 'good');
    assert.equal(temp.unit, '°C');
    assert.equal(temp.stale, false);
    // A wildcard point yields one reading: the last message on any matching topic.
    await publish('w/line1/b/temp', '{"value": 22}');
    await waitValue(t, 'temp', 22);
    await publish('w/line1/b/extra/temp', '{"value": 99}'); // "+" is one level only
    await publish('w/raw', '1'); // "#" also matches the parent level
    await waitValue(t, 'anything', 1);
    await publish('w/raw/deep/er/topic', '42');
    await waitValue(t, 'anything', 42);
    assert.equal((await t.read('temp')).value, 22);
    await publish('w/nested', JSON.stringify({ sensors: [{}, { 'odd key': { v: 2.5 } }] }));
    await waitValue(t, 'nested', 26);
    await publish('w/flag', 'ON');
    await waitValue(t, 'flag', true);
    await publish('w/mode', 'auto');
    await waitValue(t, 'mode', 'auto');
    await publish('w/stamped', '{"v": 7, "ts": "2020-01-02T03:04:05.000Z"}');
    const stamped = await waitValue(t, 'stamped', 7);
    assert.equal(stamped.sourceTime, Date.parse('2020-01-02T03:04:05.000Z'));
    // The source time is old: the value counts as stale although it just arrived.
    assert.equal(stamped.stale, true);
    assert.equal(stamped.quality, 'uncertain');
    const silent = await t.read('silent');
    assert.equal(silent.quality, 'bad');
    assert.equal(silent.value, null);
    assert.equal(silent.reason, 'no value received yet on w/silent');
    assert.equal(t.tap.status().requests, 1 + 7); // CONNECT + one SUBSCRIBE per filter
    assert.ok(!t.logs().includes('21.5'), 'values stay out of info logs');
    await t.tap.stop();
    await t.tap.stop(); // idempotent
  });

  test('retained messages are there right after subscribing (MQTT 3.1.1)', async () => {
    await publish('r/boiler/pressure', '{"bar": 2.5}', true);
    await publish('r/boiler/state', 'running', true);
    const t = await makeTap({
      url: broker.url,
      protocolVersion: 4,
      points: [
        { name: 'pressure', topic: 'r/+/pressure', json: '$.bar' },
        { name: 'state', topic: 'r/#', type: 'string' },
      ],
    });
    await waitUp(t);
    const pressure = await waitValue(t, 'pressure', 2.5);
    assert.equal(pressure.quality, 'good');
    // "r/#" matches both retained topics; the last delivered wins (mosquitto sends them in topic order).
    const state = await waitFor('state', async () => ((await t.read('state')).quality !== 'bad' ? t.read('state') : undefined));
    assert.ok(state.value === 'running' || state.value === '{"bar": 2.5}');
    await publish('r/boiler/pressure', '{"bar": 3}');
    await waitValue(t, 'pressure', 3);
    await t.tap.stop();
    await publish('r/boiler/pressure', '', true); // clear the retained messages for other tests
    await publish('r/boiler/state', '', true);
  });

  test('retained messages are there right after subscribing (MQTT 5), an old one is stale at once', async () => {
    const publishedAt = Date.now() - 3_600_000;
    await publish('r5/boiler/pressure', '{"bar": 4.5}', true);
    await publish('r5/boiler/state', 'idle', true);
    await publish('r5/boiler/old', JSON.stringify({ v: 9, ts: publishedAt }), true);
    const startedAt = Date.now();
    const t = await makeTap({
      url: broker.url,
      protocolVersion: 5,
      staleAfter: '60s',
      points: [
        { name: 'pressure', topic: 'r5/+/pressure', json: '$.bar' },
        { name: 'state', topic: 'r5/boiler/state', type: 'string' },
        { name: 'old', topic: 'r5/boiler/old', json: '$.v', timestamp: '$.ts' },
        { name: 'none', topic: 'r5/boiler/none' },
      ],
    });
    await waitUp(t);
    // Nothing is published after the subscription: these values can only be retained ones.
    const pressure = await waitValue(t, 'pressure', 4.5);
    assert.deepEqual([pressure.quality, pressure.stale, pressure.reason], ['good', false, undefined]);
    assert.ok(pressure.readTime >= startedAt, 'readTime is when the retained message arrived');
    const state = await waitValue(t, 'state', 'idle');
    assert.equal(state.quality, 'good');
    const old = await waitValue(t, 'old', 9);
    assert.deepEqual([old.quality, old.stale, old.sourceTime], ['uncertain', true, publishedAt]);
    assert.match(old.reason ?? '', /^stale: no new value within 60000 ms \(last \d+ ms ago on topic r5\/boiler\/old\)$/);
    const none = await t.read('none');
    assert.deepEqual([none.quality, none.value, none.reason], ['bad', null, 'no value received yet on r5/boiler/none']);
    await publish('r5/boiler/pressure', '{"bar": 5}');
    await waitValue(t, 'pressure', 5);
    await t.tap.stop();
    for (const topic of ['r5/boiler/pressure', 'r5/boiler/state', 'r5/boiler/old']) await publish(topic, '', true);
  });

  test('stale marking: an old value turns uncertain and stale, a new one is good again', async () => {
    const t = await makeTap({ url: broker.url, staleAfter: '300ms', points: [{ name: 'level', topic: 's/level' }] });
    await waitUp(t);
    await waitSubscribed(t);
    await publish('s/level', '10');
    const fresh = await waitValue(t, 'level', 10);
    assert.deepEqual([fresh.quality, fresh.stale], ['good', false]);
    const stale = await waitReason(t, 'level', /^stale: no new value within 300 ms \(last \d+ ms ago on topic s\/level\)$/);
    assert.deepEqual([stale.quality, stale.stale, stale.value], ['uncertain', true, 10]);
    assert.equal(stale.readTime, fresh.readTime, 'readTime is when the message arrived');
    await publish('s/level', '11');
    const again = await waitValue(t, 'level', 11);
    assert.deepEqual([again.quality, again.stale, again.reason], ['good', false, undefined]);
    await t.tap.stop();
  });

  test('malformed payloads mark the point bad with topic and path, never crash, and recover', async () => {
    const t = await makeTap({
      url: broker.url,
      points: [
        { name: 'json', topic: 'm/+/json', json: '$.data.value' },
        { name: 'raw', topic: 'm/raw' },
      ],
    });
    await waitUp(t);
    await waitSubscribed(t);
    await publish('m/a/json', '{"data": {"value": SECRET-PAYLOAD');
    await waitReason(t, 'json', /^payload on topic m\/a\/json is not valid JSON \(path \$\.data\.value\)$/);
    await publish('m/b/json', '{"data": {}}');
    await waitReason(t, 'json', /^\$\.data\.value not found in payload on topic m\/b\/json \(path \$\.data\.value\)$/);
    await publish('m/b/json', '{"data": {"value": {"nested": 1}}}');
    await waitReason(t, 'json', /^\$\.data\.value on topic m\/b\/json is an object, not a value$/);
    await publish('m/raw', 'SECRET-TEXT');
    const raw = await waitReason(t, 'raw', /^payload on topic m\/raw is not a number$/);
    assert.deepEqual([raw.quality, raw.value], ['bad', null]);
    await publish('m/raw', Buffer.from([0xc3, 0x28]));
    await waitReason(t, 'raw', /^payload on topic m\/raw is not valid UTF-8$/);
    assert.equal(t.tap.status().state, 'up');
    await publish('m/c/json', '{"data": {"value": 5}}');
    await waitValue(t, 'json', 5);
    await publish('m/raw', '6');
    await waitValue(t, 'raw', 6);
    assert.match(t.logs(), /"msg":"mqtt point bad"/);
    assert.match(t.logs(), /"msg":"mqtt point recovered"/);
    assert.ok(!t.logs().includes('SECRET'), 'payloads never appear in logs');
    await t.tap.stop();
  });

  test('oversized message: bad with a clear reason, then recovers', async () => {
    const t = await makeTap({ url: broker.url, maxMessageSize: '1KiB', points: [{ name: 'blob', topic: 'o/blob', type: 'string' }] });
    await waitUp(t);
    await waitSubscribed(t);
    await publish('o/blob', 'x'.repeat(2048));
    const big = await waitReason(t, 'blob', /over/);
    assert.equal(big.reason, 'message on topic o/blob is 2048 bytes, over the 1024 byte limit (maxMessageSize)');
    assert.equal(big.quality, 'bad');
    await publish('o/blob', 'small');
    await waitValue(t, 'blob', 'small');
    await t.tap.stop();
  });

  test('unreachable broker: tap down with the reason, points bad, collect still resolves', async () => {
    const t = await makeTap({ url: 'mqtt://127.0.0.1:1', points: [{ name: 'p', topic: 'u/p' }] });
    const down = await waitFor('down event', () => t.events.find((e) => e.state === 'down'));
    assert.match(down.reason ?? '', /ECONNREFUSED 127\.0\.0\.1:1/);
    // A down tap answers from what it holds: no request, no timer (the driver's collect).
    const collected = t.tap.collect(Date.now() + 1000);
    assert.equal(await settlesAtOnce(collected), true, 'collect of a down tap resolves at once');
    const reading = (await collected).find((r) => r.point === 'p')!;
    assert.deepEqual([reading.quality, reading.value], ['bad', null]);
    assert.match(reading.reason ?? '', /^broker down: connect ECONNREFUSED 127\.0\.0\.1:1; no value received yet on u\/p$/);
    await t.tap.stop();
  });
});

describe('mqtt tap, broker restart', () => {
  let broker: MosquittoBroker;
  after(async () => {
    await stopAll();
    await broker?.close();
  });

  test('points are bad while the broker is down, even fresh ones; backoff reconnect; good again after retained re-delivery', async () => {
    broker = await startMosquitto();
    const t = await makeTap({
      url: broker.url,
      clientId: 'ghostpipe-restart-test',
      staleAfter: '60s', // nothing turns stale by age in this test: only the outage makes points bad
      reconnect: { initial: '100ms', max: '400ms' },
      points: [
        { name: 'seen', topic: 'b/seen', json: '$.v', timestamp: '$.ts', unit: 'bar' },
        { name: 'never', topic: 'b/never' },
      ],
    });
    await waitUp(t);
    await waitSubscribed(t);
    let publisher = await connectTestClient(broker.url);
    const firstSourceTime = Date.now() - 1000;
    await publisher.publishAsync('b/seen', JSON.stringify({ v: 1, ts: firstSourceTime }), { qos: 1 });
    const good = await waitValue(t, 'seen', 1);
    assert.deepEqual([good.quality, good.stale], ['good', false]);
    await publisher.endAsync(true);

    const outageAt = Date.now();
    await broker.stop();
    const down = await waitFor('down', () => (t.tap.status().state === 'down' ? t.tap.status() : undefined));
    assert.ok(down.reason, 'down with a reason');
    const requestsAtDown = t.tap.status().requests;
    // The value is 1 s old with staleAfter 60 s, yet the tap is down: bad, value null, and the
    // times of the last message stay so the receiver sees since when the point is unknown.
    const seen = await t.read('seen');
    assert.deepEqual([seen.quality, seen.value, seen.unit], ['bad', null, 'bar']);
    assert.match(seen.reason ?? '', /^broker down: .+; last message \d+ ms ago on topic b\/seen$/);
    assert.equal(seen.readTime, good.readTime);
    assert.equal(seen.sourceTime, firstSourceTime);
    const never = await t.read('never');
    assert.deepEqual([never.quality, never.value], ['bad', null]);
    assert.match(never.reason ?? '', /^broker down: .+; no value received yet on b\/never$/);
    // Backoff 100, 200, 400, 400 … ms (±20 %, capped at reconnect.max 400 ms): attempt k waits at
    // least 80, 160, 320, 320 … ms after the one before (common/backoff.ts). A timer never fires
    // early, so however loaded the machine, `elapsed` ms after the outage allow at most as many
    // attempts as those floors fit: a backoff, not a tight loop.
    await waitFor('4 reconnect attempts', () => t.tap.status().requests - requestsAtDown >= 4);
    const elapsed = Date.now() - outageAt;
    const attempts = t.tap.status().requests - requestsAtDown;
    const floors = (n: number) => Array.from({ length: n }, (_, k) => [80, 160][k] ?? 320).reduce((a, b) => a + b, 0);
    assert.ok(floors(attempts) <= elapsed, `${attempts} reconnect attempts within ${elapsed} ms of the outage: faster than the backoff allows`);
    assert.match(t.logs(), /"msg":"tap down"/);
    // Still bad after many failed attempts, with the current reason.
    assert.match((await t.read('seen')).reason ?? '', /^broker down: connect ECONNREFUSED 127\.0\.0\.1:\d+; last message/);

    await broker.start();
    await waitUp(t);
    assert.deepEqual(t.events.map((e) => e.state), ['up', 'down', 'up']);
    // Connected again, but what was published during the outage is lost: the old value comes
    // back uncertain and stale (not good) until a new message arrives.
    const resumed = await waitFor('seen subscribed again', async () => {
      const reading = await t.read('seen');
      return reading.quality !== 'bad' ? reading : undefined;
    });
    assert.deepEqual([resumed.quality, resumed.stale, resumed.value], ['uncertain', true, 1]);
    assert.match(resumed.reason ?? '', /^stale: no new value since the broker connection was re-established \(last \d+ ms ago on topic b\/seen\)$/);

    publisher = await connectTestClient(broker.url);
    await publisher.publishAsync('b/seen', JSON.stringify({ v: 2, ts: Date.now() }), { qos: 1, retain: true });
    await publisher.publishAsync('b/never', '3', { qos: 1 });
    assert.equal((await waitValue(t, 'seen', 2)).quality, 'good');
    assert.equal((await waitValue(t, 'never', 3)).quality, 'good');

    // Another client takes over the tap's client id: the broker drops the tap (mosquitto 2.0
    // just closes the socket). On reconnect the retained value is delivered again: good.
    const takeoverAt = Date.now();
    const takeover = await connectTestClient(broker.url, { clientId: 'ghostpipe-restart-test' });
    await takeover.endAsync(true);
    const kicked = await waitFor('takeover down', () => t.events.slice(3).find((e) => e.state === 'down'));
    assert.match(kicked.reason ?? '', /^(connection to mqtt:\/\/127\.0\.0\.1:\d+ closed|broker sent DISCONNECT \(reason code 142.*\))$/);
    await waitFor('up after takeover', () => t.events.slice(4).some((e) => e.state === 'up'));
    const redelivered = await waitFor('seen re-delivered', async () => {
      const reading = await t.read('seen');
      return reading.readTime > takeoverAt && reading.quality !== 'bad' ? reading : undefined;
    });
    assert.deepEqual([redelivered.quality, redelivered.stale, redelivered.value, redelivered.reason], ['good', false, 2, undefined]);
    // "never" had no retained message: its value is from the earlier connection.
    const notRetained = await t.read('never');
    assert.deepEqual([notRetained.quality, notRetained.stale, notRetained.value], ['uncertain', true, 3]);

    await publisher.publishAsync('b/seen', '', { qos: 1, retain: true });
    await publisher.endAsync(true);
    await t.tap.stop();
  });
});

describe('mqtt tap, TLS with a test CA and username/password', () => {
  let broker: MosquittoBroker;
  let dir: string;
  before(async () => {
    broker = await startMosquitto({ tls: true, users: [{ username: 'agent', password: 'correct horse' }] });
    dir = broker.dir;
    await writeFile(path.join(dir, 'good.pw'), 'correct horse\n', { mode: 0o600 });
    await writeFile(path.join(dir, 'bad.pw'), 'wrong horse\n', { mode: 0o600 });
  });
  after(async () => {
    await stopAll();
    await broker?.close();
  });

  test('TLS (verified against the test CA, servername) with username/password: values flow', async () => {
    const tls = broker.tls!;
    const t = await makeTap({
      url: tls.url,
      username: 'agent',
      passwordFile: path.join(dir, 'good.pw'),
      tls: { caFile: tls.caFile, certFile: tls.clientCertFile, keyFile: tls.clientKeyFile, servername: tls.serverName },
      points: [{ name: 'secure', topic: 'tls/value' }],
    });
    await waitUp(t);
    await waitSubscribed(t);
    const publisher = await connectTestClient(tls.url, { ca: await readFile(tls.caFile), servername: 'localhost', username: 'agent', password: 'correct horse' });
    await publisher.publishAsync('tls/value', '5', { qos: 1 });
    await waitValue(t, 'secure', 5);
    await publisher.endAsync(true);
    assert.ok(!t.logs().includes('correct horse'));
    await t.tap.stop();
  });

  test('TLS without the test CA: down, certificate not trusted', async () => {
    const t = await makeTap({ url: broker.tls!.url, username: 'agent', passwordFile: path.join(dir, 'good.pw'), points: [{ name: 'p', topic: 'x' }] });
    const down = await waitFor('down event', () => t.events.find((e) => e.state === 'down'));
    assert.match(down.reason ?? '', /^TLS: self[- ]signed certificate in certificate chain \(SELF_SIGNED_CERT_IN_CHAIN\)$/);
    assert.equal(t.tap.status().state, 'down');
    await t.tap.stop();
    const tls = broker.tls!;
    const wrongName = await makeTap({ url: tls.url, tls: { caFile: tls.caFile, servername: 'plc.example' }, points: [{ name: 'p', topic: 'x' }] });
    const refused = await waitFor('down event', () => wrongName.events.find((e) => e.state === 'down'));
    assert.match(refused.reason ?? '', /^TLS: Hostname\/IP does not match certificate's altnames: .*\(ERR_TLS_CERT_ALTNAME_INVALID\)$/);
    await wrongName.tap.stop();
  });

  test('wrong password (MQTT 5 and 3.1.1): tap down with a clear reason, password never logged', async () => {
    for (const protocolVersion of [5, 4]) {
      const t = await makeTap({ url: broker.url, protocolVersion, username: 'agent', passwordFile: path.join(dir, 'bad.pw'), points: [{ name: 'p', topic: 'x' }] });
      const down = await waitFor('down event', () => t.events.find((e) => e.state === 'down'));
      assert.match(down.reason ?? '', /^broker refused the connection: (Bad User Name or Password|Not authorized|Bad username or password) \(check username, passwordFile and the broker ACL\)$/i, `v${protocolVersion}`);
      assert.match((await t.read('p')).reason ?? '', /broker down: broker refused the connection/);
      assert.ok(!t.logs().includes('wrong horse'));
      assert.match(t.logs(), /"msg":"tap down"/);
      await t.tap.stop();
    }
  });

  test('missing password file: down naming the setting and file', async () => {
    const missing = path.join(dir, 'nope.pw');
    const t = await makeTap({ url: broker.url, username: 'agent', passwordFile: missing, points: [{ name: 'p', topic: 'x' }] });
    const down = await waitFor('down event', () => t.events.find((e) => e.state === 'down'));
    assert.equal(down.reason, `cannot read passwordFile ${missing}: ENOENT`);
    await t.tap.stop();
  });
});

test('a tap that is never started or stopped twice does not hang', async () => {
  const tap = createMqttTap(settingsOf({ name: 'idle', type: 'mqtt', url: 'mqtt://127.0.0.1:1', points: [{ name: 'p', topic: 'a' }] }), { logger: silentLogger() });
  const { details, ...status } = tap.status();
  assert.deepEqual(status, { state: 'down', reason: 'not started', requests: 0, peer: 'mqtt://127.0.0.1:1' });
  assert.match(details?.['clientId'] ?? '', /^ghostpipe-idle-[0-9a-f]{8}$/, 'the client id the up line names');
  const [reading] = await tap.collect(Date.now());
  assert.deepEqual([reading?.quality, reading?.value, reading?.reason], ['bad', null, 'broker down: not started; no value received yet on a']);
  await tap.stop();
  await tap.stop();
});
