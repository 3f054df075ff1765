import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../common/log.js';
import { UnprovenAnswers } from './unproven.js';
import { Writable } from 'node:stream';

function tracker(alertAfterMs: number) {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({ write(chunk, _enc, done) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
  let now = 1_000_000;
  const t = new UnprovenAnswers({ logger: createLogger('receiver', 'info', out), alertAfterMs, now: () => now });
  return { t, lines, advance: (ms: number) => { now += ms; } };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('the alert comes once the failures last alertAfterMs, then once per period; a verified answer ends the run', async () => {
  const { t, lines, advance } = tracker(1000);
  t.failed('envelope', 'bad_inclusion_proof', 'garbage');
  advance(999);
  t.failed('envelope', 'bad_inclusion_proof', 'garbage');
  await settle();
  assert.equal(t.alerts, 0, 'not before the configured time');
  advance(1);
  t.failed('envelope', 'bad_inclusion_proof', 'garbage');
  advance(500);
  t.failed('envelope', 'bad_inclusion_proof', 'garbage');
  await settle();
  assert.equal(t.alerts, 1);
  assert.equal(t.count, 4);
  const alert = lines.find((l) => l['alert'] === 'relay_unproven')!;
  assert.equal(alert['level'], 50);
  assert.equal(alert['failingMs'], 1000);
  // A verified checkpoint does not end a run of bad envelope proofs; a proven inclusion does.
  t.verified('checkpoint');
  assert.ok(t.failing);
  t.verified('envelope');
  assert.ok(!t.failing);
  await settle();
  assert.ok(lines.some((l) => l['msg'] === 'relay answers verify again' && l['failedForMs'] === 1500));
  // A new run starts from zero.
  t.failed('checkpoint', 'bad_signature', 'garbage');
  advance(999);
  t.failed('checkpoint', 'bad_signature', 'garbage');
  assert.equal(t.alerts, 1);
  t.verified('checkpoint');
  assert.ok(!t.failing);
});
