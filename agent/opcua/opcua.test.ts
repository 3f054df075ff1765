/**
 * The OPC-UA tap against a real node-opcua server in a child process (test/helpers/opcua-server.ts).
 * One server for the whole file (its certificate is generated once), restarted by the recovery test.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { validate } from '../../common/schema.js';
import { followedTap } from '../../test/helpers/followed-tap.js';
import { startOpcuaServer, type OpcuaTestServer, type ServerSessionInfo } from '../../test/helpers/opcua-server.js';
import { settlesAtOnce, until as waitFor } from '../../test/helpers/wait.js';
import type { Reading, Tap, TapState } from '../tap.js';
import { createOpcuaTap, opcuaTapSchema } from './index.js';

let tmp: string;
let server: OpcuaTestServer;
/** One client PKI shared by the tests that trust the server (client certificate made once). */
let clientPki: string;
/** X509 user identities: one the server trusts, one it has never seen. */
let trustedUser: UserCertificate;
let strangerUser: UserCertificate;
const taps: Tap[] = [];

/** The node ids of the non-string forms, as registered on the server (GUID in upper case on purpose). */
const guid = '09087E75-8E5E-499B-954F-F2A9603DB28A';
const opaque = 'TWFjaGluZTE='; // base64 of "Machine1"

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'ghostpipe-opcua-'));
  trustedUser = makeUserCertificate('trusted-user');
  strangerUser = makeUserCertificate('stranger');
  server = await startOpcuaServer({
    pkiDir: tmp,
    variables: [
      { name: 'Temperature', value: 21.5 },
      { name: 'Pressure', value: 1.25 },
      { name: 'Level', value: 50 },
      { name: 'Flow', value: 10 },
      { name: 'Broken', value: 0, status: 'BadSensorFailure' },
      { name: 'Drifting', value: 3, status: 'UncertainLastUsableValue' },
      { name: 'GuidTank', value: 11.5, nodeId: `g=${guid}` },
      { name: 'OpaqueValve', value: 12.5, nodeId: `b=${opaque}` },
      { name: 'NumericFlow', value: 13.5, nodeId: 'i=4242' },
      // The same numeric identifier in the server's own namespace (ns=1), with another value.
      { name: 'ServerCounter', value: 14.5, nodeId: 'i=4242', namespace: 'server' },
      { name: 'Burst', value: 0 },
      // A string id that looks like another node id after "s=": legal, and a trap for parsers.
      { name: 'TrickyString', value: 15.5, nodeId: 's=Tank;ns=1;i=4242' },
    ],
    users: [{ username: 'operator', password: 'correct horse' }],
    trustedUserCertificates: [trustedUser.certificateFile],
  });
  clientPki = path.join(tmp, 'client-pki');
  trustServer(clientPki);
});

after(async () => {
  await Promise.all(taps.map((t) => t.stop()));
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface UserCertificate { certificateFile: string; privateKeyFile: string }

/** A self-signed X509 user certificate (RSA 2048, PEM) made with openssl. */
function makeUserCertificate(name: string): UserCertificate {
  const certificateFile = path.join(tmp, `${name}.pem`);
  const privateKeyFile = path.join(tmp, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment',
    '-addext', `subjectAltName=URI:urn:ghostpipe:${name}`,
    '-keyout', privateKeyFile, '-out', certificateFile,
  ], { stdio: 'ignore' });
  return { certificateFile, privateKeyFile };
}

/** The server's view of the session a tap opened (the tap names it ghostpipe-<tap name><n>). */
async function serverSessionOf(tapName: string): Promise<ServerSessionInfo> {
  const pattern = new RegExp(`^ghostpipe-${tapName.replace(/[.]/g, '\\.')}\\d+$`); // node-opcua appends a counter
  return waitFor(`server session of ${tapName}`, async () => {
    const sessions = (await server.sessions()).filter((s) => pattern.test(s.name));
    assert.ok(sessions.length <= 1, `one live session per tap, found ${sessions.length}`);
    return sessions[0];
  });
}

function trustServer(pkiDir: string) {
  mkdirSync(path.join(pkiDir, 'trusted', 'certs'), { recursive: true });
  cpSync(server.certificateFile, path.join(pkiDir, 'trusted', 'certs', 'test-server.pem'));
}

interface Harness {
  tap: Tap;
  lines: Record<string, unknown>[];
  events: { state: TapState; reason?: string }[];
}

/**
 * A tap from raw config (checked and processed by the real schema) at the agent's default
 * interval, 15 s (in the agent, createTap passes the tap's effective one), with its log lines
 * and events captured.
 */
function makeTap(raw: Record<string, unknown>): Harness {
  const config = { interval: 15_000, ...validate(opcuaTapSchema, {
    name: 'plc',
    type: 'opcua',
    endpoint: server.endpoint,
    securityMode: 'None',
    pkiDir: clientPki,
    timeout: '2s',
    ...raw,
  }) };
  // Short reconnect backoff so recovery is observable within the test budget. Followed as the
  // agent follows it: the events are the agent's `tap up`/`tap down` lines.
  const { tap, lines, transitions: events } = followedTap((logger) => createOpcuaTap(config, { logger, backoff: { initialMs: 100, maxMs: 500 } }));
  taps.push(tap);
  return { tap, lines, events };
}

const byPoint = (readings: Reading[]) => Object.fromEntries(readings.map((r) => [r.point, r]));
const collectNow = (tap: Tap) => tap.collect(Date.now() + 2000).then(byPoint);
const waitUp = (tap: Tap) => waitFor('tap up', () => (tap.status().state === 'up' ? true : undefined));

describe('read mode', () => {
  test('one batched read returns every point with quality, reason and both timestamps', async () => {
    const { tap, events } = makeTap({
      points: [
        { name: 'temp', nodeId: 'ns=2;s=Temperature', unit: '°C' },
        { name: 'pressure', nodeId: `nsu=${server.namespaceUri};s=Pressure` },
        { name: 'broken', nodeId: 'ns=2;s=Broken' },
        { name: 'drifting', nodeId: 'ns=2;s=Drifting' },
        { name: 'missing', nodeId: 'ns=2;s=DoesNotExist' },
        { name: 'clock', nodeId: 'i=2258' },
        { name: 'other-ns', nodeId: 'nsu=urn:not-on-this-server;i=1' },
      ],
    });
    const before = await tap.collect(Date.now() + 500);
    assert.equal(before.length, 7);
    assert.ok(before.every((r) => r.quality === 'bad' && r.reason === 'not started'), 'bad before start');
    // The import of node-opcua (seconds on a loaded CI box) happens here, outside waitUp's budget.
    await tap.prepare!();
    await tap.start();
    await waitUp(tap);
    assert.deepEqual(events.at(-1), { tap: 'plc', state: 'up' });
    const requestsBefore = tap.status().requests;
    const r = await collectNow(tap);
    assert.equal(tap.status().requests, requestsBefore + 1, 'exactly one read request per collect');
    assert.equal(r.temp!.quality, 'good');
    assert.equal(r.temp!.value, 21.5);
    assert.equal(r.temp!.unit, '°C');
    assert.equal(typeof r.temp!.sourceTime, 'number');
    assert.equal(typeof r.temp!.serverTime, 'number');
    assert.equal(r.pressure!.value, 1.25, 'nsu= form resolved through the NamespaceArray');
    assert.deepEqual([r.broken!.quality, r.broken!.value, r.broken!.reason], ['bad', null, 'BadSensorFailure']);
    assert.deepEqual([r.drifting!.quality, r.drifting!.value, r.drifting!.reason], ['uncertain', 3, 'UncertainLastUsableValue']);
    assert.deepEqual([r.missing!.quality, r.missing!.reason], ['bad', 'BadNodeIdUnknown']);
    assert.equal(r.clock!.quality, 'good');
    assert.ok(Math.abs((r.clock!.value as number) - Date.now()) < 60_000, 'DateTime becomes ms since epoch');
    assert.deepEqual([r['other-ns']!.quality, r['other-ns']!.reason], ['bad', "namespace URI urn:not-on-this-server is not in the server's NamespaceArray"]);

    await server.set('Temperature', 30.25);
    assert.equal((await collectNow(tap)).temp!.value, 30.25);
    await server.set('Temperature', 21.5);
    await tap.stop();
    await tap.stop(); // idempotent
    const stopped = await tap.collect(Date.now() + 100);
    assert.ok(stopped.every((r) => r.quality === 'bad'));
  });

  test('an already passed deadline resolves at once with bad readings', async () => {
    const { tap } = makeTap({ points: [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }] });
    await tap.start();
    await waitUp(tap);
    const requests = tap.status().requests;
    const collected = tap.collect(Date.now() - 1);
    // No read is sent and no timer armed (agent/opcua/driver.ts, budget 0).
    assert.equal(await settlesAtOnce(collected), true, 'resolves at once');
    assert.equal(tap.status().requests, requests, 'no read sent');
    const [reading] = await collected;
    assert.equal(reading!.quality, 'bad');
    assert.match(reading!.reason!, /^timeout after 0 ms$/);
    await tap.stop();
  });

  test('a server that accepts TCP but never answers: collect meets its deadline, stop() cuts the connect short', async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      // timeout 60 s: the connect times out after 3 x 60 s = 180 s (agent/opcua/driver.ts).
      const { tap } = makeTap({ endpoint: `opc.tcp://127.0.0.1:${port}/silent`, timeout: '60s', points: [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }] });
      await tap.start();
      await waitFor('TCP connection', () => (sockets.length > 0 ? true : undefined));
      const deadline = Date.now() + 300;
      // Ordered against a timer at the deadline: the collect is answered first (it does not wait
      // for the connection), whatever the load.
      const collected = tap.collect(deadline);
      const atDeadline = new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), Math.max(0, deadline - Date.now())));
      assert.equal(await Promise.race([collected.then(() => 'collect' as const), atDeadline]), 'collect', 'collect resolved by its deadline');
      const [reading] = await collected;
      assert.deepEqual([reading!.quality, reading!.reason], ['bad', 'connecting']);
      const started = Date.now();
      await tap.stop();
      // A third of the 180 s connect timeout: stop() cut the connect short rather than waiting for it.
      assert.ok(Date.now() - started < 60_000, 'stop() does not wait for the 180 s connect timeout');
      assert.equal(tap.status().state, 'down');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('username login: the password file is read, a wrong password keeps the tap down and is never logged', async () => {
    const passwordFile = path.join(tmp, 'password');
    writeFileSync(passwordFile, 'wrong password\n', { mode: 0o600 });
    const { tap, lines } = makeTap({
      securityMode: 'SignAndEncrypt',
      auth: { type: 'username', username: 'operator', passwordFile },
      points: [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }],
    });
    await tap.start();
    const reason = await waitFor('login refused', () => (tap.status().reason?.includes('Bad') ? tap.status().reason : undefined));
    assert.match(reason!, /BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid/);
    assert.equal((await collectNow(tap)).temp!.quality, 'bad');
    writeFileSync(passwordFile, 'correct horse\n');
    await waitUp(tap);
    assert.equal((await collectNow(tap)).temp!.value, 21.5);
    await tap.stop();
    const text = JSON.stringify(lines);
    assert.ok(!text.includes('correct horse') && !text.includes('wrong password'), 'no password in any log line');
  });
});

describe('node id forms', () => {
  const points = [
    { name: 'guid', nodeId: `ns=2;g=${guid.toLowerCase()}` },
    { name: 'guid-by-uri', nodeId: `nsu=urn:ghostpipe:test;g=${guid}` },
    { name: 'opaque', nodeId: `ns=2;b=${opaque}` },
    { name: 'numeric-ns2', nodeId: 'ns=2;i=4242' },
    { name: 'numeric-ns1', nodeId: 'ns=1;i=4242' },
    { name: 'unknown-guid', nodeId: 'ns=2;g=00000000-0000-0000-0000-000000000001' },
    { name: 'unknown-opaque', nodeId: 'ns=2;b=AAAA' },
    { name: 'tricky-string', nodeId: 'ns=2;s=Tank;ns=1;i=4242' },
  ];

  function assertInitialValues(r: Record<string, Reading>) {
    assert.deepEqual(
      ['guid', 'guid-by-uri', 'opaque', 'numeric-ns2', 'numeric-ns1', 'tricky-string'].map((p) => [p, r[p]!.quality, r[p]!.value]),
      [['guid', 'good', 11.5], ['guid-by-uri', 'good', 11.5], ['opaque', 'good', 12.5], ['numeric-ns2', 'good', 13.5], ['numeric-ns1', 'good', 14.5], ['tricky-string', 'good', 15.5]],
    );
    assert.deepEqual([r['unknown-guid']!.quality, r['unknown-opaque']!.quality], ['bad', 'bad']);
    assert.match(r['unknown-guid']!.reason!, /BadNodeIdUnknown/);
    assert.match(r['unknown-opaque']!.reason!, /BadNodeIdUnknown/);
  }

  test('read mode: GUID, ByteString and numeric ids (ns=1 and ns=2) reach the right variables', async () => {
    const { tap } = makeTap({ points });
    await tap.start();
    await waitUp(tap);
    assertInitialValues(await collectNow(tap));
    await server.set('GuidTank', 31.5);
    await server.set('OpaqueValve', 32.5);
    const r = await collectNow(tap);
    assert.deepEqual([r.guid!.value, r['guid-by-uri']!.value, r.opaque!.value, r['numeric-ns1']!.value], [31.5, 31.5, 32.5, 14.5]);
    await server.set('GuidTank', 11.5);
    await server.set('OpaqueValve', 12.5);
    await tap.stop();
  });

  test('subscribe mode: the same ids are monitored and their changes arrive', async () => {
    const { tap } = makeTap({ name: 'ids', mode: 'subscribe', samplingInterval: '50ms', points });
    await tap.start();
    await waitUp(tap);
    assertInitialValues(await waitFor('initial notifications', async () => {
      const r = await collectNow(tap);
      return r.guid!.quality === 'good' && r.opaque!.quality === 'good' && r['numeric-ns1']!.quality === 'good' ? r : undefined;
    }));
    const monitored = (await serverSessionOf('ids')).subscriptions[0]!.items.map((i) => i.nodeId).sort();
    assert.deepEqual(monitored, [`ns=1;i=4242`, `ns=2;b=${opaque}`, `ns=2;g=${guid}`, `ns=2;g=${guid}`, 'ns=2;i=4242', 'ns=2;s=Tank;ns=1;i=4242'].sort(), 'the server monitors exactly the known nodes');
    await server.set('GuidTank', 41.5);
    await server.set('OpaqueValve', 42.5);
    await server.set('NumericFlow', 43.5);
    const r = await waitFor('changes by subscription', async () => {
      const r = await collectNow(tap);
      return r.guid!.value === 41.5 && r.opaque!.value === 42.5 && r['numeric-ns2']!.value === 43.5 ? r : undefined;
    });
    assert.deepEqual([r['guid-by-uri']!.value, r['numeric-ns1']!.value], [41.5, 14.5]);
    await server.set('GuidTank', 11.5);
    await server.set('OpaqueValve', 12.5);
    await server.set('NumericFlow', 13.5);
    await tap.stop();
  });
});

describe('subscribe mode', () => {
  test('values arrive by subscription; absolute and percent deadbands suppress small changes', async () => {
    const { tap } = makeTap({
      name: 'deadbands',
      mode: 'subscribe',
      samplingInterval: '50ms',
      points: [
        { name: 'temp', nodeId: 'ns=2;s=Temperature' },
        { name: 'level', nodeId: 'ns=2;s=Level', deadband: { type: 'absolute', value: 5 } },
        { name: 'flow', nodeId: 'ns=2;s=Flow', deadband: { type: 'percent', value: 10 } }, // 10 % of EURange 0..100
        { name: 'broken', nodeId: 'ns=2;s=Broken' },
        { name: 'missing', nodeId: 'ns=2;s=DoesNotExist' },
      ],
    });
    await tap.start();
    await waitUp(tap);
    const first = await waitFor('initial notifications', async () => {
      const r = await collectNow(tap);
      return r.temp!.quality === 'good' && r.level!.quality === 'good' && r.flow!.quality === 'good' ? r : undefined;
    });
    assert.deepEqual([first.temp!.value, first.level!.value, first.flow!.value], [21.5, 50, 10]);
    assert.deepEqual([first.broken!.quality, first.broken!.reason], ['bad', 'BadSensorFailure']);
    assert.equal(first.missing!.quality, 'bad');
    assert.match(first.missing!.reason!, /BadNodeIdUnknown/);
    // What the server granted: one subscription, the deadbands and the default queue of 1.
    const [subscription, ...others] = (await serverSessionOf('deadbands')).subscriptions;
    assert.equal(others.length, 0);
    const granted = Object.fromEntries(subscription!.items.map(({ nodeId, ...rest }) => [nodeId, rest]));
    assert.deepEqual(granted['ns=2;s=Level'], { samplingInterval: 50, queueSize: 1, discardOldest: true, deadband: { type: 'absolute', value: 5 } });
    assert.deepEqual(granted['ns=2;s=Flow'], { samplingInterval: 50, queueSize: 1, discardOldest: true, deadband: { type: 'percent', value: 10 } });
    assert.deepEqual(granted['ns=2;s=Temperature'], { samplingInterval: 50, queueSize: 1, discardOldest: true });

    const requests = tap.status().requests;
    // Inside the deadbands: no notification, the old values stay.
    await server.set('Level', 53);
    await server.set('Flow', 19);
    await server.set('Temperature', 22);
    const moved = await waitFor('temperature update', async () => {
      const r = await collectNow(tap);
      return r.temp!.value === 22 ? r : undefined;
    });
    // An absence cannot be waited for; an ordering can: Temperature changes again after the
    // in-deadband changes were made. Once that notification arrived, the server has sampled
    // Temperature twice since, so Level and Flow, on the same 50 ms sampling, were sampled after
    // their changes too.
    await server.set('Temperature', 23);
    await waitFor('second temperature update', async () => ((await collectNow(tap)).temp!.value === 23 ? true : undefined));
    const still = await collectNow(tap);
    assert.equal(moved.level!.value, 50);
    assert.deepEqual([still.level!.value, still.flow!.value], [50, 10], 'changes inside the deadband produce no update');
    // Outside the deadbands: updates arrive.
    await server.set('Level', 56);
    await server.set('Flow', 21);
    const updated = await waitFor('deadband exceeded', async () => {
      const r = await collectNow(tap);
      return r.level!.value === 56 && r.flow!.value === 21 ? r : undefined;
    });
    assert.equal(updated.level!.quality, 'good');
    assert.equal(tap.status().requests, requests, 'collect sends no requests in subscribe mode');

    // A status change to Bad is a notification too.
    await server.set('Temperature', null, 'BadSensorFailure');
    const bad = await waitFor('bad status', async () => {
      const r = await collectNow(tap);
      return r.temp!.quality === 'bad' ? r : undefined;
    });
    assert.equal(bad.temp!.reason, 'BadSensorFailure');
    assert.equal(bad.temp!.value, null);
    await server.set('Temperature', 21.5);
    await server.set('Level', 50);
    await server.set('Flow', 10);
    await tap.stop();
  });
});

describe('subscribe mode: queue', () => {
  test('several changes between two collects: queued values all reach the tap, which reports the last one', async () => {
    // A server that publishes slower than it samples (1 s vs 50 ms), as many do: values queue up
    // on the server between publish responses, and queueSize decides how many survive.
    await server.setMinimumPublishingInterval(1000);
    try {
      const points = [{ name: 'burst', nodeId: 'ns=2;s=Burst' }];
      const queued = makeTap({ name: 'queue-of-5', mode: 'subscribe', samplingInterval: '50ms', queueSize: 5, points });
      const latestOnly = makeTap({ name: 'queue-of-1', mode: 'subscribe', samplingInterval: '50ms', points });
      for (const { tap } of [queued, latestOnly]) await tap.start();
      for (const { tap } of [queued, latestOnly]) {
        await waitFor('initial value', async () => ((await collectNow(tap)).burst!.value === 0 ? true : undefined));
      }
      const queuedSession = await serverSessionOf('queue-of-5');
      const latestSession = await serverSessionOf('queue-of-1');
      assert.deepEqual(queuedSession.subscriptions[0]!.items, [{ nodeId: 'ns=2;s=Burst', samplingInterval: 50, queueSize: 5, discardOldest: true }]);
      assert.equal(queuedSession.subscriptions[0]!.publishingInterval, 1000, 'the server revised 50 ms to its 1 s minimum');
      assert.equal(latestSession.subscriptions[0]!.items[0]!.queueSize, 1);

      const burst = [61, 62, 63, 64, 65];
      const started = Date.now();
      await server.burst('Burst', burst, 200); // 4 sampling intervals apart: the server sees every value
      for (const { tap } of [queued, latestOnly]) {
        const r = await waitFor('last value of the burst', async () => {
          const r = await collectNow(tap);
          return r.burst!.value === 65 ? r : undefined;
        });
        assert.equal(r.burst!.quality, 'good');
        assert.ok(r.burst!.sourceTime! >= started + 4 * 200 - 50, 'the source timestamp is the one of the last change');
      }
      const notified = async (name: string, before: ServerSessionInfo) =>
        (await serverSessionOf(name)).subscriptions[0]!.dataChangeNotifications - before.subscriptions[0]!.dataChangeNotifications;
      // queueSize 5: every value of the burst was sent to the agent, and the tap kept only the last.
      assert.equal(await notified('queue-of-5', queuedSession), burst.length);
      // queueSize 1: the server overwrote the values queued between publish responses.
      const sentWithQueueOfOne = await notified('queue-of-1', latestSession);
      assert.ok(sentWithQueueOfOne >= 1 && sentWithQueueOfOne < burst.length, `queue of 1 sent ${sentWithQueueOfOne} of ${burst.length}`);
      for (const { tap } of [queued, latestOnly]) await tap.stop();
    } finally {
      await server.setMinimumPublishingInterval(50);
      await server.set('Burst', 0);
    }
  });
});

describe('security', () => {
  for (const securityMode of ['Sign', 'SignAndEncrypt'] as const) {
    for (const policy of ['Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'] as const) {
      test(`${securityMode} with ${policy} and a trusted server certificate`, async () => {
        const name = `${securityMode}-${policy}`;
        const { tap, lines } = makeTap({ name, securityMode, securityPolicy: policy, points: [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }] });
        await tap.start();
        await waitUp(tap);
        assert.equal((await collectNow(tap)).temp!.value, 21.5);
        const up = lines.find((l) => l.msg === 'tap up');
        assert.deepEqual([up?.peer, up?.securityMode, up?.securityPolicy], [server.endpoint, securityMode, policy]);
        const session = await serverSessionOf(name);
        assert.deepEqual([session.securityMode, session.securityPolicy, session.userTokenType], [securityMode, policy, 'Anonymous'], 'the server saw this channel');
        await tap.stop();
      });
    }
  }

  test('certificate login: a user certificate the server trusts logs in, an unknown one is refused and the reason says so', async () => {
    const points = [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }];
    const trusted = makeTap({ name: 'x509-trusted', securityMode: 'Sign', auth: { type: 'certificate', ...trustedUser }, points });
    const stranger = makeTap({ name: 'x509-stranger', securityMode: 'Sign', auth: { type: 'certificate', ...strangerUser }, points });
    await trusted.tap.start();
    await stranger.tap.start();

    await waitUp(trusted.tap);
    assert.equal((await collectNow(trusted.tap)).temp!.value, 21.5);
    assert.equal((await serverSessionOf('x509-trusted')).userTokenType, 'Certificate', 'the session is the certificate user, not anonymous');

    const reason = await waitFor('certificate login refused', () => (/Bad/.test(stranger.tap.status().reason ?? '') ? stranger.tap.status().reason : undefined));
    assert.match(reason!, /BadIdentityTokenRejected/);
    const refused = await collectNow(stranger.tap);
    assert.equal(refused.temp!.quality, 'bad');
    assert.match(refused.temp!.reason!, /BadIdentityTokenRejected/, 'the point names the refusal');
    assert.ok(stranger.events.some((e) => e.state === 'down' && /BadIdentityTokenRejected/.test(e.reason ?? '')));
    assert.ok(!stranger.events.some((e) => e.state === 'up'), 'never up with an untrusted user certificate');
    await Promise.all([trusted.tap.stop(), stranger.tap.stop()]);
    const logged = JSON.stringify([...trusted.lines, ...stranger.lines]);
    assert.ok(!logged.includes('PRIVATE KEY'), 'no private key in any log line');
  });

  test('an unknown server certificate is refused, the log says which file to move where, and trusting it recovers', async () => {
    const pkiDir = path.join(tmp, 'fresh-pki');
    const { tap, lines, events } = makeTap({ securityMode: 'SignAndEncrypt', pkiDir, points: [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }] });
    await tap.start();
    const warning = await waitFor('rejection log line', () => lines.find((l) => typeof l.rejectedFile === 'string'));
    const rejectedFile = warning.rejectedFile as string;
    const trustedFolder = path.join(pkiDir, 'trusted', 'certs');
    assert.equal(path.dirname(rejectedFile), path.join(pkiDir, 'rejected'));
    assert.equal(warning.trustedFolder, trustedFolder);
    assert.equal(warning.msg, `server certificate is not trusted: after checking its thumbprint, move ${rejectedFile} to ${trustedFolder}/ to trust it`);
    assert.ok(readdirSync(path.join(pkiDir, 'rejected')).includes(path.basename(rejectedFile)), 'the named file exists');
    assert.equal(tap.status().state, 'down');
    assert.match(tap.status().reason!, /^server certificate untrusted/);
    assert.ok(events.some((e) => e.state === 'down' && /untrusted/.test(e.reason ?? '')));
    const readings = await tap.collect(Date.now() + 500);
    assert.ok(readings.every((r) => r.quality === 'bad'), 'no good readings from an untrusted server');
    assert.ok(!events.some((e) => e.state === 'up'));

    // Follow the instruction of the log line: the next attempt connects.
    renameSync(rejectedFile, path.join(trustedFolder, path.basename(rejectedFile)));
    await waitUp(tap);
    assert.equal((await collectNow(tap)).temp!.value, 21.5);
    await tap.stop();
  });
});

describe('recovery', () => {
  test('read and subscribe mode: points are bad while the server is down, good again after its restart, subscription rebuilt', async () => {
    const points = [{ name: 'temp', nodeId: 'ns=2;s=Temperature' }, { name: 'level', nodeId: 'ns=2;s=Level' }];
    // Both modes against one restart: a server start costs seconds (it loads the standard nodeset).
    const harnesses = [makeTap({ mode: 'read', points }), makeTap({ mode: 'subscribe', samplingInterval: '50ms', points })];
    for (const { tap } of harnesses) await tap.start();
    for (const { tap } of harnesses) await waitFor('good reading', async () => ((await collectNow(tap)).temp!.quality === 'good' ? true : undefined));

    await server.kill();
    for (const { tap, events } of harnesses) {
      const down = await waitFor('bad readings', async () => {
        const r = await collectNow(tap);
        return r.temp!.quality === 'bad' && r.level!.quality === 'bad' ? r : undefined;
      });
      assert.ok(down.temp!.reason, 'a reason is given');
      assert.equal(tap.status().state, 'down');
      assert.ok(events.some((e) => e.state === 'down' && e.reason));
    }

    await server.start(); // a fresh process: the old session and subscription are gone
    for (const { tap, events } of harnesses) {
      await waitUp(tap);
      const after = await waitFor('good after restart', async () => {
        const r = await collectNow(tap);
        return r.temp!.quality === 'good' ? r : undefined;
      });
      assert.equal(after.temp!.value, 21.5);
      assert.deepEqual(events.map((e) => e.state), ['up', 'down', 'up'], 'one line per transition');
    }
    // The rebuilt subscription (and the read) see new changes.
    await server.set('Temperature', 40);
    for (const { tap } of harnesses) await waitFor('change after restart', async () => ((await collectNow(tap)).temp!.value === 40 ? true : undefined));
    await server.set('Temperature', 21.5);
    for (const { tap } of harnesses) await tap.stop();
  });
});

describe('lazy loading', () => {
  test('node-opcua-client is loaded by start(), not by importing the tap module or creating a tap', () => {
    const index = new URL('./index.js', import.meta.url).href;
    const script = `
      import { createRequire } from 'node:module';
      const { createOpcuaTap, opcuaTapSchema } = await import(${JSON.stringify(index)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../../common/log.js', import.meta.url).href)});
      const { validate } = await import(${JSON.stringify(new URL('../../common/schema.js', import.meta.url).href)});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes('node-opcua-client'));
      const settings = validate(opcuaTapSchema, { name: 'x', type: 'opcua', endpoint: 'opc.tcp://127.0.0.1:1/x', securityMode: 'None',
        pkiDir: ${JSON.stringify(clientPki)}, timeout: '1s', points: [{ name: 'p', nodeId: 'i=2258' }] });
      const tap = createOpcuaTap({ ...settings, interval: 15000 }, { logger: silentLogger() });
      const before = loaded();
      await tap.start();
      while (!loaded()) await new Promise((r) => setTimeout(r, 20));
      await tap.stop();
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.dirname(fileURLToPath(import.meta.url)), encoding: 'utf8', timeout: 30_000 });
    assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1)!), { before: false, after: true });
  });
});
