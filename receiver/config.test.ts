import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadReceiverConfig } from './config.js';
import { plainHttpOffLoopback, TransportError } from '../common/transport.js';

function withConfig(relay: Record<string, unknown>, check: (file: string) => void): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'gp-rxcfg-'));
  try {
    const file = path.join(dir, 'receiver.yaml');
    const config = { relay: { apiKeyFile: 'k', publicKey: 'p', ...relay }, receiverKey: 'r', trust: { enrolled: true, fleetPublicKey: 'fleet.pub' } };
    writeFileSync(file, JSON.stringify(config)); // JSON is YAML 1.2
    check(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a plain-HTTP relay off loopback is a config error naming relay.url and relay.allowPlainHttp, unless allowed', () => {
  withConfig({ url: 'http://10.1.2.3:8787' }, (file) => {
    assert.throws(() => loadReceiverConfig(file), (err: Error) => {
      assert.ok(err instanceof TransportError, String(err));
      assert.match(err.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: relay\\.url: plain HTTP is only allowed to a loopback address`));
      assert.match(err.message, /set relay\.allowPlainHttp: true/);
      return true;
    });
  });
  withConfig({ url: 'http://10.1.2.3:8787', allowPlainHttp: true }, (file) => {
    const config = loadReceiverConfig(file);
    assert.equal(config.relay.allowPlainHttp, true);
    assert.equal(plainHttpOffLoopback(config.relay.url), true, 'the start line then warns');
  });
  assert.equal(plainHttpOffLoopback('http://127.0.0.1:8787'), false);
  assert.equal(plainHttpOffLoopback('https://10.1.2.3'), false);
  withConfig({ url: 'http://127.0.0.1:8787' }, (file) => assert.equal(loadReceiverConfig(file).relay.allowPlainHttp, false));
  withConfig({ url: 'https://relay.example.net' }, (file) => assert.equal(loadReceiverConfig(file).relay.url, 'https://relay.example.net'));
});

test('relay.unprovenAlertAfter: a duration, default 5 minutes', () => {
  withConfig({ url: 'http://127.0.0.1:8787' }, (file) => assert.equal(loadReceiverConfig(file).relay.unprovenAlertAfter, 300_000));
  withConfig({ url: 'http://127.0.0.1:8787', unprovenAlertAfter: '2s' }, (file) => assert.equal(loadReceiverConfig(file).relay.unprovenAlertAfter, 2000));
  withConfig({ url: 'http://127.0.0.1:8787', unprovenAlertAfter: 'soon' }, (file) => assert.throws(() => loadReceiverConfig(file), /relay\.unprovenAlertAfter/));
});
