/**
 * Fault-injection harness: the whole conduit (the plant in this process; relay, agent and receiver
 * as `ghostpipe` processes with a file sink, via test/helpers/conduit.ts and plant/conduit.ts), a
 * seeded schedule of faults, and the checks every fault test ends with: the log only ever extends
 * what it signed, and every frame the agent sealed reaches the sink exactly once.
 *
 * Seeds: every scenario prints `seed N`; GHOSTPIPE_FAULT_SEED=N replays the same schedule.
 */
import { randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { makeConduit, readSink, stopConduit, until, type SinkRecord } from './conduit.js';
import { reservePort } from './ports.js';
import { plantTaps, type Conduit } from '../../plant/conduit.js';
import type { RoleProcess } from '../../plant/process.js';
import { startPlant, type Plant } from '../../plant/plant.js';
import os from 'node:os';
import { prng } from '../../common/prng.js';
import { RelayClient } from '../../common/relay-client.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { approve, prover } from './relay.js';
import { loadSigningKey } from '../../common/keyfile.js';
import { generatePrivateKey, keyIdHex } from '../../protocol/keys.js';
import { CONTENT_TYPE, KEM, sealEnvelope } from '../../protocol/envelope/index.js';
import { Witness, mlDsaNoteVerifier, openCheckpoint, parseCheckpoint, parseNote, verifyConsistency, fromBase64 } from '../../protocol/tlog/index.js';

/** Agent interval of every fault scenario: short, so a cycle costs about a second. */
export const FAULT_INTERVAL_MS = 300;
/** Readings per frame with the Modbus (6 points) and MQTT (2 points) taps of the plant. */
export const POINTS_PER_FRAME = 8;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Schedule {
  seed: number;
  /** Uniform in [0, 1). */
  random: () => number;
  /** Integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
}

/** The seeded PRNG of one scenario; the seed goes to the test output so a failure can be replayed. */
export function schedule(t: TestContext, scenario: string): Schedule {
  const fromEnv = process.env['GHOSTPIPE_FAULT_SEED'];
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : randomInt(2 ** 31);
  t.diagnostic(`${scenario}: seed ${seed} (replay with GHOSTPIPE_FAULT_SEED=${seed})`);
  const random = prng(seed);
  return {
    seed, random,
    between: (lo, hi) => lo + Math.floor(random() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(random() * items.length)]!,
  };
}

/** Runs `body`; a failure names the seed, so the message alone is enough to replay it. */
export async function withSeed<T>(s: Schedule, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof Error) err.message = `[GHOSTPIPE_FAULT_SEED=${s.seed}] ${err.message}`;
    throw err;
  }
}

/**
 * One simulated plant for a test file (its OPC-UA server takes seconds to start), and every rig
 * made on it, cleaned up by `stop()` (call it from after()).
 */
export function plantForFile(): { start(): Promise<void>; plant(): Plant; rig(name: string, o?: RigOptions): Promise<Rig>; stop(): Promise<void> } {
  let plant: Plant | undefined;
  let dir: string | undefined;
  const rigs: Rig[] = [];
  return {
    async start() {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ghostpipe-faults-plant-'));
      // Modbus binds port 0; OPC-UA and mosquitto cannot report a port 0 bind: reserved ports.
      plant = await startPlant({ dataDir: dir, tickMs: 200, seed: 11, opcuaPort: await reservePort(), mqttPort: await reservePort() });
    },
    plant: () => plant!,
    async rig(name, o) {
      const rig = await startRig(name, plant!, o);
      rigs.push(rig);
      return rig;
    },
    async stop() {
      try {
        const failed = (await Promise.allSettled(rigs.map((rig) => rig.dispose()))).flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
        if (failed.length > 0) throw new Error(failed.join('\n'));
      } finally {
        await plant?.stop();
        if (dir) await fs.rm(dir, { recursive: true, force: true });
      }
    },
  };
}

export interface Rig {
  conduit: Conduit;
  dir: string;
  sinkFile: string;
  /** One entry per agent process started, oldest first. */
  agentRuns: AgentRun[];
  log: LogWatch;
  startAgent(): Promise<AgentRun>;
  /** SIGTERM everything, check the exits (stopConduit) and remove the folder (test cleanup). */
  dispose(): Promise<void>;
}

export interface RigOptions {
  /** RAM-only relay with a provisioned identity directory (docs/RELAY.md) instead of a state directory. */
  ramOnly?: boolean;
  intervalMs?: number;
  /** The agent's log level; 'debug' (default) logs every accepted envelope, which AgentRun reads. */
  agentLogLevel?: string;
}

/**
 * A conduit on `plant`, started and enrolled: relay (state directory, or RAM-only), receiver with
 * a file sink, agent with the plant's Modbus and MQTT taps. OPC-UA is left out: its secure
 * channel costs a second of CPU per agent start, and the agent restarts ten times here.
 */
export async function startRig(name: string, plant: Plant, o: RigOptions = {}): Promise<Rig> {
  const { conduit, dir, sinkFile } = await makeConduit(`faults-${name}`, {
    intervalMs: o.intervalMs ?? FAULT_INTERVAL_MS,
    relaySettings: { leaseTimeout: '1s' },
    receiverCheckpointInterval: '1s',
    receiverSettings: { retry: { initial: '100ms', max: '500ms' } },
    agentSettings: { logLevel: o.agentLogLevel ?? 'debug' },
  });
  // The identity directory is the conduit's relay folder, so relay.sign.pub (in it) and operator.key
  // (next to it) are where the receiver and the operator client look.
  if (o.ramOnly) conduit.o.relaySettings = { ...conduit.o.relaySettings, ramOnly: true, identityDir: conduit.paths.relayState };
  const agentRuns: AgentRun[] = [];
  const rig: Rig = {
    conduit, dir, sinkFile, agentRuns,
    log: new LogWatch(),
    async startAgent() {
      const firstFrame = await nextReservedFrame(conduit);
      const role = await conduit.startAgent();
      const run = new AgentRun(role, firstFrame);
      agentRuns.push(run);
      return run;
    },
    async dispose() {
      try {
        await stopConduit(conduit);
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
  };
  try {
    await conduit.prepareKeys();
    await fs.mkdir(conduit.paths.relayState, { recursive: true, mode: 0o700 });
    await conduit.startRelay();
    await conduit.ensureApiKeys();
    await conduit.writeAgentConfigWithTaps(plantTaps({ modbusPort: plant.modbus.port, opcuaEndpoint: plant.opcua.endpoint, opcuaCertificate: plant.opcua.certificateFile, mqttUrl: plant.mqtt.url }, conduit.paths.agentPki).filter((tap) => tap['type'] !== 'opcua'));
    await conduit.enroll();
    await conduit.writeReceiverConfig();
    await conduit.startReceiver();
    await rig.startAgent();
  } catch (err) {
    await rig.dispose().catch(() => undefined); // the start failure is the error to report
    throw err;
  }
  return rig;
}

/** The first frame number the next agent process will use: its state file's reservation (1 on a fresh state). */
async function nextReservedFrame(conduit: Conduit): Promise<bigint> {
  const text = await fs.readFile(path.join(conduit.paths.agentState, 'agent-state.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return 1n;
  const reserved = (JSON.parse(text) as { reservedUpTo?: Record<string, string> }).reservedUpTo?.['frame:1'];
  return reserved === undefined ? 1n : BigInt(reserved);
}

/** One agent process and what it logged: the frames the relay accepted, and its stop line. */
export class AgentRun {
  constructor(readonly role: RoleProcess, readonly firstFrame: bigint) {}

  /** Resolves once the process exited and every line it wrote has been read. */
  async finished(): Promise<void> {
    await this.role.exited;
    const out = this.role.child.stdout;
    if (out && !out.readableEnded && !out.destroyed) await new Promise((resolve) => out.once('close', resolve));
  }

  private messages(): Record<string, unknown>[] {
    return this.role.lines.flatMap((l) => (l.json ? [l.json] : []));
  }

  /** Frames inside envelopes the relay accepted (201 or 409 duplicate), as logged at debug. */
  acceptedFrames(): Set<bigint> {
    const frames = new Set<bigint>();
    for (const m of this.messages()) if (m['msg'] === 'envelope uploaded') for (const f of m['frames'] as string[]) frames.add(BigInt(f));
    return frames;
  }

  /** The highest frame number this process logged building (debug 'interval' line), 0n if none. */
  lastBuiltFrame(): bigint {
    let last = 0n;
    for (const m of this.messages()) if (m['msg'] === 'interval' && BigInt(m['frame'] as string) > last) last = BigInt(m['frame'] as string);
    return last;
  }

  stopLine(): Record<string, unknown> | undefined {
    return this.messages().find((m) => typeof m['msg'] === 'string' && (m['msg'] as string).startsWith('agent stopped'));
  }

  lines(msg: string): Record<string, unknown>[] {
    return this.messages().filter((m) => m['msg'] === msg);
  }
}

interface Seen {
  origin: string;
  size: number;
  root: Uint8Array;
  note: string;
}

/**
 * The test's own witness of the relay's log. The relay key is pinned from the first answer;
 * every checkpoint must carry its signature, and within one origin each one must be proven
 * consistent with everything seen before (a fork or a rollback throws). A new origin (a RAM-only
 * reboot) is accepted only under the same key and starts a new epoch.
 */
export class LogWatch {
  private publicKey: Uint8Array | undefined;
  private witness: Witness | undefined;
  /** Per origin: the first and the latest checkpoint seen. */
  readonly epochs: { first: Seen; latest: Seen }[] = [];

  get latest(): Seen | undefined {
    return this.epochs.at(-1)?.latest;
  }

  /** Fetches the checkpoint (and a consistency proof from the last one seen) and checks it. */
  async observe(conduit: Conduit): Promise<Seen> {
    const client = new RelayClient({ baseUrl: conduit.relayUrl, apiKey: '' });
    if (this.publicKey === undefined) this.publicKey = fromBase64((await client.logKey()).publicKey)!;
    const note = await client.checkpoint();
    const { origin, size } = parseCheckpoint(parseNote(note).text);
    if (this.witness === undefined || this.witness.origin !== origin) {
      this.witness = new Witness(origin, [mlDsaNoteVerifier(origin, this.publicKey)]);
    }
    const trusted = this.witness.checkpoint.size;
    const proof = trusted > 0 && size > trusted ? (await client.consistencyProof(trusted, size)).proof : null;
    const { checkpoint } = this.witness.update(note, proof);
    const seen: Seen = { origin, size: checkpoint.size, root: checkpoint.root, note };
    const epoch = this.epochs.at(-1);
    if (epoch && epoch.first.origin === origin) epoch.latest = seen;
    else this.epochs.push({ first: seen, latest: seen });
    return seen;
  }

  /**
   * A consistency proof from the first checkpoint of the current origin to the relay's checkpoint
   * now, verified against the roots the test saw (one proof over all restarts, not the witness
   * chain). Returns the two sizes.
   */
  async proveFromFirst(conduit: Conduit): Promise<{ from: number; to: number }> {
    const first = this.epochs.at(-1)!.first;
    return this.proveFrom(conduit, first);
  }

  /** As proveFromFirst, from any checkpoint of the current origin (e.g. one read from disk). */
  async proveFrom(conduit: Conduit, from: { size: number; root: Uint8Array }): Promise<{ from: number; to: number }> {
    const now = await this.observe(conduit);
    if (now.size < from.size) throw new Error(`the relay's checkpoint (size ${now.size}) is smaller than the signed size ${from.size}`);
    const client = new RelayClient({ baseUrl: conduit.relayUrl, apiKey: '' });
    const proof = from.size === now.size ? [] : (await client.consistencyProof(from.size, now.size)).proof;
    verifyConsistency(from.size, now.size, proof, from.root, now.root);
    return { from: from.size, to: now.size };
  }

  /** Checks a signed note with the pinned key (for checkpoints read from disk). */
  open(note: string): { origin: string; size: number; root: Uint8Array } {
    const { origin } = parseCheckpoint(parseNote(note).text);
    return openCheckpoint(note, [mlDsaNoteVerifier(origin, this.publicKey!)]).checkpoint;
  }
}

/** Waits until the relay holds nothing for the receiver: every accepted envelope was delivered and acknowledged. */
export async function untilDrained(conduit: Conduit, timeoutMs = 30_000): Promise<void> {
  const operator = await conduit.operator();
  await until('the receiver queue at the relay to drain', async () => {
    const stats = await operator.stats().catch(() => undefined);
    return stats !== undefined && stats.queues[conduit.keys!.receiverKeyId] === undefined;
  }, timeoutMs, 100);
}

/** Frame number -> the records of it in the sink (stream 1). */
export function byFrame(records: SinkRecord[]): Map<bigint, SinkRecord[]> {
  const frames = new Map<bigint, SinkRecord[]>();
  for (const r of records) {
    if (r.stream !== 1) continue;
    const f = BigInt(r.frame);
    frames.set(f, [...(frames.get(f) ?? []), r]);
  }
  return frames;
}

/**
 * Exactly once at the sink: no reading twice, every frame whole and in one envelope only,
 * envelope sequence numbers never reused by two envelopes. Returns the frames present. Throws
 * with a description of the first violations.
 */
export function checkSinkIntegrity(records: SinkRecord[]): Set<bigint> {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    const key = `${r.stream}/${r.frame}/${r.tap}/${r.point}`;
    if (seen.has(key)) problems.push(`reading ${key} twice`);
    seen.add(key);
  }
  const envelopeOfFrame = new Map<string, string>();
  const envelopeOfSeq = new Map<string, string>();
  for (const r of records) {
    const owner = envelopeOfFrame.get(r.frame);
    if (owner !== undefined && owner !== r.envelope) problems.push(`frame ${r.frame} in two envelopes`);
    envelopeOfFrame.set(r.frame, r.envelope);
    const seqOwner = envelopeOfSeq.get(r.seq);
    if (seqOwner !== undefined && seqOwner !== r.envelope) problems.push(`envelope sequence ${r.seq} used by two envelopes`);
    envelopeOfSeq.set(r.seq, r.envelope);
  }
  const frames = byFrame(records);
  for (const [f, rs] of frames) if (rs.length !== POINTS_PER_FRAME) problems.push(`frame ${f} has ${rs.length} readings, not ${POINTS_PER_FRAME}`);
  if (problems.length > 0) throw new Error(`sink not exactly-once: ${[...new Set(problems)].slice(0, 15).join('; ')}${problems.length > 15 ? ` (${problems.length} problems)` : ''}`);
  return new Set(frames.keys());
}

/** Sorted difference a \ b, for messages. */
export function minus(a: Iterable<bigint>, b: Set<bigint>): bigint[] {
  return [...a].filter((x) => !b.has(x)).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
}

/**
 * Stops the agent (SIGTERM: it flushes), waits until the receiver drained the relay, and checks
 * that the sink holds exactly the frames the agent logged as accepted, each once. For scenarios
 * with one agent process that the relay faults never touch, so nothing may be missing.
 */
export async function finishAndCheckExactlyOnce(rig: Rig): Promise<{ frames: number; readings: number }> {
  const run = rig.agentRuns.at(-1)!;
  assertEqual(await rig.conduit.agent!.stop(), 0, 'agent exit code after SIGTERM');
  await run.finished();
  const stop = run.stopLine();
  assertEqual(stop?.['unflushedFrames'], 0, `agent stop line: frames the relay did not accept (${JSON.stringify(stop)})`);
  await untilDrained(rig.conduit);
  const accepted = new Set<bigint>();
  for (const r of rig.agentRuns) for (const f of r.acceptedFrames()) accepted.add(f);
  // The receiver may still be writing the last envelope it acknowledged: wait for the sink to catch up.
  let records: SinkRecord[] = [];
  await until('every accepted frame in the sink', async () => {
    records = await readSink(rig.sinkFile);
    const have = byFrame(records);
    return [...accepted].every((f) => have.get(f)?.length === POINTS_PER_FRAME);
  }, 15_000).catch(() => undefined);
  const present = checkSinkIntegrity(records);
  const lost = minus(accepted, present);
  const unexpected = minus(present, accepted);
  if (lost.length > 0 || unexpected.length > 0) {
    throw new Error(`sink vs agent: ${lost.length} accepted frame(s) missing (${lost.slice(0, 20).join(', ')}), ${unexpected.length} frame(s) the agent never logged (${unexpected.slice(0, 20).join(', ')})`);
  }
  // One agent process: its frames are 1..N without a hole.
  const sorted = [...present].sort((a, b) => (a < b ? -1 : 1));
  if (rig.agentRuns.length === 1 && sorted.length > 0) assertEqual(sorted.at(-1)! - sorted[0]! + 1n, BigInt(sorted.length), 'frames contiguous');
  return { frames: present.size, readings: records.length };
}

function assertEqual(actual: unknown, expected: unknown, what: string): void {
  if (actual !== expected) throw new Error(`${what}: got ${String(actual)}, expected ${String(expected)}`);
}

/**
 * A second device that uploads a burst of envelopes to a recipient nobody reads (a receiver key
 * lists it and is never used), so the relay appends many log leaves at once: a kill during the
 * burst lands in the middle of log writes.
 */
export class BurstDevice {
  private constructor(private readonly client: RelayClient, private readonly sign: ReturnType<typeof generatePrivateKey>, private readonly recipientPublicKey: Uint8Array) {}

  static async enroll(conduit: Conduit): Promise<BurstDevice> {
    const operator = await conduit.operator();
    const issued = await operator.createKey({ role: 'device', plan: 'enterprise', label: 'fault burst device' });
    const client = new RelayClient({ baseUrl: conduit.relayUrl, apiKey: issued.key });
    const sign = generatePrivateKey('ML-DSA-65');
    const kem = generatePrivateKey('X-Wing');
    // Approved by the conduit's own fleet key: its relay and receiver pin that one.
    await client.enroll(prover(sign, kem), approve({ signing: sign, kem }, issued.id, await loadSigningKey(conduit.paths.fleetKey)));
    const sink = generatePrivateKey('X-Wing');
    // Listed by a receiver key that never reads: the relay refuses uploads to a recipient no active receiver key lists (422).
    await operator.createKey({ role: 'receiver', plan: 'enterprise', label: 'fault burst sink (never reads)', recipients: [keyIdHex('X-Wing', sink.publicKey)] });
    return new BurstDevice(client, sign, sink.publicKey);
  }

  private sequence = 0n;

  /** Seals `count` envelopes now (sealing is the slow part), so the burst itself is only uploads. */
  seal(count: number): Uint8Array[] {
    return Array.from({ length: count }, () => sealEnvelope({
      plaintext: new TextEncoder().encode(`burst ${++this.sequence}`),
      recipient: { kemId: KEM.XWING, publicKey: this.recipientPublicKey },
      sender: { seed: this.sign.seed, publicKey: this.sign.publicKey },
      streamId: 9,
      sequence: this.sequence,
      contentType: CONTENT_TYPE.READINGS,
    }));
  }

  /**
   * Uploads `envelopes` `parallel` at a time; calls `onAccepted(n)` after each accepted one.
   * Errors (the relay being killed) end the burst quietly: it resolves with the count accepted.
   */
  async upload(envelopes: Uint8Array[], parallel: number, onAccepted: (accepted: number) => void): Promise<number> {
    let next = 0;
    let accepted = 0;
    let failed = false;
    const lane = async () => {
      while (!failed && next < envelopes.length) {
        const bytes = envelopes[next++]!;
        try {
          await this.client.upload(bytes);
          onAccepted(++accepted);
        } catch {
          failed = true;
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, lane));
    return accepted;
  }
}
