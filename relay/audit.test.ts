/**
 * AuditTrail on a real temp directory: rotation (exactly keepFiles files, newest events kept,
 * 0600), exports across rotated files with filters and limits, auth_failed aggregation with a
 * bounded number of counters, torn and garbled lines, and the RAM-only bound.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { AuditTrail, sendAuditExport, type AuditEvent, type AuditFilter, type AuditOptions } from './audit.js';
import { silentLogger } from '../common/log.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gp-audit-test-'));
  dirs.push(dir);
  return dir;
}

async function openTrail(dir: string, options: Partial<AuditOptions> = {}): Promise<AuditTrail> {
  return AuditTrail.open({ file: path.join(dir, 'audit.jsonl'), maxFileSize: 4096, keepFiles: 3, authFailureBuckets: 64, ...options }, silentLogger());
}

async function exportAll(trail: AuditTrail, filter: AuditFilter = {}, limit?: number): Promise<{ events: AuditEvent[]; omitted: number; unreadable: number; matched: number }> {
  const exported = await trail.export(filter, limit);
  const events: AuditEvent[] = [];
  try {
    for await (const e of exported.rows()) events.push(e);
  } finally {
    await exported.close();
  }
  return { events, omitted: exported.omitted, unreadable: exported.unreadable, matched: exported.matched };
}

async function auditFiles(dir: string): Promise<{ name: string; size: number; mode: number }[]> {
  const names = (await fs.readdir(dir)).filter((n) => n.startsWith('audit.jsonl')).sort();
  return Promise.all(names.map(async (name) => {
    const st = await fs.stat(path.join(dir, name));
    return { name, size: st.size, mode: st.mode & 0o777 };
  }));
}

const labelNumber = (e: AuditEvent): number => Number(e.keyLabel!.slice(1));

test('rotation keeps exactly keepFiles files (0600, each <= maxFileSize) and the newest events', async () => {
  const dir = await tempDir();
  const trail = await openTrail(dir);
  let next = 0;
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < 150; i++, next++) trail.record({ event: 'key_issued', keyId: 'a1b2c3d4e5f6', keyLabel: `e${next}`, outcome: 'ok' });
    await trail.flush();
    const files = await auditFiles(dir);
    assert.deepEqual(files.map((f) => f.name), ['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2'], `round ${round}`);
    for (const f of files) {
      assert.ok(f.size <= 4096, `${f.name} is ${f.size} bytes`);
      assert.equal(f.mode, 0o600, f.name);
    }
    const { events, omitted, unreadable } = await exportAll(trail);
    assert.equal(omitted, 0);
    assert.equal(unreadable, 0);
    const numbers = events.map(labelNumber);
    assert.equal(numbers.at(-1), next - 1, 'the newest event is exported');
    assert.ok(numbers[0]! > 0, 'the oldest events were rotated out');
    assert.deepEqual(numbers, numbers.map((_, i) => numbers[0]! + i), 'a contiguous run of the newest events, oldest first');
    // The rotated files are full up to less than one line: the bound is used, not wasted.
    const rotatedBytes = files.filter((f) => f.name !== 'audit.jsonl').reduce((n, f) => n + f.size, 0);
    assert.ok(rotatedBytes > 2 * (4096 - 120), `${rotatedBytes} bytes in rotated files`);
    assert.equal(files.reduce((n, f) => n + f.size, 0), events.reduce((n, e) => n + JSON.stringify(e).length + 1, 0), 'every kept line is exported');
  }
  await trail.close();
  // A smaller keepFiles at the next start deletes the files beyond it.
  const smaller = await openTrail(dir, { keepFiles: 2 });
  assert.deepEqual((await auditFiles(dir)).map((f) => f.name), ['audit.jsonl', 'audit.jsonl.1']);
  await smaller.close();
});

test('export spans rotated files with key and time filters, oldest first; limit keeps the newest', async () => {
  const dir = await tempDir();
  const trail = await openTrail(dir, { keepFiles: 50 });
  const base = Date.parse('2026-03-01T00:00:00Z');
  const keys = ['aaaaaaaaaaaa', 'bbbbbbbbbbbb'];
  for (let i = 0; i < 300; i++) trail.record({ event: 'upload', keyId: keys[i % 2]!, keyLabel: `e${i}`, size: 4608, outcome: 'ok' }, new Date(base + i * 1000));
  await trail.flush();
  const files = await auditFiles(dir);
  assert.ok(files.length >= 8, `${files.length} files`);
  const filter = { key: 'aaaaaaaaaaaa', from: base + 50_000, to: base + 250_000 };
  const { events, matched, omitted } = await exportAll(trail, filter);
  const expected = Array.from({ length: 201 }, (_, k) => 50 + k).filter((i) => i % 2 === 0);
  assert.deepEqual(events.map(labelNumber), expected);
  assert.equal(matched, expected.length);
  assert.equal(omitted, 0);
  // The answer came from several files: its first and last rows are in different ones.
  const fileOf = async (label: string) => {
    for (const f of files) if ((await fs.readFile(path.join(dir, f.name), 'utf8')).includes(`"keyLabel":"${label}"`)) return f.name;
    return undefined;
  };
  const firstFile = await fileOf('e50');
  const lastFile = await fileOf('e250');
  assert.ok(firstFile && lastFile && firstFile !== lastFile, `${firstFile} vs ${lastFile}`);
  const limited = await exportAll(trail, filter, 10);
  assert.deepEqual(limited.events.map(labelNumber), expected.slice(-10));
  assert.equal(limited.omitted, expected.length - 10);
  assert.equal((await exportAll(trail, { key: 'cccccccccccc' })).events.length, 0);
  await trail.close();
});

test('auth_failed: one line per (ip, key id, reason) and minute with its count; counters bounded, overflow in "other"', async () => {
  const dir = await tempDir();
  const trail = await openTrail(dir, { maxFileSize: 1024 * 1024, authFailureBuckets: 4 });
  const minute = Date.parse('2026-03-01T10:07:00Z');
  let firsts = 0;
  const fail = (ip: string, keyId: string | undefined, outcome: string, at: number) => {
    if (trail.authFailed({ ip, keyId, outcome }, at)) firsts++;
  };
  for (let i = 0; i < 1000; i++) fail('192.0.2.1', 'aaaaaaaaaaaa', 'invalid_key', minute + (i % 59_000));
  for (let i = 0; i < 500; i++) fail('192.0.2.2', undefined, 'missing_key', minute + 1000);
  // 300 failures from 100 addresses: two of them get counters, the rest share "other".
  for (let i = 0; i < 300; i++) fail(`198.51.100.${i % 100}`, 'bbbbbbbbbbbb', 'invalid_key', minute + 2000);
  assert.equal(firsts, 5, 'one log-worthy first failure per counter (4 counters + other)');
  // The next minute closes this one: its lines are written.
  fail('192.0.2.1', 'aaaaaaaaaaaa', 'invalid_key', minute + 60_000);
  await trail.flush();
  const lines = (await fs.readFile(path.join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
  assert.equal(lines.length, 5);
  assert.ok(lines.every((l) => l.event === 'auth_failed' && l.time === '2026-03-01T10:07:00.000Z'));
  const byIp = Object.fromEntries(lines.map((l) => [l.ip, l]));
  assert.deepEqual(byIp['192.0.2.1'], { time: '2026-03-01T10:07:00.000Z', event: 'auth_failed', keyId: 'aaaaaaaaaaaa', outcome: 'invalid_key', ip: '192.0.2.1', count: 1000 });
  assert.equal(byIp['192.0.2.2']!.count, 500);
  assert.equal(byIp['192.0.2.2']!.keyId, undefined);
  assert.equal(byIp['198.51.100.0']!.count, 3);
  assert.equal(byIp['198.51.100.1']!.count, 3);
  assert.equal(byIp['other']!.count, 294);
  assert.equal(lines.reduce((n, l) => n + l.count!, 0), 1800);
  // The open minute is in exports before it is written, and written at close.
  const open = await exportAll(trail, { key: 'aaaaaaaaaaaa' });
  assert.deepEqual(open.events.map((e) => [e.time, e.count]), [['2026-03-01T10:07:00.000Z', 1000], ['2026-03-01T10:08:00.000Z', 1]]);
  await trail.close();
  const written = (await fs.readFile(path.join(dir, 'audit.jsonl'), 'utf8')).trim().split('\n');
  assert.equal(written.length, 6);
  assert.equal((JSON.parse(written[5]!) as AuditEvent).time, '2026-03-01T10:08:00.000Z');
});

test('a torn last line, garbage and an endless line are skipped and counted; new events are not glued to them', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'audit.jsonl');
  const good = (n: number) => JSON.stringify({ time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), event: 'challenge', keyId: 'cccccccccccc', keyLabel: `e${n}`, outcome: 'ok' }) + '\n';
  await fs.writeFile(file, [
    good(1),
    'not json at all\n',
    '{"time":"yesterday","event":"x","outcome":"ok"}\n',
    'x'.repeat(100_000) + '\n',
    good(2),
    '["an","array"]\n',
    '\n',
    good(3),
    '{"time":"2026-01-01T00:00:04.000Z","event":"chall', // torn by a crash
  ].join(''), { mode: 0o600 });
  const trail = await openTrail(dir, { maxFileSize: 1024 * 1024 });
  trail.record({ event: 'challenge', keyId: 'cccccccccccc', keyLabel: 'e5', outcome: 'ok' });
  const { events, unreadable } = await exportAll(trail);
  assert.deepEqual(events.map((e) => e.keyLabel), ['e1', 'e2', 'e3', 'e5']);
  assert.equal(unreadable, 5, 'not json, bad time, endless line, array, torn line');
  await trail.close();
  // Only known fields are exported, whatever a line carries.
  await fs.appendFile(file, JSON.stringify({ time: '2026-01-02T00:00:00Z', event: 'ack', outcome: 'ok', secret: 'x', size: 'big' }) + '\n');
  const again = await openTrail(dir, { maxFileSize: 1024 * 1024 });
  const last = (await exportAll(again)).events.at(-1);
  assert.deepEqual(last, { time: '2026-01-02T00:00:00Z', event: 'ack', outcome: 'ok' });
  await again.close();
});

test('a file already above maxFileSize (older relay) is rotated at start and still exported', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'audit.jsonl');
  const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify({ time: '2026-01-01T00:00:00.000Z', event: 'upload', keyId: 'dddddddddddd', keyLabel: `e${i}`, outcome: 'ok' }) + '\n');
  await fs.writeFile(file, lines.join(''), { mode: 0o600 });
  const trail = await openTrail(dir, { keepFiles: 4 });
  assert.deepEqual((await auditFiles(dir)).map((f) => f.name), ['audit.jsonl.1']);
  trail.record({ event: 'upload', keyId: 'dddddddddddd', keyLabel: 'e200', outcome: 'ok' });
  const { events } = await exportAll(trail);
  assert.deepEqual(events.map(labelNumber), Array.from({ length: 201 }, (_, i) => i));
  await trail.close();
});

test('RAM only: at most maxFileSize bytes of the newest events', async () => {
  const trail = await AuditTrail.open({ file: undefined, maxFileSize: 4096, keepFiles: 2, authFailureBuckets: 8 }, silentLogger());
  for (let i = 0; i < 5000; i++) trail.record({ event: 'lease', keyId: 'eeeeeeeeeeee', keyLabel: `e${i}`, outcome: 'ok' });
  const { events } = await exportAll(trail);
  const bytes = events.reduce((n, e) => n + JSON.stringify(e).length + 1, 0);
  assert.ok(bytes <= 4096 && bytes > 3500, `${bytes} bytes kept`);
  assert.equal(labelNumber(events.at(-1)!), 4999);
  assert.deepEqual(events.map(labelNumber), events.map((_, i) => 5000 - events.length + i));
  await trail.close();
});

test('failed writes (the file is gone, a directory in its place) drop and count events, log once, and recover', async () => {
  const dir = await tempDir();
  const file = path.join(dir, 'audit.jsonl');
  const lines: { level: number; msg: string; dropped?: number }[] = [];
  const { Writable } = await import('node:stream');
  const { createLogger } = await import('../common/log.js');
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString('utf8').trim().split('\n')) lines.push(JSON.parse(l)); done(); } });
  const trail = await AuditTrail.open({ file, maxFileSize: 1024 * 1024, keepFiles: 3, authFailureBuckets: 8 }, createLogger('relay', 'info', sink));
  trail.record({ event: 'ack', keyId: 'ffffffffffff', keyLabel: 'e0', outcome: 'ok' });
  await trail.flush();
  await fs.rm(file);
  await fs.mkdir(file);
  for (let cycle = 1; cycle <= 3; cycle++) {
    trail.record({ event: 'ack', keyId: 'ffffffffffff', keyLabel: `e${cycle}`, outcome: 'ok' });
    await trail.flush();
    assert.equal(trail.dropped, cycle);
  }
  const failures = () => lines.filter((l) => l.msg.startsWith('audit trail write failed'));
  assert.equal(failures().length, 1, 'logged once, not per batch');
  await fs.rmdir(file);
  trail.record({ event: 'ack', keyId: 'ffffffffffff', keyLabel: 'e4', outcome: 'ok' });
  await trail.flush();
  assert.ok(lines.some((l) => l.msg === 'audit trail writes work again' && l.dropped === 3));
  assert.deepEqual((await exportAll(trail)).events.map((e) => e.keyLabel), ['e4']);
  assert.equal(((await fs.stat(file)).mode & 0o777), 0o600);
  await trail.close();
});

test('an export whose client is gone before a write ends and closes its files (found by the fuzzer: it waited for a close already emitted)', async () => {
  const dir = await tempDir();
  const trail = await openTrail(dir, { maxFileSize: 1024 * 1024, keepFiles: 2 });
  // More than one 64 KiB write of rows, so the export writes before it ends.
  for (let i = 0; i < 1000; i++) trail.record({ event: 'key_issued', keyId: 'a1b2c3d4e5f6', keyLabel: `e${i}-${'x'.repeat(100)}`, outcome: 'ok' });
  await trail.flush();
  const exported = await trail.export({});
  let closes = 0;
  const close = exported.close;
  exported.close = async () => {
    closes++;
    await close();
  };
  // A response whose socket died during this write: 'close' is emitted before write() returns false.
  const res = new (class extends EventEmitter {
    destroyed = false;
    writes = 0;
    writeHead(): this { return this; }
    write(): boolean {
      this.writes++;
      this.destroyed = true;
      this.emit('close');
      return false;
    }
    end(): this { return this; }
  })();
  // On the old code this never settled (node:test then fails the test: the event loop emptied with it pending).
  await sendAuditExport(res as unknown as ServerResponse, exported, 'json');
  assert.equal(res.writes, 1, 'stopped after the write that met the closed client');
  assert.equal(closes, 1, 'the export closed its file handles');
  await trail.close();
});
