/**
 * The relay's transparency log as the receiver, the agent's firmware check and `ghostpipe audit` see it: a Witness (protocol/tlog)
 * holding the last checkpoint we trusted, persisted in the state directory, moved forward only
 * with a consistency proof; inclusion proofs are checked against that trusted checkpoint.
 *
 * Epochs (docs/RECEIVER.md "Relay reboots: new epochs"): a RAM-only relay restarts its log at every
 * boot under "<base>/epoch/<n+1>", signed by the same key. When the relay announces such an origin
 * for the pinned key, the witness moves to it (newEpoch: accept, logged at warn with both origins)
 * or stops with 'new_epoch' (newEpoch: refuse). Another key, another base origin, an older epoch,
 * and a rollback or fork within one origin are refused as before.
 */
import { timingSafeEqual } from 'node:crypto';
import { RelayClient, RelayError } from './relay-client.js';
import { Witness, WitnessError, consistencyProvesFork, mlDsaNoteVerifier, parseCheckpoint, parseEpochOrigin, parseNote, verifyInclusion, ProofError, type TrustedCheckpoint } from '../protocol/tlog/index.js';
import { readOptional, writeFileAtomic } from './atomic-file.js';
import { StateFileError, describeFileError, onFile } from './state-errors.js';
import { sleep } from './backoff.js';

/**
 * How long proveIncluded waits for the relay to sign a checkpoint covering a fresh leaf. The relay
 * signs within ~250 ms of an append (relay/log.ts); polling the tiny checkpoint a few times costs
 * far less than releasing the lease and leasing it again after a backoff.
 */
const CHECKPOINT_WAIT_MS = 1500;
const CHECKPOINT_POLL_MS = [5, 10, 20, 40, 80, 150, 250];

/** Which log check failed; its IntegrityKind decides whether the receiver stops. */
export type IntegrityCode =
  | 'fork' | 'rollback' | 'bad_proof' | 'bad_signature' | 'wrong_origin' | 'malformed' | 'key_mismatch' | 'bad_inclusion_proof'
  | 'bad_consistency_proof' | 'bad_entries' | 'new_epoch';

/**
 * Why a log check failed, which decides what the receiver does (docs/RECEIVER.md "Fault model"):
 *   signed_conflict  notes validly signed by the pinned key that cannot both be honest (fork, rollback,
 *                    a signed other log) or a new epoch refused by policy: proof against the relay,
 *                    stop (exit 3) and keep the evidence;
 *   local_state      our own saved state does not verify: stop (exit 3), an operator restores it;
 *   unproven         an answer that proves nothing (unsigned, malformed, another key, a garbage proof,
 *                    entries that do not hash to a signed root): anyone on the path could have sent it,
 *                    so it must not stop the receiver: count, warn, retry with backoff, alert.
 */
export type IntegrityKind = 'signed_conflict' | 'local_state' | 'unproven';

/** What an auditor needs to check a signed conflict without us: both signed notes, and the proof served with the offered one. */
export interface Evidence {
  trusted: string | undefined;
  offered: string;
  /** The consistency proof the relay served with `offered` (none for a same-size fork or a rollback: the notes suffice). */
  proof?: { from: number; to: number; hashes: Uint8Array[] };
}

/** What to do when the relay (same pinned key) starts a new epoch of its log. */
export type NewEpochPolicy = 'accept' | 'refuse';

export interface EpochChange {
  from: string;
  to: string;
  /** The last checkpoint trusted in the epoch that ended. */
  previous: TrustedCheckpoint;
}

export class LogIntegrityError extends Error {
  constructor(readonly code: IntegrityCode, message: string, readonly kind: IntegrityKind, readonly evidence?: Evidence) {
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
  /** Default 'accept'. */
  newEpoch?: NewEpochPolicy;
  /** Called after the witness moved to a new epoch (and its state was saved). */
  onNewEpoch?: (change: EpochChange) => void;
}

export class LogTrust {
  private constructor(
    private readonly client: RelayClient,
    private current: Witness,
    private readonly o: LogTrustOptions,
  ) {}

  get witness(): Witness {
    return this.current;
  }

  private get stateFile(): string | undefined {
    return this.o.stateFile;
  }

  static async open(o: LogTrustOptions): Promise<LogTrust> {
    const announced = await o.client.logKey();
    const announcedKey = Buffer.from(announced.publicKey, 'base64');
    if (announcedKey.length !== o.relayPublicKey.length || !timingSafeEqual(announcedKey, o.relayPublicKey)) {
      throw new LogIntegrityError('key_mismatch', 'the relay announces a checkpoint key other than the pinned relay public key', 'unproven');
    }
    checkConfiguredOrigin(o.origin, announced.origin, 'unproven'); // the announcement is unsigned
    const saved = o.stateFile === undefined ? undefined : await loadWitnessState(o.stateFile);
    let witness: Witness;
    try {
      if (saved === undefined) {
        witness = new Witness(announced.origin, [mlDsaNoteVerifier(announced.origin, o.relayPublicKey)]);
      } else {
        // The saved origin's verifier: a relay that rebooted into a new epoch is handled by refresh().
        const savedOrigin = (JSON.parse(saved) as { origin?: unknown }).origin;
        const name = typeof savedOrigin === 'string' && savedOrigin !== '' ? savedOrigin : announced.origin;
        witness = Witness.fromJSON(saved, [mlDsaNoteVerifier(name, o.relayPublicKey)]);
      }
    } catch (err) {
      if (err instanceof WitnessError) throw new LogIntegrityError(err.code, `${o.stateFile}: ${err.message}`, 'local_state');
      if (err instanceof SyntaxError) throw new LogIntegrityError('malformed', `${o.stateFile}: witness state is not valid JSON`, 'local_state');
      throw err;
    }
    const trust = new LogTrust(o.client, witness, o);
    if (witness.origin !== announced.origin) await trust.refresh();
    return trust;
  }

  get trusted(): TrustedCheckpoint {
    return this.witness.checkpoint;
  }

  /** Fetches the latest checkpoint and moves the witness to it (with a consistency proof). */
  async refresh(): Promise<{ size: number; changed: boolean }> {
    const note = await this.client.checkpoint();
    let size: number;
    let origin: string;
    try {
      ({ size, origin } = parseCheckpoint(parseNote(note).text));
    } catch (err) {
      throw new LogIntegrityError('malformed', `relay checkpoint: ${(err as Error).message}`, 'unproven');
    }
    if (origin !== this.witness.origin) return this.changeEpoch(note, origin, size);
    const from = this.witness.checkpoint.size;
    const proof = from > 0 && size > from ? (await this.client.consistencyProof(from, size)).proof : [];
    let changed: boolean;
    try {
      ({ changed } = this.witness.update(note, proof));
    } catch (err) {
      if (err instanceof WitnessError) throw this.witnessFailure(err, note, { from, to: size, hashes: proof });
      throw err;
    }
    if (changed && this.stateFile !== undefined) await saveWitnessState(this.stateFile, this.witness.toJSON());
    return { size, changed };
  }

  /**
   * Witness.update verifies the signature before anything else, so a rollback or a same-size fork
   * rests on two validly signed notes. A larger tree whose consistency proof fails is a fork only
   * when the proof leads to its signed root but to another root for our size (consistencyProvesFork);
   * otherwise it may be an honest checkpoint with a garbage proof (the proof is unsigned): it proves
   * nothing, and the witness does not move, so nothing beyond the trusted tree is opened on it.
   */
  private witnessFailure(err: WitnessError, offered: string, proof: { from: number; to: number; hashes: Uint8Array[] }): LogIntegrityError {
    const trusted = this.witness.checkpoint;
    switch (err.code) {
      case 'rollback':
      case 'fork':
        return new LogIntegrityError(err.code, `relay log: ${err.message}`, 'signed_conflict', { trusted: trusted.note, offered });
      case 'bad_proof': {
        const offeredRoot = parseCheckpoint(parseNote(offered).text).root; // parsed and verified by update() already
        if (consistencyProvesFork(proof.from, proof.to, proof.hashes, trusted.root, offeredRoot)) {
          return new LogIntegrityError('fork', `relay log: the signed tree of size ${proof.to} does not extend the trusted one of size ${proof.from}: its own consistency proof gives another root for the first ${proof.from} leaves`, 'signed_conflict', { trusted: trusted.note, offered, proof });
        }
        return new LogIntegrityError('bad_consistency_proof', `relay log: ${err.message}`, 'unproven');
      }
      default:
        return new LogIntegrityError(err.code, `relay log: ${err.message}`, 'unproven');
    }
  }

  /**
   * The relay serves a checkpoint of another origin. Moves to it only when it is a newer epoch of
   * our log, announced for the pinned key, signed by that key, and the policy accepts epochs.
   */
  private async changeEpoch(note: string, origin: string, size: number): Promise<{ size: number; changed: boolean }> {
    const old = this.witness;
    const trusted = old.checkpoint;
    // The signature first: every later refusal then rests on a note the pinned key signed, and an
    // unsigned note naming another origin is only garbage.
    try {
      new Witness(origin, [mlDsaNoteVerifier(origin, this.o.relayPublicKey)]).update(note, []);
    } catch (err) {
      if (err instanceof WitnessError) throw new LogIntegrityError(err.code, `relay checkpoint of origin ${JSON.stringify(origin)}: ${err.message}`, 'unproven');
      throw err;
    }
    const evidence = { trusted: trusted.note, offered: note };
    const announced = await this.client.logKey();
    const announcedKey = Buffer.from(announced.publicKey, 'base64');
    if (announcedKey.length !== this.o.relayPublicKey.length || !timingSafeEqual(announcedKey, this.o.relayPublicKey)) {
      throw new LogIntegrityError('key_mismatch', `the relay now announces a checkpoint key other than the pinned relay public key (origin ${JSON.stringify(announced.origin)}, trusted ${JSON.stringify(old.origin)})`, 'unproven');
    }
    if (announced.origin !== origin) {
      throw new LogIntegrityError('wrong_origin', `the relay serves a checkpoint of origin ${JSON.stringify(origin)} but announces ${JSON.stringify(announced.origin)}`, 'unproven');
    }
    checkConfiguredOrigin(this.o.origin, origin, 'signed_conflict', evidence);
    let next: Witness;
    try {
      next = old.nextEpoch(origin, [mlDsaNoteVerifier(origin, this.o.relayPublicKey)], new Date());
      next.update(note, []); // an empty witness trusts any checkpoint its verifier accepts
    } catch (err) {
      // Another base origin or an older epoch, under a note the pinned key signed.
      if (err instanceof WitnessError) throw new LogIntegrityError(err.code, `relay log: ${err.message}`, 'signed_conflict', evidence);
      throw err;
    }
    if ((this.o.newEpoch ?? 'accept') === 'refuse') {
      throw new LogIntegrityError('new_epoch', `the relay started a new log epoch ${JSON.stringify(origin)} (trusted: ${JSON.stringify(old.origin)} at size ${trusted.size}); new epochs are refused here (receiver relay.newEpoch, audit --new-epoch)`, 'signed_conflict', evidence);
    }
    if (this.stateFile !== undefined) await saveWitnessState(this.stateFile, next.toJSON());
    this.current = next;
    this.o.onNewEpoch?.({ from: old.origin, to: origin, previous: trusted });
    return { size, changed: true };
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
      // By index (the lease names it): the relay keeps no per-leaf hash index; the proof binds
      // the hash to that index, so a wrong index fails verification like a wrong proof.
      proof = await this.client.inclusionProof({ index: leafIndex }, cp.size);
    } catch (err) {
      if (err instanceof RelayError && err.code === 'bad_request') {
        // The relay refuses our trusted size: it shows a smaller tree now. refresh() names it.
        await this.refresh();
        throw new NotYetLoggedError(`relay refused an inclusion proof at size ${cp.size}: ${err.message}`);
      }
      if (err instanceof RelayError && err.code === 'not_found') {
        await this.refresh(); // a relay that rebooted into a new epoch no longer has the old leaves
        throw new NotYetLoggedError(`relay has no leaf with this hash at size ${cp.size}`);
      }
      throw err;
    }
    try {
      verifyInclusion(leafHash, leafIndex, cp.size, proof.proof, cp.root);
    } catch (err) {
      if (err instanceof ProofError) {
        // The relay may have rebooted into a new epoch between our checkpoint and this proof:
        // then the proof belongs to the new log, and the envelope is retried against it.
        const epoch = this.witness.origin;
        await this.refresh();
        if (this.witness.origin !== epoch) throw new NotYetLoggedError(`the relay started a new log epoch while proving leaf ${leafIndex}`);
        throw new LogIntegrityError('bad_inclusion_proof', `inclusion proof for leaf ${leafIndex} at size ${cp.size}: ${err.message}`, 'unproven');
      }
      throw err;
    }
    return { index: leafIndex, size: cp.size };
  }
}

/**
 * A configured origin (receiver relay.origin, audit --origin) pins the log: the relay's origin must
 * be it, or an epoch of it ("<configured>/epoch/<n>").
 */
function checkConfiguredOrigin(configured: string | undefined, origin: string, kind: IntegrityKind, evidence?: Evidence): void {
  if (configured === undefined || origin === configured || parseEpochOrigin(origin).base === configured) return;
  throw new LogIntegrityError('wrong_origin', `the relay announces origin ${JSON.stringify(origin)}, expected ${JSON.stringify(configured)} or an epoch of it`, kind, evidence);
}

/**
 * The saved witness state, checked to be a JSON object (garbled or truncated: StateFileError, exit 65);
 * what it says is then checked by the Witness (a checkpoint that does not verify is an integrity failure).
 */
async function loadWitnessState(file: string): Promise<string | undefined> {
  const text = await onFile(file, 'read', () => readOptional(file));
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, `${text === '' ? 'empty file' : describeFileError(err)}; it holds the last trusted checkpoint: restore it, or delete it only to trust the relay's log anew (trust on first use)`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new StateFileError(file, 'not a witness state object; it holds the last trusted checkpoint: restore it');
  return text;
}

async function saveWitnessState(file: string, state: unknown): Promise<void> {
  await onFile(file, 'write', () => writeFileAtomic(file, JSON.stringify(state) + '\n'));
}
