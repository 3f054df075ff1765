// A client-side witness: keeps the last checkpoint it trusted and moves forward only along
// a consistent history. A relay that rewrites its log (a fork) or shows an older tree
// (a rollback) is caught here. State is plain JSON so callers can persist it.

import { emptyRoot } from './merkle.js';
import { ProofError, sameHash, verifyConsistency } from './proofs.js';
import { CheckpointError, openCheckpoint, type Checkpoint } from './checkpoint.js';
import { NoteError, fromBase64, toBase64, type NoteVerifier } from './note.js';
import { ProtocolError } from '../errors.js';

export type WitnessErrorCode =
  | 'fork' // same size, different root: the log signed two histories
  | 'rollback' // smaller size than the trusted checkpoint
  | 'bad_proof' // the consistency proof from the trusted size does not verify
  | 'bad_signature' // no valid signature by a trusted key, or an invalid one
  | 'wrong_origin' // checkpoint of another log
  | 'malformed'; // not a signed checkpoint, or unreadable persisted state

export class WitnessError extends ProtocolError<WitnessErrorCode> {
  constructor(
    code: WitnessErrorCode,
    message: string,
    /** For 'fork' and 'bad_proof': the trusted signed note and the conflicting one, as evidence. */
    readonly evidence?: { trusted: string | undefined; offered: string },
  ) {
    super(code, message);
  }
}

export interface WitnessState {
  version: 1;
  origin: string;
  size: number;
  root: string; // base64
  /** The signed note of the trusted checkpoint (absent while only the empty tree is trusted). */
  note?: string;
  /** The last checkpoint trusted in each earlier epoch of this log, oldest first (for auditors). */
  previousEpochs?: EpochRecord[];
}

/** What a witness last trusted in an epoch it has left. */
export interface EpochRecord {
  origin: string;
  size: number;
  root: string; // base64
  note?: string;
  /** When the witness moved on (ISO 8601). */
  endedAt: string;
}

/**
 * Epochs: a RAM-only relay keeps its signing key but starts an empty log at every boot, under
 * the origin "<base>/epoch/<n>" with n counting boots from 1 (docs/RELAY.md). An origin
 * without that suffix is epoch 0 of itself. Requires a non-empty origin.
 */
const EPOCH_PATTERN = /^(.+)\/epoch\/([1-9][0-9]{0,14})$/;
export const MAX_PREVIOUS_EPOCHS = 16;

export function epochOrigin(base: string, epoch: number): string {
  if (!Number.isSafeInteger(epoch) || epoch < 1) throw new RangeError('epoch must be a positive integer');
  return `${base}/epoch/${epoch}`;
}

export function parseEpochOrigin(origin: string): { base: string; epoch: number } {
  const m = EPOCH_PATTERN.exec(origin);
  return m ? { base: m[1]!, epoch: Number(m[2]) } : { base: origin, epoch: 0 };
}

export interface TrustedCheckpoint {
  origin: string;
  size: number;
  root: Uint8Array;
  note: string | undefined;
}

export class Witness {
  private trusted: TrustedCheckpoint;
  private readonly previous: EpochRecord[];

  /** Starts from the empty tree of `origin` unless a persisted state is given. */
  constructor(
    readonly origin: string,
    private readonly verifiers: NoteVerifier[],
    state?: WitnessState,
  ) {
    if (typeof origin !== 'string' || origin === '') throw new WitnessError('malformed', 'witness origin must not be empty');
    this.trusted = state === undefined ? { origin, size: 0, root: emptyRoot(), note: undefined } : parseState(state, origin);
    this.previous = state === undefined ? [] : parsePrevious(state);
  }

  /** Earlier epochs this witness followed, oldest first (at most MAX_PREVIOUS_EPOCHS). */
  get previousEpochs(): EpochRecord[] {
    return this.previous.map((e) => ({ ...e }));
  }

  /**
   * A witness of `origin`, the next epoch of this log: same base origin, higher epoch number
   * (parseEpochOrigin). Starts from the empty tree and keeps this witness's checkpoint as the
   * previous epoch's record. Throws WitnessError 'rollback' for an older or equal epoch and
   * 'wrong_origin' for another log. Signatures are the caller's business: `verifiers` must
   * accept the relay key under the new origin.
   */
  nextEpoch(origin: string, verifiers: NoteVerifier[], now: Date): Witness {
    const from = parseEpochOrigin(this.origin);
    const to = parseEpochOrigin(origin);
    if (to.base !== from.base) {
      throw new WitnessError('wrong_origin', `origin ${JSON.stringify(origin)} is not an epoch of ${JSON.stringify(from.base)}`);
    }
    if (to.epoch <= from.epoch) {
      throw new WitnessError('rollback', `epoch ${to.epoch} (${JSON.stringify(origin)}) is not newer than the trusted epoch ${from.epoch} (${JSON.stringify(this.origin)})`);
    }
    const { size, root, note } = this.trusted;
    const ended: EpochRecord = { origin: this.origin, size, root: toBase64(root), ...(note === undefined ? {} : { note }), endedAt: now.toISOString() };
    const previousEpochs = [...this.previous, ended].slice(-MAX_PREVIOUS_EPOCHS);
    return new Witness(origin, verifiers, { version: 1, origin, size: 0, root: toBase64(emptyRoot()), previousEpochs });
  }

  get checkpoint(): TrustedCheckpoint {
    return { ...this.trusted, root: this.trusted.root.slice() };
  }

  /**
   * Verifies `signedNote` (signature by a trusted key, origin) and, if it is newer, the
   * consistency proof from the trusted size; then trusts it. Returns the checkpoint and
   * whether the trusted state changed. Throws WitnessError and keeps the old state otherwise.
   */
  update(signedNote: string | Uint8Array, consistencyProof: readonly Uint8Array[] | null): { checkpoint: Checkpoint; changed: boolean } {
    let checkpoint: Checkpoint;
    let note: string;
    try {
      ({ checkpoint, note } = openCheckpoint(signedNote, this.verifiers));
    } catch (err) {
      if (err instanceof NoteError && (err.code === 'unverified' || err.code === 'bad_signature')) {
        throw new WitnessError('bad_signature', `checkpoint signature: ${err.message}`);
      }
      if (err instanceof NoteError || err instanceof CheckpointError) throw new WitnessError('malformed', `checkpoint: ${err.message}`);
      throw err;
    }
    if (checkpoint.origin !== this.origin) {
      throw new WitnessError('wrong_origin', `checkpoint origin ${JSON.stringify(checkpoint.origin)} is not ${JSON.stringify(this.origin)}`);
    }
    const trusted = this.trusted;
    if (checkpoint.size < trusted.size) {
      throw new WitnessError('rollback', `checkpoint size ${checkpoint.size} is smaller than the trusted size ${trusted.size}`);
    }
    if (checkpoint.size === trusted.size) {
      if (!sameHash(checkpoint.root, trusted.root)) {
        throw new WitnessError('fork', `two different roots for tree size ${trusted.size}`, { trusted: trusted.note, offered: note });
      }
      return { checkpoint, changed: false };
    }
    // Anything extends the empty tree; otherwise the new tree must extend the trusted one.
    if (trusted.size > 0) {
      try {
        verifyConsistency(trusted.size, checkpoint.size, consistencyProof, trusted.root, checkpoint.root);
      } catch (err) {
        if (err instanceof ProofError) {
          throw new WitnessError('bad_proof', `consistency ${trusted.size} -> ${checkpoint.size}: ${err.message}`, { trusted: trusted.note, offered: note });
        }
        throw err;
      }
    }
    this.trusted = { origin: checkpoint.origin, size: checkpoint.size, root: checkpoint.root.slice(), note };
    return { checkpoint, changed: true };
  }

  toJSON(): WitnessState {
    const { origin, size, root, note } = this.trusted;
    return {
      version: 1, origin, size, root: toBase64(root),
      ...(note === undefined ? {} : { note }),
      ...(this.previous.length === 0 ? {} : { previousEpochs: this.previousEpochs }),
    };
  }

  /** Restores a witness from toJSON() output (object or JSON text). */
  static fromJSON(state: unknown, verifiers: NoteVerifier[]): Witness {
    let value = state;
    if (typeof state === 'string') {
      try {
        value = JSON.parse(state);
      } catch {
        throw new WitnessError('malformed', 'witness state is not valid JSON');
      }
    }
    if (typeof value !== 'object' || value === null) throw new WitnessError('malformed', 'witness state must be an object');
    const origin = (value as { origin?: unknown }).origin;
    if (typeof origin !== 'string') throw new WitnessError('malformed', 'witness state: origin must be a string');
    return new Witness(origin, verifiers, value as WitnessState);
  }
}

function parsePrevious(state: WitnessState): EpochRecord[] {
  const list = (state as unknown as Record<string, unknown>)['previousEpochs'];
  if (list === undefined) return [];
  if (!Array.isArray(list) || list.length > MAX_PREVIOUS_EPOCHS) throw new WitnessError('malformed', `witness state: previousEpochs must be a list of at most ${MAX_PREVIOUS_EPOCHS}`);
  return list.map((e: unknown, i) => {
    const r = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    const root = typeof r['root'] === 'string' ? fromBase64(r['root']) : undefined;
    if (typeof r['origin'] !== 'string' || typeof r['size'] !== 'number' || !Number.isSafeInteger(r['size']) || r['size'] < 0
      || root === undefined || root.length !== 32 || (r['note'] !== undefined && typeof r['note'] !== 'string') || typeof r['endedAt'] !== 'string') {
      throw new WitnessError('malformed', `witness state: previousEpochs[${i}] needs origin, size, root (base64 of 32 bytes), endedAt`);
    }
    return { origin: r['origin'], size: r['size'], root: r['root'] as string, ...(r['note'] === undefined ? {} : { note: r['note'] as string }), endedAt: r['endedAt'] };
  });
}

function parseState(state: WitnessState, origin: string): TrustedCheckpoint {
  const s = state as unknown as Record<string, unknown>;
  if (s['version'] !== 1) throw new WitnessError('malformed', 'witness state: unsupported version (expected 1)');
  if (s['origin'] !== origin) throw new WitnessError('wrong_origin', 'witness state belongs to another origin');
  const size = s['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new WitnessError('malformed', 'witness state: size must be a non-negative integer');
  const root = typeof s['root'] === 'string' ? fromBase64(s['root']) : undefined;
  if (root === undefined || root.length !== 32) throw new WitnessError('malformed', 'witness state: root must be base64 of 32 bytes');
  if (size === 0 && !sameHash(root, emptyRoot())) throw new WitnessError('malformed', 'witness state: size 0 needs the empty-tree root');
  const note = s['note'];
  if (note !== undefined && typeof note !== 'string') throw new WitnessError('malformed', 'witness state: note must be a string');
  return { origin, size, root, note };
}
