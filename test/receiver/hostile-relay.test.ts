/**
 * A hostile relay: a proxy in front of a real relay rewrites its answers (lease bodies, proofs,
 * checkpoints, DID records, log entries). `ghostpipe receive` runs against the proxy as a real
 * process; nothing forged or unprovable may reach the sink, and each lie is named in the logs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { cleanupAll, makeDevice, startRelay, type RelayProcess } from '../helpers/relay.js';
import { envelopeId } from '../../protocol/envelope/index.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, run, seal, startReceiverProcess, waitFor, type ReceiverSetup } from '../helpers/receiver.js';

interface Answer { status: number; headers: Record<string, string>; body: Buffer }
/** Returns a replacement answer, or undefined to pass the relay's answer through. */
type Rewrite = (method: string, url: string, answer: Answer) => Answer | undefined;

interface Proxy { url: string; rewrite: Rewrite; close(): Promise<void> }

async function startProxy(target: string): Promise<Proxy> {
  const proxy: Proxy = { url: '', rewrite: () => undefined, close: async () => undefined };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
    try {
      const upstream = await fetch(target + req.url, { method: req.method!, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
      const answer: Answer = { status: upstream.status, headers: {}, body: Buffer.from(await upstream.arrayBuffer()) };
      upstream.headers.forEach((v, k) => { if (k !== 'content-length' && k !== 'connection' && k !== 'keep-alive' && k !== 'transfer-encoding') answer.headers[k] = v; });
      const out = proxy.rewrite(req.method!, req.url!, answer) ?? answer;
      res.writeHead(out.status, { ...out.headers, 'content-length': String(out.body.length) }).end(out.body);
    } catch {
      res.destroy();
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return proxy;
}

const json = (a: Answer) => JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
const withJson = (a: Answer, value: unknown): Answer => ({ ...a, body: Buffer.from(JSON.stringify(value)) });

let relay: RelayProcess;
let proxy: Proxy;

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  proxy = await startProxy(relay.url);
});

after(async () => {
  await killAllChildren();
  await proxy?.close();
  await cleanupAll();
});

async function receiverViaProxy(name: string): Promise<{ setup: ReceiverSetup; sink: string; config: Record<string, unknown> }> {
  const setup = await receiverSetup(relay);
  const base = receiverConfig(relay, setup, {}, name);
  const config = { ...base, relay: { ...(base['relay'] as object), url: proxy.url } };
  return { setup, sink: path.join(setup.dir, `${name}.jsonl`), config };
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
  await waitFor('queue empty (refused envelopes are acknowledged)', async () => (await setup.keys.client.inbox(setup.keys.recipientKeyId)).length === 0);
  assert.equal(readLines(sink).length, 0);
  assert.equal(await proc.kill('SIGTERM'), 0);
});

test('log entries that do not hash to the signed root (a revocation leaf swapped out) stop the receiver', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('lying-entries');
  await device.client.upload(seal(device, setup.keys, { seq: 1n }));
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
  assert.equal(await proc.exited, 3, proc.output());
  assert.ok(proc.logs().some((l) => l['level'] === 60 && l['reason'] === 'fork' && /do not hash to its signed root/.test(String(l['msg']))), proc.output());
  assert.equal(readLines(sink).length, 0);
  // `ghostpipe audit --full` through the same lying relay says so too.
  const audit = run(['audit', '--relay', proxy.url, '--relay-key', setup.relayPubFile, '--full']);
  assert.equal(await audit.exited, 1, audit.output());
  assert.match(audit.output(), /FORK: .*do not hash to the signed root/);
});

test('a garbage inclusion proof stops the receiver before anything is opened', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('garbage-proof');
  await device.client.upload(seal(device, setup.keys, { seq: 1n }));
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || !url.startsWith('/v2/log/proof/inclusion') || a.status !== 200) return undefined;
    const proof = json(a);
    return withJson(a, { ...proof, proof: (proof['proof'] as string[]).map(() => Buffer.alloc(32, 0xab).toString('base64')) });
  };
  const proc = await startReceiverProcess(setup, config, 'garbage-proof');
  assert.equal(await proc.exited, 3, proc.output());
  assert.ok(proc.logs().some((l) => l['level'] === 60 && l['reason'] === 'bad_inclusion_proof'), proc.output());
  assert.equal(readLines(sink).length, 0);
});

test('a checkpoint with a broken signature stops the receiver: bad_signature', async () => {
  const { setup, sink, config } = await receiverViaProxy('bad-checkpoint');
  proxy.rewrite = (method, url, a) => {
    if (method !== 'GET' || url !== '/v2/log/checkpoint' || a.status !== 200) return undefined;
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
  assert.equal(await proc.exited, 3, proc.output());
  assert.ok(proc.logs().some((l) => l['level'] === 60 && l['reason'] === 'bad_signature'), proc.output());
  assert.equal(readLines(sink).length, 0);
});

test('oversized, truncated and mislabelled lease answers: refused or retried, the receiver keeps running, the real envelope then arrives once', async () => {
  const device = await makeDevice(relay, 'enterprise');
  const { setup, sink, config } = await receiverViaProxy('bad-leases');
  const good = seal(device, setup.keys, { seq: 1n });
  await device.client.upload(good);
  let mode: 'oversized' | 'truncated' | 'mislabelled' | 'honest' = 'oversized';
  const served: string[] = [];
  proxy.rewrite = (method, url, a) => {
    if (method !== 'POST' || !/^\/v2\/inbox\/[0-9a-f]+\/lease/.test(url) || a.status !== 200) return undefined;
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
