/**
 * A `ghostpipe <role>` child process, watched line by line: the demo and the end-to-end tests
 * start every role this way, wait for a log line, stop it with SIGTERM (then SIGKILL after a
 * grace period) or kill it outright as a crash would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

export interface LogLine {
  /** 'stdout' or 'stderr'. */
  stream: 'stdout' | 'stderr';
  text: string;
  /** The parsed JSON object when the line is JSON (pino logs, receiver records). */
  json?: Record<string, unknown>;
}

export interface RoleOptions {
  /** Short name for messages: "relay", "agent", ... */
  name: string;
  /** Compiled CLI entry (dist/cli/ghostpipe.js). */
  cli: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Every output line is appended here too (the demo keeps full logs in .demo/logs/). */
  logFile?: string;
  onLine?: (line: LogLine) => void;
  /**
   * Own process group: a Ctrl-C in the terminal then reaches only the parent, which stops the
   * roles in order. The parent must kill its children on exit (killOnExit below does).
   */
  detached?: boolean;
}

export class RoleExitedError extends Error {
  constructor(readonly role: string, readonly code: number | null, readonly signal: string | null, tail: string) {
    super(`${role} exited (${code ?? signal}) before it was ready; last output:\n${tail}`);
    this.name = 'RoleExitedError';
  }
}

/** Detached children still running when this process exits are killed (no orphans). */
const killOnExit = new Set<RoleProcess>();
process.on('exit', () => {
  for (const p of killOnExit) if (p.running()) p.killGroup();
});

export class RoleProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  private readonly log: WriteStream | undefined;

  constructor(readonly options: RoleOptions) {
    this.log = options.logFile ? createWriteStream(options.logFile, { flags: 'a', mode: 0o600 }) : undefined;
    this.child = spawn(process.execPath, [options.cli, ...options.args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.detached ?? false,
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    if (options.detached) killOnExit.add(this);
    void this.exited.then(() => killOnExit.delete(this));
    for (const stream of ['stdout', 'stderr'] as const) {
      createInterface({ input: this.child[stream]! }).on('line', (text) => this.take(stream, text));
    }
    void this.exited.then(() => this.log?.end());
  }

  get name(): string {
    return this.options.name;
  }
  get pid(): number | undefined {
    return this.child.pid;
  }
  running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private take(stream: 'stdout' | 'stderr', text: string): void {
    let json: Record<string, unknown> | undefined;
    if (text.startsWith('{')) {
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
    }
    const line: LogLine = json ? { stream, text, json } : { stream, text };
    this.lines.push(line);
    if (this.lines.length > 20_000) this.lines.splice(0, 10_000);
    this.log?.write(text + '\n');
    this.options.onLine?.(line);
    for (const w of this.waiters) {
      if (w.match(line)) {
        this.waiters.delete(w);
        w.resolve(line);
      }
    }
  }

  /** The last output lines, for error messages. */
  tail(n = 30): string {
    return this.lines.slice(-n).map((l) => l.text).join('\n');
  }

  /** Resolves with the first line (already seen or future) matching; rejects on exit or timeout. */
  waitFor(match: (l: LogLine) => boolean, timeoutMs = 30_000, what = 'the expected output'): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; last output:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
      void this.exited.then(({ code, signal }) => {
        if (!this.waiters.has(waiter)) return;
        this.waiters.delete(waiter);
        clearTimeout(timer);
        reject(new RoleExitedError(this.name, code, signal, this.tail()));
      });
    });
  }

  /** Waits for a pino log line whose msg matches. */
  waitForLog(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>> {
    const test = (m: unknown) => typeof m === 'string' && (typeof msg === 'string' ? m === msg : msg.test(m));
    return this.waitFor((l) => l.json !== undefined && test(l.json['msg']), timeoutMs, `log line ${String(msg)}`).then((l) => l.json!);
  }

  /** SIGTERM, wait up to graceMs, then SIGKILL. Resolves with the exit code (null when killed). */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (!this.running()) return (await this.exited).code;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const { code } = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** SIGKILL, as a crash or power cut would. */
  async kill(): Promise<void> {
    if (this.running()) this.killGroup();
    await this.exited;
  }

  /** SIGKILL to the role and, when detached, its whole process group (the plant's mosquitto too). */
  killGroup(): void {
    const pid = this.child.pid;
    if (this.options.detached && pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
        return;
      } catch {
        // group already gone: fall through to the process itself
      }
    }
    this.child.kill('SIGKILL');
  }
}
