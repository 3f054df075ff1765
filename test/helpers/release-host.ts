/**
 * A host with the release layout for the release service's tests (agent/firmware/release-apply.ts):
 * small release tarballs shaped as scripts/build-release.sh makes them (one folder, RELEASE.json,
 * the CLI entry point), a first release installed, and the agent's side of a handoff (the package
 * staged as verified, the request written). test/deploy/self-update.test.ts uses real releases.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeRelease, type Release } from './firmware-release.js';
import type { PrivateKey } from '../../protocol/keys.js';
import { handoffFiles, writeHandoff } from '../../agent/firmware/release-handoff.js';
import { switchCurrent, unpackRelease } from '../../agent/firmware/release-layout.js';
import { STAGED_FILE } from '../../agent/firmware/staging.js';

const run = promisify(execFile);

/** A release tarball; `extra` adds to the tree (and may name more top-level entries to pack); RELEASE.json may lie. */
export async function releaseTarball(dir: string, version: string, extra: (tree: string) => Promise<string[] | void> = async () => undefined, releaseVersion = version): Promise<Uint8Array> {
  const top = `ghostpipe-${version}`;
  const work = await mkdtemp(path.join(dir, 'tar-'));
  const tree = path.join(work, top);
  await mkdir(path.join(tree, 'dist', 'cli'), { recursive: true });
  await writeFile(path.join(tree, 'dist', 'cli', 'ghostpipe.js'), `console.log('ghostpipe ${version}')\n`);
  await writeFile(path.join(tree, 'RELEASE.json'), JSON.stringify({ version: releaseVersion }));
  const more = (await extra(tree)) ?? [];
  const file = path.join(work, 'release.tar.gz');
  await run('tar', ['-czf', file, '-C', work, top, ...more]);
  return new Uint8Array(await readFile(file));
}

export interface ReleaseHost {
  dir: string;
  /** <dir>/opt: releases/, current. */
  prefix: string;
  /** The agent's state folder (the handoff files, the staging). */
  stateDir: string;
  /** The release service's own state folder. */
  serviceDir: string;
  files: ReturnType<typeof handoffFiles>;
}

/** A host on `first` (1.0.0 by default), installed as install.sh would, the service's floor at 0. */
export async function releaseHost(dir: string, first = '1.0.0'): Promise<ReleaseHost> {
  const prefix = path.join(dir, 'opt');
  const tarball = path.join(dir, `first-${first}.tar.gz`);
  await writeFile(tarball, await releaseTarball(dir, first));
  await unpackRelease(prefix, tarball, first);
  await switchCurrent(prefix, first);
  const stateDir = path.join(dir, 'agent-state');
  return { dir, prefix, stateDir, serviceDir: path.join(dir, 'service-state'), files: handoffFiles(stateDir) };
}

/** A signed ghostpipe-release package of a synthetic release (or of `bytes`). */
export async function releasePackage(h: ReleaseHost, version: string, counter: number, signer: PrivateKey, o: { signers?: PrivateKey[]; installType?: string; bytes?: Uint8Array } = {}): Promise<Release> {
  return makeRelease({
    counter, version, signers: o.signers ?? [signer], installType: o.installType ?? 'ghostpipe-release', chunkSize: 4096, plaintext: o.bytes ?? await releaseTarball(h.dir, version),
  });
}

/** The agent's side: the package staged (verified, as firmware.bin) and the request written. */
export async function stageRequest(h: ReleaseHost, r: Release, publisher: PrivateKey, staged: Uint8Array = r.plaintext): Promise<void> {
  const dir = path.join(h.stateDir, 'firmware', 'staging', r.id);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, STAGED_FILE), staged);
  const offer = r.request([], publisher);
  await writeHandoff(h.files.request, { id: r.id, offer: { manifest: offer.manifest, signatures: offer.signatures, chunks: r.chunks.length, roots: [] }, requestedAt: new Date().toISOString() });
}

/**
 * The restart command for tests: the units "restart", and (when `healthy`) the new agent writes its
 * health mark naming the release `current` points at, as an agent of that release would.
 */
export function restartCommand(h: ReleaseHost, healthy: boolean): string[] {
  const mark = `{"version":"'"$(readlink "${path.join(h.prefix, 'current')}" | cut -d/ -f2)"'","pid":1,"acceptedAt":'"$(date +%s%3N)"'}`;
  return ['sh', '-c', healthy ? `mkdir -p "$(dirname "$0")" && echo '${mark}' > "$0"` : 'true', h.files.running];
}

export const releasesOn = async (h: ReleaseHost): Promise<string[]> => (await readdir(path.join(h.prefix, 'releases'))).sort();
