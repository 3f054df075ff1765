/**
 * The relay's control-plane files broken, with real relay processes: relay.sign.key, keys.json and
 * devices.json garbled, truncated (0 bytes, half), valid JSON of the wrong layout, replaced by a
 * directory (we run as root: chmod 000 would not stop a read); a full disk at the first start and
 * while running. Each time: exit 65/74 with one line naming the file, and nothing in the state
 * directory changed (no new operator key, no new signing key, the signed log untouched). After
 * every cycle the invariant: restored, the relay starts with the same origin, log size and keys.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, makeDevice, makeReceiver, startRelay, tempDir, untilCheckpointCovers, type RelayProcess } from '../helpers/relay.js';
import { RelayClient } from '../../common/relay-client.js';
import { smallDisk, type FullDisk } from '../helpers/full-disk.js';
import { errorLines, re, snapshot } from '../helpers/statefiles.js';
import { loaded, relayExit, stopRelay, tree } from '../helpers/statefiles-relay.js';

const disks: FullDisk[] = [];
after(async () => {
  await cleanupAll();
  for (const disk of disks) disk.cleanup();
});

test('broken relay.sign.key, keys.json, devices.json: exit 65, one line naming the file, the state directory unchanged; restored, the same relay starts', async () => {
  const dir = await tempDir();
  let relay = await startRelay({}, { dir });
  await makeDevice(relay);
  await makeDevice(relay);
  const first = loaded(relay);
  assert.equal(await stopRelay(relay), 0);
  relay = await startRelay({}, { dir });
  const expected = loaded(relay);
  assert.equal(expected.origin, first.origin);
  assert.ok(expected.logSize >= 2 && expected.devices === 2, JSON.stringify(expected));
  assert.equal(await stopRelay(relay), 0);

  const garble = (b: Buffer) => Buffer.concat([b.subarray(0, 40), Buffer.from([0xff, 0x00, 0x22, 0x7d]), b.subarray(44)]);
  const faults: { name: string; json?: boolean; apply(file: string, good: Buffer): Promise<void> }[] = [
    { name: 'garbled', apply: (f, good) => writeFile(f, garble(good)) },
    { name: 'truncated to 0 bytes', apply: (f) => writeFile(f, '') },
    { name: 'truncated to half', apply: (f, good) => writeFile(f, good.subarray(0, Math.floor(good.length / 2))) },
    { name: 'valid JSON, empty object', json: true, apply: (f) => writeFile(f, '{}') },
    { name: 'valid JSON, list missing', json: true, apply: (f) => writeFile(f, '{"version":1}') },
    { name: 'a directory in its place', apply: async (f) => { await rm(f); await mkdir(f); } },
  ];
  for (const name of ['relay.sign.key', 'keys.json', 'devices.json']) {
    for (const fault of faults) {
      if (fault.json && !name.endsWith('.json')) continue;
      const file = path.join(relay.stateDir, name);
      const good = await readFile(file);
      await fault.apply(file, good);
      const before = await tree(relay.stateDir);
      const what = `${name} ${fault.name}`;
      const { code, output } = await relayExit(dir);
      assert.equal(code, 65, `${what}\n${output}`);
      const lines = errorLines(output);
      assert.equal(lines.length, 1, `${what}: one error line\n${output}`);
      assert.match(lines[0]!, new RegExp(`^ghostpipe: relay: cannot start: ${re(file)}: `), what);
      assert.deepEqual(await tree(relay.stateDir), before, `${what}: nothing in the state directory changed (no key, log or checkpoint written)`);
      await rm(file, { recursive: true, force: true });
      await writeFile(file, good, { mode: 0o600 });
      relay = await startRelay({}, { dir });
      assert.deepEqual(loaded(relay), expected, `after ${what}: the same relay (origin, log size, keys, devices)`);
      assert.equal(await stopRelay(relay), 0, `${what}: clean stop\n${relay.output().slice(-3000)}`);
    }
  }
});

test('a full disk at the first start: exit 74, one line naming the file it could not write', async () => {
  const disk = smallDisk(256);
  disks.push(disk);
  const dir = await tempDir();
  await writeFile(path.join(dir, 'relay.json'), JSON.stringify({ listen: ['127.0.0.1:0'], stateDir: disk.dir, logLevel: 'info' }));
  for (let cycle = 0; cycle < 2; cycle++) {
    disk.fill();
    const { code, output } = await relayExit(dir);
    assert.equal(code, 74, `cycle ${cycle} (${disk.mechanism})\n${output}`);
    const lines = errorLines(output);
    assert.equal(lines.length, 1, output);
    assert.match(lines[0]!, new RegExp(`^ghostpipe: relay: cannot start: ${re(disk.dir)}/[\\w./-]+: .*(ENOSPC|EFBIG|no space left|file too large)`), output);
    assert.deepEqual(await readdir(disk.dir).then((names) => names.filter((n) => !n.startsWith('.filler'))), [], 'no half-written key or temp file left behind');
    disk.free();
  }
});

test('the disk fills while the relay runs: the next keys.json write stops it with exit 74 naming the file; the API call fails; nothing on disk changed', async () => {
  const disk = smallDisk(4096);
  disks.push(disk);
  const dir = disk.dir; // config and state on the small disk (the harness reads operator.key from <dir>, next to the state directory)
  const stateDir = path.join(dir, 'state');
  let relay = await startRelay({}, { dir });
  await makeDevice(relay); // one device key issued, one device enrolled
  const started = loaded(relay);
  const expected = { ...started, keys: started.keys + 1, devices: started.devices + 1 };
  for (let cycle = 0; cycle < 2; cycle++) {
    const before = await tree(stateDir);
    disk.fill(relay.child.pid);
    await assert.rejects(relay.operator.createKey({ role: 'device', plan: 'pro', label: `while full ${cycle}` }), (err: { status?: number }) => err.status === 500, 'a key that is not on disk is not handed out as if it were');
    const code = await exitWithin(relay);
    assert.equal(code, 74, `${disk.mechanism}\n${relay.output()}`);
    const lines = errorLines(relay.output());
    assert.equal(lines.length, 1, relay.output());
    assert.match(lines[0]!, new RegExp(`^ghostpipe: relay: stopped: ${re(path.join(stateDir, 'keys.json'))}: write failed: (no space left on device \\(ENOSPC\\)|file too large)`));
    const after = await tree(stateDir);
    for (const [name, snap] of Object.entries(after)) {
      if (name.startsWith('audit')) continue; // the audit trail may have recorded the failed request before the disk filled
      assert.deepEqual(snap, before[name], `${name} unchanged`);
    }
    disk.free(relay.child.pid);
    relay = await startRelay({}, { dir });
    assert.deepEqual({ ...loaded(relay), logSize: expected.logSize }, expected, `cycle ${cycle}: the same keys and devices`);
  }
  assert.equal(await stopRelay(relay), 0);
});

test('the disk fills while the relay runs: a transparency log write fails, the relay stops with exit 74; the signed checkpoint is unchanged and the restarted relay serves the same history', async () => {
  const disk = smallDisk(4096);
  disks.push(disk);
  const dir = disk.dir;
  const stateDir = path.join(dir, 'state');
  let relay = await startRelay({}, { dir });
  const device = await makeDevice(relay, 'enterprise');
  const receiver = await makeReceiver(relay);
  // The device's own client points at the first port: every restart listens on a new one.
  const upload = (bytes: Uint8Array) => new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey }).upload(bytes);
  const first = await upload(device.seal(new Uint8Array(100), receiver));
  for (let cycle = 0; cycle < 2; cycle++) {
    // The checkpoint covering that upload is signed a moment later (under load, after a snapshot
    // taken too early): wait until it is served, which happens only once it is on disk.
    const size = String(await untilCheckpointCovers(relay.operator, first.leafIndex + 1));
    await until(async () => (await snapshot(path.join(stateDir, 'log', 'checkpoint'))).kind === 'file', 'checkpoint on disk');
    const checkpoint = await snapshot(path.join(stateDir, 'log', 'checkpoint'));
    disk.fill(relay.child.pid);
    // A log entry is small and may fit into the slack of a tmpfs page of a tile or bundle: upload
    // until a write needs a new block (a bounded number of tries; the relay must stop by then).
    for (let i = 0; i < 300 && relay.child.exitCode === null; i++) {
      await upload(device.seal(new Uint8Array(100), receiver)).catch(() => undefined);
    }
    const code = await exitWithin(relay);
    assert.equal(code, 74, `cycle ${cycle} (${disk.mechanism})\n${relay.output().slice(-4000)}`);
    const lines = errorLines(relay.output());
    assert.equal(lines.length, 1, relay.output());
    assert.match(lines[0]!, /^ghostpipe: relay: stopped: transparency log write failed: .*(ENOSPC|EFBIG|no space left|file too large)/);
    assert.deepEqual(await snapshot(path.join(stateDir, 'log', 'checkpoint')), checkpoint, 'the signed checkpoint on disk is unchanged');
    disk.free(relay.child.pid);
    relay = await startRelay({}, { dir });
    const restarted = (await relay.operator.checkpoint()).split('\n');
    assert.ok(Number(restarted[1]) >= Number(size), `cycle ${cycle}: the log kept its history (size ${size} -> ${restarted[1]})`);
    // The checkpoint signed before the fault is a prefix of the one served now.
    const proof = await relay.operator.consistencyProof(Number(size), Number(restarted[1]));
    assert.ok(proof, 'consistency proof served');
  }
  assert.equal(await stopRelay(relay), 0);
});

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The relay's exit code, or a failure with its output when it does not exit in time. */
function exitWithin(relay: RelayProcess, timeoutMs = 20_000): Promise<number | null> {
  if (relay.child.exitCode !== null) return Promise.resolve(relay.child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not exit within ${timeoutMs} ms:\n${relay.output().slice(-4000)}`)), timeoutMs);
    relay.child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}
