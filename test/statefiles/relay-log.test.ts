/**
 * The relay's transparency log files (log/checkpoint, checkpoint.prev, the edge tiles and bundles)
 * and its audit trail broken, with real relay processes. What the checkpoint covers is never
 * rewritten: damage there stops the relay with exit 65 and one line naming the file, nothing in
 * the state directory changed; damage a crash can cause (the current checkpoint torn, a
 * half-written checkpoint.tmp) is survived with the signed history unchanged. After every cycle
 * the invariant: restored, the same relay starts with the same origin, log size, keys, devices.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, writeFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, rawRequest, startRelay, tempDir } from '../helpers/relay.js';
import { RelayClient } from '../../common/relay-client.js';
import { errorLines, re } from '../helpers/statefiles.js';
import { loaded, relayExit, stopRelay, tree } from '../helpers/statefiles-relay.js';

after(cleanupAll);

test('damaged log files the checkpoint covers: exit 65 naming the file, state unchanged; torn current checkpoint survived; restored, the same relay starts', async () => {
  const dir = await tempDir();
  let relay = await startRelay({}, { dir });
  const device = await makeDevice(relay);
  const receiver = await makeReceiver(relay);
  const client = new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey });
  for (let i = 0; i < 4; i++) await client.upload(device.seal(markedPlaintext('log'), receiver));
  assert.equal(await stopRelay(relay), 0);
  relay = await startRelay({}, { dir });
  const expected = loaded(relay);
  const checkpoint = await relay.operator.checkpoint();
  assert.equal(await stopRelay(relay), 0);
  const logDir = path.join(relay.stateDir, 'log');
  const size = expected.logSize;
  assert.ok(size >= 5, `log size ${size}`);
  const edgeTile = path.join(logDir, `tile/0/000.p/${size}`);
  const edgeBundle = path.join(logDir, `tile/entries/000.p/${size}`);
  const good = await tempDir();
  await cp(logDir, good, { recursive: true });
  const restore = async () => {
    await rm(logDir, { recursive: true, force: true });
    await cp(good, logDir, { recursive: true });
  };

  const refused: { name: string; file: string; apply(): Promise<void> }[] = [
    { name: 'edge tile truncated', file: edgeTile, apply: async () => writeFile(edgeTile, (await readFile(edgeTile)).subarray(0, 40)) },
    { name: 'edge tile garbled', file: logDir, apply: async () => { const b = await readFile(edgeTile); b[3]! ^= 0x40; await writeFile(edgeTile, b); } },
    { name: 'edge bundle garbled', file: edgeBundle, apply: async () => { const b = await readFile(edgeBundle); b[b.length - 1]! ^= 0x01; await writeFile(edgeBundle, b); } },
    { name: 'edge bundle empty', file: edgeBundle, apply: () => writeFile(edgeBundle, '') },
    { name: 'checkpoint and checkpoint.prev garbled', file: path.join(logDir, 'checkpoint'), apply: async () => {
      await writeFile(path.join(logDir, 'checkpoint'), 'garbage\n');
      await writeFile(path.join(logDir, 'checkpoint.prev'), checkpoint.replace(/\n\d+\n/, '\n999\n'));
    } },
    { name: 'both checkpoints gone, tiles there', file: path.join(logDir, 'checkpoint'), apply: async () => {
      await rm(path.join(logDir, 'checkpoint'));
      await rm(path.join(logDir, 'checkpoint.prev'), { force: true });
    } },
    { name: 'checkpoint is a directory', file: path.join(logDir, 'checkpoint'), apply: async () => { await rm(path.join(logDir, 'checkpoint')); await mkdir(path.join(logDir, 'checkpoint')); } },
  ];
  for (const fault of refused) {
    await fault.apply();
    const before = await tree(relay.stateDir);
    const { code, output } = await relayExit(dir);
    assert.equal(code, 65, `${fault.name}\n${output}`);
    const lines = errorLines(output);
    assert.equal(lines.length, 1, `${fault.name}: one error line\n${output}`);
    assert.match(lines[0]!, new RegExp(`^ghostpipe: relay: cannot start: ${re(fault.file)}`), fault.name);
    assert.deepEqual(await tree(relay.stateDir), before, `${fault.name}: nothing in the state directory changed`);
    await restore();
    relay = await startRelay({}, { dir });
    assert.deepEqual(loaded(relay), expected, `after ${fault.name}: the same relay`);
    assert.equal(await relay.operator.checkpoint(), checkpoint, `after ${fault.name}: the same signed checkpoint`);
    assert.equal(await stopRelay(relay), 0);
  }

  const survived: { name: string; apply(): Promise<void> }[] = [
    { name: 'current checkpoint torn (checkpoint.prev is used)', apply: async () => writeFile(path.join(logDir, 'checkpoint'), checkpoint.slice(0, 60)) },
    { name: 'half-written checkpoint.tmp', apply: () => writeFile(path.join(logDir, 'checkpoint.tmp'), checkpoint.slice(0, 60)) },
  ];
  for (const fault of survived) {
    await fault.apply();
    relay = await startRelay({}, { dir });
    assert.equal(loaded(relay).logSize, size, fault.name);
    const now = await relay.operator.checkpoint();
    assert.equal(now.split('\n').slice(0, 3).join('\n'), checkpoint.split('\n').slice(0, 3).join('\n'), `${fault.name}: same origin, size and root`);
    assert.ok(!(await readdir(logDir)).includes('checkpoint.tmp'), `${fault.name}: the torn temp file is removed`);
    assert.equal(await stopRelay(relay), 0);
    await restore();
  }
});

test('audit trail: a directory in place of audit.jsonl stops the start naming it; a garbled file does not (lines skipped, counted)', async () => {
  const dir = await tempDir();
  let relay = await startRelay({}, { dir });
  await makeDevice(relay);
  assert.equal(await stopRelay(relay), 0);
  const file = path.join(relay.stateDir, 'audit.jsonl');
  const good = await readFile(file);
  await rm(file);
  await mkdir(file);
  const { code, output } = await relayExit(dir);
  assert.equal(code, 65, output);
  assert.match(errorLines(output)[0] ?? '', new RegExp(`^ghostpipe: relay: cannot start: ${re(file)}`));
  await rm(file, { recursive: true });
  await writeFile(file, Buffer.concat([good, Buffer.from('{"garbled\n\u0000\u0001\n')]), { mode: 0o600 });
  relay = await startRelay({}, { dir });
  const answer = await rawRequest(`${relay.url}/v2/audit?format=json`, { headers: { authorization: `Bearer ${relay.operatorKey}` } });
  assert.equal(answer.status, 200, answer.body);
  const events = JSON.parse(answer.body) as { unreadable: number; events: { event: string }[] };
  assert.ok(events.events.some((e) => e.event === 'key_issued'), 'the good events are still exported');
  assert.ok(events.unreadable >= 2, `garbled lines counted: ${JSON.stringify(events).slice(0, 200)}`);
  assert.equal(await stopRelay(relay), 0);
});
