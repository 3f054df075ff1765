/**
 * How the relay client reduces every failure to a RelayError kind and code, against an
 * in-process HTTP server that answers each case as a relay, a proxy or a broken peer would.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpClient } from './http-client.js';
import { RelayClient, RelayError, type RelayErrorKind } from './relay-client.js';
import { RELAY_ERRORS, type RelayErrorCode } from '../protocol/api/index.js';

type Answer = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let answer: Answer = (_req, res) => res.writeHead(500).end();
let server: http.Server;
let baseUrl: string;

before(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => answer(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
});

function refusal(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return (_req, res) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(text);
}

async function failure(request: (client: RelayClient) => Promise<unknown>, client = new RelayClient({ baseUrl, timeoutMs: 5_000 })): Promise<RelayError> {
  try {
    await request(client);
  } catch (err) {
    assert.ok(err instanceof RelayError, `expected a RelayError, got ${String(err)}`);
    return err;
  }
  assert.fail('the request succeeded');
}

interface Expected { kind: RelayErrorKind; code: string; status: number; retryAfterMs?: number }

function assertFailure(err: RelayError, expected: Expected, why: string): void {
  assert.deepEqual({ kind: err.kind, code: err.code, status: err.status, retryAfterMs: err.retryAfterMs }, { retryAfterMs: undefined, ...expected }, why);
}

/** What each code of the contract means to a caller: the table of the client's header, row by row. */
const KIND_OF: Record<RelayErrorCode, RelayErrorKind> = {
  bad_request: 'rejected',
  truncated_body: 'rejected',
  malformed_envelope: 'rejected',
  missing_key: 'unauthorized',
  invalid_key: 'unauthorized',
  key_revoked: 'unauthorized',
  quota_exceeded: 'retryAfter',
  forbidden: 'rejected',
  device_not_enrolled: 'rejected',
  device_revoked: 'rejected',
  wrong_signer: 'rejected',
  bad_signature: 'rejected',
  bad_approval: 'rejected',
  not_found: 'rejected',
  method_not_allowed: 'rejected',
  too_slow: 'retryAfter',
  duplicate: 'rejected',
  already_bound: 'rejected',
  last_operator_key: 'rejected',
  challenge_expired: 'rejected',
  lease_expired: 'rejected',
  download_complete: 'rejected',
  log_pruned: 'rejected',
  too_large: 'tooLarge',
  unsupported_media_type: 'rejected',
  unknown_recipient: 'rejected',
  not_in_group: 'rejected',
  incomplete_package: 'rejected',
  rollout_halted: 'rejected',
  rate_limited: 'retryAfter',
  too_many_uploads: 'retryAfter',
  too_many_connections: 'retryAfter',
  internal: 'unreachable',
  log_corrupt: 'unreachable',
  log_busy: 'retryAfter',
  shutting_down: 'retryAfter',
  memory_full: 'retryAfter',
  key_memory_full: 'retryAfter',
};

test('every code of the contract keeps its code and status and gets its kind', async () => {
  for (const [code, status] of Object.entries(RELAY_ERRORS) as [RelayErrorCode, number][]) {
    answer = refusal(status, { error: code, message: `refused: ${code}` });
    const err = await failure((client) => client.health());
    assertFailure(err, { kind: KIND_OF[code], code, status }, code);
    assert.equal(err.message, `GET /healthz: refused: ${code}`);
  }
});

test('Retry-After is read as seconds or as an HTTP date, on every refusal that carries it', async () => {
  const cases: [number, string, string, (ms: number | undefined) => boolean][] = [
    [402, 'quota_exceeded', '120', (ms) => ms === 120_000],
    [429, 'rate_limited', '2', (ms) => ms === 2_000],
    [503, 'shutting_down', '1', (ms) => ms === 1_000],
    [503, 'log_busy', '0', (ms) => ms === 0],
    [507, 'memory_full', '3', (ms) => ms === 3_000],
    // An HTTP date an hour ahead: whole seconds, read some time after it was written.
    [429, 'rate_limited', new Date(Date.now() + 3_600_000).toUTCString(), (ms) => ms !== undefined && ms > 3_000_000 && ms <= 3_600_000],
    [507, 'memory_full', 'Thu, 01 Jan 1970 00:00:00 GMT', (ms) => ms === 0],
    [429, 'rate_limited', 'soon', (ms) => ms === undefined],
  ];
  for (const [status, code, header, expected] of cases) {
    answer = refusal(status, { error: code, message: 'later' }, { 'retry-after': header });
    const err = await failure((client) => client.upload(new Uint8Array(8)));
    assert.equal(err.kind, 'retryAfter', `${status} ${header}`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.ok(expected(err.retryAfterMs), `${status} Retry-After ${header}: ${String(err.retryAfterMs)} ms`);
  }
});

test('a refusal without a code the contract gives its status falls back to http_<status>; the kind follows the status', async () => {
  const cases: [number, unknown, Expected, RegExp][] = [
    [400, { error: 'made_up', message: 'a newer relay' }, { kind: 'rejected', code: 'http_400', status: 400 }, /a newer relay \(relay code "made_up" is not in the contract for HTTP 400\)/],
    [409, { error: 'duplicate_envelope' }, { kind: 'rejected', code: 'http_409', status: 409 }, /HTTP 409 \(relay code "duplicate_envelope"/],
    [500, { error: 'duplicate', message: 'lies' }, { kind: 'unreachable', code: 'http_500', status: 500 }, /lies \(relay code "duplicate" is not in the contract for HTTP 500\)/],
    [401, { error: 'toString' }, { kind: 'unauthorized', code: 'http_401', status: 401 }, /"toString"/],
    [403, { error: 42 }, { kind: 'rejected', code: 'http_403', status: 403 }, /relay code 42/],
    [404, 'null', { kind: 'rejected', code: 'http_404', status: 404 }, /HTTP 404$/],
    [431, '', { kind: 'rejected', code: 'http_431', status: 431 }, /HTTP 431$/],
    [502, '<html>Bad Gateway</html>', { kind: 'unreachable', code: 'http_502', status: 502 }, /HTTP 502$/],
    [503, 'Service Unavailable', { kind: 'retryAfter', code: 'http_503', status: 503 }, /HTTP 503$/],
    [302, '', { kind: 'unreachable', code: 'http_302', status: 302 }, /HTTP 302$/],
  ];
  for (const [status, body, expected, message] of cases) {
    answer = refusal(status, body);
    const err = await failure((client) => client.health());
    assertFailure(err, expected, `${status} ${JSON.stringify(body)}`);
    assert.match(err.message, message);
  }
});

test('an answer that breaks the contract is bad_response: not JSON, a lease without its headers, a bad challenge, over the cap', async () => {
  answer = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":');
  assertFailure(await failure((client) => client.health()), { kind: 'unreachable', code: 'bad_response', status: 200 }, 'not JSON');

  answer = (_req, res) => res.writeHead(200, { 'content-type': 'application/vnd.ghostpipe.envelope', 'ghostpipe-envelope-id': 'ab'.repeat(32) }).end('bytes');
  const lease = await failure((client) => client.lease('cd'.repeat(32)));
  assertFailure(lease, { kind: 'unreachable', code: 'bad_response', status: 200 }, 'lease headers');
  assert.match(lease.message, /lacks ghostpipe-lease-id/);

  answer = refusal(201, { challenge: 'not-43-characters', expiresAt: new Date().toISOString() });
  const enroll = await failure((client) => client.enroll({ signingPublicKey: new Uint8Array(1952), kemPublicKey: new Uint8Array(1216), sign: () => assert.fail('nothing to sign'), decapsulate: () => assert.fail('nothing to decapsulate') }));
  assertFailure(enroll, { kind: 'unreachable', code: 'bad_response', status: 201 }, 'challenge');
  assert.match(enroll.message, /43 base64url/);

  answer = (_req, res) => res.writeHead(200).end(Buffer.alloc(64 * 1024));
  const capped = new RelayClient({ baseUrl, timeoutMs: 5_000, http: new HttpClient({ maxResponseBytes: 1024 }) });
  assertFailure(await failure((client) => client.checkpoint(), capped), { kind: 'unreachable', code: 'bad_response', status: 0 }, 'over the cap');
});

test('a proof, entries or body of the wrong shape is bad_response, never a TypeError (found by the fuzzer, test/fuzz)', async () => {
  const shapes: [string, (client: RelayClient) => Promise<unknown>, unknown][] = [
    ['inclusion proof not a list', (c) => c.inclusionProof({ index: 1 }, 2), { leafIndex: 1, treeSize: 2, proof: 'KyF9' }],
    ['inclusion proof missing', (c) => c.inclusionProof({ index: 1 }, 2), { leafIndex: 1, treeSize: 2 }],
    ['inclusion proof of numbers', (c) => c.inclusionProof({ index: 1 }, 2), { leafIndex: 1, treeSize: 2, proof: [1] }],
    ['consistency proof null', (c) => c.consistencyProof(1, 2), { from: 1, to: 2, proof: null }],
    ['entries not a list', (c) => c.entries(0, 1), { entries: {} }],
    ['an entry that is null', (c) => c.entries(0, 1), { entries: [null] }],
    ['an entry without data', (c) => c.entries(0, 1), { entries: [{ index: 0 }] }],
    ['body null', (c) => c.inclusionProof({ index: 1 }, 2), null],
    ['body a list', (c) => c.status(['ab'.repeat(32)]), []],
    ['body a number', (c) => c.inbox('cd'.repeat(32)), 7],
  ];
  for (const [why, call, body] of shapes) {
    answer = refusal(200, body);
    assertFailure(await failure(call), { kind: 'unreachable', code: 'bad_response', status: 200 }, why);
  }
});

test('no answer is unreachable: a reset connection, a timeout, abort()', async () => {
  answer = (req) => req.socket.destroy();
  assertFailure(await failure((client) => client.health()), { kind: 'unreachable', code: 'network', status: 0 }, 'reset');

  answer = () => undefined; // never answers; the client's timeout ends it
  const slow = new RelayClient({ baseUrl, timeoutMs: 300 });
  const timedOut = await failure((client) => client.health(), slow);
  assertFailure(timedOut, { kind: 'unreachable', code: 'timeout', status: 0 }, 'timeout');
  assert.match(timedOut.message, /GET \/healthz: timed out/);

  const stopping = new RelayClient({ baseUrl, timeoutMs: 60_000 });
  const pending = failure((client) => client.health(), stopping);
  stopping.abort();
  assertFailure(await pending, { kind: 'unreachable', code: 'aborted', status: 0 }, 'abort');
  assertFailure(await failure((client) => client.health(), stopping), { kind: 'unreachable', code: 'aborted', status: 0 }, 'after abort');
  assert.equal(stopping.aborted, true);
});

test('success answers still parse: 2xx JSON, 204 with no body, a lease decoded from its headers', async () => {
  answer = refusal(200, { status: 'ok', version: '0.1.0', uptimeSeconds: 3 });
  assert.deepEqual(await new RelayClient({ baseUrl }).health(), { status: 'ok', version: '0.1.0', uptimeSeconds: 3 });

  answer = (_req, res) => res.writeHead(204).end();
  assert.equal(await new RelayClient({ baseUrl }).lease('cd'.repeat(32)), null);
  await new RelayClient({ baseUrl }).ack('A'.repeat(22));

  answer = (_req, res) => res.writeHead(200, {
    'content-type': 'application/vnd.ghostpipe.envelope',
    'ghostpipe-envelope-id': 'ab'.repeat(32),
    'ghostpipe-lease-id': 'L'.repeat(22),
    'ghostpipe-leaf-index': '7',
    'ghostpipe-lease-expires': '2030-01-01T00:00:00.000Z',
    'ghostpipe-received-at': '2029-12-31T23:59:00.000Z',
  }).end(Buffer.from([1, 2, 3]));
  const lease = await new RelayClient({ baseUrl }).lease('cd'.repeat(32));
  assert.deepEqual(lease && { ...lease, bytes: [...lease.bytes] }, {
    envelopeId: 'ab'.repeat(32), leaseId: 'L'.repeat(22), leafIndex: 7, expiresAt: '2030-01-01T00:00:00.000Z', receivedAt: '2029-12-31T23:59:00.000Z', bytes: [1, 2, 3],
  });
});

test('a lease whose leaf index header is not a decimal index is a bad_response naming the header, not a NaN index', async () => {
  for (const index of ['', 'seven', '-1', '0x7', '1e3', '7.5', '9'.repeat(16)]) {
    answer = (_req, res) => res.writeHead(200, {
      'content-type': 'application/vnd.ghostpipe.envelope',
      'ghostpipe-envelope-id': 'ab'.repeat(32),
      'ghostpipe-lease-id': 'L'.repeat(22),
      'ghostpipe-leaf-index': index,
      'ghostpipe-lease-expires': '2030-01-01T00:00:00.000Z',
      'ghostpipe-received-at': '2029-12-31T23:59:00.000Z',
    }).end(Buffer.from([1, 2, 3]));
    await assert.rejects(new RelayClient({ baseUrl }).lease('cd'.repeat(32)), (err: unknown) => {
      assert.ok(err instanceof RelayError, String(err));
      assert.equal(err.code, 'bad_response', index);
      assert.match(err.message, /ghostpipe-leaf-index/, index);
      return true;
    }, JSON.stringify(index));
  }
});
