/**
 * Test harness: real relay processes spawned via the compiled CLI on 127.0.0.1 with a free
 * port, plus helpers to make operators, devices (enrolled) and receivers and to seal envelopes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cliPath } from './paths.js';
import { stopChildren } from './stop.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { generatePrivateKey, keyIdHex, type PrivateKey } from '../../protocol/keys.js';
import { xwingDecapsulate } from '../../protocol/crypto/xwing.js';
import { didFromSigningKey } from '../../protocol/did.js';
import { encodeEnrollmentStatement, signEnrollmentStatement } from '../../protocol/enrollment.js';
import { CONTENT_TYPE, KEM, sealEnvelope } from '../../protocol/envelope/index.js';

export interface RelayProcess {
  url: string;
  port: number;
  dir: string;
  stateDir: string;
  child: ChildProcess;
  output(): string;
  operator: RelayClient;
  operatorKey: string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const running = new Set<ChildProcess>();
const dirs = new Set<string>();

// The check that catches a test file forgetting cleanupAll(): a temp folder (relay state, keys, an
// OPC-UA PKI with its private key) still registered when the process exits is removed here, and
// the test file fails (node --test reports a non-zero exit) naming it.
process.on('exit', () => {
  if (dirs.size === 0) return;
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  process.stderr.write(`test/helpers/relay.ts: temp folders left behind (call cleanupAll from after()): ${[...dirs].join(', ')}\n`);
  process.exitCode = 1;
});

/**
 * Stops every relay still running with SIGTERM and removes the temp folders; fails when a relay
 * did not exit 0 (or had to be SIGKILLed after test/helpers/stop.ts's deadline). Call from test.after.
 */
export async function cleanupAll(): Promise<void> {
  try {
    await stopChildren([...running], 'relay');
  } finally {
    running.clear();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    dirs.clear();
  }
}

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-relay-test-'));
  dirs.add(dir);
  return dir;
}

/**
 * Starts `ghostpipe relay --config <file>` with `config` merged over test defaults
 * (listen on 127.0.0.1:0, state in a temp folder, short lease timeout, log level info).
 */
export async function startRelay(config: Record<string, unknown> = {}, options: { dir?: string; env?: Record<string, string> } = {}): Promise<RelayProcess> {
  const dir = options.dir ?? (await tempDir());
  const stateDir = path.join(dir, 'state');
  const full: Record<string, unknown> = { listen: ['127.0.0.1:0'], stateDir, logLevel: 'info', ...config };
  const configFile = path.join(dir, 'relay.json');
  await writeFile(configFile, JSON.stringify(full, null, 2));
  const child = spawn(process.execPath, [cliPath, 'relay', '--config', configFile], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  running.add(child);
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    running.delete(child);
    resolve(code);
  }));
  const ready = new Promise<{ port: number; operatorKeyFile: string | undefined }>((resolve, reject) => {
    let operatorKeyFile: string | undefined;
    const onLine = (line: string) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number; file?: string };
        if (entry.msg?.startsWith('created the operator key')) operatorKeyFile = entry.file;
        if (entry.msg === 'relay listening' && entry.port) resolve({ port: entry.port, operatorKeyFile });
      } catch {
        // not JSON
      }
    };
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      lines.forEach(onLine);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    void exited.then((code) => reject(new Error(`relay exited (${code}) before listening:\n${output}`)));
    setTimeout(() => reject(new Error(`relay did not start within 20 s:\n${output}`)), 20_000).unref();
  });
  const { port, operatorKeyFile } = await ready;
  // Where the relay keeps it after the first start: operatorKeyFile, else next to the state (or
  // identity) directory, never inside it (docs/RELAY.md "Operator key").
  const controlDir = full['ramOnly'] ? (full['identityDir'] as string | undefined) : (full['stateDir'] as string);
  const keyFile = operatorKeyFile ?? (full['operatorKeyFile'] as string | undefined) ?? (controlDir ? path.join(path.dirname(path.resolve(dir, controlDir)), 'operator.key') : undefined);
  const operatorKey = keyFile ? (await readFile(keyFile, 'utf8')).trim() : '';
  const url = `http://127.0.0.1:${port}`;
  return {
    url, port, dir, stateDir, child,
    output: () => output,
    operator: new RelayClient({ baseUrl: url, apiKey: operatorKey }),
    operatorKey,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/**
 * Waits until the relay serves a checkpoint of at least `size` leaves (it signs one shortly after
 * each append, docs/RELAY.md) and resolves with the size served: the condition, not a sleep.
 */
export async function untilCheckpointCovers(client: RelayClient, size: number, timeoutMs = 20_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const served = Number((await client.checkpoint()).split('\n')[1]);
    if (served >= size) return served;
    if (Date.now() > end) throw new Error(`timed out waiting for a checkpoint of ${size} leaves; the relay serves ${served}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface Device {
  client: RelayClient;
  apiKey: string;
  apiKeyId: string;
  signing: PrivateKey;
  kem: PrivateKey;
  did: string;
  leafIndex: number;
  seal(plaintext: Uint8Array, recipient: Receiver, sequence?: bigint, bucket?: number): Uint8Array;
}

export interface Receiver {
  client: RelayClient;
  apiKey: string;
  apiKeyId: string;
  kem: PrivateKey;
  recipientKeyId: string;
}

let sequence = 0n;

/**
 * The test fleet key (`ghostpipe keygen --type fleet` in a deployment): generated at test time, one
 * per test process; makeDevice approves every device with it unless told otherwise.
 */
let testFleet: PrivateKey | undefined;
export function fleetKey(): PrivateKey {
  testFleet ??= generatePrivateKey('ML-DSA-65');
  return testFleet;
}

/** A fleet approval of these device keys for this API key, signed by `fleet` (default: the test fleet key). */
export function approve(device: { signing: PrivateKey; kem: PrivateKey }, apiKeyId: string, fleet: PrivateKey = fleetKey(), validMs = 86_400_000): { statement: Uint8Array; signature: Uint8Array } {
  const now = Date.now();
  const statement = encodeEnrollmentStatement({
    did: didFromSigningKey(device.signing.publicKey), signingPublicKey: device.signing.publicKey, kemAlg: 'X-Wing', kemPublicKey: device.kem.publicKey,
    apiKeyId, notBefore: now - 60_000, notAfter: now + validMs,
  });
  return { statement, signature: signEnrollmentStatement(fleet.seed, statement) };
}

/** The device side of enrollment for these keys (proofs of possession of both). */
export function prover(signing: PrivateKey, kem: PrivateKey) {
  return {
    signingPublicKey: signing.publicKey, kemPublicKey: kem.publicKey,
    sign: (msg: Uint8Array, ctx: Uint8Array) => getProvider().mlDsa65.sign(signing.seed, msg, ctx),
    decapsulate: (ct: Uint8Array) => xwingDecapsulate(kem.seed, ct, getProvider()),
  };
}

/**
 * Issues a device key on `plan`, enrolls a fresh device with it, approved by the test fleet key.
 * `approval`: 'none' registers without one; a key signs the approval instead of the fleet key.
 */
export async function makeDevice(relay: RelayProcess, plan = 'pro', options: { enroll?: boolean; approval?: 'none' | PrivateKey; approvalValidMs?: number } = {}): Promise<Device> {
  const issued = await relay.operator.createKey({ role: 'device', plan, label: `device ${Math.random().toString(36).slice(2, 8)}` });
  const client = new RelayClient({ baseUrl: relay.url, apiKey: issued.key });
  const signing = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  let did = '';
  let leafIndex = -1;
  if (options.enroll !== false) {
    const approval = options.approval === 'none' ? undefined : approve({ signing, kem }, issued.id, options.approval ?? fleetKey(), options.approvalValidMs);
    const registration = await client.enroll(prover(signing, kem), approval);
    did = registration.did;
    leafIndex = registration.leafIndex;
  }
  return {
    client, apiKey: issued.key, apiKeyId: issued.id, signing, kem, did, leafIndex,
    seal: (plaintext, recipient, seq = ++sequence, bucket) => sealEnvelope({
      plaintext,
      recipient: { kemId: KEM.XWING, publicKey: recipient.kem.publicKey },
      sender: { seed: signing.seed, publicKey: signing.publicKey },
      streamId: 1,
      sequence: seq,
      contentType: CONTENT_TYPE.READINGS,
      ...(bucket !== undefined ? { bucket } : {}),
    }),
  };
}

export async function makeReceiver(relay: RelayProcess, kem: PrivateKey = generatePrivateKey('X-Wing')): Promise<Receiver> {
  const recipientKeyId = keyIdHex('X-Wing', kem.publicKey);
  const issued = await relay.operator.createKey({ role: 'receiver', plan: 'pro', label: 'receiver', recipients: [recipientKeyId] });
  return { client: new RelayClient({ baseUrl: relay.url, apiKey: issued.key }), apiKey: issued.key, apiKeyId: issued.id, kem, recipientKeyId };
}

/** A plaintext carrying `marker`, filling most of a 4 KiB bucket by default. */
export function markedPlaintext(marker: string, size = 3000): Uint8Array {
  const text = (marker + ' ').repeat(Math.ceil(size / (marker.length + 1))).slice(0, size);
  return new TextEncoder().encode(text);
}

/**
 * Raw HTTP request over node:http, for bodies and headers fetch() will not send. A new connection
 * each time (agent: false): a kept-alive socket the relay closes after 5 s idle met a request under
 * load ("socket hang up"), and a raw request has no retry.
 */
export async function rawRequest(url: string, init: { method?: string; headers?: Record<string, string>; body?: Uint8Array }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body === undefined ? undefined : Buffer.from(init.body));
  });
}

/**
 * How many envelopes the relay holds for this recipient, pending or leased: what "not yet
 * acknowledged" means. (The inbox lists pending envelopes only: while a receiver holds a lease it
 * looks empty, and a check on it passed before the ack.)
 */
export async function heldFor(relay: RelayProcess, recipientKeyId: string): Promise<number> {
  const queue = (await relay.operator.stats()).queues[recipientKeyId];
  return queue ? queue.pending + queue.leased : 0;
}

/** True while the relay holds this envelope (pending or leased): not acknowledged yet. */
export async function stillHeld(device: Device, envelope: string): Promise<boolean> {
  const state = (await device.client.status([envelope]))[envelope];
  return state === 'pending' || state === 'leased';
}

/** Awaits a relay request that must be refused with this status and code; returns the error. */
export async function refused(promise: Promise<unknown>, status: number, code: string): Promise<RelayError> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof RelayError)) throw new Error(`expected a RelayError, got ${String(err)}`);
    if (err.status !== status || err.code !== code) throw new Error(`expected ${status} ${code}, got ${err.status} ${err.code}: ${err.message}`);
    return err;
  }
  throw new Error(`expected ${status} ${code}, but the request succeeded`);
}
