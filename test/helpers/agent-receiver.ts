/**
 * The agent tests' receiver: the real `ghostpipe receive` process (file sink, log level debug,
 * the agent's device pinned by its public key) behind a LeaseTap (test/helpers/lease-tap.ts).
 * What the agent tests count as arrived is what that receiver verified, opened, de-duplicated and
 * wrote to its sink: one Arrival per "envelope delivered" line of its log, in that order, whose
 * readings are checked line for line against the sink file (complete lines only). The frame time,
 * frame interval and envelope size, which the receiver's records do not carry, come from the bytes
 * the relay leased to it (the tap's copy, opened with the receiver key); the sink must hold exactly
 * the records of those frames, so the two cannot disagree unnoticed.
 *
 * A receiver failure fails the test: reading `received` throws once the receiver exited without
 * being stopped, and stop() asserts exit 0 after SIGTERM, no refusal and no error line (unless
 * the test expects refusals), and that its final counters match its log. stop() first lets the
 * receiver finish every lease it holds (the tap stops handing out new ones), so a stopped
 * receiver never leaves a lease for the relay's lease timeout; start() runs it again on the same
 * state (replay window, witness) and sink, as a restarted service would.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cliPath } from './paths.js';
import { completeJsonLines } from './json-lines.js';
import { stopChildren } from './stop.js';
import { until } from './wait.js';
import { LeaseTap } from './lease-tap.js';
import type { AgentEnv } from './agent.js';
import type { RelayProcess } from './relay.js';
import { bundlePaths } from '../../common/keyfile.js';
import { KEM, openEnvelope, parseEnvelope } from '../../protocol/envelope/index.js';
import { decodeFrames, type Frame } from '../../protocol/frame.js';
import { toRecords, type ReadingRecord } from '../../receiver/records.js';

export interface Arrival {
  /** Envelope id (hex SHA-256 of its bytes). */
  envelope: string;
  envelopeSequence: bigint;
  /** The envelope's frames, each with every reading the sink holds for it. */
  frames: Frame[];
  /** Size of the envelope on the wire. */
  bytes: number;
  /** When the receiver delivered it (the time of its "envelope delivered" line). */
  at: number;
}

interface Opened {
  frames: Frame[];
  sequence: bigint;
  streamId: number;
  bytes: number;
}

export interface ReceiverLine {
  level: number;
  msg: string;
  time: string;
  [key: string]: unknown;
}

export interface AgentReceiverOptions {
  /**
   * Count an envelope only once its ack succeeded (a lease the relay's TTL burned in between is
   * then not an arrival: the agent will see it expired). The sink has it all the same.
   */
  ackedOnly?: boolean;
}

const DELIVERED = 'envelope delivered';
const DUPLICATE = 'duplicate envelope dropped (already delivered)';
const REFUSED = /^envelope refused/;
const LATE_ACK = 'lease expired before the acknowledgement; raise the relay leaseTimeout if this repeats';
const ERROR = 50;

const running = new Set<AgentReceiver>();

/**
 * Stops every agent receiver still running (SIGTERM, exit 0 asserted by test/helpers/stop.ts)
 * and closes its tap. Called by killAllAgents().
 */
export async function stopAllAgentReceivers(): Promise<void> {
  const all = [...running];
  running.clear();
  try {
    await stopChildren(all.flatMap((r) => (r.child ? [r.child] : [])), 'agent test receiver');
  } finally {
    await Promise.all(all.map((r) => r.tap.close()));
    for (const r of all) r.keepLog();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    dirs.clear();
  }
}

const dirs = new Set<string>();

/**
 * The receiver's state and sink in RAM (/dev/shm where there is one): it fsyncs its sink and its
 * replay journal for every envelope (docs/RECEIVER.md), and on a loaded disk those fsyncs made it
 * slower than an agent sending every 200 ms (envelopes then outlived a 1 s TTL at the relay).
 * What it checks and writes is the same; removed by stopAllAgentReceivers().
 */
async function receiverDir(): Promise<string> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = await mkdtemp(path.join(base, 'gp-agent-receiver-'));
  dirs.add(dir);
  return dir;
}

// As test/helpers/relay.ts does for its temp folders: one left behind fails the test file.
process.on('exit', () => {
  if (dirs.size === 0) return;
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  process.stderr.write(`test/helpers/agent-receiver.ts: receiver folders left behind (call killAllAgents from after()): ${[...dirs].join(', ')}\n`);
  process.exitCode = 1;
});

let logsKept = 0;

export class AgentReceiver {
  child: ChildProcess | undefined;
  /** Every JSON line the receiver logged, across its runs. */
  readonly lines: ReceiverLine[] = [];
  private output = '';
  private stopping = false;
  /** Index into `lines` of each run's first line. */
  private readonly runStarts: number[] = [];
  private readonly arrivals: Arrival[] = [];
  /** Next line to look at for "envelope delivered" (an index into `lines`). */
  private scanned = 0;
  /** "envelope delivered" lines not counted yet (ackedOnly: their ack is not through yet). */
  private unacked: ReceiverLine[] = [];
  /** Leased envelopes opened with the receiver key, by envelope id. */
  private readonly opened = new Map<string, Opened>();

  private constructor(
    readonly tap: LeaseTap,
    private readonly env: AgentEnv,
    private readonly configFile: string,
    readonly sinkFile: string,
    private readonly options: AgentReceiverOptions,
  ) {
    this.openAsLeased();
  }

  /** Writes the receiver's config next to the agent's and starts it. */
  static async start(env: AgentEnv, relay: RelayProcess, options: AgentReceiverOptions = {}): Promise<AgentReceiver> {
    const dir = await receiverDir();
    const relayPub = path.join(env.dir, 'relay.sign.pub');
    const apiKeyFile = path.join(env.dir, 'receiver.apikey');
    await copyFile(path.join(relay.stateDir, 'relay.sign.pub'), relayPub);
    await writeFile(apiKeyFile, env.receiver.apiKey + '\n', { mode: 0o600 });
    const tap = await LeaseTap.start(relay.url);
    const sinkFile = path.join(dir, 'sink.jsonl');
    const config = {
      relay: { url: tap.url, apiKeyFile, publicKey: relayPub, wait: '500ms', checkpointInterval: '1s', timeout: '5s' },
      receiverKey: bundlePaths(env.dir, 'rx').kemKey,
      stateDir: path.join(dir, 'state'),
      trust: { devices: [{ publicKey: bundlePaths(env.dir, 'gw').signPub }] },
      sinks: [{ type: 'file', path: sinkFile }],
      retry: { initial: '100ms', max: '1s' },
      logLevel: 'debug',
    };
    const configFile = path.join(env.dir, 'receiver.yaml');
    await writeFile(configFile, JSON.stringify(config, null, 2)); // JSON is YAML 1.2
    const receiver = new AgentReceiver(tap, env, configFile, sinkFile, options);
    running.add(receiver);
    await receiver.start();
    return receiver;
  }

  /** Starts the receiver (again) and waits for its "receiver started" line. */
  async start(): Promise<void> {
    assert.ok(this.child === undefined, 'the receiver is already running');
    this.stopping = false;
    this.tap.resume();
    this.runStarts.push(this.lines.length);
    const child = spawn(process.execPath, [cliPath, 'receive', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.output += text;
      pending += text;
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const part of parts) {
        try {
          const line = JSON.parse(part) as ReceiverLine;
          if (typeof line === 'object' && line !== null && typeof line.msg === 'string') this.lines.push(line);
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    });
    const from = this.lines.length;
    await until('the receiver\'s start line', () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the receiver exited (${child.exitCode ?? child.signalCode}) at start:\n${this.output.slice(-4000)}`);
      return this.lines.slice(from).some((l) => l.msg === 'receiver started');
    }, 30_000);
  }

  /** Lines of the current (or last) run. */
  private runLines(): ReceiverLine[] {
    return this.lines.slice(this.runStarts.at(-1) ?? 0);
  }

  /**
   * Everything the receiver delivered so far, in delivery order, across its runs; exact
   * re-deliveries are not in it (the receiver dropped them, see duplicates()). Throws when the
   * receiver exited without being stopped, or the sink disagrees with what the relay leased.
   */
  get received(): Arrival[] {
    const child = this.child;
    if (child && !this.stopping && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`the receiver exited (${child.exitCode ?? child.signalCode}) while the test ran:\n${this.output.slice(-4000)}`);
    }
    this.collect();
    return this.arrivals;
  }

  /** Frame sequences of everything received, in delivery order. */
  frameSequences(): bigint[] {
    return this.received.flatMap((a) => a.frames.map((f) => f.sequence));
  }

  /** The envelope sequences the receiver dropped as exact duplicates, across its runs. */
  duplicates(): bigint[] {
    return this.lines.filter((l) => l.msg === DUPLICATE).map((l) => BigInt(String(l['seq'])));
  }

  /** Lines of envelopes the receiver refused, across its runs. */
  refusals(): ReceiverLine[] {
    return this.lines.filter((l) => REFUSED.test(l.msg));
  }

  /** With GHOSTPIPE_TEST_RECEIVER_LOGS=DIR, the receiver's whole output is kept there (to look into a failure). */
  keepLog(): void {
    const dir = process.env['GHOSTPIPE_TEST_RECEIVER_LOGS'];
    if (dir) writeFileSync(path.join(dir, `agent-receiver-${process.pid}-${++logsKept}.log`), this.output);
  }

  /** The receiver's log so far (tail), for failure messages. */
  logTail(chars = 4000): string {
    return this.output.slice(-chars);
  }

  /**
   * Lets the receiver finish what it leased (no new leases), then SIGTERM: asserts exit 0, no
   * refusal and no error (unless `expectRefusals`), and that its final counters match its log.
   */
  async stop(options: { expectRefusals?: boolean } = {}): Promise<void> {
    const child = this.child;
    assert.ok(child, 'the receiver is not running');
    this.tap.pause();
    await until('the receiver to answer every lease it holds', () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the receiver exited (${child.exitCode ?? child.signalCode}) before it was stopped:\n${this.output.slice(-4000)}`);
      return this.tap.settled();
    }, 45_000, () => `unanswered leases: ${this.tap.unanswered().map((l) => l.envelopeId).join(', ')}\n${this.output.slice(-3000)}`);
    await this.caughtUp();
    this.stopping = true;
    // 'close', not 'exit': every line it wrote has been read then.
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await exited;
    this.child = undefined;
    assert.equal(code, 0, `receiver exit code after SIGTERM\n${this.output.slice(-4000)}`);
    const lines = this.runLines();
    if (!options.expectRefusals) {
      assert.deepEqual(lines.filter((l) => REFUSED.test(l.msg)).map((l) => `${String(l['reason'])}: ${l.msg}`), [], 'the receiver refused nothing');
      assert.deepEqual(lines.filter((l) => l.level >= ERROR).map((l) => l.msg), [], 'no error or fatal line from the receiver');
    }
    const stopped = lines.find((l) => l.msg === 'receiver stopped');
    assert.ok(stopped, `the receiver's final line\n${this.output.slice(-3000)}`);
    const count = (msg: string | RegExp) => lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))).length;
    assert.deepEqual(
      { delivered: stopped['delivered'], duplicates: stopped['duplicates'], refused: stopped['refused'], lateAcks: stopped['lateAcks'] },
      { delivered: count(DELIVERED), duplicates: count(DUPLICATE), refused: count(REFUSED), lateAcks: count(LATE_ACK) },
      'the receiver\'s counters match its log lines',
    );
    this.collect();
  }

  /**
   * Waits until the receiver answered every lease the relay handed it and its log (read by this
   * process through a pipe, which may lag behind the relay's view) names the envelope of every
   * lease it acknowledged: after untilRelayDrained(), `received` is then complete.
   */
  async caughtUp(): Promise<void> {
    const pending = () => {
      const logged = new Set(this.lines.filter((l) => l.msg === DELIVERED || l.msg === DUPLICATE || REFUSED.test(l.msg)).map((l) => String(l['envelope'])));
      return this.tap.leases.filter((l) => l.answer === undefined || (l.answer.kind === 'ack' && !logged.has(l.envelopeId)));
    };
    await until('the receiver to answer and log every lease it was handed', () => {
      const child = this.child;
      if (child && !this.stopping && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`the receiver exited (${child.exitCode ?? child.signalCode}) while the test ran:\n${this.output.slice(-4000)}`);
      return pending().length === 0;
    }, 45_000, () => `leases not answered or not logged: ${pending().map((l) => l.envelopeId).join(', ')}\n${this.output.slice(-3000)}`);
  }

  /** Turns new "envelope delivered" lines into Arrivals, checking each against the sink and the tap. */
  private collect(): void {
    for (; this.scanned < this.lines.length; this.scanned++) {
      const line = this.lines[this.scanned]!;
      if (line.msg === DELIVERED) this.unacked.push(line);
    }
    let sink: Map<string, ReadingRecord[]> | undefined;
    const waiting: ReceiverLine[] = [];
    for (const line of this.unacked) {
      const id = String(line['envelope']);
      // ackedOnly: counted once one of its leases was acknowledged (a late ack's envelope counts
      // if the relay leased it again and that ack went through, as the old receive loop did).
      if (this.options.ackedOnly && !this.tap.leases.some((l) => l.envelopeId === id && l.answer?.kind === 'ack' && l.answer.status >= 200 && l.answer.status < 300)) {
        waiting.push(line);
        continue;
      }
      sink ??= this.readSink();
      this.arrivals.push(this.arrival(line, id, sink));
    }
    this.unacked = waiting;
  }

  /**
   * Opens leased envelopes one per turn of the event loop as they pass the tap, so a burst of
   * deliveries never blocks this process (Modbus test servers answer from it) for many openings.
   */
  private openAsLeased(): void {
    const queue: string[] = [];
    let scheduled = false;
    const next = () => {
      scheduled = false;
      const id = queue.shift();
      if (id !== undefined && !this.opened.has(id)) this.open(id);
      if (queue.length > 0) schedule();
    };
    const schedule = () => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(next);
    };
    this.tap.onLease = (lease) => {
      if (this.opened.has(lease.envelopeId)) return;
      queue.push(lease.envelopeId);
      schedule();
    };
  }

  private open(id: string): Opened {
    const bytes = this.tap.envelope(id);
    assert.ok(bytes, `the receiver delivered envelope ${id}, which the relay never leased through the tap`);
    const envelope = parseEnvelope(bytes);
    const plaintext = openEnvelope(envelope, { kemId: KEM.XWING, seed: this.env.receiver.kem.seed, publicKey: this.env.receiver.kem.publicKey }, this.env.devicePublicKey);
    const opened = { frames: decodeFrames(plaintext), sequence: envelope.header.sequence, streamId: envelope.header.streamId, bytes: bytes.length };
    this.opened.set(id, opened);
    return opened;
  }

  private arrival(line: ReceiverLine, id: string, sink: Map<string, ReadingRecord[]>): Arrival {
    const { frames, sequence, streamId, bytes } = this.opened.get(id) ?? this.open(id);
    assert.equal(String(line['seq']), sequence.toString(), `envelope ${id}: the receiver's sequence`);
    // As the sink writes them (JSON), so a -0 or a NaN compares as the line holds it.
    const expected = JSON.parse(JSON.stringify(toRecords(frames, { device: this.env.did, seq: sequence, stream: streamId, envelope: id }))) as ReadingRecord[];
    assert.deepEqual(sink.get(id) ?? [], expected, `envelope ${id} (seq ${sequence}): the sink holds exactly the readings of the frames the relay leased`);
    assert.equal(line['readings'], expected.length, `envelope ${id}: readings the receiver logged`);
    return { envelope: id, envelopeSequence: sequence, frames, bytes, at: Date.parse(line.time) };
  }

  private readSink(): Map<string, ReadingRecord[]> {
    const byEnvelope = new Map<string, ReadingRecord[]>();
    if (!existsSync(this.sinkFile)) return byEnvelope;
    for (const r of completeJsonLines<ReadingRecord>(readFileSync(this.sinkFile, 'utf8'))) {
      const list = byEnvelope.get(r.envelope) ?? [];
      list.push(r);
      byEnvelope.set(r.envelope, list);
    }
    return byEnvelope;
  }
}

/** Starts the real receiver for an agent test (see AgentReceiver). */
export function startAgentReceiver(env: AgentEnv, relay: RelayProcess, options: AgentReceiverOptions = {}): Promise<AgentReceiver> {
  return AgentReceiver.start(env, relay, options);
}
