/**
 * agent/firmware/release-apply.ts, release-layout.ts and release-handoff.ts: the release service
 * as root sees it. It trusts nothing the agent wrote: a package not signed by the pinned root, a
 * replayed or older one, a staged file changed after the agent verified it, a tarball reaching
 * outside its folder, a garbled request are all refused with the reason, and nothing is switched.
 * A switch that is healthy is kept; one that is not is switched back; one interrupted by a kill is
 * decided when the service runs again. Small synthetic release tarballs; the restart command writes
 * the new agent's health mark (or does not). test/deploy/self-update.test.ts runs real releases.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readlink, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rootJson, type Release } from '../../test/helpers/firmware-release.js';
import { releaseHost, releasePackage, releaseTarball, releasesOn, restartCommand, stageRequest, type ReleaseHost } from '../../test/helpers/release-host.js';
import { generatePrivateKey, type PrivateKey } from '../../protocol/keys.js';
import { signedRootFromJson } from '../../protocol/firmware/index.js';
import { silentLogger } from '../../common/log.js';
import { applyRelease, ReleaseStateError } from './release-apply.js';
import { HandoffError, readRequest, writeHandoff } from './release-handoff.js';
import { currentVersion, switchCurrent, unpackRelease, ReleaseLayoutError } from './release-layout.js';
import { STAGED_FILE } from './staging.js';
import type { FirmwareConfig, ReleaseConfig } from './config.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const signer = generatePrivateKey('ML-DSA-65');
const stranger = generatePrivateKey('ML-DSA-65');
const root = signedRootFromJson(rootJson([signer], 1));

interface Host extends ReleaseHost {
  apply(healthTimeout?: number, healthy?: boolean): ReturnType<typeof applyRelease>;
}

/** A host on 1.0.0 (installed by hand, floor 0); `apply` runs the service once. */
async function host(): Promise<Host> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-release-'));
  dirs.push(dir);
  const h = await releaseHost(dir);
  return {
    ...h,
    apply(healthTimeout = 5_000, healthy = true) {
      const release: ReleaseConfig = { prefix: h.prefix, stateDir: h.serviceDir, healthTimeout, restart: { command: restartCommand(h, healthy), timeout: 5_000 } };
      const firmware = { root: '', relayPublicKey: '', group: 'line-a', hardwareId: 'hw1', checkInterval: 1_000, timeout: 1_000, release } as FirmwareConfig & { release: ReleaseConfig };
      return applyRelease({ firmware, secrets: { root, relayPublicKey: new Uint8Array() }, stateDir: h.stateDir, logger: silentLogger(), pollMs: 50 });
    },
  };
}

const request = (h: Host, r: Release, staged?: Uint8Array) => stageRequest(h, r, signer, staged);
const release = (h: Host, version: string, counter: number, o: { signers?: PrivateKey[]; installType?: string; bytes?: Uint8Array } = {}) => releasePackage(h, version, counter, signer, o);

test('a healthy release: verified, unpacked, switched, kept with the one before; the floor rises; the answer goes to the agent', async () => {
  const h = await host();
  const r = await release(h, '1.1.0', 2);
  await request(h, r);
  const result = await h.apply();
  assert.deepEqual([result?.outcome, result?.reason, result?.running], ['installed', '', '1.1.0']);
  assert.equal(await readlink(path.join(h.prefix, 'current')), 'releases/1.1.0');
  assert.deepEqual(await releasesOn(h), ['1.0.0', '1.1.0']);
  assert.equal(existsSync(h.files.request), false, 'the request is done');
  const answer = JSON.parse(await readFile(h.files.result, 'utf8')) as { id: string; outcome: string };
  assert.deepEqual([answer.id, answer.outcome], [r.id, 'installed']);
  assert.equal((await stat(h.files.result)).mode & 0o777, 0o600);
  const state = JSON.parse(await readFile(path.join(h.serviceDir, 'state.json'), 'utf8')) as { installed: { counter: number; version: string }; switching?: unknown };
  assert.deepEqual([state.installed.counter, state.installed.version, state.switching], [2, '1.1.0', undefined]);
  // The next one prunes what is two releases old.
  const next = await release(h, '1.2.0', 3);
  await request(h, next);
  assert.equal((await h.apply())?.outcome, 'installed');
  assert.deepEqual(await releasesOn(h), ['1.1.0', '1.2.0']);
  // Nothing waiting: nothing done.
  assert.equal(await h.apply(), undefined);
});

test('no frame of the new release within the health window: switched back, the new release removed, the floor kept', async () => {
  const h = await host();
  const r = await release(h, '1.1.0', 2);
  await request(h, r);
  const result = await h.apply(300, false);
  assert.equal(result?.outcome, 'rolled_back');
  assert.match(result!.reason, /^health check: no agent of 1\.1\.0 had a frame accepted with the relay healthy within 300ms; switched back to 1\.0\.0$/);
  assert.equal(result?.running, '1.0.0');
  assert.equal(await currentVersion(h.prefix), '1.0.0');
  assert.deepEqual(await releasesOn(h), ['1.0.0']);
  const state = JSON.parse(await readFile(path.join(h.serviceDir, 'state.json'), 'utf8')) as { installed: { counter: number }; switching?: unknown };
  assert.deepEqual([state.installed.counter, state.switching], [0, undefined]);
  // A mark of the OLD release does not count for the new one.
  await writeHandoff(h.files.running, { version: '1.0.0', pid: 7, acceptedAt: Date.now() + 60_000 });
  await request(h, r);
  assert.equal((await h.apply(300, false))?.outcome, 'rolled_back');
});

test('what a compromised agent could ask is refused, nothing switched: a stranger\'s signature, a changed staged file, a replay, the wrong install type, the running version', async () => {
  const h = await host();
  const refusedWith = async (r: Release, reason: RegExp, staged?: Uint8Array) => {
    const before = [await currentVersion(h.prefix), await releasesOn(h)];
    await request(h, r, staged);
    const result = await h.apply();
    assert.equal(result?.outcome, 'failed', r.manifest.version);
    assert.match(result!.reason, reason);
    assert.deepEqual([await currentVersion(h.prefix), await releasesOn(h)], before, 'nothing unpacked or switched');
    assert.equal(existsSync(h.files.request), false);
  };
  await refusedWith(await release(h, '6.6.6', 9, { signers: [stranger] }), /^the release service refused the package: below_threshold: manifest gw-fw@6\.6\.6: 0 valid signatures by root keys, 1 required; 1 by keys not in the firmware root/);
  const good = await release(h, '1.1.0', 2);
  const changed = new Uint8Array(good.plaintext);
  changed[100]! ^= 1;
  await refusedWith(good, /^the staged package does not match its manifest: the staged firmware does not match the manifest's SHA-512$/, changed);
  await refusedWith(await release(h, '1.1.1', 3, { installType: 'command' }), /^install type command is not ghostpipe-release$/);
  await refusedWith(await release(h, '1.0.0', 4), /^version 1\.0\.0 is the one running$/);
  // Installed at counter 2, then the same counter again (a replay of an older signed release).
  await request(h, good);
  assert.equal((await h.apply())?.outcome, 'installed');
  await refusedWith(await release(h, '1.0.1', 2), /^the release service refused the package: rollback: gw-fw@1\.0\.1 has release counter 2; the installed release has 2/);
});

test('a tarball that reaches outside its folder, links outside it, or names another version is not unpacked', async () => {
  const h = await host();
  const outside = await releaseTarball(h.dir, '1.1.0', async (tree) => {
    await mkdir(path.join(path.dirname(tree), 'etc', 'cron.d'), { recursive: true });
    await writeFile(path.join(path.dirname(tree), 'etc', 'cron.d', 'evil'), '* * * * * root sh\n');
    return ['etc'];
  });
  const links = await releaseTarball(h.dir, '1.1.0', async (tree) => {
    await symlink('/etc/shadow', path.join(tree, 'dist', 'shadow'));
  });
  const mislabelled = await releaseTarball(h.dir, '1.1.0', async () => undefined, '1.9.0');
  let counter = 2;
  for (const [bytes, reason] of [
    [outside, /cannot be unpacked: .*"etc\/" is outside ghostpipe-1\.1\.0\//],
    [links, /cannot be unpacked: dist\/shadow links to \/etc\/shadow, outside the release/],
    [mislabelled, /cannot be unpacked: .*RELEASE\.json says version 1\.9\.0; the manifest says 1\.1\.0/],
  ] as const) {
    const r = await release(h, '1.1.0', counter++, { bytes });
    await request(h, r);
    const result = await h.apply();
    assert.equal(result?.outcome, 'failed');
    assert.match(result!.reason, reason);
    assert.equal(await currentVersion(h.prefix), '1.0.0');
    assert.deepEqual((await readdir(path.join(h.prefix, 'releases'))).sort(), ['1.0.0'], 'no scratch folder left');
  }
  assert.equal(existsSync(path.join(h.prefix, 'etc')), false);
});

test('a garbled, truncated, oversized or wrongly typed request is set aside with the reason; nothing switched', async () => {
  const h = await host();
  const r = await release(h, '1.1.0', 2);
  await request(h, r);
  const good = await readFile(h.files.request, 'utf8');
  const cases: [string | Buffer, RegExp][] = [
    ['not json', /request\.json: not valid JSON .*; truncated\?$/],
    [good.slice(0, good.length / 2), /not valid JSON/],
    ['[]', /not a JSON object$/],
    [good.replace(r.id, 'zz'), /id is not a package id \(64 hex digits\)$/],
    [good.replace(/"chunks": \d+/, '"chunks": "3"'), /offer\.chunks is not a positive integer$/],
    [JSON.stringify({ id: r.id, requestedAt: 'x', offer: { manifest: 'AA', signatures: [], chunks: 1, roots: Array(17).fill({}) } }), /offer\.roots is not a list of at most 16$/],
    [Buffer.alloc((4 << 20) + 1, 0x20), /bytes, more than the 4194304 a handoff file may have$/],
  ];
  for (const [text, reason] of cases) {
    await writeFile(h.files.request, text);
    await assert.rejects(h.apply(), (err: Error) => err instanceof HandoffError && reason.test(err.message));
    assert.equal(existsSync(h.files.request), false);
    assert.equal(existsSync(`${h.files.request}.rejected`), true, 'kept for the operator');
    assert.equal(await currentVersion(h.prefix), '1.0.0');
  }
  assert.equal(await readRequest(h.files.request), undefined);
});

test('killed after recording the switch: run again, it switches, restarts and decides (kept when healthy, switched back when not)', async () => {
  for (const [healthy, switched] of [[true, true], [false, true], [true, false]]) {
    const h = await host();
    const r = await release(h, '1.1.0', 2);
    await request(h, r);
    // What a kill right after the switch leaves (or right before `current` moved): the switch
    // recorded, the release unpacked, the request still there.
    const staged = path.join(h.stateDir, 'firmware', 'staging', r.id, STAGED_FILE);
    await unpackRelease(h.prefix, staged, '1.1.0');
    await mkdir(h.serviceDir, { recursive: true });
    await writeFile(path.join(h.serviceDir, 'state.json'), JSON.stringify({ version: 1, installed: { id: '', version: '', counter: 0 }, switching: { id: r.id, from: '1.0.0', to: '1.1.0', counter: 2, switchedAt: Date.now() - 60_000 } }));
    if (switched) await switchCurrent(h.prefix, '1.1.0');
    if (healthy) await writeHandoff(h.files.running, { version: '1.1.0', pid: 9, acceptedAt: Date.now() + 1_000 });
    const result = await h.apply(1_500, false);
    assert.equal(result?.outcome, healthy ? 'installed' : 'rolled_back');
    assert.equal(await currentVersion(h.prefix), healthy ? '1.1.0' : '1.0.0');
  }
});

test('killed at the other moments that leave a trace: the answer lost after the decision, the switch back half done, a scratch folder and a new link left', async () => {
  const h = await host();
  const r = await release(h, '1.1.0', 2);
  await request(h, r);
  assert.equal((await h.apply())?.outcome, 'installed');
  // The decision was written, the kill came before the answer: asked again, it answers installed (not "rollback").
  await request(h, r);
  const again = await h.apply();
  assert.deepEqual([again?.outcome, again?.running], ['installed', '1.1.0']);
  // A switch back killed after `current` went back and the new release was removed, before the state was cleared.
  const next = await release(h, '1.2.0', 3);
  await request(h, next);
  await writeFile(path.join(h.serviceDir, 'state.json'), JSON.stringify({ version: 1, installed: { id: r.id, version: '1.1.0', counter: 2 }, switching: { id: next.id, from: '1.1.0', to: '1.2.0', counter: 3, switchedAt: Date.now() } }));
  // What a kill in the middle of an unpack and of a switch leaves behind.
  await mkdir(path.join(h.prefix, 'releases', '.unpack-x1y2z3', 'ghostpipe-1.2.0'), { recursive: true });
  await symlink('releases/1.2.0', path.join(h.prefix, '.current-4242'));
  const fresh = await h.apply();
  assert.equal(fresh?.outcome, 'installed', 'started over and installed');
  assert.deepEqual(await releasesOn(h), ['1.1.0', '1.2.0']);
  assert.deepEqual((await readdir(h.prefix)).filter((e) => e.startsWith('.')), [], 'no temporary link left');
});

test('a damaged service state stops it with the reason (it holds the floor), and a host without the release layout is refused', async () => {
  const h = await host();
  const r = await release(h, '1.1.0', 2);
  await request(h, r);
  await mkdir(h.serviceDir, { recursive: true });
  await writeFile(path.join(h.serviceDir, 'state.json'), '{"version":1,"installed":{"counter":-1}}');
  await assert.rejects(h.apply(), (err: Error) => err instanceof ReleaseStateError && /not \{version: 1, installed/.test(err.message) && /never delete it/.test(err.message));
  assert.equal(existsSync(h.files.request), true, 'the request waits for the operator');
  await rm(path.join(h.serviceDir, 'state.json'));
  await rm(path.join(h.prefix, 'current'));
  const result = await h.apply();
  assert.equal(result?.outcome, 'failed');
  assert.match(result!.reason, /current does not exist: this host was not installed with the release layout/);
  await mkdir(path.join(h.prefix, 'current'));
  await assert.rejects(currentVersion(h.prefix), (err: Error) => err instanceof ReleaseLayoutError && /is not a link to releases\/<version>/.test(err.message));
});
