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
}

export interface TrustedCheckpoint {
  origin: string;
  size: number;
  root: Uint8Array;
  note: string | undefined;
}

export class Witness {
  private trusted: TrustedCheckpoint;

  /** Starts from the empty tree of `origin` unless a persisted state is given. */
  constructor(
    readonly origin: string,
    private readonly verifiers: NoteVerifier[],
    state?: WitnessState,
  ) {
    if (typeof origin !== 'string' || origin === '') throw new WitnessError('malformed', 'witness origin must not be empty');
    this.trusted = state === undefined ? { origin, size: 0, root: emptyRoot(), note: undefined } : parseState(state, origin);
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
    return note === undefined ? { version: 1, origin, size, root: toBase64(root) } : { version: 1, origin, size, root: toBase64(root), note };
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
