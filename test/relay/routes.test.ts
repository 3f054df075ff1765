/**
 * The relay's route table (relay/router.ts, relay/server.ts) against a real relay process: every
 * route answers its own method, 405 and 404 follow from the table as docs/API.md describes, and a
 * path parameter of the wrong shape is 404, but only after the key was checked.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupAll, makeReceiver, rawRequest, startRelay, type Receiver, type RelayProcess } from '../helpers/relay.js';

let relay: RelayProcess;
let receiver: Receiver;
before(async () => {
  relay = await startRelay();
  receiver = await makeReceiver(relay);
});
after(async () => {
  assert.equal(await relay.stop(), 0);
  await cleanupAll();
});

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;
const HEX64 = 'a'.repeat(64);
const DID = 'did:ghostpipe:' + 'a'.repeat(52);

/** Every route of docs/API.md with a path that reaches it, and its answer without a key on a fresh relay (an empty log). */
const ROUTES: { method: string; path: string; anonymous: number }[] = [
  { method: 'GET', path: '/healthz', anonymous: 200 },
  { method: 'GET', path: '/v2/stats', anonymous: 401 },
  { method: 'POST', path: '/v2/did/challenge', anonymous: 401 },
  { method: 'POST', path: '/v2/did/register', anonymous: 401 },
  { method: 'GET', path: `/v2/did/${encodeURIComponent(DID)}`, anonymous: 404 },
  { method: 'POST', path: `/v2/did/${encodeURIComponent(DID)}/revoke`, anonymous: 401 },
  { method: 'POST', path: `/v2/did/${encodeURIComponent(DID)}/approval`, anonymous: 401 },
  { method: 'POST', path: '/v2/envelopes', anonymous: 401 },
  { method: 'POST', path: '/v2/envelopes/status', anonymous: 401 },
  { method: 'GET', path: `/v2/inbox/${HEX64}`, anonymous: 401 },
  { method: 'POST', path: `/v2/inbox/${HEX64}/lease`, anonymous: 401 },
  { method: 'POST', path: `/v2/leases/${'A'.repeat(22)}/ack`, anonymous: 401 },
  { method: 'POST', path: `/v2/leases/${'A'.repeat(22)}/release`, anonymous: 401 },
  { method: 'GET', path: '/v2/log/checkpoint', anonymous: 200 },
  { method: 'GET', path: '/v2/log/key', anonymous: 200 },
  { method: 'GET', path: '/v2/log/proof/inclusion', anonymous: 400 }, // index is required
  { method: 'GET', path: '/v2/log/proof/consistency', anonymous: 400 }, // from and to are required
  { method: 'GET', path: '/v2/log/entries', anonymous: 400 }, // start and end are required
  { method: 'GET', path: '/v2/log/tile/0/000.p/1', anonymous: 404 }, // beyond the signed size 0
  { method: 'POST', path: '/v2/keys', anonymous: 401 },
  { method: 'GET', path: '/v2/keys', anonymous: 401 },
  { method: 'DELETE', path: '/v2/keys/0123456789ab', anonymous: 401 },
  { method: 'POST', path: '/v2/keys/0123456789ab/purge', anonymous: 401 },
  { method: 'GET', path: '/v2/audit', anonymous: 401 },
  { method: 'GET', path: '/v2/groups', anonymous: 401 },
  { method: 'PUT', path: `/v2/groups/line-a/devices/${encodeURIComponent(DID)}`, anonymous: 401 },
  { method: 'DELETE', path: `/v2/groups/line-a/devices/${encodeURIComponent(DID)}`, anonymous: 401 },
  { method: 'POST', path: '/v2/firmware', anonymous: 401 },
  { method: 'GET', path: '/v2/firmware', anonymous: 401 },
  { method: 'GET', path: '/v2/firmware/rollouts', anonymous: 401 },
  { method: 'GET', path: `/v2/firmware/${HEX64}`, anonymous: 401 },
  { method: 'GET', path: `/v2/firmware/${HEX64}/status`, anonymous: 401 },
  { method: 'POST', path: `/v2/firmware/${HEX64}/targets`, anonymous: 401 },
  { method: 'PUT', path: `/v2/firmware/${HEX64}/chunks/0`, anonymous: 401 },
  { method: 'GET', path: `/v2/firmware/${HEX64}/chunks/0`, anonymous: 401 },
  { method: 'PUT', path: `/v2/firmware/${HEX64}/wraps/${encodeURIComponent(DID)}`, anonymous: 401 },
  { method: 'POST', path: `/v2/firmware/${HEX64}/downloaded`, anonymous: 401 },
  { method: 'POST', path: `/v2/firmware/${HEX64}/receipt`, anonymous: 401 },
];

async function call(method: string, path: string, key?: string): Promise<{ status: number; error: string | undefined; headers: Record<string, unknown> }> {
  const res = await rawRequest(relay.url + path, { method, headers: key ? { authorization: `Bearer ${key}` } : {} });
  const error = res.headers['content-type'] === 'application/json' ? (JSON.parse(res.body) as { error?: string }).error : undefined;
  return { status: res.status, error, headers: res.headers };
}

test('every route answers its own method (the handler runs: no 405, no 404 for want of a route)', async () => {
  for (const route of ROUTES) {
    const { status, error } = await call(route.method, route.path);
    assert.equal(status, route.anonymous, `${route.method} ${route.path}: ${error}`);
    if (status === 401) assert.equal(error, 'missing_key');
  }
  // The two 404s come from the handlers, which say why.
  const tile = await rawRequest(relay.url + '/v2/log/tile/0/000.p/1', {});
  assert.match(JSON.parse(tile.body).message, /beyond the signed tree size 0/);
});

test('a path some route matches, with another method, is 405 method_not_allowed (no Allow header, as before)', async () => {
  const answers = { 405: 0, 404: 0 };
  for (const route of ROUTES) {
    const own = new Set(ROUTES.filter((r) => r.path === route.path).map((r) => r.method));
    for (const method of METHODS.filter((m) => !own.has(m))) {
      const { status, error, headers } = await call(method, route.path, relay.operatorKey);
      // GET /v2/did/challenge is the DID lookup of "challenge": not a DID, so 404.
      const didLookup = method === 'GET' && /^\/v2\/did\/[^/]+$/.test(route.path);
      if (!didLookup) {
        assert.deepEqual([status, error], [405, 'method_not_allowed'], `${method} ${route.path}`);
        assert.equal(headers['allow'], undefined);
        answers[405]++;
      } else {
        assert.deepEqual([status, error], [404, 'not_found'], `${method} ${route.path}`);
        answers[404]++;
      }
    }
  }
  // 38 routes: 30 alone on their path × 4 other methods, and 4 paths with two methods (/v2/keys,
  // /v2/groups/…/devices/…, /v2/firmware, …/chunks/0) twice × 3 = 144 answers; only GET /v2/did/challenge
  // and GET /v2/did/register reach a handler (the DID lookup: not a DID, 404).
  assert.deepEqual(answers, { 405: 142, 404: 2 });
});

test('paths that match no route are 404 not_found, whatever the method', async () => {
  const unknown = ['/', '/v2', '/v2/', '/v2/stats/', '/v3/stats', '/healthz/', '/v2/keys/0123456789ab/x', '/v2/did', '/v2/inbox', `/v2/inbox/${HEX64}/lease/x`,
    '/v2/leases/x', '/v2/log', '/v2/log/tile', '/v2/log/proof', '/V2/stats', '/v2/envelopes/status/x'];
  for (const path of unknown) {
    for (const method of METHODS) {
      const { status, error } = await call(method, path, relay.operatorKey);
      assert.deepEqual([status, error], [404, 'not_found'], `${method} ${path}`);
    }
  }
});

test('a path parameter with bad characters is 404, and only after the key was checked', async () => {
  const bad = ['', 'a%20b', '%2F', 'A'.repeat(64), 'g'.repeat(64), `${HEX64}%00`, 'x'.repeat(5000)];
  const cases: { method: string; path: (id: string) => string; key: () => string }[] = [
    { method: 'GET', path: (id) => `/v2/inbox/${id}`, key: () => receiver.apiKey },
    { method: 'POST', path: (id) => `/v2/inbox/${id}/lease`, key: () => receiver.apiKey },
    { method: 'POST', path: (id) => `/v2/leases/${id}/ack`, key: () => receiver.apiKey },
    { method: 'POST', path: (id) => `/v2/leases/${id}/release`, key: () => receiver.apiKey },
    { method: 'DELETE', path: (id) => `/v2/keys/${id}`, key: () => relay.operatorKey },
    { method: 'POST', path: (id) => `/v2/keys/${id}/purge`, key: () => relay.operatorKey },
    { method: 'POST', path: (id) => `/v2/did/${id}/revoke`, key: () => relay.operatorKey },
  ];
  for (const { method, path, key } of cases) {
    for (const id of bad) {
      assert.deepEqual(Object.values(await call(method, path(id))).slice(0, 2), [401, 'missing_key'], `${method} ${path(id).slice(0, 80)} without a key`);
      assert.deepEqual(Object.values(await call(method, path(id), key())).slice(0, 2), [404, 'not_found'], `${method} ${path(id).slice(0, 80)}`);
    }
  }
  // A ".." segment is resolved before routing (WHATWG URL), so it names no route: 404 even without a key.
  for (const { method, path } of cases) {
    assert.deepEqual(Object.values(await call(method, path('..'))).slice(0, 2), [404, 'not_found'], `${method} ${path('..')}`);
  }
  // The public DID lookup checks the shape at once.
  for (const id of [...bad, '%ZZ', encodeURIComponent('did:ghostpipe:../../etc')]) {
    assert.deepEqual(Object.values(await call('GET', `/v2/did/${id}`)).slice(0, 2), [404, 'not_found'], `GET /v2/did/${id.slice(0, 80)}`);
  }
});
