/**
 * A directory whose file system the test can fill, for "disk full" tests (docs/RELIABILITY.md).
 * Mechanisms, first that works (tests run as root):
 *
 *   tmpfs       `mount -t tmpfs -o size=…` on a fresh folder; fill() writes a filler file until
 *               ENOSPC, so every later write in the folder fails with ENOSPC.
 *   ext2-loop   an ext2 image (`mkfs.ext2`) loop-mounted on the folder; fill() as above.
 *   fsize       no mount possible: an ordinary folder, and fill(pid) sets RLIMIT_FSIZE of the
 *               process (`prlimit --pid`) to 0, so its writes fail with EFBIG (Node ignores
 *               SIGXFSZ). Needs the pid: fill() before the process exists applies it at spawn
 *               time via `spawnPrefix()`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, writeSync, closeSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type FullDiskMechanism = 'tmpfs' | 'ext2-loop' | 'fsize';

export interface FullDisk {
  dir: string;
  mechanism: FullDiskMechanism;
  /** Makes further writes in `dir` fail. `pid`: the process to limit (fsize only). */
  fill(pid?: number): void;
  /** Frees the space again (removes the filler; lifts the limit of `pid`). */
  free(pid?: number): void;
  /** Command prefix that starts a process already "full" (fsize only; [] otherwise). */
  spawnPrefix(): string[];
  cleanup(): void;
}

const FILLER = '.filler';

function run(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function fillUp(dir: string): void {
  const fd = openSync(path.join(dir, FILLER), 'a');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // The last partial block, byte by byte, so that not even a small write fits.
  const small = openSync(path.join(dir, `${FILLER}2`), 'a');
  try {
    for (;;) writeSync(small, Buffer.from('x'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(small);
  }
}

function mounted(dir: string, mechanism: 'tmpfs' | 'ext2-loop', image?: string): FullDisk {
  return {
    dir, mechanism,
    fill: () => fillUp(dir),
    free: () => {
      rmSync(path.join(dir, FILLER), { force: true });
      rmSync(path.join(dir, `${FILLER}2`), { force: true });
    },
    spawnPrefix: () => [],
    cleanup: () => {
      run('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
      if (image) rmSync(path.dirname(image), { recursive: true, force: true });
    },
  };
}

/** A fresh folder of about `kib` KiB that can be filled; `dir` is created (empty). */
export function smallDisk(kib = 256, only?: FullDiskMechanism): FullDisk {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gp-fulldisk-'));
  if ((only === undefined || only === 'tmpfs') && run('mount', ['-t', 'tmpfs', '-o', `size=${kib}k,mode=0700`, 'tmpfs', dir])) return mounted(dir, 'tmpfs');
  if (only === undefined || only === 'ext2-loop') {
    const imageDir = mkdtempSync(path.join(os.tmpdir(), 'gp-fulldisk-img-'));
    const image = path.join(imageDir, 'fs.img');
    if (run('truncate', ['-s', `${Math.max(kib, 128)}k`, image]) && run('mkfs.ext2', ['-q', '-F', '-m', '0', image]) && run('mount', ['-o', 'loop', image, dir])) {
      return mounted(dir, 'ext2-loop', image);
    }
    rmSync(imageDir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  return {
    dir, mechanism: 'fsize',
    fill: (pid) => {
      if (pid === undefined) throw new Error('fsize mechanism: fill() needs the pid of the process (or spawn it with spawnPrefix())');
      execFileSync('prlimit', ['--pid', String(pid), '--fsize=0:0']);
    },
    free: (pid) => {
      if (pid !== undefined) execFileSync('prlimit', ['--pid', String(pid), '--fsize=unlimited:unlimited']);
    },
    spawnPrefix: () => ['prlimit', '--fsize=0:0', '--'],
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
