/**
 * Ports for test processes that must come back on the same port after a restart (a relay that an
 * agent's config names by URL, a mosquitto broker: mosquitto cannot report a port 0 bind) or that
 * cannot bind port 0 at all (modbus-serial's ServerTCP takes 0 as 502). Everything else binds
 * port 0 and reports its port (the relay logs `relay listening` with it).
 *
 * Why a port picked free by binding 0 is not enough: between the pick and the (re)bind, any
 * port-0 bind or outgoing connection on the machine may take it (the kernel hands ports out of
 * the ephemeral range, 32768–60999 on Linux), and so may a concurrent test file. So:
 *
 *  - ports come from RESERVED_PORTS (20000–29999), outside the ephemeral range (checked against
 *    /proc/sys/net/ipv4/ip_local_port_range at the first reservation): no port-0 bind and no
 *    outgoing connection is ever given one of them;
 *  - a port is reserved across processes by an exclusive lock file, PORT_LOCK_DIR/<port>, created
 *    with O_EXCL and holding the reserving process's pid: concurrent test files never get the same
 *    port; a lock whose pid no longer runs is taken over;
 *  - a reserved port is also checked bindable on 127.0.0.1 (some other program may use it);
 *  - the reservation lasts until releasePort() or the end of the reserving process.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

export const RESERVED_PORTS = { first: 20_000, last: 29_999 } as const;

/** Shared by every test process on the machine, whatever its TMPDIR (tests may set their own). */
export const PORT_LOCK_DIR = process.env['GHOSTPIPE_TEST_PORT_LOCKS'] ?? '/tmp/ghostpipe-test-ports';

const held = new Set<number>();
process.on('exit', () => {
  for (const port of held) unlockSync(port);
});

let rangeChecked = false;

/** Fails when the kernel's ephemeral range overlaps RESERVED_PORTS (then nothing here is safe). */
function checkEphemeralRange(): void {
  if (rangeChecked) return;
  let text: string;
  try {
    text = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  } catch {
    rangeChecked = true; // not Linux: nothing to check against
    return;
  }
  const [low, high] = text.trim().split(/\s+/).map(Number) as [number, number];
  if (!(high < RESERVED_PORTS.first || low > RESERVED_PORTS.last)) {
    throw new Error(`the kernel's ephemeral port range ${low}-${high} overlaps the test port range ${RESERVED_PORTS.first}-${RESERVED_PORTS.last} (test/helpers/ports.ts)`);
  }
  rangeChecked = true;
}

function lockFile(port: number): string {
  return path.join(PORT_LOCK_DIR, String(port));
}

function unlockSync(port: number): void {
  try {
    unlinkSync(lockFile(port));
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock of `port` for this process; false when another live process holds it. */
function tryLock(port: number): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockFile(port), 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: number;
    try {
      owner = Number(readFileSync(lockFile(port), 'utf8').trim());
    } catch {
      continue; // released meanwhile: try again
    }
    // An empty file is a lock being written right now: taken.
    if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) return false;
    unlockSync(port); // its process is gone
  }
  return false;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A loopback port of RESERVED_PORTS held for this process only (see the file comment). */
export async function reservePort(): Promise<number> {
  checkEphemeralRange();
  mkdirSync(PORT_LOCK_DIR, { recursive: true, mode: 0o1777 });
  const size = RESERVED_PORTS.last - RESERVED_PORTS.first + 1;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const port = RESERVED_PORTS.first + ((start + i) % size);
    if (held.has(port) || !tryLock(port)) continue;
    if (await bindable(port)) {
      held.add(port);
      return port;
    }
    unlockSync(port);
  }
  throw new Error(`no free port left in ${RESERVED_PORTS.first}-${RESERVED_PORTS.last} (locks in ${PORT_LOCK_DIR})`);
}

/** Gives a reserved port back (the owner no longer listens on it). */
export function releasePort(port: number): void {
  if (!held.delete(port)) return;
  unlockSync(port);
}
