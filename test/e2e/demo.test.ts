/**
 * The simulated plant's model, the `ghostpipe plant` command line, and the one-command demo:
 * `ghostpipe demo` brings up plant, relay, agent and receiver as separate processes, prints
 * opened readings, keeps its keys 0600, reuses them on the next run, and stops every process on
 * SIGINT with exit code 0.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { prng } from '../../common/prng.js';
import { ALARM_SET_M, PUMP_OFF_M, PUMP_ON_M, initialState, pumpedLitresU32, step } from '../../plant/model.js';
import { float32Words, uint32WordsCdab, uint64Words } from '../../plant/points.js';
import { cliPath } from '../helpers/paths.js';
import { until } from '../helpers/wait.js';

describe('plant model', () => {
  test('the tank cycles: the pump starts at low level, stops at high level; totalisers never decrease', () => {
    const random = prng(1);
    let s = initialState(0);
    let starts = 0;
    let stops = 0;
    let alarms = 0;
    let minLevel = Infinity;
    let maxLevel = -Infinity;
    for (let i = 0; i < 1800; i++) {
      const next = step(s, 1000, random);
      if (!s.pumpRunning && next.pumpRunning) {
        starts++;
        assert.ok(next.levelM <= PUMP_ON_M + 0.01, `pump started at ${next.levelM} m`);
      }
      if (s.pumpRunning && !next.pumpRunning) {
        stops++;
        assert.ok(next.levelM >= PUMP_OFF_M - 0.01, `pump stopped at ${next.levelM} m`);
      }
      if (!s.lowLevelAlarm && next.lowLevelAlarm) alarms++;
      assert.ok(next.pumpedMl >= s.pumpedMl, 'pumped volume never decreases');
      assert.equal(next.pumpCurrentA > 0, next.pumpRunning, 'current flows exactly while the pump runs');
      assert.ok(next.valvePercent >= 30 && next.valvePercent <= 90);
      minLevel = Math.min(minLevel, next.levelM);
      maxLevel = Math.max(maxLevel, next.levelM);
      s = next;
    }
    assert.ok(starts >= 3 && stops >= 3, `the pump cycled (${starts} starts, ${stops} stops in 30 min)`);
    assert.ok(alarms >= 1, 'the low-level alarm was raised');
    assert.ok(minLevel < ALARM_SET_M && maxLevel >= PUMP_OFF_M - 0.01);
    // First-order lag: the tank temperature settles at its setpoint.
    assert.ok(Math.abs(s.tankTempC - 55) < 0.5, `tank temperature ${s.tankTempC}`);
    assert.equal(pumpedLitresU32(s), Number(s.pumpedMl / 1000n));
  });

  test('register encodings: float32 ABCD, uint32 CDAB, uint64 ABCD', () => {
    assert.deepEqual(float32Words(123.456), [0x42f6, 0xe979]);
    assert.deepEqual(uint32WordsCdab(0x12345678), [0x5678, 0x1234]);
    assert.deepEqual(uint64Words(0x0102030405060708n), [0x0102, 0x0304, 0x0506, 0x0708]);
  });
});

function run(args: string[], cwd?: string): { child: ChildProcess; out: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cliPath, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return { child, out: () => out, exit: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

describe('ghostpipe plant: bad arguments', () => {
  for (const [args, message] of [
    [['--modbus-port', 'abc'], /--modbus-port must be a TCP port 1..65535, got "abc"/],
    [['--opcua-port', '70000'], /--opcua-port must be a TCP port/],
    [['--tick', 'soon'], /--tick: invalid duration/],
    [['--bogus'], /Unknown option '--bogus'/],
  ] as const) {
    test(`${args.join(' ')} -> exit 2 with a clear message`, async () => {
      const p = run(['plant', ...args]);
      assert.equal(await p.exit, 2);
      assert.match(p.out(), message);
    });
  }
});

test('ghostpipe demo --duration soon / --interval 10ms -> exit 2 before starting anything', async () => {
  for (const [args, message] of [[['--duration', 'soon'], /demo: --duration: /], [['--interval', '10ms'], /--interval must be 300ms\.\.1m/]] as const) {
    const p = run(['demo', '--dir', path.join(os.tmpdir(), 'gp-demo-never-created'), ...args]);
    assert.equal(await p.exit, 2, p.out());
    assert.match(p.out(), message);
    assert.doesNotMatch(p.out(), /starting the simulated plant/);
  }
});

describe('ghostpipe demo', () => {
  const dir = path.join(os.tmpdir(), `ghostpipe-e2e-demo-${process.pid}`);
  const children: ChildProcess[] = [];

  /** pids the roles logged (pino "pid"), to prove they are gone and to clean up after a failure. */
  async function rolePids(): Promise<number[]> {
    const logs = await fs.readdir(path.join(dir, 'logs')).catch(() => [] as string[]);
    const pids = new Set<number>();
    for (const file of logs) {
      const text = await fs.readFile(path.join(dir, 'logs', file), 'utf8');
      for (const m of text.matchAll(/"pid":(\d+)/g)) pids.add(Number(m[1]));
    }
    return [...pids];
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const pid of await rolePids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('runs the whole conduit, prints opened readings, stops cleanly on SIGINT; a second run reuses the keys', async () => {
    const first = run(['demo', '--dir', dir, '--interval', '500ms']);
    children.push(first.child);
    const started = Date.now();
    while (!/frame \d+ · .* · 11\/11 good/.test(first.out())) {
      assert.equal(first.child.exitCode, null, `demo exited early:\n${first.out()}`);
      assert.ok(Date.now() - started < 90_000, `no all-good frame within 90 s:\n${first.out()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const out = first.out();
    assert.match(out, /interval is shortened to 500 ms/);
    assert.match(out, /generated keys in/);
    assert.match(out, /issued: device key [0-9a-f]{12}/);
    assert.match(out, /approved did:ghostpipe:[a-z2-7]{52} for API key [0-9a-f]{12} until /, 'the fleet key approved the device');
    assert.match(out, /plc1 +level [\d.]+ m · pump-current [\d.]+ A · flow-total \d+ L · pumped-ml \d+ mL/);
    assert.match(out, /opcua1 +tank-temperature [\d.]+ °C/);
    assert.match(out, /mqtt1 +valve-position [\d.]+ %/);
    assert.doesNotMatch(out, /pgp_[0-9a-f]{12}[A-Za-z0-9_-]{43}|plk_[0-9a-f]{12}[A-Za-z0-9_-]{43}/, 'no API key is printed');
    for (const file of ['keys/device.sign.key', 'keys/device.kem.key', 'keys/receiver.kem.key', 'secrets/device.apikey', 'secrets/receiver.apikey', 'operator.key', 'keys/fleet.sign.key']) {
      assert.equal((await fs.stat(path.join(dir, file))).mode & 0o777, 0o600, file);
    }
    const pids = await rolePids();
    assert.ok(pids.length >= 4, `plant, relay, agent, receiver pids: ${pids}`);

    first.child.kill('SIGINT');
    assert.equal(await first.exit, 0, first.out());
    assert.match(first.out(), /stopped\. Readings:/);
    for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} stopped`);
    const readings = (await fs.readFile(path.join(dir, 'readings.jsonl'), 'utf8')).trim().split('\n');
    assert.ok(readings.length >= 11);

    // No fixed --duration: on a loaded machine the agent may need seconds before its first frame.
    const second = run(['demo', '--dir', dir, '--interval', '500ms']);
    children.push(second.child);
    const again = Date.now();
    while (!/frame \d+ · /.test(second.out())) {
      assert.equal(second.child.exitCode, null, `second demo exited early:\n${second.out()}`);
      assert.ok(Date.now() - again < 60_000, `no frame within 60 s on the second run:\n${second.out()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    second.child.kill('SIGINT');
    assert.equal(await second.exit, 0, second.out());
    assert.match(second.out(), /reusing keys in/);
    assert.match(second.out(), /reusing the device and receiver API keys/);
    assert.match(second.out(), /frame \d+ · /);
  });

  test('8787 taken: the relay falls back to a port it binds as 0 and the whole conduit uses that port', async () => {
    // This file is the only user of 8787 (the demo's relay; every other test's relay binds port 0
    // or a reserved port of 20000-29999), and the tests of this describe run one after another.
    // If another program holds 8787 already, the demo must fall back all the same.
    const holder = createServer();
    const hold = await new Promise<{ held: true } | { held: false; code: string | undefined }>((resolve) => {
      holder.once('error', (err: NodeJS.ErrnoException) => resolve({ held: false, code: err.code }));
      holder.listen(8787, '127.0.0.1', () => resolve({ held: true }));
    });
    if (!hold.held) assert.equal(hold.code, 'EADDRINUSE', '8787 could not be held only because it is taken');
    try {
      const demo = run(['demo', '--dir', dir, '--interval', '500ms']);
      children.push(demo.child);
      await until('a frame through the relay on its fallback port', () => {
        assert.equal(demo.child.exitCode, null, `demo exited early:\n${demo.out()}`);
        return /frame \d+ · /.test(demo.out());
      }, 90_000, () => demo.out());
      const out = demo.out();
      assert.match(out, /port 8787 is taken: the relay listens on a free port instead/);
      const port = Number(/\[relay\] relay listening .*port=(\d+)/.exec(out)?.[1]);
      assert.ok(Number.isInteger(port) && port > 0 && port !== 8787, `the relay reported the port it bound: ${port}`);
      assert.match(out, new RegExp(`\\[agent\\] agent starting .*relay=http://127\\.0\\.0\\.1:${port} `), 'the agent uses that port');
      assert.match(out, new RegExp(`\\[receiver\\] receiver started .*relay=http://127\\.0\\.0\\.1:${port} `), 'the receiver uses that port');
      demo.child.kill('SIGINT');
      assert.equal(await demo.exit, 0, demo.out());
      assert.match(demo.out(), /stopped\. Readings:/);
    } finally {
      if (hold.held) await new Promise((resolve) => holder.close(resolve));
    }
  });
});
