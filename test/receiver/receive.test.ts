/**
 * `ghostpipe receive` as a real process against a real relay process, file sink.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, heldFor, makeDevice, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { RelayError } from '../../common/relay-client.js';
import { CONTENT_TYPE } from '../../protocol/envelope/index.js';
import { envelopeId } from '../../protocol/envelope/index.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, run, seal, startReceiverProcess, waitFor, readings } from '../helpers/receiver.js';

let relay: RelayProcess;
let device: Device;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  device = await makeDevice(relay, 'enterprise');
});

after(async () => {
  await killAllChildren();
  await cleanupAll();
});

test('readings arrive intact with quality, reasons and timestamps', async () => {
  const setup = await receiverSetup(relay);
  const t = Date.UTC(2030, 0, 2, 3, 4, 5, 678) - 400 * 86_400_000 * 10; // a fixed past instant
  const sent = [
    { tap: 'plc1', point: 'temp', value: 21.25, unit: '°C', quality: 'good' as const, readTime: t, sourceTime: t - 7, serverTime: t - 3 },
    { tap: 'plc1', point: 'energy', value: 18446744073709551615n, unit: 'Wh', quality: 'good' as const, readTime: t },
    { tap: 'plc1', point: 'neg', value: -9223372036854775808n, quality: 'good' as const, readTime: t },
    { tap: 'opc', point: 'running', value: true, quality: 'uncertain' as const, reason: 'subscription late', readTime: t + 1, stale: true },
    { tap: 'mqtt', point: 'label', value: 'Line 3 / Ofen "A"', quality: 'good' as const, readTime: t + 2 },
    { tap: 'modbus', point: 'pressure', value: null, quality: 'bad' as const, reason: 'timeout after 1000 ms', readTime: t + 3 },
    { tap: 'modbus', point: 'nan', value: Number.NaN, quality: 'good' as const, readTime: t + 4 },
  ];
  const bytes = seal(device, setup.keys, { seq: 1000n, stream: 7, readings: sent });
  await device.client.upload(bytes);
  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup));
  const file = path.join(setup.dir, 'r.jsonl');
  const lines = await waitFor('7 readings in the file sink', () => readLines(file).length >= 7 && readLines(file), 20_000, proc.output);
  const id = envelopeId(bytes);
  const common = { device: device.did, seq: '1000', stream: 7, frame: '1000', envelope: id };
  assert.deepEqual(lines[0], { ...common, tap: 'plc1', point: 'temp', value: 21.25, type: 'number', unit: '°C', quality: 'good', reason: null, sourceTime: new Date(t - 7).toISOString(), readTime: new Date(t).toISOString(), serverTime: new Date(t - 3).toISOString(), stale: false });
  assert.deepEqual(lines[1], { ...common, tap: 'plc1', point: 'energy', value: '18446744073709551615', type: 'bigint', unit: 'Wh', quality: 'good', reason: null, sourceTime: null, readTime: new Date(t).toISOString(), serverTime: null, stale: false });
  assert.equal(lines[2]!['value'], '-9223372036854775808');
  assert.deepEqual({ q: lines[3]!['quality'], r: lines[3]!['reason'], s: lines[3]!['stale'], v: lines[3]!['value'], ty: lines[3]!['type'] }, { q: 'uncertain', r: 'subscription late', s: true, v: true, ty: 'boolean' });
  assert.equal(lines[4]!['value'], 'Line 3 / Ofen "A"');
  assert.deepEqual({ v: lines[5]!['value'], ty: lines[5]!['type'], q: lines[5]!['quality'], r: lines[5]!['reason'] }, { v: null, ty: 'null', q: 'bad', r: 'timeout after 1000 ms' });
  assert.deepEqual({ v: lines[6]!['value'], ty: lines[6]!['type'] }, { v: 'NaN', ty: 'number' });
  await waitFor('queue empty', async () => (await heldFor(relay, setup.keys.recipientKeyId)) === 0);
  // No reading value in the logs above debug.
  for (const log of proc.logs().filter((l) => (l['level'] as number) > 20)) assert.doesNotMatch(JSON.stringify(log), /18446744073709551615|Ofen/);
  assert.equal(await proc.kill('SIGTERM'), 0);
  const stopped = proc.logs().find((l) => l['msg'] === 'receiver stopped');
  assert.equal(stopped?.['delivered'], 1);
  assert.doesNotMatch(proc.output(), new RegExp(setup.keys.apiKey.slice(4)));
});

test('tampered and unenrolled envelopes are refused by the relay; untrusted, stale, replayed, revoked ones by the receiver; the queue keeps flowing', async () => {
  const setup = await receiverSetup(relay);
  // Tampered: the relay verifies the device signature before storing.
  const tampered = seal(device, setup.keys, { seq: 1n });
  tampered[tampered.length - 5]! ^= 0x01;
  await assert.rejects(device.client.upload(tampered), (err: RelayError) => err.status === 403 && err.code === 'bad_signature');
  const flipped = seal(device, setup.keys, { seq: 1n });
  flipped[200]! ^= 0x80; // inside the encapsulated key
  await assert.rejects(device.client.upload(flipped), (err: RelayError) => err.status === 403 && err.code === 'bad_signature');
  // Unenrolled signer.
  const stranger = await makeDevice(relay, 'enterprise', { enroll: false });
  await assert.rejects(stranger.client.upload(seal(stranger, setup.keys, { seq: 1n })), (err: RelayError) => err.status === 403 && err.code === 'device_not_enrolled');

  // What the relay accepts but this receiver must refuse:
  const other = await makeDevice(relay, 'enterprise'); // enrolled, but not pinned
  const revokedDevice = await makeDevice(relay, 'enterprise'); // pinned, revoked below
  const uploads: [string, Uint8Array][] = [
    ['good-1', seal(device, setup.keys, { seq: 100n })],
    ['untrusted', seal(other, setup.keys, { seq: 1n })],
    ['too-old', seal(device, setup.keys, { seq: 101n, createdAt: Date.now() - 25 * 3600_000 })],
    ['future', seal(device, setup.keys, { seq: 102n, createdAt: Date.now() + 3600_000 })],
    ['replay-conflict', seal(device, setup.keys, { seq: 100n, readings: readings('evil') })],
    ['replay-old', seal(device, setup.keys, { seq: 50n })],
    ['revoked', seal(revokedDevice, setup.keys, { seq: 1n })],
    ['config-blob', seal(device, setup.keys, { seq: 103n, contentType: CONTENT_TYPE.CONFIG })],
    ['good-2', seal(device, setup.keys, { seq: 104n })],
  ];
  for (const [, bytes] of uploads) await device.client.withKey(device.apiKey).upload(bytes).catch(async (err: RelayError) => {
    // other devices upload with their own keys
    if (err.code !== 'wrong_signer') throw err;
    const owner = bytes === uploads[1]![1] ? other : revokedDevice;
    await owner.client.upload(bytes);
  });
  await relay.operator.revokeDevice(revokedDevice.did);

  const config = receiverConfig(relay, setup, {
    trust: { enrolled: false, devices: [{ did: device.did }, { did: revokedDevice.did }], refresh: '0s' },
    replay: { window: 8, maxAge: '24h', maxFuture: '5m' },
  });
  const proc = await startReceiverProcess(setup, config);
  const file = path.join(setup.dir, 'r.jsonl');
  await waitFor('the queue drained', async () => (await heldFor(relay, setup.keys.recipientKeyId)) === 0 && proc.logs().some((l) => l['msg'] === 'envelope delivered' && l['seq'] === '104'), 30_000, proc.output);
  await waitFor('all refusals logged', () => proc.logs().filter((l) => String(l['msg']).startsWith('envelope refused')).length >= 7, 10_000, proc.output);
  const lines = readLines(file);
  assert.deepEqual(lines.map((l) => l['point']), ['temp-100', 'count-100', 'temp-104', 'count-104'], 'only the two good envelopes reach the sink');
  assert.equal(refusals(proc, 'untrusted_sender').length, 1);
  assert.equal(refusals(proc, 'too_old').length, 1);
  assert.equal(refusals(proc, 'from_future').length, 1);
  assert.equal(refusals(proc, 'replay').length, 2);
  assert.equal(refusals(proc, 'revoked_sender').length, 1);
  assert.equal(refusals(proc, 'unsupported_content_type').length, 1);
  const replay = refusals(proc, 'replay').map((l) => String(l['msg']));
  assert.ok(replay.some((m) => /already delivered with another envelope/.test(m)), replay.join('\n'));
  assert.ok(replay.some((m) => /older than the replay window/.test(m)), replay.join('\n'));
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('SIGKILL and restart: every reading exactly once in the sink', async () => {
  const setup = await receiverSetup(relay);
  const count = 30;
  for (let i = 0; i < count; i++) await device.client.upload(seal(device, setup.keys, { seq: BigInt(5000 + i), stream: 2 }));
  const file = path.join(setup.dir, 'r.jsonl');
  const config = receiverConfig(relay, setup);
  for (const after of [6, 24]) {
    const proc = await startReceiverProcess(setup, config);
    await waitFor(`${after} lines`, () => readLines(file).length >= after, 20_000, proc.output);
    await proc.kill('SIGKILL');
  }
  const proc = await startReceiverProcess(setup, config);
  await waitFor('all readings', () => readLines(file).length >= count * 2 && (async () => (await heldFor(relay, setup.keys.recipientKeyId)) === 0)(), 30_000, proc.output);
  // Nothing held, pending or leased: every envelope was acked, so
  // no lease the killed receivers held can still expire and bring one back (no need to wait past
  // the lease timeout).
  const keys = readLines(file).map((l) => `${l['envelope']}/${l['point']}`);
  assert.equal(keys.length, count * 2, 'no duplicates and nothing lost');
  assert.equal(new Set(keys).size, count * 2);
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('two receivers share one queue: each reading exactly once', async () => {
  const setup = await receiverSetup(relay);
  const count = 40;
  const a = await startReceiverProcess(setup, receiverConfig(relay, setup, {}, 'a'), 'a');
  const b = await startReceiverProcess(setup, receiverConfig(relay, setup, {}, 'b'), 'b');
  for (let i = 0; i < count; i++) await device.client.upload(seal(device, setup.keys, { seq: BigInt(9000 + i), stream: 3 }));
  const all = () => [...readLines(path.join(setup.dir, 'a.jsonl')), ...readLines(path.join(setup.dir, 'b.jsonl'))];
  // All readings written and every envelope acked (the inbox lists pending and leased ones): no
  // envelope is left that could reach a sink twice.
  await waitFor('all readings, every envelope acked', async () => all().length >= count * 2 && (await heldFor(relay, setup.keys.recipientKeyId)) === 0, 30_000, () => a.output() + b.output());
  const keys = all().map((l) => `${l['envelope']}/${l['point']}`);
  assert.equal(keys.length, count * 2);
  assert.equal(new Set(keys).size, count * 2);
  assert.ok(readLines(path.join(setup.dir, 'a.jsonl')).length > 0 && readLines(path.join(setup.dir, 'b.jsonl')).length > 0, 'both receivers took part');
  assert.equal(await a.kill(), 0);
  assert.equal(await b.kill(), 0);
});

test('file sink rotates by size and keeps N files', async () => {
  const setup = await receiverSetup(relay);
  const file = path.join(setup.dir, 'rot.jsonl');
  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup, { sinks: [{ type: 'file', path: file, maxSize: '2KiB', keep: 2 }] }));
  for (let i = 0; i < 12; i++) await device.client.upload(seal(device, setup.keys, { seq: BigInt(20_000 + i), stream: 4 }));
  await waitFor('last envelope delivered', () => proc.logs().some((l) => l['msg'] === 'envelope delivered' && l['seq'] === '20011'), 30_000, proc.output);
  const { statSync, existsSync } = await import('node:fs');
  assert.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`));
  assert.ok(!existsSync(`${file}.3`), 'only keep=2 rotated files');
  for (const f of [file, `${file}.1`, `${file}.2`]) assert.ok(statSync(f).size <= 2048, `${f} is ${statSync(f).size} bytes`);
  const newest = readLines(file);
  assert.equal(newest[newest.length - 1]!['seq'], '20011');
  const kept = [...readLines(`${file}.2`), ...readLines(`${file}.1`), ...newest].map((l) => Number(l['seq']));
  assert.deepEqual(kept, [...kept].sort((x, y) => x - y), 'rotated files hold older readings');
  assert.equal(await proc.kill(), 0);
});

test('malformed and unsafe configs are refused with file, line and reason', async () => {
  const setup = await receiverSetup(relay);
  const cases: [string, string, RegExp][] = [
    ['typo.yaml', `relay:\n  url: ${relay.url}\n  apiKeyFile: k\n  publicKey: p\nreceiverKey: r\ntrust:\n  enroled: true\n`, /typo\.yaml:7:3: trust\.enroled: unknown key.*did you mean "enrolled"/],
    ['remote-http.yaml', `relay:\n  url: http://relay.example.net:8787\n  apiKeyFile: k\n  publicKey: p\nreceiverKey: r\ntrust:\n  enrolled: true\n  fleetPublicKey: f\n`, /plain HTTP is only allowed to a loopback address/],
    ['sink.yaml', `relay:\n  url: ${relay.url}\n  apiKeyFile: k\n  publicKey: p\nreceiverKey: r\ntrust:\n  enrolled: true\n  fleetPublicKey: f\nsinks:\n  - type: kafka\n`, /sink\.yaml:10:11: sinks\[0\]\.type: must be one of stdout, file, mqtt, webhook/],
    ['notrust.yaml', `relay:\n  url: ${relay.url}\n  apiKeyFile: k\n  publicKey: p\nreceiverKey: r\ntrust: {}\n`, /trust no device/],
    ['window.yaml', `relay:\n  url: ${relay.url}\n  apiKeyFile: k\n  publicKey: p\nreceiverKey: r\ntrust:\n  enrolled: true\n  fleetPublicKey: f\nreplay:\n  window: 0\n  maxAge: forever\n`, /replay\.window: must be an integer from 1[\s\S]*replay\.maxAge: must be a duration/],
  ];
  for (const [name, text, expected] of cases) {
    const file = path.join(setup.dir, name);
    await writeFile(file, text);
    const proc = run(['receive', '--config', file]);
    assert.equal(await proc.exited, 2, proc.output());
    assert.match(proc.output(), expected);
  }
  // A missing key file: setup failure naming the file, exit 1.
  const file = path.join(setup.dir, 'missing-key.yaml');
  await writeFile(file, JSON.stringify(receiverConfig(relay, setup, { receiverKey: path.join(setup.dir, 'nope.key') })));
  const proc = run(['receive', '--config', file]);
  assert.equal(await proc.exited, 1);
  assert.match(proc.output(), /nope\.key: read key file: no such file/);
  // A revoked receiver API key: exit 4.
  await relay.operator.revokeKey(setup.keys.apiKeyId);
  const revoked = await startReceiverProcess(setup, receiverConfig(relay, setup), 'revoked');
  assert.equal(await revoked.exited, 4, revoked.output());
  assert.match(revoked.output(), /key_revoked|revoked/);
});

test('corrupt state files (witness.json, revocations.json) stop the receiver at start, naming the file', async () => {
  const setup = await receiverSetup(relay);
  const config = receiverConfig(relay, setup, {}, 'corrupt');
  const stateDir = config['stateDir'] as string;
  // 65: a damaged state file (docs/RELIABILITY.md); 3 stays for a well-formed witness state that does not verify.
  const cases: [string, string, number, RegExp][] = [
    ['witness.json', '{"origin": 7', 65, /witness\.json: .*not valid JSON/],
    ['witness.json', '"a string"', 65, /witness\.json: not a witness state object/],
    ['witness.json', '{"note": 7}', 3, /witness\.json: .*origin must be a string/],
    ['revocations.json', '{"origin":"x","size":3,"subtrees":[],"revoked":{}}', 65, /revocations\.json: unreadable revocation state \(subtrees do not match size\)/],
    ['revocations.json', 'x'.repeat(100), 65, /revocations\.json: unreadable revocation state/],
    ['revocations.json', '{"origin":"x","size":0,"subtrees":[],"revoked":{"zz":{"did":"d","leafIndex":1}}}', 65, /revocations\.json: unreadable revocation state \(revoked entries\)/],
  ];
  for (const [name, text, code, expected] of cases) {
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(stateDir, name), text, { mode: 0o600 });
    const proc = await startReceiverProcess(setup, config, 'corrupt');
    assert.equal(await proc.exited, code, proc.output());
    assert.match(proc.output(), expected);
  }
});
