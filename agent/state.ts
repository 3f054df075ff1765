/**
 * The agent's small persistent state (npm `conf`, file <stateDir>/agent-state.json, mode 0600):
 * sequence reservations and the enrollment record. Never written per interval: sequences are
 * reserved in blocks, so a boot costs one write and then one per `block` numbers used.
 *
 * After a crash the numbers between the last one used and `reservedUpTo` are skipped, never
 * reused: uniqueness needs only that nothing above the persisted reservation was ever sent.
 */
import { lstatSync } from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
import { EXIT_STATE_BAD, EXIT_STATE_IO, describeFileError, stateExitCode } from '../common/state-errors.js';

export const SEQUENCE_BLOCK = 10_000n;

export type Counter = 'frame' | 'envelope';

interface StoredState {
  version: 1;
  /** Per counter and stream: the first number NOT covered by the reservation, decimal string (u64). */
  reservedUpTo: Record<string, string>;
  enrollment?: { did: string; relay: string; leafIndex: number; checkedAt: string };
}

/** A state file problem; `exitCode` is from common/state-errors.ts (65 bad file, 74 I/O failure). */
export class AgentStateError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT_STATE_BAD) {
    super(message);
    this.name = 'AgentStateError';
  }
}

/** What an operator must not do with this file: it is the only guard against repeated sequence numbers. */
const KEEP_IT = 'it holds the sequence reservation: never delete or reset it (numbers would repeat); recover it as docs/RELIABILITY.md says';

const MAX_U64 = (1n << 64n) - 1n;

export class AgentState {
  private readonly conf: Conf<StoredState>;
  private stored: StoredState;
  /** Next number to hand out, per counter key. */
  private readonly next = new Map<string, bigint>();
  /** Writes of the state file since this process started. */
  writes = 0;
  /** Set once a write failed: from then on no number is handed out (it could exceed what is on disk). */
  private failed: AgentStateError | undefined;
  /**
   * Told once when a write fails after start. The CLI owns the process and stops it (exit 74):
   * the agent must not keep sealing frames whose sequence numbers are not durably reserved.
   */
  static onWriteFailure: ((err: AgentStateError) => void) | undefined;

  constructor(
    readonly dir: string,
    private readonly block = SEQUENCE_BLOCK,
    private readonly onWrite?: (reason: string, writes: number) => void,
  ) {
    const file = path.join(dir, 'agent-state.json');
    let existed: boolean;
    try {
      lstatSync(file); // lstat: a dangling symlink counts as present (and then fails the layout check)
      existed = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AgentStateError(`state file ${file}: cannot read: ${describeFileError(err)}; ${KEEP_IT}`, stateExitCode(err));
      existed = false;
    }
    try {
      this.conf = new Conf<StoredState>({ cwd: dir, configName: 'agent-state', configFileMode: 0o600, clearInvalidConfig: false, accessPropertiesByDotNotation: false });
      this.stored = this.conf.store;
    } catch (err) {
      throw new AgentStateError(`state file ${file}: cannot read: ${describeFileError(err)}; ${KEEP_IT}`, stateExitCode(err));
    }
    // Only a missing file means "first boot": an empty object (`{}`, `null`, `[]` all read as one)
    // in an existing file is a damaged file, and starting from 1 would repeat sequence numbers.
    if (!existed) this.stored = { version: 1, reservedUpTo: {} };
    const layout = this.stored as Partial<StoredState>;
    if (layout.version !== 1 || typeof layout.reservedUpTo !== 'object' || layout.reservedUpTo === null || Array.isArray(layout.reservedUpTo)) {
      throw new AgentStateError(`state file ${file}: unknown layout (expected {"version":1,"reservedUpTo":{…}}); ${KEEP_IT}`);
    }
    for (const [key, value] of Object.entries(this.stored.reservedUpTo)) {
      if (typeof value !== 'string' || !/^\d{1,20}$/.test(value) || BigInt(value) > MAX_U64) throw new AgentStateError(`state file ${file}: reservedUpTo.${key} is not a u64; ${KEEP_IT}`);
    }
  }

  get path(): string {
    return this.conf.path;
  }

  /**
   * Hands out the next number of `counter` on `stream`. Continues from the persisted reservation
   * of an earlier process (skipping whatever it may have used) and persists a new block first
   * whenever the current one is used up.
   */
  take(counter: Counter, stream: number): bigint {
    if (this.failed) throw this.failed;
    const key = `${counter}:${stream}`;
    let next = this.next.get(key);
    const reserved = BigInt(this.stored.reservedUpTo[key] ?? '0');
    if (next === undefined) next = reserved === 0n ? 1n : reserved; // a new process starts above every earlier reservation
    if (next >= reserved) {
      const upTo = next + this.block;
      if (upTo > MAX_U64) throw new AgentStateError(`sequence ${key} exhausted`);
      this.stored = { ...this.stored, reservedUpTo: { ...this.stored.reservedUpTo, [key]: upTo.toString() } };
      this.save(`reserved ${counter} sequences up to ${upTo} on stream ${stream}`);
    }
    this.next.set(key, next + 1n);
    return next;
  }

  /** Reserves a block for each counter now (at boot), so the first interval needs no write. */
  reserve(stream: number, counters: readonly Counter[] = ['frame', 'envelope']): void {
    if (this.failed) throw this.failed;
    const upTo: Record<string, string> = { ...this.stored.reservedUpTo };
    for (const counter of counters) {
      const key = `${counter}:${stream}`;
      const reserved = BigInt(upTo[key] ?? '0');
      const start = this.next.get(key) ?? (reserved === 0n ? 1n : reserved);
      this.next.set(key, start);
      upTo[key] = (start + this.block).toString();
    }
    this.stored = { ...this.stored, reservedUpTo: upTo };
    this.save(`reserved sequence blocks on stream ${stream}`);
  }

  get enrollment(): StoredState['enrollment'] {
    return this.stored.enrollment;
  }

  /** Records enrollment; writes only when something changed (one write per enrollment, not per boot). */
  recordEnrollment(record: { did: string; relay: string; leafIndex: number } | undefined): void {
    const old = this.stored.enrollment;
    if (record === undefined ? old === undefined : old?.did === record.did && old.relay === record.relay && old.leafIndex === record.leafIndex) return;
    const next: StoredState = { version: 1, reservedUpTo: this.stored.reservedUpTo };
    if (record) next.enrollment = { ...record, checkedAt: new Date().toISOString() };
    this.stored = next;
    this.save(record ? 'recorded enrollment' : 'cleared enrollment');
  }

  /**
   * Writes `this.stored`. On failure the in-memory state goes back to what is on disk and every later
   * take() throws, so no number above the persisted reservation is ever handed out.
   */
  private save(reason: string): void {
    try {
      this.conf.store = this.stored;
    } catch (err) {
      this.failed = new AgentStateError(`state file ${this.conf.path}: write failed: ${describeFileError(err)}; stopping so that no sequence number is used beyond the saved reservation`, EXIT_STATE_IO); // a failed write is always an I/O failure, whatever errno
      try {
        this.stored = this.conf.store;
      } catch {
        // Unreadable too: `failed` already stops every later take().
      }
      AgentState.onWriteFailure?.(this.failed);
      throw this.failed;
    }
    this.writes++;
    this.onWrite?.(reason, this.writes);
  }
}
