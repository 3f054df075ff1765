/**
 * common/http-client.ts against a real node:http server on loopback: answers, oversized and
 * truncated responses, silence, refusal, abort, and a kept-alive socket the server closed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HttpClient, HttpClientError } from './http-client.js';

let server: http.Server;
let base: string;
const sockets = new Set<Socket>();
let requests = 0;

before(async () => {
  server = http.createServer((req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      switch (req.url) {
        case '/echo':
          res.writeHead(201, { 'x-method': req.method, 'x-length': req.headers['content-length'] ?? 'none', 'set-cookie': ['a=1', 'b=2'] });
          res.end(body);
          return;
        case '/big':
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(Buffer.alloc(64 * 1024, 7));
          return;
        case '/truncated':
          res.writeHead(200, { 'content-length': '1000' });
          res.write('only a part');
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        case '/silent':
          return; // never answers
        default:
          res.writeHead(404).end();
      }
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

async function failure(promise: Promise<unknown>): Promise<HttpClientError> {
  const err = await promise.then(() => assert.fail('expected a failure'), (e: unknown) => e);
  assert.ok(err instanceof HttpClientError, String(err));
  return err;
}

test('status, headers (repeated ones joined) and body; content-length set for a body', async () => {
  const client = new HttpClient();
  const reply = await client.request(`${base}/echo`, { method: 'POST', body: 'hello', timeoutMs: 2000 });
  assert.equal(reply.status, 201);
  assert.equal(reply.header('X-Method'), 'POST');
  assert.equal(reply.header('x-length'), '5');
  assert.equal(reply.header('set-cookie'), 'a=1, b=2');
  assert.equal(reply.header('absent'), undefined);
  assert.equal(reply.body.toString(), 'hello');
  client.close();
});

test('a response over the cap fails as too_large instead of being buffered', async () => {
  const client = new HttpClient({ maxResponseBytes: 16 * 1024 });
  const err = await failure(client.request(`${base}/big`, { method: 'GET', timeoutMs: 2000 }));
  assert.equal(err.failure, 'too_large');
  assert.match(err.message, /larger than 16384 bytes/);
  // The same client still works afterwards.
  assert.equal((await client.request(`${base}/echo`, { method: 'GET', timeoutMs: 2000 })).status, 201);
  client.close();
});

test('a truncated response is a network failure, not a short body', async () => {
  const client = new HttpClient();
  const err = await failure(client.request(`${base}/truncated`, { method: 'GET', timeoutMs: 2000 }));
  assert.equal(err.failure, 'network');
  client.close();
});

test('a server that never answers times out with the limit named', async () => {
  const client = new HttpClient();
  const err = await failure(client.request(`${base}/silent`, { method: 'GET', timeoutMs: 150 }));
  assert.equal(err.failure, 'timeout');
  assert.match(err.message, /within 150 ms/);
  assert.equal(err.mayHaveArrived, true, 'it was connected: the server may have the request');
  client.close();
});

test('connection refused is a network failure naming the address', async () => {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const err = await failure(new HttpClient().request(`http://127.0.0.1:${port}/`, { method: 'GET', timeoutMs: 2000 }));
  assert.equal(err.failure, 'network');
  assert.match(err.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  assert.equal(err.mayHaveArrived, false, 'refused: the request never left');
});

test('an abort signal ends the request (already aborted or while waiting)', async () => {
  const client = new HttpClient();
  const early = new AbortController();
  early.abort();
  assert.equal((await failure(client.request(`${base}/silent`, { method: 'GET', timeoutMs: 2000, signal: early.signal }))).failure, 'aborted');
  const late = new AbortController();
  setTimeout(() => late.abort(), 50);
  assert.equal((await failure(client.request(`${base}/silent`, { method: 'GET', timeoutMs: 5000, signal: late.signal }))).failure, 'aborted');
  client.close();
});

test('unsupported URL schemes are refused before any connection', async () => {
  const err = await failure(new HttpClient().request('ftp://127.0.0.1/x', { method: 'GET', timeoutMs: 1000 }));
  assert.match(err.message, /unsupported protocol ftp:/);
});

test('a kept-alive connection the server closed is reused once and the request retried', async () => {
  const client = new HttpClient();
  assert.equal((await client.request(`${base}/echo`, { method: 'GET', timeoutMs: 2000 })).status, 201);
  // Reset the idle kept-alive socket from the server side without the client noticing first:
  // the next request goes out on it, meets ECONNRESET, and is retried on a fresh connection.
  for (const s of sockets) s.resetAndDestroy();
  const before = requests;
  const reply = await client.request(`${base}/echo`, { method: 'POST', body: 'again', timeoutMs: 2000 });
  assert.equal(reply.body.toString(), 'again');
  assert.equal(requests - before, 1, 'the server saw the request once');
  client.close();
});

test('a server that read the request on a kept-alive connection, then reset it and stopped: the retry is refused, and the error still says the request may have arrived', async () => {
  // A relay stopping with a request in hand: it may have acted on it (an upload stored and
  // delivered) before the reset. The retry's "connection refused" must not claim it never left.
  const acted: string[] = [];
  const stopping = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/hello') return void res.writeHead(200).end('hi');
      acted.push(Buffer.concat(chunks).toString());
      stopping.close();
      req.socket.resetAndDestroy();
    });
  });
  await new Promise<void>((resolve) => stopping.listen(0, '127.0.0.1', resolve));
  const at = `http://127.0.0.1:${(stopping.address() as AddressInfo).port}`;
  const client = new HttpClient();
  assert.equal((await client.request(`${at}/hello`, { method: 'GET', timeoutMs: 2000 })).status, 200);
  const err = await failure(client.request(`${at}/upload`, { method: 'POST', body: 'frame 57', timeoutMs: 2000 }));
  assert.deepEqual(acted, ['frame 57'], 'the server acted on the request once');
  assert.equal(err.failure, 'network');
  assert.match(err.message, /ECONNREFUSED/, 'the retry met a closed port');
  assert.equal(err.mayHaveArrived, true);
  client.close();
});

test('a large body on a kept-alive connection the server closed meanwhile (EPIPE while writing) is retried once (x10)', async () => {
  const client = new HttpClient();
  const body = Buffer.alloc(5 * 1024 * 1024, 3);
  for (let i = 0; i < 10; i++) {
    assert.equal((await client.request(`${base}/echo`, { method: 'GET', timeoutMs: 5000 })).status, 201);
    // The server closes the idle socket (as its keepAliveTimeout does); the client has not noticed yet.
    for (const s of sockets) s.destroy();
    const before = requests;
    const reply = await client.request(`${base}/echo`, { method: 'POST', body, timeoutMs: 10_000 });
    assert.equal(reply.status, 201, `attempt ${i + 1}`);
    assert.equal(reply.body.length, body.length);
    assert.equal(requests - before, 1, 'the server saw the request once');
  }
  client.close();
});
