/**
 * Agent test harness: keys generated at test time, an agent config written as YAML, the agent
 * spawned from the compiled CLI (its JSON log lines parsed); the real receiver that the agent tests
 * count arrivals with is in test/helpers/agent-receiver.ts.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { cliPath } from './paths.js';
import { stopChildren } from './stop.js';
import { underWxorX } from './wxorx.js';
import { makeReceiver, tempDir, type Receiver, type RelayProcess } from './relay.js';
import { stopAllAgentReceivers } from './agent-receiver.js';
import { loadReceiverKey, writeKeyBundle, bundlePaths } from '../../common/keyfile.js';

const run = promisify(execFile);

export interface AgentEnv {
  dir: string;
  stateDir: string;
  configFile: string;
  apiKeyFile: string;
  signKey: string;
  kemKey: string;
  devicePublicKey: Uint8Array;
  /** The device's X-Wing public key (firmware key wraps are sealed to it). */
  kemPublicKey: Uint8Array;
  did: string;
  receiverPub: string;
  receiver: Receiver;
}

/** Device and receiver keys, a device API key on `plan`, a receiver API key for the recipient. */
export async function makeAgentEnv(relay: RelayProcess, plan = 'enterprise'): Promise<AgentEnv> {
  const dir = await tempDir();
  const device = await writeKeyBundle('device', dir, 'gw');
  await writeKeyBundle('receiver', dir, 'rx');
  const paths = bundlePaths(dir, 'gw');
  const rx = bundlePaths(dir, 'rx');
  const issued = await relay.operator.createKey({ role: 'device', plan, label: 'agent test gateway' });
  const apiKeyFile = path.join(dir, 'device.apikey');
  await writeFile(apiKeyFile, issued.key + '\n', { mode: 0o600 });
  await chmod(apiKeyFile, 0o600);
  const receiver = await makeReceiver(relay, await loadReceiverKey(rx.kemKey));
  return {
    dir, stateDir: path.join(dir, 'state'), configFile: path.join(dir, 'agent.yaml'), apiKeyFile,
    signKey: paths.signKey, kemKey: paths.kemKey, devicePublicKey: device.publicKeys.sign!.publicKey, kemPublicKey: device.publicKeys.kem!.publicKey, did: device.did!,
    receiverPub: rx.kemPub, receiver,
  };
}

export function agentConfig(env: AgentEnv, relayUrl: string, taps: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    device: { signKey: env.signKey, kemKey: env.kemKey },
    relay: { url: relayUrl, apiKeyFile: env.apiKeyFile, timeout: '2s', statusInterval: '300ms' },
    recipients: [{ name: 'test-receiver', publicKey: env.receiverPub }],
    interval: '400ms',
    stateDir: env.stateDir,
    logLevel: 'info',
    taps,
    ...extra,
  };
}

export async function writeAgentConfig(env: AgentEnv, config: Record<string, unknown>): Promise<void> {
  await writeFile(env.configFile, stringify(config));
}

export async function cli(args: string[], options: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cliPath, ...args], { timeout: options.timeoutMs ?? 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface AgentProcess {
  child: ChildProcess;
  lines: LogLine[];
  output(): string;
  waitFor(predicate: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const agents = new Set<ChildProcess>();

/**
 * Stops every agent still running with SIGTERM (it exits 0 within its documented stop budget),
 * then every agent test receiver (test/helpers/agent-receiver.ts); fails when one did not exit 0
 * or had to be SIGKILLed after the deadline (test/helpers/stop.ts). Call from test.after, before
 * the relay's cleanup.
 */
export async function killAllAgents(): Promise<void> {
  try {
    await stopChildren([...agents], 'agent');
  } finally {
    agents.clear();
    await stopAllAgentReceivers();
  }
}

/**
 * `nodeFlags`: node options before the script, e.g. the systemd unit's (test/helpers/systemd-unit.ts).
 * `wxorx`: run under kernel-enforced W^X, as MemoryDenyWriteExecute=yes does (test/helpers/wxorx.ts).
 */
export function startAgent(configFile: string, nodeFlags: string[] = [], options: { wxorx?: boolean } = {}): AgentProcess {
  const argv = [...nodeFlags, cliPath, 'agent', '--config', configFile];
  const [command, args] = options.wxorx ? underWxorX(process.execPath, argv) : [process.execPath, argv];
  return startLogged(command, args);
}

/**
 * Any process that logs JSON lines (an agent, or test/helpers/unit-supervisor.ts with the agents it
 * runs), its lines parsed; stopped with SIGTERM by killAllAgents.
 */
export function startLogged(command: string, args: string[]): AgentProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  agents.add(child);
  const lines: LogLine[] = [];
  let output = '';
  let pending = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    pending += chunk.toString('utf8');
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part) as LogLine);
      } catch {
        // not JSON
      }
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    agents.delete(child);
    for (const wake of waiters) wake();
    resolve(code);
  }));
  return {
    child, lines,
    output: () => output,
    waitFor(predicate, timeoutMs = 15_000, what = 'log line') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(predicate);
          if (found) {
            cleanup();
            resolve(found);
          } else if (child.exitCode !== null) {
            cleanup();
            reject(new Error(`agent exited (${child.exitCode}) before ${what}:\n${output}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${what} within ${timeoutMs} ms:\n${output.slice(-6000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Frame sequences of arrivals (test/helpers/agent-receiver.ts), in arrival order. */
export function frameSequences(received: readonly { frames: readonly { sequence: bigint }[] }[]): bigint[] {
  return received.flatMap((r) => r.frames.map((f) => f.sequence));
}

/**
 * Waits until the relay holds nothing for any receiver (none pending, none leased): the receiver
 * has taken and acknowledged everything that was uploaded.
 */
export async function untilRelayDrained(relay: RelayProcess, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { pending, leased } = (await relay.operator.stats()).envelopes;
    if (pending === 0 && leased === 0) return;
    if (Date.now() > end) throw new Error(`timed out waiting for the relay to be drained: ${pending} pending, ${leased} leased`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** How many frames the agent built so far ('interval' lines; the agent must log at debug). */
export function intervalsIn(lines: LogLine[]): number {
  return lines.filter((l) => l.msg === 'interval').length;
}

export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string)): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Whether `needle` occurs in the readable private memory of a running process (heap, anonymous
 * mappings), read through /proc/PID/mem: for "the relay's RAM never holds plaintext". The test
 * process may read its own children's memory. Regions that cannot be read are skipped.
 */
export function processMemoryContains(pid: number, needle: string): boolean {
  const pattern = Buffer.from(needle, 'latin1'); // V8 keeps ASCII strings one byte per character
  const chunk = Buffer.alloc(1 << 20);
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) r..p \S+ \S+ \d+\s*(.*)$/.exec(line);
      if (!m || (m[3] !== '' && m[3] !== '[heap]')) continue; // private anonymous memory only
      const start = parseInt(m[1]!, 16);
      const end = parseInt(m[2]!, 16);
      for (let at = start; at < end; at += chunk.length - pattern.length) {
        let n: number;
        try {
          n = readSync(fd, chunk, 0, Math.min(chunk.length, end - at), at);
        } catch {
          break;
        }
        if (chunk.subarray(0, n).includes(pattern)) return true;
        if (n < chunk.length) break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return false;
}
