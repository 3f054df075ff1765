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

let cached: ReleaseInfo | undefined;

export function runningRelease(): ReleaseInfo {
  if (cached) return cached;
  const root = treeRoot();
  try {
    const info = JSON.parse(readFileSync(path.join(root, 'RELEASE.json'), 'utf8')) as Partial<ReleaseInfo>;
    if (typeof info.version === 'string' && info.version !== '') {
      cached = { version: info.version, ...(typeof info.commit === 'string' ? { commit: info.commit } : {}) };
      return cached;
    }
  } catch {
    // not a release tree: a checkout
  }
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  cached = { version: pkg.version };
  return cached;
}
