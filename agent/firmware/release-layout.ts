/**
 * The folder of a host that updates Ghost Pipe itself (docs/FIRMWARE.md "Self-update"):
 *
 *   <prefix>/releases/<version>/          a release tree, RELEASE.json at its top (scripts/build-release.sh)
 *   <prefix>/current -> releases/<version>  what the units run; switched by renaming a new link over it,
 *                                         so every reader sees the old release or the new one, never neither
 *
 * A release tarball holds one folder, ghostpipe-<version>/, and nothing outside it.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir } from '../../common/atomic-file.js';
import { isReleaseVersion, readReleaseInfo } from '../../common/release-info.js';

export const CURRENT = 'current';
export const RELEASES = 'releases';

/** Longest a tar listing or extraction may take (a 50 MB tarball on an SD card: seconds). */
const TAR_TIMEOUT_MS = 10 * 60_000;

export class ReleaseLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReleaseLayoutError';
  }
}

/** The version `current` points at; undefined when there is no link (a host installed before releases). */
export async function currentVersion(prefix: string): Promise<string | undefined> {
  let target: string;
  try {
    target = await fs.readlink(path.join(prefix, CURRENT));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EINVAL') throw new ReleaseLayoutError(`${path.join(prefix, CURRENT)} is not a link to ${RELEASES}/<version> (install with scripts/install.sh)`);
    throw err;
  }
  const parts = target.split('/');
  if (parts.length !== 2 || parts[0] !== RELEASES || !isReleaseVersion(parts[1]!)) throw new ReleaseLayoutError(`${path.join(prefix, CURRENT)} points at ${target}, not ${RELEASES}/<version>`);
  return parts[1];
}


export const releaseDir = (prefix: string, version: string): string => path.join(prefix, RELEASES, version);

/**
 * Unpacks `tarball` to <prefix>/releases/<version>: its listing is checked first (one top folder
 * ghostpipe-<version>/, no absolute or ".." name), it is extracted into a scratch folder beside
 * the releases (owned by the extracting user, not the tarball's owners), every link in it must
 * stay inside it, and RELEASE.json must name `version`. Then it is renamed into place.
 */
export async function unpackRelease(prefix: string, tarball: string, version: string): Promise<string> {
  if (!isReleaseVersion(version)) throw new ReleaseLayoutError(`version ${JSON.stringify(version)} cannot name a release folder`);
  const top = `ghostpipe-${version}`;
  const names = (await tar(['-tzf', tarball])).split('\n').filter((n) => n !== '');
  if (names.length === 0) throw new ReleaseLayoutError(`${tarball}: an empty archive`);
  for (const name of names) {
    const clean = name.replace(/\/$/, '');
    if (clean.startsWith('/') || clean.split('/').includes('..') || (clean !== top && !clean.startsWith(`${top}/`))) {
      throw new ReleaseLayoutError(`${tarball}: ${JSON.stringify(name.slice(0, 200))} is outside ${top}/ (a release tarball holds that one folder)`);
    }
  }
  const releases = path.join(prefix, RELEASES);
  await fs.mkdir(releases, { recursive: true, mode: 0o755 });
  const scratch = await fs.mkdtemp(path.join(releases, '.unpack-'));
  try {
    await tar(['-xzf', tarball, '--no-same-owner', '-C', scratch]);
    const tree = path.join(scratch, top);
    await checkLinksStayInside(tree);
    let info;
    try {
      info = readReleaseInfo(tree);
    } catch (err) {
      throw new ReleaseLayoutError((err as Error).message);
    }
    if (info === undefined) throw new ReleaseLayoutError(`${path.join(tree, 'RELEASE.json')}: missing (not a release built by scripts/build-release.sh)`);
    if (info.version !== version) throw new ReleaseLayoutError(`${tarball}: RELEASE.json says version ${info.version}; the manifest says ${version}`);
    await fs.access(path.join(tree, 'dist', 'cli', 'ghostpipe.js')).catch(() => {
      throw new ReleaseLayoutError(`${tarball}: no dist/cli/ghostpipe.js (not a Ghost Pipe release)`);
    });
    const dir = releaseDir(prefix, version);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(tree, dir);
    await syncDir(releases);
    return dir;
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/** Points `current` at releases/<version> in one rename (a new link, renamed over the old one). */
export async function switchCurrent(prefix: string, version: string): Promise<void> {
  await fs.access(path.join(releaseDir(prefix, version), 'dist', 'cli', 'ghostpipe.js'));
  const next = path.join(prefix, `.${CURRENT}-${process.pid}`);
  await fs.rm(next, { force: true });
  await fs.symlink(`${RELEASES}/${version}`, next);
  await fs.rename(next, path.join(prefix, CURRENT));
  await syncDir(prefix);
}

/** What a kill can leave: a half-unpacked scratch folder, a new `current` link not renamed yet. */
export async function removeScratch(prefix: string): Promise<void> {
  for (const entry of await fs.readdir(path.join(prefix, RELEASES)).catch(() => [] as string[])) {
    if (entry.startsWith('.unpack-')) await fs.rm(path.join(prefix, RELEASES, entry), { recursive: true, force: true });
  }
  for (const entry of await fs.readdir(prefix).catch(() => [] as string[])) {
    if (entry.startsWith(`.${CURRENT}-`)) await fs.rm(path.join(prefix, entry), { force: true });
  }
}

export async function removeRelease(prefix: string, version: string): Promise<void> {
  if (!isReleaseVersion(version)) return;
  await fs.rm(releaseDir(prefix, version), { recursive: true, force: true });
}

/** Removes every release but `keep` (the running one and the one before it, for a switch back by hand). */
export async function pruneReleases(prefix: string, keep: readonly string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await fs.readdir(path.join(prefix, RELEASES)).catch(() => [] as string[])) {
    if (keep.includes(entry)) continue;
    await fs.rm(path.join(prefix, RELEASES, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  return removed;
}

async function checkLinksStayInside(tree: string): Promise<void> {
  const stat = await fs.lstat(tree).catch(() => undefined);
  if (!stat?.isDirectory()) throw new ReleaseLayoutError(`the archive has no folder ${path.basename(tree)}/`);
  for (const entry of await fs.readdir(tree, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    if (entry.isSymbolicLink()) {
      const target = await fs.readlink(full);
      const resolved = path.resolve(path.dirname(full), target);
      if (path.isAbsolute(target) || !resolved.startsWith(tree + path.sep)) throw new ReleaseLayoutError(`${path.relative(tree, full)} links to ${target}, outside the release`);
    } else if (!entry.isFile() && !entry.isDirectory()) {
      throw new ReleaseLayoutError(`${path.relative(tree, full)} is neither a file, a folder nor a link`);
    }
  }
}

function tar(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('tar', args, { timeout: TAR_TIMEOUT_MS, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new ReleaseLayoutError(`tar ${args[0]}: ${(stderr || err.message).trim().split('\n').slice(-1)[0]}`));
      else resolve(stdout);
    });
  });
}
