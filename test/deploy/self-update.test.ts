/**
 * A gateway updates Ghost Pipe itself (issue 13 part 5; docs/FIRMWARE.md "Self-update"), with
 * real releases: three tarballs built from this tree by scripts/build-release.sh (1.0.0 installed
 * at the start, 1.1.0 healthy, 1.2.0 built the same way and then missing a production dependency,
 * so its agent cannot start), published as signed `ghostpipe-release` packages to a real relay.
 * test/helpers/unit-supervisor.ts plays systemd (no systemd as PID 1 here): the agent unit runs
 * from <prefix>/current and is restarted by the release service's restart command, and the path
 * unit starts `ghostpipe release apply` from <prefix>/current when the agent leaves a request.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readlink } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { cleanupAll, startRelay, tempDir } from '../helpers/relay.js';
import { killAllAgents, startLogged, type LogLine } from '../helpers/agent.js';
import { prepareGateway } from '../helpers/firmware-gateway.js';
import { startModbusTcpServer } from '../helpers/modbus-server.js';
import { makeRelease, publishRelease, rootJson } from '../helpers/firmware-release.js';
import { repoRoot } from '../helpers/paths.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { switchCurrent, unpackRelease } from '../../agent/firmware/release-layout.js';
import { handoffFiles } from '../../agent/firmware/release-handoff.js';

const run = promisify(execFile);
const supervisorPath = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'unit-supervisor.js');

after(async () => {
  await killAllAgents();
  await cleanupAll();
});

async function buildRelease(version: string, out: string): Promise<string> {
  const { stdout } = await run('bash', [path.join(repoRoot, 'scripts/build-release.sh'), '--version', version, '--out', out], { maxBuffer: 16 << 20, timeout: 300_000 });
  return stdout.trim().split('\n').at(-1)!;
}

/** The same release without one production dependency: it unpacks and switches, and its agent cannot start. */
async function breakRelease(tarball: string, version: string, work: string): Promise<string> {
  const dir = path.join(work, `broken-${version}`);
  await mkdir(dir);
  await run('tar', ['-xzf', tarball, '-C', dir]);
  await run('rm', ['-rf', path.join(dir, `ghostpipe-${version}`, 'node_modules', 'yaml')]);
  const broken = path.join(work, `ghostpipe-${version}-broken.tar.gz`);
  await run('tar', ['-czf', broken, '-C', dir, `ghostpipe-${version}`]);
  return broken;
}

test('a healthy release is switched to and kept; one that fails its health check is switched back and reported rolled_back', { timeout: 600_000 }, async () => {
  const work = await tempDir();
  const [base, healthy, doomed] = await Promise.all(['1.0.0', '1.1.0', '1.2.0'].map((v) => buildRelease(v, work)));
  const broken = await breakRelease(doomed!, '1.2.0', work);

  const prefix = path.join(work, 'opt');
  await unpackRelease(prefix, base!, '1.0.0');
  await switchCurrent(prefix, '1.0.0');

  const relay = await startRelay();
  const plc = await startModbusTcpServer();
  plc.memory.setRegisters('holding', 0, [42]);
  const signer = generatePrivateKey('ML-DSA-65');
  const publisher = generatePrivateKey('ML-DSA-65');
  const pidFile = path.join(work, 'supervisor.pid');
  const gw = await prepareGateway(relay, {
    relayUrl: relay.url, root: rootJson([signer], 1), group: 'line-r',
    taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: plc.port, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
    firmware: () => ({
      install: undefined, rollback: undefined,
      release: {
        prefix, stateDir: path.join(work, 'release-state'), healthTimeout: '20s',
        // systemctl restart ghostpipe-agent, as the supervisor understands it.
        restart: { command: ['sh', '-c', 'kill -HUP "$(cat "$0")"', pidFile], timeout: '10s' },
      },
    }),
  });
  const files = handoffFiles(gw.env.stateDir);
  const supervisor = startLogged(process.execPath, [supervisorPath, '--prefix', prefix, '--config', gw.env.configFile, '--request', files.request, '--pid-file', pidFile]);
  await supervisor.waitFor((l) => l.msg === 'firmware updates on', 60_000, 'the 1.0.0 agent running');

  const receipt = (id: string, outcome: string) => (l: LogLine) => l.msg === 'firmware receipt logged' && l['packageId'] === id && l['outcome'] === outcome;
  const running = async () => JSON.parse(await readFile(files.running, 'utf8')) as { version: string; pid: number; acceptedAt: number };

  // 1.1.0: switched, the agent restarted onto it, its first frame accepted: installed.
  const good = makeRelease({ counter: 2, version: '1.1.0', group: 'line-r', hardware: ['hw1'], signers: [signer], installType: 'ghostpipe-release', chunkSize: 1 << 20, plaintext: new Uint8Array(await readFile(healthy!)) });
  await publishRelease(relay.operator, good, [gw.target], publisher);
  await supervisor.waitFor(receipt(good.id, 'installed'), 180_000, 'installed receipt for 1.1.0');
  assert.equal(await readlink(path.join(prefix, 'current')), 'releases/1.1.0');
  assert.deepEqual(readdirSync(path.join(prefix, 'releases')).sort(), ['1.0.0', '1.1.0'], 'the release before is kept');
  assert.equal((await running()).version, '1.1.0', 'the agent that had the frame accepted runs 1.1.0');
  const restarted = supervisor.lines.filter((l) => l.msg === 'supervisor: agent started');
  assert.equal(restarted.at(-1)!['release'], 'releases/1.1.0');
  const settled = supervisor.lines.find((l) => l.msg === 'started during a release install; waiting for the release service to decide it');
  assert.equal(settled?.['running'], '1.1.0', 'the new release itself settled the install');
  assert.equal((await relay.operator.rolloutStatus(good.id)).devices[0]!.state, 'installed');
  const state = JSON.parse(await readFile(path.join(gw.env.stateDir, 'firmware', 'state.json'), 'utf8')) as { installed: { version: string; counter: number }; pending?: unknown };
  assert.deepEqual([state.installed.version, state.installed.counter, state.pending], ['1.1.0', 2, undefined]);
  const service = JSON.parse(await readFile(path.join(work, 'release-state', 'state.json'), 'utf8')) as { installed: { counter: number }; switching?: unknown };
  assert.deepEqual([service.installed.counter, service.switching], [2, undefined], 'the service raised its own floor');
  assert.equal(existsSync(files.request) || existsSync(files.result), false, 'the handoff files are gone');

  // 1.2.0: switched, its agent dies at start (a missing dependency), no frame within 20 s: switched back.
  const bad = makeRelease({ counter: 3, version: '1.2.0', group: 'line-r', hardware: ['hw1'], signers: [signer], installType: 'ghostpipe-release', chunkSize: 1 << 20, plaintext: new Uint8Array(await readFile(broken)) });
  await publishRelease(relay.operator, bad, [gw.target], publisher);
  const rolledBack = await supervisor.waitFor(receipt(bad.id, 'rolled_back'), 240_000, 'rolled_back receipt for 1.2.0');
  assert.ok(rolledBack);
  const switchedTo = supervisor.lines.filter((l) => l.msg === 'supervisor: agent started').map((l) => l['release']);
  assert.ok(switchedTo.includes('releases/1.2.0'), `the 1.2.0 agent was started: ${switchedTo.join(', ')}`);
  assert.ok(supervisor.lines.some((l) => l.msg === 'supervisor: agent exited' && l['code'] !== 0), 'and it died');
  assert.equal(await readlink(path.join(prefix, 'current')), 'releases/1.1.0');
  assert.deepEqual(readdirSync(path.join(prefix, 'releases')).sort(), ['1.0.0', '1.1.0'], 'the failed release is removed');
  const reason = supervisor.lines.find((l) => l.msg === 'firmware install failed and was rolled back' && l['packageId'] === bad.id)!['reason'];
  assert.match(String(reason), /health check: no agent of 1\.2\.0 had a frame accepted with the relay healthy within 20s; switched back to 1\.1\.0/);
  const status = await relay.operator.rolloutStatus(bad.id);
  assert.equal(status.devices[0]!.state, 'rolled_back');
  assert.match(status.devices[0]!.reason!, /no agent of 1\.2\.0/);
  // The 1.1.0 agent runs again and its frames are accepted after the switch back.
  const back = supervisor.lines.filter((l) => l.msg === 'supervisor: agent started').at(-1)!;
  assert.equal(back['release'], 'releases/1.1.0');
  await supervisor.waitFor((l) => l.msg === 'firmware updates on' && supervisor.lines.indexOf(l) > supervisor.lines.indexOf(back), 60_000, 'the 1.1.0 agent again');
  const deadline = Date.now() + 60_000;
  while ((await running()).pid !== back['pid'] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual([(await running()).pid, (await running()).version], [back['pid'], '1.1.0'], 'a frame of the restored 1.1.0 agent was accepted');
  const floor = JSON.parse(await readFile(path.join(gw.env.stateDir, 'firmware', 'state.json'), 'utf8')) as { installed: { counter: number } };
  assert.equal(floor.installed.counter, 2, 'the floor stays at the release that runs');

  assert.equal(await supervisor.stop(), 0);
  await plc.stop();
});
