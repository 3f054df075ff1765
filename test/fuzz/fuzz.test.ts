/**
 * The fuzzer itself: a short seeded run against a real relay finds nothing, and its detectors do
 * find planted faults (a server answering 500 to some mutated requests, a parser throwing an
 * untyped error), so a quiet run means a quiet relay, not a deaf fuzzer.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { generatePrivateKey } from '../../protocol/keys.js';
import { cleanupAll } from '../helpers/relay.js';
import { TEMPLATES, sealFor, setUpRelay, type FuzzContext } from './corpus.js';
import { PARSERS, parserCorpus, type ParserCase } from './parsers.js';
import { judge, runFuzz, type FuzzOptions } from './run.js';

after(cleanupAll);

const options: FuzzOptions = { requests: 300, seed: 11, concurrency: 4, parserCases: 150, clientCases: 30, slow: 1, timeoutMs: 120_000 };

test('the corpus has a valid request for every route of the relay route table', () => {
  const source = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../relay/server.ts'), 'utf8');
  const table = [...source.matchAll(/\['(GET|POST|DELETE|PUT|PATCH)', '([^']+)'/g)].map((m) => `${m[1]} ${m[2]}`).sort();
  assert.ok(table.length >= 20, `read ${table.length} routes from relay/server.ts`);
  assert.deepEqual(TEMPLATES.map((t) => t[1]).sort(), table);
});

test('a seeded run against a real relay: no findings, valid requests got through, the relay still serves', async () => {
  const { relay, ctx } = await setUpRelay(4);
  const corpus = await parserCorpus(ctx, relay.operator);
  const report = await runFuzz({ url: relay.url, ctx, child: relay.child, output: relay.output }, options, corpus);
  assert.deepEqual(report.findings, []);
  assert.equal(report.requests, options.requests);
  assert.equal(report.parserCases, options.parserCases);
  assert.equal(report.clientCases, options.clientCases);
  // About a tenth of the cases are sent unmutated: some of every kind of answer came back.
  assert.ok((report.statuses['200'] ?? 0) > 0 && (report.statuses['400'] ?? 0) > 0 && (report.statuses['404'] ?? 0) > 0, JSON.stringify(report.statuses));
  assert.ok(report.rss.length >= 2 && report.rss.every((s) => s.relayKiB !== undefined && s.relayKiB > 0), 'relay RSS sampled');
  assert.equal(await relay.stop(), 0);
});

/** A context whose keys mean nothing: enough to build every kind of request. */
function offlineContext(url: string): FuzzContext {
  const signing = generatePrivateKey('ML-DSA-65');
  const receiverKem = generatePrivateKey('X-Wing');
  const signer = { seed: signing.seed, publicKey: signing.publicKey };
  return {
    url, keys: { device: 'pgp_x', receiver: 'pgp_y', operator: 'plk_z', unenrolled: 'pgp_w' }, recipient: 'ab'.repeat(32),
    did: 'did:ghostpipe:x', victimDid: 'did:ghostpipe:y', victimKeyId: '0'.repeat(12), envelopes: [sealFor({ signer, receiverKem })],
    signer, receiverKem, registerBody: { challenge: 'c' }, approvalBody: { fleetStatement: 'AA==', fleetSignature: 'AA==' }, victimSigning: signing, victimKem: receiverKem,
    pools: { leases: [], challenges: [], uploaded: [] },
  };
}

test('the detector reports a 5xx that a planted fault answers to mutated requests, with the case to replay', async () => {
  // Planted fault: 500 for a percent sign in the path, 404 with the contract's body otherwise.
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = req.url?.split('?')[0]!.includes('%') ? 500 : 404;
      const body = JSON.stringify(status === 500 ? { error: 'internal', message: 'planted' } : { error: 'not_found', message: 'no' });
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const report = await runFuzz({ url, ctx: offlineContext(url) }, { ...options, requests: 200, slow: 0, parserCases: 0, clientCases: 0, liveness: false });
    const planted = report.findings.filter((f) => f.kind === '5xx');
    assert.ok(planted.length > 0, `no 5xx finding in ${JSON.stringify(report.statuses)}`);
    for (const f of planted) {
      assert.equal(f.answer?.status, 500);
      assert.ok(f.index !== undefined && f.request !== undefined && f.mutations !== undefined, 'a finding names its case and carries its request');
    }
    assert.ok(report.findings.every((f) => f.kind === '5xx'), JSON.stringify(report.findings.filter((f) => f.kind !== '5xx')[0]));
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('the judge excuses only documented backpressure: 507 memory_full and 503 log_busy, not 500 or a 503 without its code', () => {
  const request = { index: 0, route: 'r', mutations: [], method: 'GET', target: '/', headers: [] };
  const answer = (status: number, body: unknown) => ({ status, body: Buffer.from(JSON.stringify(body)) });
  assert.equal(judge(request, answer(507, { error: 'memory_full', message: 'full' })), undefined);
  assert.equal(judge(request, answer(503, { error: 'log_busy', message: 'busy' })), undefined);
  assert.equal(judge(request, answer(500, { error: 'internal', message: 'bug' }))?.kind, '5xx');
  assert.equal(judge(request, answer(500, { error: 'log_corrupt', message: 'damaged' }))?.kind, '5xx');
  assert.equal(judge(request, { status: 503 })?.kind, '5xx');
  assert.equal(judge(request, answer(404, { error: 'memory_full', message: 'wrong status' }))?.kind, 'contract');
  assert.equal(judge(request, { status: 400, body: Buffer.from('<html>') })?.kind, 'contract');
  assert.equal(judge(request, { status: 0, error: 'timeout' })?.kind, 'no_answer');
  assert.equal(judge(request, { status: 0, error: 'ECONNRESET' }), undefined);
});

test('the detector reports a parser that throws an untyped error', async () => {
  const { relay, ctx } = await setUpRelay(2);
  try {
    const corpus = await parserCorpus(ctx, relay.operator);
    // Planted fault: a frame decoder that throws a TypeError on a mutated input.
    const parsers = {
      ...PARSERS,
      frames: (...args: Parameters<ParserCase>) => {
        const { input, run } = PARSERS['frames']!(...args);
        return { input, run: () => { try { run(); } catch { throw new TypeError('planted'); } } };
      },
    };
    const report = await runFuzz({ url: relay.url, ctx }, { ...options, requests: 0, slow: 0, parserCases: 200, clientCases: 0, parsers }, corpus);
    const planted = report.findings.filter((f) => f.kind === 'parser');
    assert.ok(planted.length > 0, 'no parser finding');
    assert.ok(planted.every((f) => f.route === 'frames' && /planted/.test(f.detail) && f.input !== undefined), JSON.stringify(planted[0]));
  } finally {
    assert.equal(await relay.stop(), 0);
  }
});
