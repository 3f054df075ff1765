/**
 * Stopping child processes at the end of a test: SIGTERM, then wait for the exit and check its
 * code (a clean exit also writes the child's coverage). SIGKILL only as a last resort after a
 * deadline, and then the cleanup fails saying so: a child that ignores SIGTERM is a bug.
 */
import type { ChildProcess } from 'node:child_process';

/**
 * Generous: the agent's documented worst-case stop is 20 s (collection) + 5 s (flush) + 2 s
 * (taps) (docs/AGENT.md); a loaded machine gets the rest. Only a failure bound, never measured.
 */
export const STOP_GRACE_MS = 45_000;

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * SIGTERM to `child` (unless it already exited), waits for its exit; resolves with a problem
 * (string) when it exited with a code not in `expected`, by a signal, or had to be SIGKILLed.
 */
export async function stopChild(child: ChildProcess, what: string, expected: readonly number[] = [0], graceMs = STOP_GRACE_MS): Promise<string | undefined> {
  const running = child.exitCode === null && child.signalCode === null;
  if (!running) return undefined; // stopped (and checked, or killed on purpose) by the test itself
  const exited = exitOf(child);
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  const result = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (result === 'timeout') {
    child.kill('SIGKILL');
    await exited;
    return `${what} (pid ${child.pid}) did not exit within ${graceMs} ms of SIGTERM and was SIGKILLed`;
  }
  if (result.code === null || !expected.includes(result.code)) {
    return `${what} (pid ${child.pid}) exited with ${result.code ?? result.signal} after SIGTERM, expected ${expected.join(' or ')}`;
  }
  return undefined;
}

/** stopChild for each (in parallel); throws one error naming every child that did not stop cleanly. */
export async function stopChildren(children: Iterable<ChildProcess>, what: string, expected: readonly number[] = [0]): Promise<void> {
  const problems = (await Promise.all([...children].map((child) => stopChild(child, what, expected)))).filter((p) => p !== undefined);
  if (problems.length > 0) throw new Error(`cleanup: ${problems.join('; ')}`);
}
