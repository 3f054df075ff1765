/**
 * Issue 11, reproduction 6: idle connections from one source address must not lock everyone out.
 * Real relay, real sockets over loopback: all of 127.0.0.0/8 is loopback on Linux, so distinct
 * source addresses are 127.0.0.x bound locally. Asserts the bound (accepted count), never a timing.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { until } from '../helpers/wait.js';
import { cleanupAll, makeReceiver, startRelay, type RelayProcess } from '../helpers/relay.js';

after(cleanupAll);

/** GET /healthz from `localAddress` on a fresh connection: the status, or the socket error's code. */
function health(relay: RelayProcess, localAddress: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: relay.port, path: '/healthz', localAddress, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/** The relay process's soft limit of open files, from /proc. */
async function openFilesLimit(pid: number): Promise<number> {
  const line = (await readFile(`/proc/${pid}/limits`, 'utf8')).split('\n').find((l) => l.startsWith('Max open files'));
  assert.ok(line, 'no "Max open files" line');
  return Number(line.split(/\s{2,}/)[1]);
}

test('reproduction 6: idle sockets from one source are capped; /healthz from another source still answers', async () => {
  // maxConnections 40 stands in for the production 1024: the old relay took 40 idle sockets from
  // the flooding address and then dropped every other connection, /healthz included.
  const relay = await startRelay({ limits: { maxConnections: 40, maxConnectionsPerSource: 20, headersTimeout: '60s', requestTimeout: '120s', idleTimeout: '60s' } });
  const FLOOD = 60;
  // The bound is the cap, not the file descriptors: the relay could open far more.
  assert.ok(await openFilesLimit(relay.child.pid!) > 4 * FLOOD, 'the fd limit is well above the flood');
  const sockets: net.Socket[] = [];
  let closed = 0;
  try {
    for (let i = 0; i < FLOOD; i++) {
      const socket = net.connect({ host: '127.0.0.1', port: relay.port, localAddress: '127.0.0.4' });
      socket.on('error', () => undefined);
      socket.on('close', () => closed++);
      sockets.push(socket);
    }
    // The old relay closed only the 20 past maxConnections.
    await until('the relay closed the connections past the per-source cap', () => closed >= FLOOD - 20, 30_000, () => `${closed} closed`);
    assert.equal(await health(relay, '127.0.0.2'), 200, '/healthz from another source address');
    const stats = await relay.operator.stats();
    assert.equal(stats.connections.refused, FLOOD - 20, 'closed at accept: everything past 20 from 127.0.0.4');
    assert.equal(closed, FLOOD - 20, 'the 20 accepted idle sockets are still open');
    // One more from the flooding source is closed too; another source is still served.
    const extra = net.connect({ host: '127.0.0.1', port: relay.port, localAddress: '127.0.0.4' });
    extra.on('error', () => undefined);
    await new Promise((resolve) => extra.on('close', resolve));
    assert.equal((await relay.operator.stats()).connections.refused, FLOOD - 20 + 1);
    assert.equal(await health(relay, '127.0.0.3'), 200);
  } finally {
    sockets.forEach((s) => s.destroy());
  }
  await until('the flood gone at the relay', async () => (await relay.operator.stats()).connections.sources <= 1);
  assert.equal(await health(relay, '127.0.0.4'), 200, 'the source is served again once its sockets are gone');
  assert.equal(await relay.stop(), 0);
});

test('behind a trusted proxy the cap counts requests per forwarded client address (429 too_many_connections), not the proxy\'s connections', async () => {
  const relay = await startRelay({ trustedProxies: ['127.0.0.5'], limits: { maxConnectionsPerSource: 2 } });
  const receiver = await makeReceiver(relay);
  /** A lease long-poll through the "proxy" (source 127.0.0.5) for forwarded client `client`. */
  const poll = (client: string): { answer: Promise<{ status: number; body: string }>; req: http.ClientRequest } => {
    const req = http.request({
      host: '127.0.0.1', port: relay.port, method: 'POST', path: `/v2/inbox/${receiver.recipientKeyId}/lease?wait=30s`, localAddress: '127.0.0.5', agent: false,
      headers: { authorization: `Bearer ${receiver.apiKey}`, 'x-forwarded-for': client },
    });
    const answer = new Promise<{ status: number; body: string }>((resolve) => {
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, body: err.code ?? 'error' }));
    });
    req.end();
    return { answer, req };
  };
  // Three connections from the proxy: more than the cap of 2, and all accepted (not counted per address).
  const waiting = [poll('10.9.9.9'), poll('10.9.9.9')];
  try {
    await until('two long-polls of 10.9.9.9 waiting', async () => (await relay.operator.stats()).envelopes.waiting === 2, 20_000, 20);
    const third = await poll('10.9.9.9').answer;
    assert.equal(third.status, 429, third.body);
    assert.equal(JSON.parse(third.body).error, 'too_many_connections');
    // Another client behind the same proxy is served (a lease with nothing pending: 204).
    const other = poll('10.9.9.8');
    await until('the other client\'s long-poll waiting', async () => (await relay.operator.stats()).envelopes.waiting === 3, 20_000, 20);
    other.req.destroy();
    assert.equal((await relay.operator.stats()).connections.refused, 1);
  } finally {
    waiting.forEach((w) => w.req.destroy());
  }
  assert.equal(await relay.stop(), 0);
});
