/**
 * Receiver test helpers: a real relay (test/helpers/relay.ts), an enrolled device sealing real
 * reading frames, and `ghostpipe receive` / `ghostpipe audit` run as real processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile, copyFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cliPath } from './paths.js';
import { stopChildren } from './stop.js';
import { completeJsonLines } from './json-lines.js';
import { fleetKey, makeReceiver, tempDir, type Device, type Receiver as ReceiverKeys, type RelayProcess } from './relay.js';
import { CONTENT_TYPE, KEM, sealEnvelope } from '../../protocol/envelope/index.js';
import { encodeFrames, type Reading } from '../../protocol/frame.js';
import { encodePrivateKeyPem, encodePublicKeyPem } from '../../protocol/keys.js';

export interface ReceiverSetup {
  dir: string;
  keys: ReceiverKeys;
  apiKeyFile: string;
  keyFile: string;
  relayPubFile: string;
  /** The test fleet key's public half (test/helpers/relay.ts fleetKey()), pinned by enrolled mode. */
  fleetPubFile: string;
}

/** A receiver key at the relay, and its files (API key, X-Wing key 0600, pinned relay key). */
export async function receiverSetup(relay: RelayProcess): Promise<ReceiverSetup> {
  const dir = await tempDir();
  const keys = await makeReceiver(relay);
  const apiKeyFile = path.join(dir, 'receiver.apikey');
  const keyFile = path.join(dir, 'receiver.kem.key');
  const relayPubFile = path.join(dir, 'relay.sign.pub');
  await writeFile(apiKeyFile, keys.apiKey + '\n', { mode: 0o600 });
  await writeFile(keyFile, encodePrivateKeyPem(keys.kem), { mode: 0o600 });
  await copyFile(path.join(relay.stateDir, 'relay.sign.pub'), relayPubFile);
  const fleetPubFile = path.join(dir, 'fleet.sign.pub');
  await writeFile(fleetPubFile, encodePublicKeyPem('ML-DSA-65', fleetKey().publicKey));
  return { dir, keys, apiKeyFile, keyFile, relayPubFile, fleetPubFile };
}

/** Receiver config with short test timings; `over` replaces top-level sections. */
export function receiverConfig(relay: RelayProcess, setup: ReceiverSetup, over: Record<string, unknown> = {}, name = 'r'): Record<string, unknown> {
  return {
    relay: { url: relay.url, apiKeyFile: setup.apiKeyFile, publicKey: setup.relayPubFile, wait: '500ms', checkpointInterval: '1s', timeout: '5s' },
    receiverKey: setup.keyFile,
    stateDir: path.join(setup.dir, `state-${name}`),
    trust: { enrolled: true, fleetPublicKey: setup.fleetPubFile, refresh: '0s' },
    sinks: [{ type: 'file', path: path.join(setup.dir, `${name}.jsonl`) }],
    retry: { initial: '100ms', max: '1s' },
    logLevel: 'debug',
    ...over,
  };
}

const children = new Set<ChildProcess>();

export interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** JSON log lines so far. */
  logs(): Record<string, unknown>[];
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export function run(args: string[], options: { cwd?: string } = {}): Proc {
  const child = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
  children.add(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString('utf8'); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString('utf8'); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => {
    children.delete(child);
    resolve(code ?? (signal ? -1 : null));
  }));
  return {
    child, exited,
    output: () => output,
    logs: () => output.split('\n').flatMap((line) => {
      try {
        const v = JSON.parse(line) as unknown;
        return typeof v === 'object' && v !== null && 'msg' in v ? [v as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    }),
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export async function startReceiverProcess(setup: ReceiverSetup, config: Record<string, unknown>, name = 'r'): Promise<Proc> {
  const file = path.join(setup.dir, `${name}.yaml`);
  await writeFile(file, JSON.stringify(config, null, 2)); // JSON is YAML 1.2
  return run(['receive', '--config', file]);
}

/**
 * Stops every `ghostpipe` child still running (receivers, audits) with SIGTERM; fails when one
 * did not exit 0 or had to be SIGKILLed after the deadline (test/helpers/stop.ts).
 */
export async function killAllChildren(): Promise<void> {
  try {
    await stopChildren([...children], 'ghostpipe child');
  } finally {
    children.clear();
  }
}

export { until as waitFor } from './wait.js';

export function readLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return completeJsonLines(readFileSync(file, 'utf8'));
}

export async function readText(file: string): Promise<string> {
  return readFile(file, 'utf8');
}

/** Two readings per frame by default, marked with `tag` so each envelope's readings are recognisable. */
export function readings(tag: string, now = Date.now()): Reading[] {
  return [
    { tap: 'plc1', point: `temp-${tag}`, value: 21.5, unit: '°C', quality: 'good', readTime: now, sourceTime: now - 10 },
    { tap: 'plc1', point: `count-${tag}`, value: 18446744073709551615n, quality: 'good', readTime: now },
  ];
}

export interface SealArgs {
  seq: bigint;
  stream?: number;
  readings?: Reading[];
  createdAt?: number;
  contentType?: number;
}

export function seal(device: Device, to: ReceiverKeys, a: SealArgs): Uint8Array {
  const now = Date.now();
  const plaintext = encodeFrames([{ sequence: a.seq, time: now - 15_000, intervalMs: 15_000, readings: a.readings ?? readings(String(a.seq), now) }]);
  return sealEnvelope({
    plaintext,
    recipient: { kemId: KEM.XWING, publicKey: to.kem.publicKey },
    sender: { seed: device.signing.seed, publicKey: device.signing.publicKey },
    streamId: a.stream ?? 1,
    sequence: a.seq,
    contentType: a.contentType ?? CONTENT_TYPE.READINGS,
    ...(a.createdAt !== undefined ? { createdAt: a.createdAt } : {}),
  });
}

/** Log lines of a receiver that refused something, by reason. */
export function refusals(proc: Proc, reason: string): Record<string, unknown>[] {
  return proc.logs().filter((l) => l['msg'] !== undefined && String(l['msg']).startsWith('envelope refused') && l['reason'] === reason);
}
