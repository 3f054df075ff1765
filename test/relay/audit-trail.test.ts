/**
 * The audit trail through real relay processes: a bad-key flood becomes a handful of counted
 * lines and evicts nothing, a restart loop with kills and torn lines keeps the trail readable,
 * and a huge audit.jsonl from an older relay starts within a 64 MiB heap.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { cleanupAll, rawRequest, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import type { AuditEvent } from '../../relay/audit.js';

after(cleanupAll);

interface Exported { events: AuditEvent[]; omitted: number; unreadable: number; status: number }

async function exportAudit(relay: RelayProcess, query = ''): Promise<Exported> {
  const res = await rawRequest(`${relay.url}/v2/audit?${query}`, { headers: { authorization: `Bearer ${relay.operatorKey}` } });
  assert.equal(res.status, 200, res.body.slice(0, 300));
  const body = JSON.parse(res.body) as { events: AuditEvent[]; omitted: number; unreadable: number };
  assert.equal(String(body.omitted), res.headers['x-audit-omitted']);
  assert.equal(String(body.unreadable), res.headers['x-audit-unreadable']);
  return { ...body, status: res.status };
}

async function auditBytes(stateDir: string): Promise<{ files: string[]; bytes: number; modes: number[] }> {
  const files = (await fs.readdir(stateDir)).filter((n) => n.startsWith('audit.jsonl')).sort();
  const stats = await Promise.all(files.map((f) => fs.stat(path.join(stateDir, f))));
  return { files, bytes: stats.reduce((n, s) => n + s.size, 0), modes: stats.map((s) => s.mode & 0o777) };
}

/** `count` GET /v2/stats requests with 16 kept-alive connections; every answer must be 401. */
async function flood(url: string, count: number, headersFor: (i: number) => Record<string, string>): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.get(`${url}/v2/stats`, { agent, headers: headersFor(i) }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
      });
      assert.equal(status, 401);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  agent.destroy();
}

const badKey = (id: string) => `Bearer pgp_${id}${'A'.repeat(43)}`;

test('a flood of 20,000 bad-key requests: a handful of counted lines, the real event survives, disk within the bound', async () => {
  const audit = { maxFileSize: 16_384, keepFiles: 3, authFailureBuckets: 8 };
  const relay = await startRelay({ trustedProxies: ['127.0.0.1'], audit });
  const real = await relay.operator.createKey({ role: 'device', plan: 'pro', label: 'before the flood' });
  const started = Date.now();
  await flood(relay.url, 10_000, () => ({ authorization: badKey('aaaaaaaaaaaa') }));
  await flood(relay.url, 5_000, () => ({}));
  // 1,000 forwarded addresses: more than authFailureBuckets, so most land in "other".
  await flood(relay.url, 5_000, (i) => ({ authorization: badKey('bbbbbbbbbbbb'), 'x-forwarded-for': `198.51.${(i % 1000) >> 8}.${i % 256}` }));
  const floodMs = Date.now() - started;
  // At most two minutes were touched unless the machine is very slow; the bound scales with minutes.
  const minutes = Math.floor(floodMs / 60_000) + 2;

  const check = (events: AuditEvent[], when: string) => {
    const failed = events.filter((e) => e.event === 'auth_failed');
    assert.ok(failed.length <= minutes * (audit.authFailureBuckets + 1), `${when}: ${failed.length} auth_failed lines`);
    const sum = (pick: (e: AuditEvent) => boolean) => failed.filter(pick).reduce((n, e) => n + (e.count ?? 0), 0);
    assert.equal(sum(() => true), 20_000, `${when}: every failure counted`);
    assert.equal(sum((e) => e.ip === '127.0.0.1' && e.keyId === 'aaaaaaaaaaaa' && e.outcome === 'invalid_key'), 10_000, when);
    assert.equal(sum((e) => e.ip === '127.0.0.1' && e.keyId === undefined && e.outcome === 'missing_key'), 5_000, when);
    assert.equal(sum((e) => e.ip!.startsWith('198.51.') || e.ip === 'other'), 5_000, when);
    assert.ok(failed.some((e) => e.ip === 'other'), `${when}: the overflow counter is used`);
    assert.ok(events.some((e) => e.event === 'key_issued' && e.keyId === real.id), `${when}: the event from before the flood is still there`);
    assert.ok(!JSON.stringify(events).includes('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), 'no key secret in the trail');
  };
  check((await exportAudit(relay)).events, 'during the open minute');
  const logged = relay.output().split('\n').filter((l) => l.includes('"authentication failed')).length;
  assert.ok(logged >= 1 && logged <= minutes * (audit.authFailureBuckets + 1), `${logged} "authentication failed" log lines for 20,000 failures`);

  assert.equal(await relay.stop(), 0);
  const disk = await auditBytes(relay.stateDir);
  assert.ok(disk.bytes <= audit.keepFiles * audit.maxFileSize, `${disk.bytes} bytes on disk`);
  assert.ok(disk.modes.every((m) => m === 0o600));
  // Shutdown wrote the open minute's counters: a restarted relay exports the same.
  const again = await startRelay({ trustedProxies: ['127.0.0.1'], audit }, { dir: relay.dir });
  const after = await exportAudit(again);
  check(after.events, 'after a restart');
  assert.equal(after.unreadable, 0);
  await again.stop();
});

test('restart loop (6 cycles, SIGKILL with a torn line and SIGTERM): the trail stays readable and bounded', async () => {
  const audit = { maxFileSize: 4_096, keepFiles: 3, authFailureBuckets: 8 };
  const dir = await tempDir();
  const issued: string[] = [];
  let torn = 0;
  for (let cycle = 0; cycle < 6; cycle++) {
    const relay = await startRelay({ audit }, { dir });
    // Every cycle starts with a readable trail: the newest ids, in order, none missing in between.
    const before = await exportAudit(relay);
    assert.ok(before.unreadable <= torn, `cycle ${cycle}: ${before.unreadable} unreadable lines, ${torn} torn`);
    const seen = before.events.filter((e) => e.event === 'key_issued' && e.keyLabel?.startsWith('cycle ')).map((e) => e.keyId!);
    assert.deepEqual(seen, issued.slice(issued.length - seen.length), `cycle ${cycle}: a suffix of what was issued`);
    if (cycle > 0) assert.ok(seen.length >= 30, `cycle ${cycle}: at least the last cycle's keys (${seen.length})`);
    if (cycle % 2 === 1) {
      // The previous cycle was killed and left half a line: counted, skipped, said once.
      assert.ok(before.unreadable >= 1, `cycle ${cycle}: the torn line is counted`);
      assert.match(relay.output(), /the last line was torn/);
    }
    for (let i = 0; i < 30; i++) issued.push((await relay.operator.createKey({ role: 'device', plan: 'pro', label: `cycle ${cycle} key ${i}` })).id);
    await flood(relay.url, 50, () => ({ authorization: badKey('cccccccccccc') }));
    // The export flushes: what it shows is on disk before the kill.
    const shown = (await exportAudit(relay)).events.filter((e) => e.event === 'key_issued' && e.keyLabel?.startsWith(`cycle ${cycle} `));
    assert.equal(shown.length, 30);
    if (cycle % 2 === 0) {
      relay.child.kill('SIGKILL');
      assert.equal(await relay.stop(), null, 'relay killed by SIGKILL');
      // A crash in the middle of an append leaves half a line.
      await fs.appendFile(path.join(relay.stateDir, 'audit.jsonl'), '{"time":"2026-01-01T00:00:00.000Z","event":"upl');
      torn++;
    } else {
      assert.equal(await relay.stop(), 0);
    }
    const disk = await auditBytes(relay.stateDir);
    assert.ok(disk.files.length <= audit.keepFiles, disk.files.join(' '));
    assert.ok(disk.bytes <= audit.keepFiles * audit.maxFileSize + 100, `cycle ${cycle}: ${disk.bytes} bytes`);
    assert.ok(disk.modes.every((m) => m === 0o600));
  }
  assert.ok(issued.length === 180);
  // The loop rotated: the oldest keys are gone from the trail, the newest are there.
  const last = await startRelay({ audit }, { dir });
  const final = (await exportAudit(last)).events.filter((e) => e.event === 'key_issued' && e.keyLabel?.startsWith('cycle ')).map((e) => e.keyId!);
  assert.ok(final.length < issued.length && final.length >= 30, `${final.length} of ${issued.length} keys in the trail`);
  assert.deepEqual(final, issued.slice(-final.length));
  await last.stop();
});

test('a 50 MB audit.jsonl from an older relay: starts and exports within a 64 MiB heap', async () => {
  const dir = await tempDir();
  const stateDir = path.join(dir, 'state');
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, 'audit.jsonl');
  // ~1 MiB of lines, written 50 times: auth_failed lines as the unaggregated relay wrote them.
  let chunk = '';
  let n = 0;
  while (chunk.length < 1024 * 1024) chunk += JSON.stringify({ time: '2026-01-01T00:00:00.000Z', event: 'auth_failed', keyLabel: `old ${n++}`, outcome: 'invalid_key' }) + '\n';
  const handle = await fs.open(file, 'w', 0o600);
  for (let i = 0; i < 50; i++) await handle.write(chunk);
  await handle.close();
  const lines = n * 50;
  assert.ok((await fs.stat(file)).size >= 50 * 1024 * 1024);

  const relay = await startRelay({}, { dir, env: { NODE_OPTIONS: '--max-old-space-size=64' } });
  const marker = await relay.operator.createKey({ role: 'device', plan: 'pro', label: 'after the big file' });
  const newest = await exportAudit(relay, 'limit=1000');
  assert.equal(newest.events.length, 1000);
  assert.equal(newest.omitted, lines + 1 - 1000);
  assert.equal(newest.events.at(-1)!.keyId, marker.id);
  const csv = await rawRequest(`${relay.url}/v2/audit?format=csv&limit=100000`, { headers: { authorization: `Bearer ${relay.operatorKey}` } });
  assert.equal(csv.status, 200);
  assert.equal(csv.body.trim().split('\r\n').length, 100_001);
  assert.equal(csv.headers['x-audit-omitted'], String(lines + 1 - 100_000));
  assert.equal(relay.child.exitCode, null, 'the relay is still running');
  const stats = await relay.operator.stats();
  assert.ok(stats.memory.rssBytes < 200 * 1024 * 1024, `RSS ${stats.memory.rssBytes}`);
  assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
});
