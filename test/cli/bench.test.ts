/**
 * `ghostpipe bench` against a real relay process: it measures with keys it issues for the run and
 * revokes them (and its device) at the end; a device key in place of the operator key, a bucket
 * that does not exist and an unreadable CA are refused with one line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, makeDevice, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import { assertOneLineFailure, runCli } from '../helpers/cli.js';

let relay: RelayProcess;
let dir: string;
let operatorKeyFile: string;

before(async () => {
  relay = await startRelay();
  dir = await tempDir();
  operatorKeyFile = path.join(dir, 'operator.key');
  await writeFile(operatorKeyFile, relay.operatorKey + '\n', { mode: 0o600 });
});
after(() => cleanupAll());

test('measures the full path and transport per bucket with bench keys, then revokes them and the bench device', { timeout: 120_000 }, async () => {
  const keysBefore = new Set((await relay.operator.listKeys()).map((k) => k.id));
  const r = await runCli(['bench', '--relay', relay.url, '--operator-key-file', operatorKeyFile, '--buckets', '4KiB,1MiB', '--trips', '4', '--json'], { cwd: dir, timeoutMs: 110_000 });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.toString()) as { results: { bucket: number; trips: number; full: { p50: number; p95: number }; transport: { p50: number; p95: number }; phases: Record<string, number> }[]; issued: { deviceKeyId: string; receiverKeyId: string; did: string } };
  assert.deepEqual(report.results.map((x) => [x.bucket, x.trips]), [[4096, 4], [1048576, 4]]);
  for (const x of report.results) {
    assert.ok(x.full.p50 > 0 && x.full.p95 >= x.full.p50, JSON.stringify(x));
    assert.ok(x.transport.p50 > 0 && x.transport.p50 < x.full.p50, 'transport alone is part of the full path');
    assert.deepEqual(Object.keys(x.phases), ['seal', 'upload', 'lease', 'open', 'ack']);
  }
  assert.match(r.stderr, /4 KiB\s+(\[#+\s*\] )?4\/4/, 'plain progress lines when stderr is not a terminal');
  const keys = await relay.operator.listKeys();
  const issued = keys.filter((k) => !keysBefore.has(k.id));
  assert.deepEqual(issued.map((k) => k.id).sort(), [report.issued.deviceKeyId, report.issued.receiverKeyId].sort());
  assert.ok(issued.every((k) => k.revoked), 'both bench keys are revoked at the end');
  assert.equal((await relay.operator.getDid(report.issued.did)).revoked, true, 'the bench device is revoked at the end');
  assert.equal((await relay.operator.stats()).envelopes.pending, 0, 'nothing left held at the relay');

  const table = await runCli(['bench', '--relay', relay.url, '--operator-key-file', operatorKeyFile, '--buckets', '4KiB', '--trips', '2'], { cwd: dir, timeoutMs: 60_000 });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.toString(), /^\| bucket \| trips \| full path p50 ms \|.*\n\| --- \|.*\n\| 4 KiB \| 2 \| /);
});

test('refused with one line: a device key, a bucket that does not exist, trips out of range, an unreadable CA', async () => {
  const device = await makeDevice(relay);
  const deviceKeyFile = path.join(dir, 'device.key');
  await writeFile(deviceKeyFile, device.apiKey + '\n', { mode: 0o600 });
  assertOneLineFailure(await runCli(['bench', '--relay', relay.url, '--operator-key-file', deviceKeyFile], { cwd: dir }), /not an operator key .*never runs under a production device key/, 2);
  assertOneLineFailure(await runCli(['bench', '--relay', relay.url, '--operator-key-file', operatorKeyFile, '--buckets', '3KiB'], { cwd: dir }), /--buckets: 3KiB is not a bucket/, 2);
  assertOneLineFailure(await runCli(['bench', '--relay', relay.url, '--operator-key-file', operatorKeyFile, '--trips', '0'], { cwd: dir }), /--trips must be 1\.\.10000/, 2);
  assertOneLineFailure(await runCli(['bench', '--relay', relay.url, '--operator-key-file', operatorKeyFile, '--ca', path.join(dir, 'nope.pem')], { cwd: dir }), /cannot read --ca .*nope\.pem: ENOENT/, 2);
});
