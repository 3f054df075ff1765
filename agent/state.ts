/**
 * The agent's small persistent state (npm `conf`, file <stateDir>/agent-state.json, mode 0600):
 * sequence reservations and the enrollment record. Never written per interval: sequences are
 * reserved in blocks, so a boot costs one write and then one per `block` numbers used.
 *
 * After a crash the numbers between the last one used and `reservedUpTo` are skipped, never
 * reused: uniqueness needs only that nothing above the persisted reservation was ever sent.
 */
import Conf from 'conf';

export const SEQUENCE_BLOCK = 10_000n;

export type Counter = 'frame' | 'envelope';

interface StoredState {
  version: 1;
  /** Per counter and stream: the first number NOT covered by the reservation, decimal string (u64). */
  reservedUpTo: Record<string, string>;
  enrollment?: { did: string; relay: string; leafIndex: number; checkedAt: string };
}

export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateError';
  }
}

const MAX_U64 = (1n << 64n) - 1n;

export class AgentState {
  private readonly conf: Conf<StoredState>;
  private stored: StoredState;
  /** Next number to hand out, per counter key. */
  private readonly next = new Map<string, bigint>();
  /** Writes of the state file since this process started. */
  writes = 0;

  constructor(
    readonly dir: string,
    private readonly block = SEQUENCE_BLOCK,
    private readonly onWrite?: (reason: string, writes: number) => void,
  ) {
    try {
      this.conf = new Conf<StoredState>({ cwd: dir, configName: 'agent-state', configFileMode: 0o600, clearInvalidConfig: false, accessPropertiesByDotNotation: false });
      this.stored = this.conf.store;
    } catch (err) {
      throw new StateError(`agent state in ${dir}/agent-state.json cannot be read (${(err as Error).message}); it holds the sequence reservation: fix or restore it, never delete it while receivers keep replay state for this device`);
    }
    if (this.stored.version === undefined) this.stored = { version: 1, reservedUpTo: {} };
    if (this.stored.version !== 1 || typeof this.stored.reservedUpTo !== 'object') throw new StateError(`agent state in ${dir}/agent-state.json has an unknown layout`);
    for (const [key, value] of Object.entries(this.stored.reservedUpTo)) {
      if (typeof value !== 'string' || !/^\d{1,20}$/.test(value) || BigInt(value) > MAX_U64) throw new StateError(`agent state in ${dir}/agent-state.json: reservedUpTo.${key} is not a u64`);
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
    const key = `${counter}:${stream}`;
    let next = this.next.get(key);
    const reserved = BigInt(this.stored.reservedUpTo[key] ?? '0');
    if (next === undefined) next = reserved === 0n ? 1n : reserved; // a new process starts above every earlier reservation
    if (next >= reserved) {
      const upTo = next + this.block;
      if (upTo > MAX_U64) throw new StateError(`sequence ${key} exhausted`);
      this.stored = { ...this.stored, reservedUpTo: { ...this.stored.reservedUpTo, [key]: upTo.toString() } };
      this.save(`reserved ${counter} sequences up to ${upTo} on stream ${stream}`);
    }
    this.next.set(key, next + 1n);
    return next;
  }

  /** Reserves a block for each counter now (at boot), so the first interval needs no write. */
  reserve(stream: number, counters: readonly Counter[] = ['frame', 'envelope']): void {
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

  private save(reason: string): void {
    this.conf.store = this.stored;
    this.writes++;
    this.onWrite?.(reason, this.writes);
  }
}
