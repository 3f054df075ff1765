/**
 * scripts/install.sh into a throwaway root (`--root DIR`, as root, nothing started): Node.js from
 * a node-linux package tarball (here: one made from the node running this test), Ghost Pipe as a
 * release in /opt/ghostpipe/releases/<version> with `current` pointing at it (production
 * dependencies only; a second run with another release keeps the one before), system users (systemd-sysusers), the units
 * (checked by systemd-analyze verify and enabled), configs from the examples that a second run
 * never overwrites; --uninstall keeps configs, keys and state; --purge removes them and the users.
 * Not run here: an install onto a real host with systemd as PID 1 (this machine has none).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { cleanupAll, tempDir } from '../helpers/relay.js';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);
after(() => cleanupAll());

async function install(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run('bash', [path.join(repoRoot, 'scripts/install.sh'), ...args], { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024, timeout: 540_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const users = async (root: string) => (await readFile(path.join(root, 'etc/passwd'), 'utf8')).split('\n').filter((l) => l.startsWith('ghostpipe-')).map((l) => l.split(':')[0]);
const gid = async (root: string, group: string) => Number((await readFile(path.join(root, 'etc/group'), 'utf8')).split('\n').find((l) => l.startsWith(`${group}:`))!.split(':')[2]);

test('install into a fresh root, again (idempotent), uninstall (keeps configs and state), purge', { timeout: 600_000 }, async () => {
  const work = await tempDir();
  const root = path.join(work, 'root');
  await mkdir(root);
  // A node-linux package as npm serves it (package/bin/node), made from the node running this test.
  await mkdir(path.join(work, 'pkg/package/bin'), { recursive: true });
  await copyFile(process.execPath, path.join(work, 'pkg/package/bin/node'));
  await run('tar', ['-czf', path.join(work, 'node.tgz'), '-C', path.join(work, 'pkg'), 'package']);
  const env = { GHOSTPIPE_NODE_TARBALL: path.join(work, 'node.tgz') };

  const first = await install(['--root', root, '--role', 'relay', '--role', 'agent'], env);
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /Node\.js v[\d.]+ installed from the npm package node-linux-/);
  assert.match(first.out, /Next:\n {2}relay: .*\n {2}agent: /);
  const node = path.join(root, 'usr/bin/node');
  assert.equal((await run(node, ['--version'])).stdout.trim(), process.version);
  // The installed release runs on its own, with production dependencies only and no tests.
  const opt = path.join(root, 'opt/ghostpipe');
  const version = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')).version as string;
  assert.equal(await readlink(path.join(opt, 'current')), `releases/${version}`);
  const current = path.join(opt, 'current');
  assert.match((await run(node, [path.join(current, 'dist/cli/ghostpipe.js'), '--help'])).stdout, /^Usage: ghostpipe <command>/);
  assert.equal((await run(node, [path.join(current, 'dist/cli/ghostpipe.js'), '--version'])).stdout.trim(), `ghostpipe ${version}`);
  assert.equal(existsSync(path.join(current, 'node_modules/typescript')), false, 'no dev dependency');
  assert.equal(existsSync(path.join(current, 'node_modules/yaml')), true);
  assert.equal(existsSync(path.join(current, 'dist/test')), false);
  assert.equal(await readlink(path.join(root, 'usr/local/bin/ghostpipe')), '/opt/ghostpipe/current/dist/cli/ghostpipe.js');
  assert.deepEqual(await users(root), ['ghostpipe-relay', 'ghostpipe-agent']);
  assert.match(await readFile(path.join(root, 'etc/group'), 'utf8'), /^dialout:x:\d+:ghostpipe-agent$/m);
  for (const role of ['relay', 'agent']) {
    const conf = await stat(path.join(root, `etc/ghostpipe/${role}.yaml`));
    assert.equal(conf.mode & 0o777, 0o640, `${role}.yaml is 0640`);
    assert.equal(conf.gid, await gid(root, `ghostpipe-${role}`), `${role}.yaml belongs to its role's group`);
    assert.equal(await readlink(path.join(root, `etc/systemd/system/multi-user.target.wants/ghostpipe-${role}.service`)), `/etc/systemd/system/ghostpipe-${role}.service`);
  }
  assert.equal((await stat(path.join(root, 'etc/ghostpipe/keys'))).mode & 0o777, 0o700);
  assert.equal(existsSync(path.join(root, 'etc/ghostpipe/receiver.yaml')), false, 'only the roles asked for');
  assert.equal(await readlink(path.join(root, 'etc/systemd/system/multi-user.target.wants/ghostpipe-release.path')), '/etc/systemd/system/ghostpipe-release.path', 'self-update watches for requests');
  const units = readdirSync(path.join(root, 'etc/systemd/system')).filter((f) => /^ghostpipe-.*\.(service|timer|path)$/.test(f)).map((f) => path.join(root, 'etc/systemd/system', f));
  assert.equal(units.length, 7);
  const verified = await run('systemd-analyze', ['verify', ...units]);
  assert.equal(verified.stderr.trim(), '', 'the installed units pass systemd-analyze verify');

  // Again, with the next release, after the operator edited a config: nothing is overwritten, no
  // user twice; `current` moves to the new release and the one before is kept.
  const edited = (await readFile(path.join(root, 'etc/ghostpipe/agent.yaml'), 'utf8')) + '# edited by the operator\n';
  await writeFile(path.join(root, 'etc/ghostpipe/agent.yaml'), edited);
  const next = `${version}-next.1`;
  const built = await run('bash', [path.join(repoRoot, 'scripts/build-release.sh'), '--version', next, '--out', work], { maxBuffer: 16 * 1024 * 1024, timeout: 300_000 });
  const second = await install(['--root', root, '--role', 'relay', '--role', 'agent', '--release', built.stdout.trim()], env);
  assert.equal(second.code, 0, second.out);
  assert.equal(await readlink(path.join(opt, 'current')), `releases/${next}`);
  assert.deepEqual(readdirSync(path.join(opt, 'releases')).sort(), [version, next].sort(), 'the release before is kept');
  assert.equal((await run(node, [path.join(current, 'dist/cli/ghostpipe.js'), '--version'])).stdout.trim(), `ghostpipe ${next}`);
  assert.match(second.out, /Node\.js v[\d.]+ already installed/);
  assert.match(second.out, /\/etc\/ghostpipe\/agent\.yaml exists: kept as it is/);
  assert.equal(await readFile(path.join(root, 'etc/ghostpipe/agent.yaml'), 'utf8'), edited);
  assert.deepEqual(await users(root), ['ghostpipe-relay', 'ghostpipe-agent']);

  // Uninstall keeps configs, keys and state; purge removes them and the users.
  await mkdir(path.join(root, 'var/lib/ghostpipe/relay'), { recursive: true });
  await writeFile(path.join(root, 'var/lib/ghostpipe/relay/keys.json'), '{}');
  const removed = await install(['--root', root, '--uninstall']);
  assert.equal(removed.code, 0, removed.out);
  assert.equal(existsSync(opt), false);
  assert.equal(existsSync(path.join(root, 'etc/systemd/system/ghostpipe-relay.service')), false);
  assert.equal(existsSync(path.join(root, 'etc/systemd/system/multi-user.target.wants/ghostpipe-relay.service')), false, 'disabled');
  await assert.rejects(lstat(path.join(root, 'usr/local/bin/ghostpipe')));
  assert.equal(await readFile(path.join(root, 'etc/ghostpipe/agent.yaml'), 'utf8'), edited, 'configs kept');
  assert.ok(existsSync(path.join(root, 'var/lib/ghostpipe/relay/keys.json')), 'state kept');
  assert.deepEqual(await users(root), ['ghostpipe-relay', 'ghostpipe-agent'], 'users kept');
  const purged = await install(['--root', root, '--uninstall', '--purge']);
  assert.equal(purged.code, 0, purged.out);
  assert.equal(existsSync(path.join(root, 'etc/ghostpipe')), false);
  assert.equal(existsSync(path.join(root, 'var/lib/ghostpipe')), false);
  assert.deepEqual(await users(root), []);
});

test('bad arguments are refused with the reason', async () => {
  const r = await install(['--role', 'historian']);
  assert.equal(r.code, 1);
  assert.match(r.out, /--role: historian is not relay, agent or receiver/);
  const p = await install(['--purge']);
  assert.match(p.out, /--purge goes with --uninstall/);
});
