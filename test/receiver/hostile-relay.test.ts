/**
 * A hostile relay: a relay-in-the-middle (test/helpers/relay-in-the-middle.ts) in front of a real
 * relay rewrites its answers (lease bodies, proofs, checkpoints, DID records, log entries).
 * `ghostpipe receive` runs against it as a real process. The fault model (docs/RECEIVER.md): an
 * answer that proves nothing is counted, warned about, retried and alerted on, and the receiver
 * keeps running; only history the pinned key signed twice, differently, stops it (exit 3, with
 * evidence). Nothing forged or unprovable may reach the sink, and each lie is named in the logs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { cleanupAll, heldFor, makeDevice, startRelay, stillHeld, untilCheckpointCovers, type RelayProcess } from '../helpers/relay.js';
import { envelopeId } from '../../protocol/envelope/index.js';
import { decodePrivateKeyPem, decodePublicKeyPem } from '../../protocol/keys.js';
import { consistencyProvesFork, MerkleTree, mlDsaNoteSigner, mlDsaNoteVerifier, openCheckpoint, parseCheckpoint, parseNote, signCheckpoint } from '../../protocol/tlog/index.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, run, seal, startReceiverProcess, waitFor, type Proc, type ReceiverSetup } from '../helpers/receiver.js';
import { isLease, json, startRelayInTheMiddle, withJson, type RelayInTheMiddle } from '../helpers/relay-in-the-middle.js';

let relay: RelayProcess;
let proxy: RelayInTheMiddle;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  proxy = await startRelayInTheMiddle(relay.url);
});

after(async () => {
  await killAllChildren();
  await proxy?.close();
  await cleanupAll();
});

async function receiverViaProxy(name: string, relayOver: Record<string, unknown> = {}): Promise<{ setup: ReceiverSetup; sink: string; config: Record<string, unknown> }> {
  proxy.rewrite = () => undefined;
  const setup = await receiverSetup(relay);
  const base = receiverConfig(relay, setup, {}, name);
  const config = { ...base, relay: { ...(base['relay'] as object), url: proxy.url, ...relayOver } };
  return { setup, sink: path.join(setup.dir, `${name}.jsonl`), config };
}

/** Warn lines of answers that proved nothing, with this reason. */
const unproven = (proc: Proc, reason: string) => proc.logs().filter((l) => l['level'] === 40 && l['reason'] === reason && String(l['msg']).startsWith('relay answer proves nothing'));
/** How many envelopes the relay still holds for this receiver, pending or leased (not acknowledged). */
const held = (setup: ReceiverSetup) => heldFor(relay, setup.keys.recipientKeyId);
/** The `receiver stopped` counters (logged at SIGTERM). */
const stopped = (proc: Proc) => proc.logs().find((l) => l['msg'] === 'receiver stopped')!;

/** After the lie ends: the envelope arrives, once, and the relay holds nothing more. */
async function arrivesOnce(proc: Proc, setup: ReceiverSetup, sink: string, seq: string): Promise<void> {
  await waitFor('the honest envelope in the sink', () => readLines(sink).length > 0, 30_000, proc.output);
  await waitFor('acknowledged at the relay', async () => (await held(setup)) === 0, 30_000, proc.output);
  assert.deepEqual(readLines(sink).map((l) => l['seq']), [seq, seq], 'its two readings, once');
}

test('a relay that hides a revocation in its DID record is caught by the revocation leaf in the verified log', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('hidden-revocation');
  await device.client.upload(seal(device, setup.keys, { seq: 1n }));
  await relay.operator.revokeDevice(device.did);
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || !url.startsWith('/v2/did/') || a.status !== 200) return undefined;
    const { revokedAt: _t, revocationLeafIndex: _i, ...record } = json(a);
    return withJson(a, { ...record, revoked: false }); // the lie
  };
  const proc = await startReceiverProcess(setup, config, 'hidden-revocation');
  const refused = await waitFor('refusal revoked_sender', () => refusals(proc, 'revoked_sender')[0], 20_000, proc.output);
  assert.match(String(refused['msg']), /revoked by log entry \d+/);
  await waitFor('queue empty (refused envelopes are acknowledged)', async () => (await held(setup)) === 0);
  assert.equal(readLines(sink).length, 0);
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('log entries that do not hash to the signed root (a revocation leaf swapped out) prove nothing: retried, never believed; the envelope arrives once they are honest', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('lying-entries', { unprovenAlertAfter: '2s' });
  const env = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(env);
  await relay.operator.revokeDevice((await makeDevice(relay)).did); // a revocation leaf to hide
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || !url.startsWith('/v2/log/entries') || a.status !== 200) return undefined;
    const entries = (json(a)['entries'] as { index: number; data: string }[]).map((e) => {
      const data = Buffer.from(e.data, 'base64');
      // Every revocation becomes a transfer leaf of the same length: the types no longer say "revoked".
      if (data[0] === 0x03) data[0] = 0x01;
      return { index: e.index, data: data.toString('base64') };
    });
    return withJson(a, { entries });
  };
  const proc = await startReceiverProcess(setup, config, 'lying-entries');
  await waitFor('two warnings bad_entries (retried)', () => unproven(proc, 'bad_entries').length >= 2, 30_000, proc.output);
  assert.match(String(unproven(proc, 'bad_entries')[0]!['msg']), /do not hash to its signed root/);
  // The envelope's inclusion proof holds each time, but that does not end the run of failures.
  const alert = await waitFor('the alert line', () => proc.logs().find((l) => l['level'] === 50 && l['alert'] === 'relay_unproven'), 30_000, proc.output);
  assert.equal(alert['reason'], 'bad_entries');
  assert.ok(!proc.logs().some((l) => l['msg'] === 'relay answers verify again'), 'no recovery while the entries lie');
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.equal(readLines(sink).length, 0);
  assert.ok(await stillHeld(device, envelopeId(env)), 'not acknowledged on the strength of unproven entries');
  // `ghostpipe audit --full` through the same lying relay fails: an auditor is told.
  const audit = run(['audit', '--relay', proxy.url, '--relay-key', setup.relayPubFile, '--full']);
  assert.equal(await audit.exited, 1, audit.output());
  assert.match(audit.output(), /FORK: .*do not hash to the signed root/);
  proxy.rewrite = () => undefined;
  await arrivesOnce(proc, setup, sink, '1');
  assert.equal(await proc.kill('SIGTERM'), 0);
  assert.equal(stopped(proc)['delivered'], 1);
});

test('garbage inclusion proofs for a while: counted, retried, the alert after relay.unprovenAlertAfter; then the honest relay: the envelope arrives exactly once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('garbage-proof', { unprovenAlertAfter: '2s' });
  const env = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(env);
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || !url.startsWith('/v2/log/proof/inclusion') || a.status !== 200) return undefined;
    const proof = json(a);
    return withJson(a, { ...proof, proof: (proof['proof'] as string[]).map(() => Buffer.alloc(32, 0xab).toString('base64')) });
  };
  const proc = await startReceiverProcess(setup, config, 'garbage-proof');
  const isAlert = (l: Record<string, unknown>) => l['level'] === 50 && l['alert'] === 'relay_unproven';
  const alert = await waitFor('the alert line', () => proc.logs().find(isAlert), 30_000, proc.output);
  assert.match(String(alert['msg']), /^ALERT: for \d+ ms the relay has answered nothing this receiver could verify \(last: bad_inclusion_proof\)/);
  assert.equal(alert['alertAfterMs'], 2000);
  assert.ok((alert['failingMs'] as number) >= 2000, `not before the configured time: ${String(alert['failingMs'])}`);
  // Warnings came first, without an alert: the first one at the start of the run of failures.
  const logs = proc.logs();
  const warns = unproven(proc, 'bad_inclusion_proof');
  assert.ok(warns.length >= 2, proc.output());
  assert.equal(warns[0]!['failingMs'], 0);
  assert.ok(logs.findIndex((l) => l === warns[0]) < logs.findIndex(isAlert));
  assert.match(String(warns[0]!['msg']), /inclusion proof for leaf \d+ at size \d+/);
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.equal(readLines(sink).length, 0, 'nothing opened on an unproven inclusion');
  assert.ok(await stillHeld(device, envelopeId(env)), 'nothing acknowledged on an unproven inclusion');

  proxy.rewrite = () => undefined;
  await arrivesOnce(proc, setup, sink, '1');
  await waitFor('the recovery line', () => proc.logs().some((l) => l['msg'] === 'relay answers verify again'), 20_000, proc.output);
  assert.equal(await proc.kill('SIGTERM'), 0);
  const counts = stopped(proc);
  assert.equal(counts['delivered'], 1);
  assert.ok((counts['unproven'] as number) >= warns.length, proc.output());
  assert.ok((counts['alerts'] as number) >= 1);
});

test('checkpoints with a broken signature, then unparseable ones: counted and retried, nothing opened; then honest: the envelope arrives once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('bad-checkpoint');
  let mode: 'bad_signature' | 'malformed' = 'bad_signature';
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || url !== '/v2/log/checkpoint' || a.status !== 200) return undefined;
    if (mode === 'malformed') return { ...a, body: Buffer.from('not a checkpoint\n') };
    const lines = a.body.toString('utf8').split('\n');
    const sig = lines.findIndex((l) => l.startsWith('— '));
    const parts = lines[sig]!.split(' ');
    const raw = Buffer.from(parts[2]!, 'base64');
    raw[raw.length - 1]! ^= 0x01; // one bit of the ML-DSA-65 signature
    parts[2] = raw.toString('base64');
    lines[sig] = parts.join(' ');
    return { ...a, body: Buffer.from(lines.join('\n')) };
  };
  const proc = await startReceiverProcess(setup, config, 'bad-checkpoint');
  await waitFor('warnings bad_signature', () => unproven(proc, 'bad_signature').length >= 2, 30_000, proc.output);
  const env = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(env);
  mode = 'malformed';
  await waitFor('warnings malformed', () => unproven(proc, 'malformed').length >= 2, 30_000, proc.output);
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.equal(readLines(sink).length, 0);
  assert.ok(await stillHeld(device, envelopeId(env)), 'not acknowledged');
  proxy.rewrite = () => undefined;
  await arrivesOnce(proc, setup, sink, '1');
  assert.equal(await proc.kill('SIGTERM'), 0);
  assert.ok(!proc.logs().some((l) => l['level'] === 60), 'no fatal line');
});

test('another checkpoint key announced at start proves nothing: retried with the alert, not exit 3; SIGTERM meanwhile exits 0; once honest the receiver starts and the envelope arrives once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('wrong-key', { unprovenAlertAfter: '1s' });
  const pinned = decodePublicKeyPem(readFileSync(setup.relayPubFile, 'utf8')).publicKey;
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || url !== '/v2/log/key' || a.status !== 200) return undefined;
    const other = Buffer.from(pinned);
    other[0]! ^= 0xff;
    return withJson(a, { ...json(a), publicKey: other.toString('base64') });
  };
  // Stopped while it waits: a clean exit.
  const first = await startReceiverProcess(setup, config, 'wrong-key-stopped');
  await waitFor('a warning key_mismatch', () => unproven(first, 'key_mismatch').length >= 1, 30_000, first.output);
  assert.equal(await first.kill('SIGTERM'), 0, first.output());

  const proc = await startReceiverProcess(setup, config, 'wrong-key');
  const alert = await waitFor('the alert line', () => proc.logs().find((l) => l['level'] === 50 && l['alert'] === 'relay_unproven'), 30_000, proc.output);
  assert.equal(alert['reason'], 'key_mismatch');
  assert.match(String(unproven(proc, 'key_mismatch')[0]!['msg']), /announces a checkpoint key other than the pinned relay public key/);
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.ok(!proc.logs().some((l) => l['msg'] === 'receiver started'));
  const env = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(env);
  proxy.rewrite = () => undefined;
  await waitFor('receiver started', () => proc.logs().some((l) => l['msg'] === 'receiver started'), 30_000, proc.output);
  await arrivesOnce(proc, setup, sink, '1');
  assert.equal(await proc.kill('SIGTERM'), 0);
  assert.ok((stopped(proc)['unproven'] as number) >= 2, 'the failures at start are counted in the stop line');
  assert.ok((stopped(proc)['alerts'] as number) >= 1);
});

test('a fork the relay signed (same size, another root, valid signature): exit 3, both signed notes saved as evidence that verifies', async () => {
  const { setup, sink, config } = await receiverViaProxy('signed-fork');
  const proc = await startReceiverProcess(setup, config, 'signed-fork');
  // The receiver first trusts the relay's real checkpoint (no uploads here: its size stays)...
  const cp = parseCheckpoint(parseNote(await relay.operator.checkpoint()).text);
  await waitFor('the real checkpoint trusted', () => proc.logs().some((l) => l['msg'] === 'checkpoint trusted' && l['size'] === cp.size), 30_000, proc.output);
  // ...then the relay signs another root for the same size (its own key, from its state directory).
  const key = decodePrivateKeyPem(readFileSync(path.join(relay.stateDir, 'relay.sign.key'), 'utf8'));
  const root = Buffer.from(cp.root);
  root[0]! ^= 0x01;
  const forged = signCheckpoint({ origin: cp.origin, size: cp.size, root }, [mlDsaNoteSigner(cp.origin, key.seed)]);
  proxy.rewrite = (method, url, a) => (method === 'GET' && url === '/v2/log/checkpoint' && a.status === 200 ? { ...a, body: Buffer.from(forged) } : undefined);
  assert.equal(await proc.exited, 3, proc.output());
  proxy.rewrite = () => undefined;
  const fatal = proc.logs().find((l) => l['level'] === 60)!;
  assert.equal(fatal['reason'], 'fork', proc.output());
  assert.equal(readLines(sink).length, 0);

  const folder = path.join(config['stateDir'] as string, 'evidence');
  assert.equal(statSync(folder).mode & 0o777, 0o700);
  const files = readdirSync(folder);
  assert.equal(files.length, 1, files.join(', '));
  assert.match(files[0]!, /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-fork\.json$/);
  const file = path.join(folder, files[0]!);
  assert.equal(fatal['evidence'], path.resolve(file));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const evidence = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  assert.equal(evidence['format'], 'ghostpipe-log-evidence/1');
  assert.equal(evidence['reason'], 'fork');
  assert.equal(evidence['proof'], null);
  assert.equal(evidence['offered'], forged);
  // An auditor needs only the pinned key: both notes verify, same size, different roots.
  const pinned = decodePublicKeyPem(readFileSync(setup.relayPubFile, 'utf8')).publicKey;
  const verify = (note: unknown) => openCheckpoint(note as string, [mlDsaNoteVerifier(cp.origin, pinned)]).checkpoint;
  const trusted = verify(evidence['trusted']);
  const offered = verify(evidence['offered']);
  assert.equal(trusted.size, offered.size);
  assert.notDeepEqual(Buffer.from(trusted.root), Buffer.from(offered.root));
});

test('garbage consistency proofs for an honest larger checkpoint prove nothing: retried, the envelope beyond the trusted tree waits, then arrives once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('garbage-consistency');
  const proc = await startReceiverProcess(setup, config, 'garbage-consistency');
  const size = parseCheckpoint(parseNote(await relay.operator.checkpoint()).text).size;
  await waitFor('the current checkpoint trusted', () => proc.logs().some((l) => l['msg'] === 'checkpoint trusted' && l['size'] === size), 30_000, proc.output);
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || !url.startsWith('/v2/log/proof/consistency') || a.status !== 200) return undefined;
    const proof = json(a);
    return withJson(a, { ...proof, proof: (proof['proof'] as string[]).map(() => Buffer.alloc(32, 0xcd).toString('base64')) });
  };
  const env = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(env);
  await waitFor('warnings bad_consistency_proof', () => unproven(proc, 'bad_consistency_proof').length >= 2, 30_000, proc.output);
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.equal(readLines(sink).length, 0, 'its leaf is beyond the trusted tree: not opened');
  proxy.rewrite = () => undefined;
  await arrivesOnce(proc, setup, sink, '1');
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('a fork the relay signed at a larger size, shown by its own consistency proof: exit 3, evidence with both notes and the proof', async () => {
  const { setup, sink, config } = await receiverViaProxy('signed-fork-larger');
  // A trusted size that is not a power of two (a perfect subtree is left out of the proof).
  let size = parseCheckpoint(parseNote(await relay.operator.checkpoint()).text).size;
  while ((size & (size - 1)) === 0) {
    await makeDevice(relay); // one registration leaf more
    size = await untilCheckpointCovers(relay.operator, size + 1);
  }
  const proc = await startReceiverProcess(setup, config, 'signed-fork-larger');
  const cp = parseCheckpoint(parseNote(await relay.operator.checkpoint()).text);
  await waitFor('the real checkpoint trusted', () => proc.logs().some((l) => l['msg'] === 'checkpoint trusted' && l['size'] === cp.size), 30_000, proc.output);
  // Another history: the same entries with the first one changed, one entry longer, signed by the relay's key.
  const forked = new MerkleTree();
  const entries = await relay.operator.entries(0, cp.size);
  entries.forEach((e, i) => forked.appendData(i === 0 ? Uint8Array.from([...e.data, 0x00]) : e.data));
  forked.appendData(new TextEncoder().encode('rewritten history'));
  const key = decodePrivateKeyPem(readFileSync(path.join(relay.stateDir, 'relay.sign.key'), 'utf8'));
  const forgedNote = signCheckpoint({ origin: cp.origin, size: cp.size + 1, root: forked.root() }, [mlDsaNoteSigner(cp.origin, key.seed)]);
  const proof = forked.consistencyProof(cp.size, cp.size + 1);
  proxy.rewrite = (method, url, a) => {
    if (method === 'GET' && url === '/v2/log/checkpoint') return { ...a, status: 200, body: Buffer.from(forgedNote) };
    if (method === 'GET' && url === `/v2/log/proof/consistency?from=${cp.size}&to=${cp.size + 1}`) {
      return { ...a, status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ from: cp.size, to: cp.size + 1, proof: proof.map((h) => Buffer.from(h).toString('base64')) })) };
    }
    return undefined;
  };
  assert.equal(await proc.exited, 3, proc.output());
  proxy.rewrite = () => undefined;
  const fatal = proc.logs().find((l) => l['level'] === 60)!;
  assert.equal(fatal['reason'], 'fork', proc.output());
  assert.match(String(fatal['msg']), /does not extend the trusted one/);
  assert.equal(readLines(sink).length, 0);
  const evidence = JSON.parse(readFileSync(fatal['evidence'] as string, 'utf8')) as { reason: string; trusted: string; offered: string; proof: { from: number; to: number; hashes: string[] } };
  assert.equal(evidence.reason, 'fork');
  assert.deepEqual(evidence.proof, { from: cp.size, to: cp.size + 1, hashes: proof.map((h) => Buffer.from(h).toString('base64')) });
  // An auditor's check: both notes verify with the pinned key, and the proof leads to the offered
  // root but not to the trusted root.
  const pinned = decodePublicKeyPem(readFileSync(setup.relayPubFile, 'utf8')).publicKey;
  const verify = (note: string) => openCheckpoint(note, [mlDsaNoteVerifier(cp.origin, pinned)]).checkpoint;
  const trusted = verify(evidence.trusted);
  const offered = verify(evidence.offered);
  assert.ok(consistencyProvesFork(trusted.size, offered.size, evidence.proof.hashes.map((h) => new Uint8Array(Buffer.from(h, 'base64'))), trusted.root, offered.root));
});

test('oversized, truncated and mislabelled lease answers: refused or retried, the receiver keeps running, the real envelope then arrives once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('bad-leases');
  const good = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(good);
  let mode: 'oversized' | 'truncated' | 'mislabelled' | 'honest' = 'oversized';
  const served: string[] = [];
  proxy.rewrite = (method, url, a) => {
    if (!isLease(method, url) || a.status !== 200) return undefined;
    served.push(mode);
    if (mode === 'oversized') return { ...a, body: Buffer.alloc(17 * 1024 * 1024, 0x41) }; // over the 16 MiB response cap
    if (mode === 'truncated') {
      const body = a.body.subarray(0, 1000);
      return { ...a, headers: { ...a.headers, 'ghostpipe-envelope-id': envelopeId(body) }, body };
    }
    if (mode === 'mislabelled') return { ...a, headers: { ...a.headers, 'ghostpipe-envelope-id': 'ab'.repeat(32) } };
    return undefined;
  };
  const proc = await startReceiverProcess(setup, config, 'bad-leases');
  await waitFor('a warning about the oversized answer', () => proc.logs().some((l) => l['level'] === 40 && /larger than/.test(String(l['msg']))), 20_000, proc.output);
  // Each of the next two lies is acknowledged as refused (burning the envelope at the relay), so upload a fresh one each time.
  mode = 'truncated';
  await waitFor('refusal malformed', () => refusals(proc, 'malformed').length > 0, 20_000, proc.output);
  mode = 'mislabelled';
  await device.client.upload(seal(device, setup.keys, { seq: 2n }));
  await waitFor('refusal id_mismatch', () => refusals(proc, 'id_mismatch').length > 0, 20_000, proc.output);
  mode = 'honest';
  await device.client.upload(seal(device, setup.keys, { seq: 3n }));
  const lines = await waitFor('the honest envelope in the sink', () => readLines(sink).length > 0 && readLines(sink), 20_000, proc.output);
  assert.deepEqual([...new Set(lines.map((l) => l['seq']))], ['3']);
  assert.deepEqual(served.slice(0, 1), ['oversized']);
  assert.equal(proc.child.exitCode, null, 'still running');
  assert.equal(await proc.kill('SIGTERM'), 0);
});
