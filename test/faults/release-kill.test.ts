/**
 * The release service (`ghostpipe release apply`, a process as ghostpipe-release.service runs it)
 * killed with SIGKILL at a random moment of an update, one release per cycle, then run again as
 * the path unit would until it answers. After each kill: `current` is a link to a complete release
 * (never missing, never half-unpacked), the service's state parses and its floor has not gone
 * down. After each completed run: the release is installed and running, exactly it and the one
 * before are on disk, no scratch folder or temporary link is left, the request is gone and the
 * answer says installed. Every fourth release is unhealthy: then it must end rolled back, the
 * release before still running, and the floor unchanged.
 *
 * GHOSTPIPE_RELEASE_KILL_CYCLES (default 12) runs more cycles as a soak.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { rootJson } from '../helpers/firmware-release.js';
import { releaseHost, releasePackage, releasesOn, restartCommand, stageRequest } from '../helpers/release-host.js';
import { cliPath } from '../helpers/paths.js';
import { schedule, withSeed } from '../helpers/faults.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { writeKeyBundle } from '../../common/keyfile.js';

const CYCLES = Number(process.env['GHOSTPIPE_RELEASE_KILL_CYCLES'] ?? 12);
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** `ghostpipe release apply`, SIGKILLed after `killAfterMs` when given. */
function apply(configFile: string, killAfterMs?: number): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, 'release', 'apply', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

test(`release service killed at random moments, ${CYCLES} releases: never without a complete current release, every release decided`, { timeout: 600_000 }, (t) => {
  const s = schedule(t, 'release-kill');
  return withSeed(s, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-release-kill-'));
  dirs.push(dir);
  const h = await releaseHost(dir);
  const signer = generatePrivateKey('ML-DSA-65');
  await writeFile(path.join(dir, 'root.json'), JSON.stringify(rootJson([signer], 1)));
  await writeKeyBundle('device', dir, 'relay');
  const config = (healthy: boolean) => stringify({
    device: { signKey: 'gw.sign.key', kemKey: 'gw.kem.key' },
    relay: { url: 'http://127.0.0.1:1', apiKeyFile: 'device.apikey' },
    recipients: [{ name: 'rx', publicKey: 'rx.kem.pub' }],
    stateDir: h.stateDir, logLevel: 'warn',
    taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: 1502, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
    firmware: {
      root: path.join(dir, 'root.json'), relayPublicKey: path.join(dir, 'relay.sign.pub'), group: 'line-a', hardwareId: 'hw1',
      release: { prefix: h.prefix, stateDir: h.serviceDir, healthTimeout: '1500ms', restart: { command: restartCommand(h, healthy), timeout: '5s' } },
    },
  });
  const configFile = path.join(dir, 'agent.yaml');
  const floor = async () => existsSync(path.join(h.serviceDir, 'state.json'))
    ? (JSON.parse(await readFile(path.join(h.serviceDir, 'state.json'), 'utf8')) as { installed: { counter: number } }).installed.counter : 0;
  let running = '1.0.0';
  let kills = 0;
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const version = `1.${cycle + 1}.0`;
    const counter = cycle + 2;
    const healthy = cycle % 4 !== 3;
    await writeFile(configFile, config(healthy));
    const r = await releasePackage(h, version, counter, signer);
    await stageRequest(h, r, signer);
    const floorBefore = await floor();
    // Kill somewhere between start-up and the decision (an apply takes ~0.5-2 s here).
    const killed = await apply(configFile, s.between(50, 1_800));
    if (killed.signal === 'SIGKILL') kills++;
    const current = await readlink(path.join(h.prefix, 'current'));
    assert.match(current, /^releases\/1\.\d+\.0$/, `cycle ${cycle}: current is a release link`);
    assert.ok((await stat(path.join(h.prefix, current, 'dist', 'cli', 'ghostpipe.js'))).isFile(), `cycle ${cycle}: ${current} is complete`);
    assert.ok(await floor() >= floorBefore, `cycle ${cycle}: the floor did not go down`);
    // The path unit runs it again while the request is there.
    let last: Run | undefined;
    for (let tries = 0; existsSync(h.files.request); tries++) {
      assert.ok(tries < 3, `cycle ${cycle}: still not decided after ${tries} runs: ${last?.stderr}`);
      last = await apply(configFile);
    }
    const answer = JSON.parse(await readFile(h.files.result, 'utf8')) as { id: string; outcome: string; running: string; reason: string };
    assert.equal(answer.id, r.id);
    if (healthy) {
      assert.equal(answer.outcome, 'installed', `cycle ${cycle}: ${answer.reason}`);
      assert.deepEqual(await releasesOn(h), [running, version].sort(), `cycle ${cycle}: the release and the one before`);
      running = version;
      assert.equal(await floor(), counter);
    } else {
      assert.equal(answer.outcome, 'rolled_back', `cycle ${cycle}: ${answer.reason}`);
      assert.equal(await floor(), floorBefore, `cycle ${cycle}: the floor stays`);
      assert.ok((await releasesOn(h)).includes(running) && !(await releasesOn(h)).includes(version));
    }
    assert.equal(await readlink(path.join(h.prefix, 'current')), `releases/${running}`);
    assert.equal(answer.running, running);
    const leftovers = [...(await readdir(path.join(h.prefix, 'releases'))), ...(await readdir(h.prefix))].filter((e) => e.startsWith('.'));
    assert.deepEqual(leftovers, [], `cycle ${cycle}: no scratch folder or temporary link`);
    await rm(h.files.result);
  }
  assert.ok(kills >= CYCLES / 3, `the kills landed before the decision in ${kills} of ${CYCLES} cycles`);
  });
});
