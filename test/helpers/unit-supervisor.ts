/**
 * What systemd does for a self-updating gateway, for tests on a machine where systemd is not
 * PID 1: run as a process of its own, it keeps the agent "unit" running from <prefix>/current
 * (Restart=always, 300 ms apart), restarts it on SIGHUP (`systemctl restart`: the release
 * service's restart command sends the HUP), and plays ghostpipe-release.path: while the request
 * file exists and no apply runs, it starts `ghostpipe release apply` from <prefix>/current, as
 * ghostpipe-release.service does. SIGTERM stops the agent (and an apply) and exits 0.
 *
 *   node unit-supervisor.js --prefix DIR --config AGENT.yaml --request FILE --pid-file FILE
 *
 * The children's JSON lines go to its stdout; its own lines are {"msg":"supervisor: …"}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { prefix: { type: 'string' }, config: { type: 'string' }, request: { type: 'string' }, 'pid-file': { type: 'string' } } });
const prefix = values.prefix!;
const config = values.config!;
const request = values.request!;
const RESTART_SEC = 300;
const PATH_POLL_MS = 200;

const say = (msg: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ level: 30, msg: `supervisor: ${msg}`, ...fields }) + '\n');
const entry = () => path.join(prefix, 'current', 'dist', 'cli', 'ghostpipe.js');
const release = () => {
  try {
    return readlinkSync(path.join(prefix, 'current'));
  } catch {
    return '(none)';
  }
};

let agent: ChildProcess | undefined;
let apply: ChildProcess | undefined;
let stopping = false;
let restarting = false;

function startAgent(): void {
  const child = spawn(process.execPath, [entry(), 'agent', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
  agent = child;
  say('agent started', { pid: child.pid, release: release() });
  child.once('exit', (code, signal) => {
    say('agent exited', { pid: child.pid, code, signal });
    if (agent === child) agent = undefined;
    if (!stopping && !restarting) setTimeout(() => !stopping && !agent && startAgent(), RESTART_SEC);
  });
}

function stopAgent(): Promise<void> {
  const child = agent;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

process.on('SIGHUP', () => {
  if (restarting) return;
  restarting = true;
  say('restart requested', { release: release() });
  void stopAgent().then(() => {
    restarting = false;
    if (!stopping) startAgent();
  });
});

process.on('SIGTERM', () => {
  stopping = true;
  clearInterval(watch);
  apply?.kill('SIGTERM');
  void stopAgent().then(() => process.exit(0));
});

const watch = setInterval(() => {
  if (apply || stopping || !existsSync(request)) return;
  const child = spawn(process.execPath, [entry(), 'release', 'apply', '--config', config], { stdio: ['ignore', 'inherit', 'inherit'] });
  apply = child;
  say('release apply started', { pid: child.pid, release: release() });
  child.once('exit', (code) => {
    say('release apply exited', { code, release: release() });
    apply = undefined;
  });
}, PATH_POLL_MS);

writeFileSync(values['pid-file']!, String(process.pid));
startAgent();
