import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder above this file that holds package.json. */
function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('repository root (package.json) not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

export const repoRoot = findRepoRoot();
/** Public test vectors (copied from ../shared/vectors, see test/vectors/README.md). */
export const vectorsDir = path.join(repoRoot, 'test', 'vectors');
/** The compiled CLI entry point, for tests that run real processes. Uses the same dist folder as this file. */
export const cliPath = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'ghostpipe.js');
