/** common/transport.ts: plain HTTP only to loopback. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTransport, isLoopbackHost, TransportError } from './transport.js';

test('plain HTTP only to loopback', () => {
  for (const h of ['127.0.0.1', '127.9.9.9', '::1', '[::1]', 'localhost']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['10.0.0.1', '128.0.0.1', 'relay.local', '::ffff:8.8.8.8', '0.0.0.0']) assert.ok(!isLoopbackHost(h), h);
  assert.doesNotThrow(() => checkTransport('http://127.0.0.1:8787', 'relay.url'));
  assert.doesNotThrow(() => checkTransport('https://relay.example.net', 'relay.url'));
  assert.throws(() => checkTransport('http://relay.example.net', 'relay.url'), TransportError);
});
