/** Slow or hostile clients: trickled bodies and headers are cut off without blocking others. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RelayClient } from '../../common/relay-client.js';
import { cleanupAll, makeDevice, makeReceiver, markedPlaintext, startRelay, type RelayProcess } from '../helpers/relay.js';

let relay: RelayProcess;
before(async () => {
  relay = await startRelay({ limits: { headersTimeout: '1s', requestTimeout: '2s', idleTimeout: '1500ms', maxConnections: 64 } });
});
after(cleanupAll);

/** Opens a socket, runs `drip` on it, resolves with ms until the relay closed it and what it said. */
function timeUntilClosed(drip: (socket: net.Socket) => void): Promise<{ ms: number; text: string }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let text = '';
    const socket = net.connect(relay.port, '127.0.0.1', () => drip(socket));
    socket.on('data', (c) => (text += c.toString()));
    socket.on('close', () => resolve({ ms: Date.now() - started, text }));
    socket.on('error', () => undefined);
    setTimeout(() => reject(new Error('socket never closed')), 15_000).unref();
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
  // Meanwhile, a normal client is served promptly.
  const other = new RelayClient({ baseUrl: relay.url, apiKey: device.apiKey });
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    await other.upload(device.seal(markedPlaintext(`normal ${i}`), receiver));
    assert.ok(Date.now() - t0 < 1000, 'normal uploads are not blocked');
    await new Promise((r) => setTimeout(r, 100));
  }
  const [body, headers, idle] = await Promise.all([trickle, slowHeaders, silent]);
  timers.forEach(clearTimeout);
  assert.ok(body.ms < 5000, `trickling body cut after ${body.ms} ms`);
  assert.ok(headers.ms < 4000, `trickling headers cut after ${headers.ms} ms`);
  assert.ok(idle.ms < 4000, `silent connection cut after ${idle.ms} ms`);
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
    await new Promise((r) => setTimeout(r, 300));
    const closed = sockets.filter((s) => s.destroyed || s.readyState === 'closed' || s.readableEnded).length;
    assert.ok(closed >= 10, `only ${closed} of 80 connections refused`);
  } finally {
    sockets.forEach((s) => s.destroy());
  }
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await new RelayClient({ baseUrl: relay.url }).health()).status, 'ok');
});
