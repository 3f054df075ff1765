/**
 * The install, health, rollback and restart commands: argv from the config (no shell), the package's
 * fields in the environment, a timeout, every output line to the journal. A command runs in its
 * own process group so that a timeout ends what it started too.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../../common/log.js';
import { formatDuration } from '../../common/duration.js';
import type { CommandConfig } from './config.js';

/** restart: the release service's (release-apply.ts). */
export type CommandName = 'install' | 'health' | 'rollback' | 'restart';

export interface CommandResult {
  ok: boolean;
  /** "exit 0", "exit 3: <last output line>", "timed out after 10m", "cannot start: …" */
  outcome: string;
}

/** After SIGTERM at the timeout (or a stop), how long before SIGKILL. */
const KILL_GRACE_MS = 5_000;
/** Journal lines per run, and characters per line: a chatty installer cannot flood the journal. */
const MAX_LINES = 500;
const MAX_LINE = 1_000;

export function runCommand(name: CommandName, c: CommandConfig, args: readonly string[], env: Record<string, string>, logger: Logger, signal?: AbortSignal): Promise<CommandResult> {
  const [program, ...fixed] = c.command as [string, ...string[]];
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(program, [...fixed, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      resolve({ ok: false, outcome: `cannot start ${program}: ${(err as Error).message}` });
      return;
    }
    let lines = 0;
    let last = '';
    const output = (stream: 'stdout' | 'stderr') => {
      let partial = '';
      return (data: Buffer) => {
        const parts = (partial + data.toString('utf8')).split('\n');
        partial = parts.pop()!.slice(-MAX_LINE);
        for (const line of parts) {
          if (line.trim() === '') continue;
          last = line.slice(0, 200);
          if (++lines <= MAX_LINES) logger.info({ firmwareCommand: name, stream, line: line.slice(0, MAX_LINE) }, 'firmware command output');
          else if (lines === MAX_LINES + 1) logger.warn({ firmwareCommand: name, maxLines: MAX_LINES }, 'firmware command output: further lines not logged');
        }
      };
    };
    child.stdout.on('data', output('stdout'));
    child.stderr.on('data', output('stderr'));
    let stopped: string | undefined;
    let killer: NodeJS.Timeout | undefined;
    const terminate = (why: string) => {
      if (stopped !== undefined || child.exitCode !== null) return;
      stopped = why;
      signalGroup(child.pid, 'SIGTERM');
      killer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS);
    };
    const timer = setTimeout(() => terminate(`timed out after ${formatDuration(c.timeout)}`), c.timeout);
    const onAbort = () => terminate('stopped with the agent');
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    child.once('error', (err) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ ok: false, outcome: `cannot start ${program}: ${err.message}` });
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      clearTimeout(killer);
      signal?.removeEventListener('abort', onAbort);
      if (stopped !== undefined) resolve({ ok: false, outcome: stopped });
      else if (code === 0) resolve({ ok: true, outcome: 'exit 0' });
      else resolve({ ok: false, outcome: `${code === null ? `killed by ${sig}` : `exit ${code}`}${last ? `: ${last}` : ''}` });
    });
  });
}

function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // already gone
  }
}
