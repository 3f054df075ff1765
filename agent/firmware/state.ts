/**
 * What the firmware updater must remember across restarts, in <stateDir>/firmware/state.json
 * (0600, written atomically; a few writes per rollout, never per interval):
 *
 *   installed  the release that runs; its counter is the floor every manifest must exceed, and it
 *              never goes down (a state file that says otherwise is refused, not repaired)
 *   root       the newest firmware root reached by rotations from the pinned one (never older)
 *   staged     a verified download whose install has not started (its manifest kept with it): the
 *              relay offers a downloaded package no more, so a restart here must not lose it
 *   pending    an install that started and was not decided: a restart in the middle (the install
 *              may restart this very agent) is decided by the health command at the next start
 *   receipts   signed receipts the relay has not accepted yet: sent again at every check
 */
import path from 'node:path';
import { ensurePrivateDir, readOptional, writeFileAtomic } from '../../common/atomic-file.js';
import { StateFileError, onFile } from '../../common/state-errors.js';
import { FIRMWARE_ID_PATTERN } from '../../protocol/api/firmware.js';
import { OUTCOMES, decodeManifest, manifestDigest, signedRootFromJson, type KeySignatureJson, type Outcome, type SignedRootJson } from '../../protocol/firmware/index.js';

/** id: the package id (manifest digest, hex) it came in; empty for what the gateway was provisioned with. */
export interface InstalledRelease { id: string; name: string; version: string; counter: number; at: string }
/** installType: absent in files from before self-update (those were all `command` installs). */
export interface PendingInstall { id: string; name: string; version: string; counter: number; startedAt: string; installType?: string }
export interface StoredReceipt { id: string; outcome: Outcome; receipt: string; signature: string }
/**
 * manifest: the manifest's bytes, base64 (its digest is `id`); signatures and roots: the rest of
 * the offer's signed parts, which the release service checks again (release-handoff.ts).
 */
export interface StagedRelease { id: string; manifest: string; at: string; signatures?: KeySignatureJson[]; roots?: SignedRootJson[] }

interface Stored {
  version: 1;
  installed: InstalledRelease;
  root?: SignedRootJson;
  staged?: StagedRelease;
  pending?: PendingInstall;
  receipts: StoredReceipt[];
}

/** Receipts kept while the relay cannot take them; the oldest goes first (a device rarely has more than one). */
export const MAX_STORED_RECEIPTS = 32;

const KEEP_IT = 'it holds the installed release counter (the rollback floor): restore it from a backup, never delete it';
const NOTHING_INSTALLED: InstalledRelease = { id: '', name: '', version: '', counter: 0, at: '' };

export class FirmwareState {
  private constructor(readonly file: string, private stored: Stored) {}

  static async open(dir: string): Promise<FirmwareState> {
    await onFile(dir, 'write', () => ensurePrivateDir(dir));
    const file = path.join(dir, 'state.json');
    const text = await onFile(file, 'read', () => readOptional(file));
    if (text === undefined) return new FirmwareState(file, { version: 1, installed: NOTHING_INSTALLED, receipts: [] });
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new StateFileError(file, `not valid JSON; ${KEEP_IT}`);
    }
    return new FirmwareState(file, checkStored(file, value));
  }

  get installed(): InstalledRelease {
    return { ...this.stored.installed };
  }

  get root(): SignedRootJson | undefined {
    return this.stored.root;
  }

  get staged(): StagedRelease | undefined {
    return this.stored.staged;
  }

  get pending(): PendingInstall | undefined {
    return this.stored.pending;
  }

  get receipts(): readonly StoredReceipt[] {
    return this.stored.receipts;
  }

  async recordRoot(root: SignedRootJson): Promise<void> {
    await this.save({ ...this.stored, root });
  }

  /** A verified download waits for its install. */
  async recordStaged(staged: Omit<StagedRelease, 'at'>): Promise<void> {
    await this.save({ ...this.stored, staged: { ...staged, at: new Date().toISOString() } });
  }

  /** An install starts: its staged record goes in the same write. */
  async recordPending(pending: PendingInstall): Promise<void> {
    const next: Stored = { ...this.stored, pending };
    delete next.staged;
    await this.save(next);
  }

  /**
   * A rollout decided, in one write: its receipt kept (until the relay took it; returns a receipt
   * dropped to make room, if any), the staged and pending records cleared and,
   * for an install, the floor raised. A kill can then never leave an install without its receipt
   * (the relay offers a downloaded package no more, so nothing would bring the receipt back).
   */
  async recordOutcome(receipt: StoredReceipt, installed?: Omit<InstalledRelease, 'at'>): Promise<StoredReceipt | undefined> {
    const receipts = [...this.stored.receipts.filter((r) => r.id !== receipt.id), receipt];
    const dropped = receipts.length > MAX_STORED_RECEIPTS ? receipts.shift() : undefined;
    const next: Stored = { ...this.stored, receipts };
    if (installed) {
      if (installed.counter <= next.installed.counter) throw new Error(`release counter ${installed.counter} does not exceed the installed ${next.installed.counter}`);
      next.installed = { ...installed, at: new Date().toISOString() };
    }
    if (receipt.id === next.staged?.id) delete next.staged;
    if (receipt.id === next.pending?.id) delete next.pending;
    await this.save(next);
    return dropped;
  }

  async removeReceipt(id: string): Promise<void> {
    if (!this.stored.receipts.some((r) => r.id === id)) return;
    await this.save({ ...this.stored, receipts: this.stored.receipts.filter((r) => r.id !== id) });
  }

  private async save(next: Stored): Promise<void> {
    await onFile(this.file, 'write', () => writeFileAtomic(this.file, JSON.stringify(next, null, 2) + '\n'));
    this.stored = next;
  }
}

/** The layout, field by field: a damaged file must stop the updater, never lower the floor. */
function checkStored(file: string, value: unknown): Stored {
  const bad = (what: string): never => {
    throw new StateFileError(file, `${what}; ${KEEP_IT}`);
  };
  const v = value as Partial<Stored> | null;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v.version !== 1) return bad('unknown layout (expected {"version":1,…})');
  const i = v.installed as Partial<InstalledRelease> | undefined;
  if (typeof i !== 'object' || i === null || !Number.isSafeInteger(i.counter) || i.counter! < 0 || typeof i.id !== 'string' || typeof i.version !== 'string' || typeof i.name !== 'string' || typeof i.at !== 'string') {
    return bad('installed is not {id, name, version, counter, at}');
  }
  if (v.root !== undefined) {
    try {
      signedRootFromJson(v.root);
    } catch (err) {
      bad(`root: ${(err as Error).message}`);
    }
  }
  const s = v.staged as Partial<StagedRelease> | undefined;
  if (s !== undefined) {
    if (typeof s !== 'object' || s === null || typeof s.id !== 'string' || typeof s.manifest !== 'string' || typeof s.at !== 'string') bad('staged is not {id, manifest, at}');
    let digest = '';
    try {
      const bytes = new Uint8Array(Buffer.from(s!.manifest!, 'base64'));
      decodeManifest(bytes);
      digest = Buffer.from(manifestDigest(bytes)).toString('hex');
    } catch (err) {
      bad(`staged.manifest: ${(err as Error).message}`);
    }
    if (digest !== s!.id) bad('staged.manifest is not the manifest of staged.id');
    if ((s!.signatures !== undefined && !Array.isArray(s!.signatures)) || (s!.roots !== undefined && !Array.isArray(s!.roots))) bad('staged.signatures and staged.roots must be lists');
  }
  const p = v.pending as Partial<PendingInstall> | undefined;
  if (p !== undefined && (typeof p !== 'object' || p === null || typeof p.id !== 'string' || !FIRMWARE_ID_PATTERN.test(p.id) || !Number.isSafeInteger(p.counter) || typeof p.name !== 'string' || typeof p.version !== 'string' || typeof p.startedAt !== 'string' || (p.installType !== undefined && typeof p.installType !== 'string'))) {
    bad('pending is not {id, name, version, counter, startedAt}');
  }
  if (!Array.isArray(v.receipts) || !v.receipts.every((r: Partial<StoredReceipt>) => typeof r === 'object' && r !== null && typeof r.id === 'string' && FIRMWARE_ID_PATTERN.test(r.id)
    && typeof r.receipt === 'string' && typeof r.signature === 'string' && typeof r.outcome === 'string' && r.outcome in OUTCOMES)) {
    bad('receipts is not a list of {id, outcome, receipt, signature}');
  }
  return v as Stored;
}

