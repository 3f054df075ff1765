/** The real compiled `ghostpipe` CLI as a process, and the failure contract every command keeps. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cliPath } from './paths.js';

export interface CliResult { code: number | null; stdout: Buffer; stderr: string }

export function runCli(args: string[], options: { cwd: string; input?: Uint8Array; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined); // the CLI may exit before reading all input
    child.stdin.end(options.input ?? new Uint8Array(0));
  });
}

/** Failure contract: non-zero exit, exactly one line on stderr, no stack trace, nothing on stdout. */
export function assertOneLineFailure(r: CliResult, pattern: RegExp, code?: number): void {
  assert.notEqual(r.code, 0, `expected failure, stderr: ${r.stderr}`);
  if (code !== undefined) assert.equal(r.code, code);
  assert.equal(r.stdout.length, 0, 'nothing on stdout on failure');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.match(lines[0]!, /^ghostpipe: /);
  assert.match(lines[0]!, pattern);
}
