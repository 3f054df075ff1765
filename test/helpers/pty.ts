/**
 * Real serial lines for tests, made by socat (Debian package `socat`; scripts/install-deps.sh
 * --test installs it): a connected pty pair, and a TCP listener on 127.0.0.1 bridged to a pty
 * (a serial device server in "raw TCP" mode, for RTU over TCP).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { reservePort } from './ports.js';

export function socatAvailable(): boolean {
  return spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
}


/** Bytes socat has moved each way: `-x` logs a `> date time  length=N …` line per transfer. */
class TransferCount {
  aToB = 0;
  bToA = 0;
  private partial = '';

  add(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      const m = /^([<>]) \S+ \S+\s+length=(\d+)/.exec(line);
      if (m) this[m[1] === '>' ? 'aToB' : 'bToA'] += Number(m[2]);
    }
  }
}

/** Starts socat and resolves once its stderr shows `ready`; rejects with its output otherwise. */
function startSocat(args: string[], ready: RegExp, timeoutMs = 5000, transfers?: TransferCount): Promise<{ child: ChildProcess; stop: () => Promise<void> }> {
  // detached: socat forks per TCP connection; killing the group ends the children too.
  const child = spawn('socat', ['-d', '-d', ...(transfers ? ['-x'] : []), ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let output = '';
  let isReady = false;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await exited;
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop().then(() => reject(new Error(`socat not ready after ${timeoutMs} ms: ${output.trim()}`)));
    }, timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => {
      if (isReady) {
        transfers?.add(chunk.toString('latin1'));
        return;
      }
      output += chunk.toString('latin1');
      if (ready.test(output)) {
        isReady = true;
        clearTimeout(timer);
        resolve({ child, stop });
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socat exited with ${code}: ${output.trim()}`));
    });
  });
}

export interface PtyPair {
  /** Two linked pty paths: what is written to one is read from the other. */
  a: string;
  b: string;
  /**
   * Bytes that have crossed the line each way so far (socat has written them to the other end).
   * Counted only with openPtyPair({ countTransfers: true }); 0 otherwise.
   */
  transferred(): { aToB: number; bToA: number };
  close(): Promise<void>;
}

export async function openPtyPair(options: { countTransfers?: boolean } = {}): Promise<PtyPair> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-pty-'));
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  const transfers = new TransferCount();
  try {
    const { stop } = await startSocat([`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], /starting data transfer loop/, 5000, options.countTransfers ? transfers : undefined);
    return {
      a,
      b,
      transferred: () => ({ aToB: transfers.aToB, bToA: transfers.bToA }),
      close: async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface TcpSerialBridge {
  port: number;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:<reserved port> (test/helpers/ports.ts: socat cannot report a port 0 bind); each TCP connection is bridged byte for byte to `devicePath`. */
export async function bridgeTcpToSerial(devicePath: string): Promise<TcpSerialBridge> {
  const port = await reservePort();
  const { stop } = await startSocat([`tcp-listen:${port},bind=127.0.0.1,reuseaddr,fork`, `file:${devicePath},raw,echo=0`], /listening on/);
  return { port, close: stop };
}
