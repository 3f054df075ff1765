/**
 * The relay's transparency log as the receiver and `ghostpipe audit` see it: a Witness (protocol/tlog)
 * holding the last checkpoint we trusted, persisted in the state directory, moved forward only
 * with a consistency proof; inclusion proofs are checked against that trusted checkpoint.
 */
import { timingSafeEqual } from 'node:crypto';
import { RelayClient, RelayError } from '../relay/client.js';
import { Witness, WitnessError, mlDsaNoteVerifier, parseCheckpoint, parseNote, verifyInclusion, ProofError, type TrustedCheckpoint } from '../protocol/tlog/index.js';
import { loadWitnessState, saveWitnessState } from './state.js';
import { sleep } from '../common/backoff.js';

/**
 * How long proveIncluded waits for the relay to sign a checkpoint covering a fresh leaf. The relay
 * signs within ~250 ms of an append (relay/log.ts); polling the tiny checkpoint a few times costs
 * far less than releasing the lease and leasing it again after a backoff.
 */
const CHECKPOINT_WAIT_MS = 1500;
const CHECKPOINT_POLL_MS = [5, 10, 20, 40, 80, 150, 250];

/** The relay's log cannot be trusted any more: stop and tell the operator. Never retried automatically. */
export type IntegrityCode = 'fork' | 'rollback' | 'bad_proof' | 'bad_signature' | 'wrong_origin' | 'malformed' | 'key_mismatch' | 'bad_inclusion_proof';

export class LogIntegrityError extends Error {
  constructor(readonly code: IntegrityCode, message: string, readonly evidence?: { trusted: string | undefined; offered: string }) {
    super(message);
    this.name = 'LogIntegrityError';
  }
}

/** The leaf is not (yet) covered by a signed checkpoint: retry shortly. */
export class NotYetLoggedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotYetLoggedError';
  }
}

export interface LogTrustOptions {
  client: RelayClient;
  /** The pinned ML-DSA-65 public key of the relay (checkpoint signer). */
  relayPublicKey: Uint8Array;
  /** Expected origin; default: what the relay announces at GET /v2/log/key (its key must be the pinned one). */
  origin?: string;
  /** Where the witness state lives; undefined = in memory only. */
  stateFile?: string;
}

export class LogTrust {
  private constructor(private readonly client: RelayClient, readonly witness: Witness, private readonly stateFile: string | undefined) {}

  static async open(o: LogTrustOptions): Promise<LogTrust> {
    const announced = await o.client.logKey();
    const announcedKey = Buffer.from(announced.publicKey, 'base64');
    if (announcedKey.length !== o.relayPublicKey.length || !timingSafeEqual(announcedKey, o.relayPublicKey)) {
      throw new LogIntegrityError('key_mismatch', 'the relay announces a checkpoint key other than the pinned relay public key');
    }
    const origin = o.origin ?? announced.origin;
    if (origin !== announced.origin) throw new LogIntegrityError('wrong_origin', `the relay announces origin ${JSON.stringify(announced.origin)}, expected ${JSON.stringify(origin)}`);
    const verifiers = [mlDsaNoteVerifier(origin, o.relayPublicKey)];
    const saved = o.stateFile === undefined ? undefined : await loadWitnessState(o.stateFile);
    let witness: Witness;
    try {
      witness = saved === undefined ? new Witness(origin, verifiers) : Witness.fromJSON(saved, verifiers);
    } catch (err) {
      if (err instanceof WitnessError) throw new LogIntegrityError(err.code, `${o.stateFile}: ${err.message}`);
      throw err;
    }
    return new LogTrust(o.client, witness, o.stateFile);
  }

  get trusted(): TrustedCheckpoint {
    return this.witness.checkpoint;
  }

  /** Fetches the latest checkpoint and moves the witness to it (with a consistency proof). */
  async refresh(): Promise<{ size: number; changed: boolean }> {
    const note = await this.client.checkpoint();
    let size: number;
    try {
      size = parseCheckpoint(parseNote(note).text).size;
    } catch (err) {
      throw new LogIntegrityError('malformed', `relay checkpoint: ${(err as Error).message}`);
    }
    const from = this.witness.checkpoint.size;
    const proof = from > 0 && size > from ? (await this.client.consistencyProof(from, size)).proof : [];
    let changed: boolean;
    try {
      ({ changed } = this.witness.update(note, proof));
    } catch (err) {
      if (err instanceof WitnessError) {
        // bad_proof for a larger tree means the new tree does not extend ours: a fork at another size.
        const code = err.code === 'bad_proof' ? 'fork' : err.code;
        throw new LogIntegrityError(code, `relay log: ${err.message}`, err.evidence ?? (err.code === 'rollback' ? { trusted: this.witness.checkpoint.note, offered: note } : undefined));
      }
      throw err;
    }
    if (changed && this.stateFile !== undefined) await saveWitnessState(this.stateFile, this.witness.toJSON());
    return { size, changed };
  }

  /**
   * Proves that `leafHash` is in the trusted checkpoint, refreshing it when the leaf (at
   * `leafIndex`, as the relay said) is beyond it. Throws NotYetLoggedError or LogIntegrityError.
   */
  async proveIncluded(leafHash: Uint8Array, leafIndex: number): Promise<{ index: number; size: number }> {
    if (!(leafIndex < this.trusted.size)) await this.refresh();
    const deadline = performance.now() + CHECKPOINT_WAIT_MS;
    for (let i = 0; !(leafIndex < this.trusted.size) && performance.now() < deadline; i++) {
      await sleep(CHECKPOINT_POLL_MS[Math.min(i, CHECKPOINT_POLL_MS.length - 1)]!);
      await this.refresh();
    }
    const cp = this.trusted;
    if (!(leafIndex < cp.size)) throw new NotYetLoggedError(`leaf ${leafIndex} is not yet in a signed checkpoint (size ${cp.size})`);
    let proof;
    try {
      proof = await this.client.inclusionProof({ hash: leafHash }, cp.size);
    } catch (err) {
      if (err instanceof RelayError && err.status === 400) {
        // The relay refuses our trusted size: it shows a smaller tree now. refresh() names it.
        await this.refresh();
        throw new NotYetLoggedError(`relay refused an inclusion proof at size ${cp.size}: ${err.message}`);
      }
      if (err instanceof RelayError && err.status === 404) throw new NotYetLoggedError(`relay has no leaf with this hash at size ${cp.size}`);
      throw err;
    }
    try {
      verifyInclusion(leafHash, proof.leafIndex, cp.size, proof.proof, cp.root);
    } catch (err) {
      if (err instanceof ProofError) throw new LogIntegrityError('bad_inclusion_proof', `inclusion proof for leaf ${proof.leafIndex} at size ${cp.size}: ${err.message}`);
      throw err;
    }
    return { index: proof.leafIndex, size: cp.size };
  }
}
