/** agent/firmware/commands.ts: argv without a shell, exit codes, a timeout that ends the whole group, output to the journal. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { createLogger } from '../../common/log.js';
import { runCommand } from './commands.js';

function journal() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
  return { lines, logger: createLogger('agent', 'info', sink) };
}
/** Running (a zombie waiting for its reaper counts as ended). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

test('exit 0 is success; the arguments and the package environment arrive as given; every line is logged', async () => {
  const { lines, logger } = journal();
  const result = await runCommand('install', { command: ['sh', '-c', 'echo "file=$1 version=$GHOSTPIPE_FIRMWARE_VERSION"; echo "to stderr" >&2', 'sh'], timeout: 5_000 },
    ['/staged/firmware.bin; rm -rf /'], { GHOSTPIPE_FIRMWARE_VERSION: '2.0.0' }, logger);
  assert.deepEqual(result, { ok: true, outcome: 'exit 0' });
  await new Promise((r) => setImmediate(r));
  const out = lines.filter((l) => l['msg'] === 'firmware command output');
  assert.deepEqual(out.map((l) => [l['stream'], l['line']]).sort(), [['stderr', 'to stderr'], ['stdout', 'file=/staged/firmware.bin; rm -rf / version=2.0.0']]);
  assert.equal(out[0]!['firmwareCommand'], 'install');
});

test('a failure names the exit code and the last line; a missing program cannot start', async () => {
  const { logger } = journal();
  assert.deepEqual(await runCommand('health', { command: ['sh', '-c', 'echo "service ghostpipe-relay is not active" >&2; exit 4'], timeout: 5_000 }, [], {}, logger),
    { ok: false, outcome: 'exit 4: service ghostpipe-relay is not active' });
  const missing = await runCommand('install', { command: ['/nonexistent/installer'], timeout: 5_000 }, [], {}, logger);
  assert.equal(missing.ok, false);
  assert.match(missing.outcome, /cannot start \/nonexistent\/installer: .*ENOENT/);
});

test('a timeout ends the command and what it started; so does a stop', async () => {
  const { lines: out, logger } = journal();
  const result = await runCommand('install', { command: ['sh', '-c', 'sleep 30 & echo $!; wait'], timeout: 1_000 }, [], {}, logger);
  const grandchild = Number(out.find((l) => l['msg'] === 'firmware command output')?.['line']);
  assert.deepEqual(result, { ok: false, outcome: 'timed out after 1s' });
  assert.ok(grandchild > 0);
  assert.equal(alive(grandchild), false, 'the background sleep was ended with its group');
  const stop = new AbortController();
  const stopped = runCommand('rollback', { command: ['sleep', '30'], timeout: 60_000 }, [], {}, logger, stop.signal);
  setTimeout(() => stop.abort(), 100);
  assert.deepEqual(await stopped, { ok: false, outcome: 'stopped with the agent' });
});
