/**
 * Which Ghost Pipe release this process runs: `RELEASE.json` at the top of a release tree
 * (written by scripts/build-release.sh), else the version in package.json (a checkout). The
 * self-update compares it with the version it switched to (agent/firmware/release-apply.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ReleaseInfo {
  version: string;
  /** The commit it was built from, when built by build-release.sh. */
  commit?: string;
}

/** The top of the tree this file runs from: dist/common/ → two levels up (common/ in a checkout run by tsx: one). */
function treeRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '..', '..') : path.resolve(here, '..');
}

/** A version as a release folder's name: the manifest's semver, which has no "/" and no leading ".". */
export const isReleaseVersion = (v: string): boolean => /^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/.test(v);

/**
 * `<tree>/RELEASE.json`, checked; undefined when the tree has none (a checkout). Throws naming the
 * file when it is there but unreadable or without a valid version.
 */
export function readReleaseInfo(tree: string): ReleaseInfo | undefined {
  const file = path.join(tree, 'RELEASE.json');
  let info: Partial<ReleaseInfo>;
  try {
    info = JSON.parse(readFileSync(file, 'utf8')) as Partial<ReleaseInfo>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  if (typeof info.version !== 'string' || !isReleaseVersion(info.version)) throw new Error(`${file}: no valid version`);
  return { version: info.version, ...(typeof info.commit === 'string' ? { commit: info.commit } : {}) };
}

let cached: ReleaseInfo | undefined;

export function runningRelease(): ReleaseInfo {
  if (cached) return cached;
  const root = treeRoot();
  let info: ReleaseInfo | undefined;
  try {
    info = readReleaseInfo(root);
  } catch {
    // A damaged RELEASE.json (never one the release service unpacked): the checkout's version.
  }
  cached = info ?? { version: (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version };
  return cached;
}
