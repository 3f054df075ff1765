/**
 * The receiver's files broken, with real relay and receiver processes: witness.json, replay.json,
 * replay.journal, revocations.json and the file sink — garbled, truncated (0 bytes, half), replaced
 * by a directory (we run as root: chmod 000 would not stop a read), and a full disk while running.
 * Each time: exit 65/74 and one stderr line naming the file, the file untouched; after every cycle
 * the invariant: every envelope sent is in the sink exactly once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanupAll, makeDevice, startRelay, type Device, type RelayProcess } from '../helpers/relay.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, seal, startReceiverProcess, waitFor, type Proc, type ReceiverSetup } from '../helpers/receiver.js';
import { smallDisk, type FullDisk } from '../helpers/full-disk.js';
import { errorLines, re, snapshot } from '../helpers/statefiles.js';

let relay: RelayProcess;
let device: Device;
const disks: FullDisk[] = [];
let seq = 100n;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  device = await makeDevice(relay, 'enterprise');
});

after(async () => {
  await killAllChildren();
  await cleanupAll();
  for (const disk of disks) disk.cleanup();
});

function exitOf(proc: Proc, timeoutMs = 20_000): Promise<number | null> {
  return Promise.race([proc.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`receiver did not exit:\n${proc.output().slice(-3000)}`)), timeoutMs).unref())]);
}

/** Each sent envelope's readings (2 per envelope, tagged with its seq) in the sink exactly once. */
function assertExactlyOnce(sinkFile: string, sent: bigint[], when: string): void {
  const lines = readLines(sinkFile);
  for (const s of sent) {
    const count = lines.filter((l) => l['seq'] === s.toString()).length;
    assert.equal(count, 2, `${when}: envelope seq ${s} has ${count} readings in the sink (expected 2, exactly once)`);
  }
  assert.equal(lines.length, sent.length * 2, `${when}: nothing else in the sink`);
}

/**
 * `big`: readings of about 5 KB in all, more than one 4 KiB page, so that the append needs a new
 * block (tmpfs would otherwise fit a small append into the slack of the file's last page).
 */
async function sendOne(setup: ReceiverSetup, sent: bigint[], big = false): Promise<void> {
  const s = ++seq;
  const now = Date.now();
  const readings = big ? ['a', 'b'].map((p) => ({ tap: 'plc1', point: `${p}-${s}`, value: 'x'.repeat(2500), quality: 'good' as const, readTime: now })) : undefined;
  await device.client.upload(seal(device, setup.keys, { seq: s, ...(readings ? { readings } : {}) }));
  sent.push(s);
}

async function deliverAndStop(setup: ReceiverSetup, config: Record<string, unknown>, sinkFile: string, sent: bigint[]): Promise<void> {
  await sendOne(setup, sent);
  const proc = await startReceiverProcess(setup, config);
  await waitFor('delivery', () => readLines(sinkFile).length >= sent.length * 2, 20_000, proc.output);
  await waitFor('queue empty', async () => (await setup.keys.client.inbox(setup.keys.recipientKeyId)).length === 0, 20_000, proc.output);
  assert.equal(await proc.kill('SIGTERM'), 0, proc.output());
}

test('broken witness, replay and revocation state: exit 65 with one line naming the file, which stays as it was; nothing lost or doubled after a restore', async () => {
  const setup = await receiverSetup(relay);
  const config = receiverConfig(relay, setup);
  const stateDir = config['stateDir'] as string;
  const sinkFile = path.join(setup.dir, 'r.jsonl');
  const sent: bigint[] = [];
  await deliverAndStop(setup, config, sinkFile, sent);

  const garble = (b: Buffer) => Buffer.concat([b.subarray(0, 3), Buffer.from([0xff, 0xfe, 0x00]), b.subarray(6)]);
  const files = ['witness.json', 'replay.json', 'revocations.json'];
  const faults: { name: string; apply(file: string, good: Buffer): Promise<void> }[] = [
    { name: 'garbled', apply: (f, good) => writeFile(f, garble(good)) },
    { name: 'truncated to 0 bytes', apply: (f) => writeFile(f, '') },
    { name: 'truncated to half', apply: (f, good) => writeFile(f, good.subarray(0, Math.floor(good.length / 2))) },
    { name: 'a directory in its place', apply: async (f) => { await rm(f); await mkdir(f); } },
  ];
  const cases = [
    ...files.flatMap((name) => faults.map((fault) => ({ name, fault }))),
    // The journal: a malformed complete line is refused; a torn last line is a crash mid-append (never acknowledged), so truncation is not a fault there.
    { name: 'replay.journal', fault: { name: 'a garbled complete line', apply: (f: string) => writeFile(f, 'garbage\n') } },
    { name: 'replay.journal', fault: faults[3]! },
  ];
  for (const { name, fault } of cases) {
    const file = path.join(stateDir, name);
    const good = await readFile(file);
    await sendOne(setup, sent); // waits at the relay while the receiver refuses to start
    await fault.apply(file, good);
    const broken = await snapshot(file);
    const proc = await startReceiverProcess(setup, config);
    const what = `${name} ${fault.name}`;
    assert.equal(await exitOf(proc), 65, `${what}\n${proc.output()}`);
    const lines = errorLines(proc.output());
    assert.equal(lines.length, 1, `${what}: one error line\n${proc.output()}`);
    assert.match(lines[0]!, new RegExp(`^ghostpipe: receive: cannot start: state file ${re(file)}: `), what);
    assert.deepEqual(await snapshot(file), broken, `${what}: left as it was`);
    await rm(file, { recursive: true, force: true });
    await writeFile(file, good, { mode: 0o600 });
    const restarted = await startReceiverProcess(setup, config);
    await waitFor(`delivery after restoring ${name}`, () => readLines(sinkFile).length >= sent.length * 2, 20_000, restarted.output);
    await waitFor('queue empty', async () => (await setup.keys.client.inbox(setup.keys.recipientKeyId)).length === 0, 20_000, restarted.output);
    assert.equal(await restarted.kill('SIGTERM'), 0, restarted.output());
    assertExactlyOnce(sinkFile, sent, `after ${what}`);
  }
});

test('a file sink path that is a directory: exit 65, one line naming it', async () => {
  const setup = await receiverSetup(relay);
  const sinkFile = path.join(setup.dir, 'r.jsonl');
  await mkdir(sinkFile);
  const proc = await startReceiverProcess(setup, receiverConfig(relay, setup));
  assert.equal(await exitOf(proc), 65, proc.output());
  const lines = errorLines(proc.output());
  assert.equal(lines.length, 1, proc.output());
  assert.match(lines[0]!, new RegExp(`^ghostpipe: receive: cannot start: file ${re(sinkFile)}: cannot open: is a directory`));
});

for (const where of ['sink', 'state'] as const) {
  test(`the disk under the ${where === 'sink' ? 'file sink' : 'state directory'} fills while running: exit 74 naming the file, nothing acknowledged that is not on disk; after freeing it every envelope is in the sink exactly once`, async () => {
    const disk = smallDisk(256);
    disks.push(disk);
    const setup = await receiverSetup(relay);
    const sinkFile = where === 'sink' ? path.join(disk.dir, 'r.jsonl') : path.join(setup.dir, 'r.jsonl');
    const stateDir = where === 'state' ? path.join(disk.dir, 'state') : path.join(setup.dir, 'state-r');
    const config = receiverConfig(relay, setup, { stateDir, sinks: [{ type: 'file', path: sinkFile }] });
    const sent: bigint[] = [];
    await deliverAndStop(setup, config, sinkFile, sent);
    for (let cycle = 0; cycle < 2; cycle++) {
      const proc = await startReceiverProcess(setup, config);
      await waitFor('receiver started', () => proc.logs().some((l) => l['msg'] === 'receiver started'), 20_000, proc.output);
      disk.fill(proc.child.pid);
      await sendOne(setup, sent, true);
      assert.equal(await exitOf(proc), 74, `cycle ${cycle} (${disk.mechanism})\n${proc.output()}`);
      const lines = errorLines(proc.output());
      assert.equal(lines.length, 1, proc.output());
      const named = where === 'sink' ? re(sinkFile) : `${re(stateDir)}/(replay\\.journal|replay\\.json|witness\\.json|revocations\\.json)`;
      assert.match(lines[0]!, new RegExp(`^ghostpipe: receive: stopped: (file )?${named}: write failed: (no space left on device \\(ENOSPC\\)|file too large)`), proc.output());
      disk.free(proc.child.pid);
      const restarted = await startReceiverProcess(setup, config);
      await waitFor('delivery after freeing the disk', () => readLines(sinkFile).length >= sent.length * 2, 20_000, restarted.output);
      await waitFor('queue empty', async () => (await setup.keys.client.inbox(setup.keys.recipientKeyId)).length === 0, 20_000, restarted.output);
      assert.equal(await restarted.kill('SIGTERM'), 0, restarted.output());
      assertExactlyOnce(sinkFile, sent, `cycle ${cycle}`);
    }
  });
}
