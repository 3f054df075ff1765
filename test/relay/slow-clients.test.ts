/** Slow or hostile clients: trickled bodies and headers are cut off without blocking others. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RelayClient } from '../../common/relay-client.js';
import { until } from '../helpers/wait.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, type RelayProcess } from '../helpers/relay.js';

let relay: RelayProcess;
before(async () => {
  relay = await startRelay({ limits: { headersTimeout: '4s', requestTimeout: '5s', idleTimeout: '4s', maxConnections: 64 } });
});
after(cleanupAll);

/** The relay's shortest slow-client timeout above (4 s): what the ordering below relies on. */
const SHORTEST_TIMEOUT_MS = 4_000;
/** Failure bound only: the relay's timeouts are 4-5 s, a loaded machine gets the rest. */
const CUT_DEADLINE_MS = 60_000;

/** Opens a socket, runs `drip` on it, resolves with ms until the relay closed it and what it said. */
function timeUntilClosed(drip: (socket: net.Socket) => void): Promise<{ ms: number; text: string; closedAt: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let text = '';
    const socket = net.connect(relay.port, '127.0.0.1', () => drip(socket));
    socket.on('data', (c) => (text += c.toString()));
    socket.on('close', () => resolve({ ms: Date.now() - started, text, closedAt: Date.now() }));
    socket.on('error', () => undefined);
    setTimeout(() => reject(new Error(`the relay did not cut the socket within ${CUT_DEADLINE_MS} ms`)), CUT_DEADLINE_MS).unref();
  });
}

test('a client trickling its body is cut off while others are served', async () => {
  const device = await makeDevice(relay);
  const receiver = await makeReceiver(relay);
  const envelope = device.seal(markedPlaintext('trickle'), receiver);
  const timers: NodeJS.Timeout[] = [];
  const trickle = timeUntilClosed((socket) => {
    socket.write(`POST /v2/envelopes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${device.apiKey}\r\ncontent-type: application/vnd.ghostpipe.envelope\r\ncontent-length: ${envelope.length}\r\n\r\n`);
    let sent = 0;
    const tick = () => {
      if (socket.destroyed) return;
      socket.write(envelope.subarray(sent, sent + 10));
      sent += 10;
      timers.push(setTimeout(tick, 200));
    };
    tick();
  });
  const slowHeaders = timeUntilClosed((socket) => {
    socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n');
    const tick = () => {
      if (socket.destroyed) return;
      socket.write('x-slow: 1\r\n');
      timers.push(setTimeout(tick, 200));
    };
    tick();
  });
  const silent = timeUntilClosed(() => undefined);
  // Meanwhile, a normal client is served: its first upload, sealed beforehand, completes before
  // the relay cuts any slow client (an ordering: they all started together, the first cut comes
  // no earlier than the shortest timeout), so the slow ones did not block it.
  const other = new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey });
  const sealed = Array.from({ length: 5 }, (_, i) => device.seal(markedPlaintext(`normal ${i}`), receiver));
  const cut = Promise.race([trickle, slowHeaders, silent]).then((c) => c.closedAt);
  const startedAt = Date.now();
  await other.upload(sealed[0]!);
  const firstServedAt = Date.now();
  for (const envelope of sealed.slice(1)) await other.upload(envelope);
  const [body, headers, idle] = await Promise.all([trickle, slowHeaders, silent]);
  timers.forEach(clearTimeout);
  if (firstServedAt - startedAt < SHORTEST_TIMEOUT_MS) assert.ok(firstServedAt <= (await cut), 'a normal upload was served while the slow clients were connected');
  else assert.fail(`the first normal upload took ${firstServedAt - startedAt} ms, beyond the relay's shortest slow-client timeout (${SHORTEST_TIMEOUT_MS} ms): it was blocked`);
  // Each slow client was cut by the relay (it never stops sending on its own), and the trickled
  // body long before it could have been complete (10 bytes every 200 ms).
  const trickleWouldTakeMs = (envelope.length / 10) * 200;
  assert.ok(body.ms < trickleWouldTakeMs, `trickling body cut after ${body.ms} ms, the whole body needed ${trickleWouldTakeMs} ms`);
  assert.ok(headers.ms < CUT_DEADLINE_MS && idle.ms < CUT_DEADLINE_MS);
  assert.doesNotMatch(body.text, /^HTTP\/1.1 201/);
  assert.equal((await new RelayClient({ baseUrl: relay.url }).health()).status, 'ok');
});

test('too many connections: extra ones are refused, the relay keeps serving', async () => {
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < 80; i++) {
      const s = net.connect(relay.port, '127.0.0.1');
      s.on('error', () => undefined);
      sockets.push(s);
    }
    const closed = () => sockets.filter((s) => s.destroyed || s.readyState === 'closed' || s.readableEnded).length;
    await until('at least 10 of 80 connections refused (maxConnections 64)', () => closed() >= 10, 20_000, () => `${closed()} refused`);
  } finally {
    sockets.forEach((s) => s.destroy());
  }
  // The relay sees the 80 closes asynchronously: it serves again once its count has dropped.
  await until('the relay serving after the flood', async () => (await new RelayClient({ baseUrl: relay.url }).health().catch(() => undefined))?.status === 'ok');
});
