/**
 * Revocations as the verified log shows them, independent of what GET /v2/did/{did} claims: a
 * relay that hides a revocation in its DID record is still caught, because the revocation leaf
 * (protocol/log-entries.ts, type 0x03) is in the log it signed. Registrations too (0x02, 0x05:
 * where each signing key's newest one is), so that a DID answer contradicting the log can be
 * checked against it (receiver/trust.ts fromLog).
 *
 * The receiver reads every log entry once, in order, up to the trusted checkpoint, folding the leaf
 * hashes into a compact Merkle range (the O(log n) perfect-subtree roots) and checking that the
 * entries hash to the signed root before it believes any of them. State (revocations.json in the
 * state directory): scanned size, the compact range, the revoked signing key ids, and the leaf of
 * each signing key's newest registration in this origin.
 */
import type { RelayClient } from '../common/relay-client.js';
import { decodeLogEntry, LOG_ENTRY, LogEntryError } from '../protocol/log-entries.js';
import { readEntries } from './log-scan.js';
import { CompactRange } from '../protocol/tlog/subtrees.js';
import type { TrustedCheckpoint } from '../protocol/tlog/index.js';
import { LogIntegrityError } from '../common/log-trust.js';
import { readOptional, writeFileAtomic } from '../common/atomic-file.js';
import { StateFileError } from '../common/state-errors.js';
import { onFile } from '../common/state-errors.js';

/** Progress is saved at most this often (a restart re-reads at most this much of the log). */
const SAVE_EVERY_MS = 30_000;

export interface Revocation { did: string; leafIndex: number }

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

export class RevocationWatch {
  private lastSave = 0;
  private unsaved = false;

  private constructor(
    private readonly client: RelayClient,
    private readonly file: string | undefined,
    private origin: string,
    private range: CompactRange,
    /** signing key id (hex) -> where the log revoked it */
    private readonly revoked: Map<string, Revocation>,
    /** signing key id (hex) -> leaf index of its newest registration in this origin's log */
    private registered: Map<string, number>,
  ) {}

  /** `origin`: the log's origin; scan progress saved for another origin (an earlier epoch) is discarded, its revocations kept. */
  static async open(client: RelayClient, origin: string, file?: string): Promise<RevocationWatch> {
    const text = file === undefined ? undefined : await onFile(file, 'read', () => readOptional(file));
    const fresh = () => new RevocationWatch(client, file, origin, new CompactRange(), new Map(), new Map());
    if (text === undefined) return fresh();
    try {
      const state = JSON.parse(text) as { origin: string; size: number; subtrees: { height: number; hash: string }[]; revoked: Record<string, Revocation>; registered?: Record<string, number> };
      if (typeof state.origin !== 'string' || !Number.isSafeInteger(state.size) || state.size < 0 || !Array.isArray(state.subtrees) || typeof state.revoked !== 'object' || state.revoked === null) throw new Error('fields');
      const subtrees = state.subtrees.map((s) => {
        const hash = Buffer.from(String(s.hash), 'base64');
        if (!Number.isInteger(s.height) || s.height < 0 || s.height > 63 || hash.length !== 32) throw new Error('subtree');
        return { height: s.height, hash: new Uint8Array(hash) };
      });
      // The subtree heights are exactly the set bits of size, largest first.
      if (subtrees.reduce((n, s) => n + 2 ** s.height, 0) !== state.size || subtrees.some((s, i) => i > 0 && s.height >= subtrees[i - 1]!.height)) throw new Error('subtrees do not match size');
      const revoked = Object.entries(state.revoked);
      if (revoked.some(([k, r]) => !/^[0-9a-f]{64}$/.test(k) || typeof r?.did !== 'string' || !Number.isSafeInteger(r.leafIndex))) throw new Error('revoked entries');
      // Older state files have no registrations: the log is read again from the start to find them.
      if (state.registered === undefined) return new RevocationWatch(client, file, origin, new CompactRange(), new Map(revoked), new Map());
      const registered = Object.entries(state.registered);
      if (registered.some(([k, i]) => !/^[0-9a-f]{64}$/.test(k) || !Number.isSafeInteger(i) || i < 0 || i >= state.size)) throw new Error('registered entries');
      // Another origin (a new epoch of a RAM-only relay): read its log from the start, keep what was revoked before.
      if (state.origin !== origin) return new RevocationWatch(client, file, origin, new CompactRange(), new Map(revoked), new Map());
      return new RevocationWatch(client, file, origin, new CompactRange(state.size, subtrees), new Map(revoked), new Map(registered));
    } catch (err) {
      throw new StateFileError(file!, `unreadable revocation state (${(err as Error).message}); delete it to re-read the log from the start`);
    }
  }

  get scannedSize(): number {
    return this.range.size;
  }

  /** Where the verified log revoked this signing key id, if it did (call sync first). */
  revocation(signingKeyId: Uint8Array): Revocation | undefined {
    return this.revoked.get(hex(signingKeyId));
  }

  /** The leaf index of this signing key id's newest registration in the verified log, if any (call sync first). */
  registration(signingKeyId: Uint8Array): number | undefined {
    return this.registered.get(hex(signingKeyId));
  }

  /**
   * Reads the entries up to the trusted checkpoint and believes them only if they hash to its root.
   * Throws LogIntegrityError when the served entries differ from the signed log.
   */
  async sync(cp: TrustedCheckpoint): Promise<void> {
    if (cp.origin !== this.origin) {
      // A new epoch (the witness accepted it): its log starts empty. Revocations read in earlier
      // epochs stay in force; the relay logs its revoked devices again at the start of each epoch.
      this.origin = cp.origin;
      this.range = new CompactRange();
      this.registered = new Map(); // leaf indexes of the old epoch mean nothing in the new one
      this.unsaved = true;
    }
    if (cp.size < this.range.size) {
      throw new LogIntegrityError('rollback', `the trusted checkpoint (size ${cp.size}) is smaller than the ${this.range.size} log entries already read (${this.file ?? 'revocation state'}); if witness.json was reset on purpose, delete that file too`, 'local_state');
    }
    if (cp.size === this.range.size) return this.maybeSave();
    const range = this.range.clone();
    const found: [string, Revocation][] = [];
    const registrations: [string, number][] = [];
    await readEntries(this.client, range, cp.size, (index, data) => {
      if (data[0] !== LOG_ENTRY.revocation && data[0] !== LOG_ENTRY.registration && data[0] !== LOG_ENTRY.approvedRegistration) return;
      try {
        const entry = decodeLogEntry(data);
        if (entry.type === 'revocation') found.push([hex(entry.signingKeyId), { did: entry.did, leafIndex: index }]);
        if (entry.type === 'registration') registrations.push([hex(entry.signingKeyId), index]);
      } catch (err) {
        if (!(err instanceof LogEntryError)) throw err;
      }
    });
    if (!same(range.root(), cp.root)) {
      // Entries are unsigned: wrong ones prove nothing against the signed root (retried, never believed).
      throw new LogIntegrityError('bad_entries', `log entries [0, ${cp.size}) served by the relay do not hash to its signed root`, 'unproven');
    }
    this.range = range;
    for (const [key, r] of found) if (!this.revoked.has(key)) this.revoked.set(key, r);
    for (const [key, index] of registrations) this.registered.set(key, index);
    this.unsaved = true;
    await this.maybeSave(found.length > 0);
  }

  private async maybeSave(now = false): Promise<void> {
    if (this.file === undefined || !this.unsaved || (!now && Date.now() - this.lastSave < SAVE_EVERY_MS)) return;
    await this.save();
  }

  async save(): Promise<void> {
    if (this.file === undefined || !this.unsaved) return;
    const state = {
      origin: this.origin,
      size: this.range.size,
      subtrees: this.range.subtrees.map((s) => ({ height: s.height, hash: Buffer.from(s.hash).toString('base64') })),
      revoked: Object.fromEntries(this.revoked),
      registered: Object.fromEntries(this.registered),
    };
    const file = this.file;
    await onFile(file, 'write', () => writeFileAtomic(file, JSON.stringify(state) + '\n'));
    this.lastSave = Date.now();
    this.unsaved = false;
  }
}
