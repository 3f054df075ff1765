/**
 * `ghostpipe release apply|status` as processes, as ghostpipe-release.service and an operator run
 * them: a host with the release layout, the agent config's firmware.release section, and every
 * way the command refuses before it touches anything (exit 2 for usage and config, 1 when a
 * request cannot be read, 0 when there is nothing to do).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { assertOneLineFailure, runCli } from '../helpers/cli.js';
import { rootJson } from '../helpers/firmware-release.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { writeKeyBundle } from '../../common/keyfile.js';

let dir = '';
const run = (...args: string[]) => runCli(args, { cwd: dir });
const config = (firmware: Record<string, unknown>) => stringify({
  device: { signKey: 'gw.sign.key', kemKey: 'gw.kem.key' },
  relay: { url: 'http://127.0.0.1:1', apiKeyFile: 'device.apikey' },
  recipients: [{ name: 'rx', publicKey: 'rx.kem.pub' }],
  stateDir: path.join(dir, 'state'),
  taps: [{ name: 'plc', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: 1502, addressBase: 0, points: [{ name: 'flow', table: 'holding', address: 0, type: 'uint16' }] }],
  firmware: { root: path.join(dir, 'root.json'), relayPublicKey: path.join(dir, 'relay.sign.pub'), group: 'line-a', hardwareId: 'hw1', ...firmware },
});

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gp-release-cli-'));
  await writeFile(path.join(dir, 'root.json'), JSON.stringify(rootJson([generatePrivateKey('ML-DSA-65')], 1)));
  await writeKeyBundle('device', dir, 'relay');
  const release = path.join(dir, 'opt', 'releases', '1.0.0');
  await mkdir(path.join(release, 'dist', 'cli'), { recursive: true });
  await writeFile(path.join(release, 'dist', 'cli', 'ghostpipe.js'), '');
  await writeFile(path.join(release, 'RELEASE.json'), '{"version":"1.0.0"}');
  await symlink('releases/1.0.0', path.join(dir, 'opt', 'current'));
  await writeFile(path.join(dir, 'agent.yaml'), config({ release: { prefix: path.join(dir, 'opt'), stateDir: path.join(dir, 'release-state') } }));
  await writeFile(path.join(dir, 'plain.yaml'), config({ install: { command: ['/bin/true'] } }));
});
after(() => rm(dir, { recursive: true, force: true }));

test('status names the running release, the releases on disk and a waiting request; apply with nothing waiting does nothing', async () => {
  const status = await run('release', 'status', '--config', 'agent.yaml');
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout.toString(), /^running: {2}1\.0\.0 \(this command: [^)]+\)\nreleases: 1\.0\.0 in .*opt\/releases\nrequest: {2}none\n$/);
  const apply = await run('release', 'apply', '--config', 'agent.yaml');
  assert.equal(apply.code, 0, apply.stderr);
  assert.equal(apply.stdout.toString(), 'release apply: no request waiting\n');
});

test('refusals before anything is touched: no action, a config without firmware.release, an invalid config, an unreadable request', async () => {
  assertOneLineFailure(await run('release', '--config', 'agent.yaml'), /^ghostpipe: release: say apply or status \(ghostpipe release --help\)$/, 2);
  assertOneLineFailure(await run('release', 'apply', '--config', 'plain.yaml'), /plain\.yaml has no firmware\.release section: this host does not update Ghost Pipe itself$/, 2);
  await writeFile(path.join(dir, 'bad.yaml'), config({ release: { healthTimeout: 'soon' } }));
  const invalid = await run('release', 'apply', '--config', 'bad.yaml');
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /release apply: invalid config\n.*firmware\.release\.healthTimeout: /);
  const request = path.join(dir, 'state', 'firmware', 'release', 'request.json');
  await mkdir(path.dirname(request), { recursive: true });
  await writeFile(request, '{"id": "truncated');
  const status = await run('release', 'status', '--config', 'agent.yaml');
  assert.match(status.stdout.toString(), /request: {2}unreadable: .*request\.json: not valid JSON/);
  const garbled = await run('release', 'apply', '--config', 'agent.yaml');
  assert.equal(garbled.code, 1);
  assert.match(garbled.stderr, /request\.json: not valid JSON .*; truncated\?/);
  assert.equal(existsSync(request), false);
  assert.equal(await readFile(`${request}.rejected`, 'utf8'), '{"id": "truncated', 'set aside as it was, for the operator');
});
