/**
 * A relay whose state directory is swapped for an older copy (history rewritten): the running
 * receiver and `ghostpipe audit` both detect the rollback (signed by the relay's own key: the
 * receiver stops with exit 3 and keeps both notes as evidence), and later the fork.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cp, rm } from 'node:fs/promises';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { cleanupAll, makeDevice, startRelay, tempDir, untilCheckpointCovers } from '../helpers/relay.js';
import { reservePort } from '../helpers/ports.js';
import { decodePublicKeyPem } from '../../protocol/keys.js';
import { mlDsaNoteVerifier, openCheckpoint, parseCheckpoint, parseNote } from '../../protocol/tlog/index.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, run, seal, startReceiverProcess, waitFor } from '../helpers/receiver.js';

after(async () => {
  await killAllChildren();
  await cleanupAll();
});

test('rollback and fork of the relay log: receiver stops, audit fails and says which', async () => {
  const dir = await tempDir();
  const port = await reservePort();
  const relayConfig = { listen: [`127.0.0.1:${port}`], leaseTimeout: '2s' };
  let relay = await startRelay(relayConfig, { dir });
  const device = await makeDevice(relay, 'enterprise');
  const setup = await receiverSetup(relay);
  const auditState = path.join(setup.dir, 'audit');
  const audit = async () => {
    const p = run(['audit', '--relay', relay.url, '--relay-key', setup.relayPubFile, '--state', auditState, '--full']);
    return { code: await p.exited, output: p.output() };
  };

  await device.client.upload(seal(device, setup.keys, { seq: 1n }));
  let receiver = await startReceiverProcess(setup, receiverConfig(relay, setup));
  const file = path.join(setup.dir, 'r.jsonl');
  await waitFor('first envelope delivered', () => readLines(file).length >= 2, 20_000, receiver.output);
  const first = await audit();
  assert.equal(first.code, 0, first.output);
  assert.match(first.output, /"msg":"log consistent"/);
  assert.match(first.output, /"entries":\{"registration":1,"transfer":1\}/);

  // Keep a copy of the relay state now, then let history grow.
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  const old = path.join(dir, 'state-old');
  await cp(relay.stateDir, old, { recursive: true });
  relay = await startRelay(relayConfig, { dir });
  await device.client.upload(seal(device, setup.keys, { seq: 2n }));
  await device.client.upload(seal(device, setup.keys, { seq: 3n }));
  await waitFor('three envelopes delivered', () => readLines(file).length >= 6, 20_000, receiver.output);
  const second = await audit();
  assert.equal(second.code, 0, second.output);
  assert.match(second.output, /"size":4,.*"previousSize":2/);

  // Rewrite history: the older state directory comes back.
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  await rm(relay.stateDir, { recursive: true });
  await cp(old, relay.stateDir, { recursive: true });
  relay = await startRelay(relayConfig, { dir });
  const code = await receiver.exited;
  assert.equal(code, 3, receiver.output());
  assert.match(receiver.output(), /"reason":"rollback"/);
  assert.match(receiver.output(), /checkpoint size 2 is smaller than the trusted size 4/);
  // The relay signed both: the evidence (docs/RECEIVER.md "Evidence files") verifies with the pinned key alone.
  const evidenceDir = path.join(setup.dir, 'state-r', 'evidence');
  const files = readdirSync(evidenceDir);
  assert.equal(files.length, 1, files.join(', '));
  assert.match(files[0]!, /-rollback\.json$/);
  assert.equal(statSync(path.join(evidenceDir, files[0]!)).mode & 0o777, 0o600);
  const evidence = JSON.parse(readFileSync(path.join(evidenceDir, files[0]!), 'utf8')) as { format: string; reason: string; trusted: string; offered: string };
  assert.equal(evidence.format, 'ghostpipe-log-evidence/1');
  assert.equal(evidence.reason, 'rollback');
  const pinned = decodePublicKeyPem(readFileSync(setup.relayPubFile, 'utf8')).publicKey;
  const verify = (note: string) => {
    const origin = parseCheckpoint(parseNote(note).text).origin;
    return openCheckpoint(note, [mlDsaNoteVerifier(origin, pinned)]).checkpoint;
  };
  assert.equal(verify(evidence.trusted).size, 4);
  assert.equal(verify(evidence.offered).size, 2);
  const rolledBack = await audit();
  assert.equal(rolledBack.code, 1);
  assert.match(rolledBack.output, /ROLLBACK/);

  // A restarted receiver refuses to go on as well, before opening anything.
  receiver = await startReceiverProcess(setup, receiverConfig(relay, setup), 'again');
  assert.equal(await receiver.exited, 3, receiver.output());
  assert.match(receiver.output(), /rollback/);

  // The rewritten log grows past the trusted size: now it is a fork.
  let lastLeaf = 0;
  for (const seq of [4n, 5n, 6n]) lastLeaf = (await device.client.upload(seal(device, setup.keys, { seq }))).leafIndex;
  assert.ok(await untilCheckpointCovers(relay.operator, lastLeaf + 1) > 4, 'the rewritten log grew past the trusted size 4');
  const forked = await audit();
  assert.equal(forked.code, 1, forked.output);
  assert.match(forked.output, /FORK/);
  assert.equal(readLines(file).length, 6, 'nothing from the rewritten log reached the sink');

  // Without state, audit checks only the signature (and with --full the entries): it passes.
  const fresh = run(['audit', '--relay', relay.url, '--relay-key', setup.relayPubFile, '--full']);
  assert.equal(await fresh.exited, 0, fresh.output());
  // A wrong pinned key is a failure, not a pass.
  const other = await startRelay({}, {});
  const wrong = run(['audit', '--relay', other.url, '--relay-key', setup.relayPubFile]);
  assert.equal(await wrong.exited, 1, wrong.output());
  assert.match(wrong.output(), /KEY MISMATCH/);
});
