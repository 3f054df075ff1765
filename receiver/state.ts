/**
 * The receiver's state directory (0700, files 0600):
 *
 *   witness.json      last trusted relay checkpoint (protocol/tlog Witness state), replaced atomically
 *   replay.json       anti-replay window snapshot, replaced atomically
 *   replay.journal    one JSON line per delivered envelope since the snapshot, appended + fsync'ed
 *                     before the ack; folded into replay.json every `compactEvery` lines
 *   revocations.json  how far the verified log was read for revocation leaves (receiver/revocations.ts)
 *   evidence/         <time>-<reason>.json: the signed checkpoints (and proof) of a fork or rollback, for an auditor
 *
 * A torn last journal line (crash during append) is ignored: its envelope was never acknowledged.
 */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { ReplayWindow } from './replay-window.js';
import { ensurePrivateDir, readOptional, syncDir, writeFileAtomic } from '../common/atomic-file.js';
import { EXIT_STATE_IO, StateFileError, describeFileError, onFile, stateExitCode } from '../common/state-errors.js';

interface JournalLine { k: string; s: string; f: string }

export class ReplayStore {
  private journal: fs.FileHandle | undefined;
  private journalLines = 0;

  private constructor(readonly dir: string, readonly window: ReplayWindow, private readonly compactEvery: number) {}

  static async open(dir: string, windowSize: number, compactEvery = 1000): Promise<ReplayStore> {
    await onFile(dir, 'read', () => ensurePrivateDir(dir));
    const snapshotFile = path.join(dir, 'replay.json');
    const text = await onFile(snapshotFile, 'read', () => readOptional(snapshotFile));
    let window = new ReplayWindow(windowSize);
    if (text !== undefined) {
      try {
        window = ReplayWindow.fromJSON(JSON.parse(text), windowSize);
      } catch (err) {
        throw new StateFileError(snapshotFile, `unreadable replay state (${(err as Error).message}); refusing to start rather than accept replays`);
      }
    }
    const store = new ReplayStore(dir, window, compactEvery);
    const journalFile = path.join(dir, 'replay.journal');
    const journal = (await onFile(journalFile, 'read', () => readOptional(journalFile))) ?? '';
    const lines = journal.split('\n');
    const complete = lines.slice(0, -1); // the part after the last newline is a torn append, if any
    complete.forEach((line, i) => {
      let entry: JournalLine;
      try {
        entry = JSON.parse(line) as JournalLine;
        if (typeof entry.k !== 'string' || typeof entry.s !== 'string' || !/^\d{1,20}$/.test(entry.s) || typeof entry.f !== 'string') throw new Error('fields');
      } catch {
        throw new StateFileError(journalFile, `line ${i + 1} is malformed; refusing to start rather than accept replays`);
      }
      window.mark(entry.k, BigInt(entry.s), entry.f);
    });
    if (complete.length > 0 || journal.length > 0) await store.compact();
    store.journal = await onFile(journalFile, 'write', () => fs.open(journalFile, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600));
    return store;
  }

  /** Marks and persists one delivered envelope; resolves once it is on disk (then it is safe to ack). */
  async record(key: string, seq: bigint, fp: string): Promise<void> {
    this.window.mark(key, seq, fp);
    if (this.journal === undefined) throw new Error('replay store is closed');
    const journal = this.journal;
    await onFile(path.join(this.dir, 'replay.journal'), 'write', async () => {
      await journal.appendFile(JSON.stringify({ k: key, s: seq.toString(), f: fp }) + '\n');
      await journal.datasync();
    });
    if (++this.journalLines >= this.compactEvery) await this.compact();
  }

  /** Snapshot first, then empty the journal: a crash in between only replays lines already in the snapshot. */
  async compact(): Promise<void> {
    const snapshotFile = path.join(this.dir, 'replay.json');
    await onFile(snapshotFile, 'write', () => writeFileAtomic(snapshotFile, JSON.stringify(this.window)));
    const journalFile = path.join(this.dir, 'replay.journal');
    await onFile(journalFile, 'write', async () => {
      if (this.journal) {
        await this.journal.truncate(0);
        await this.journal.sync();
      } else {
        await fs.writeFile(journalFile, '', { mode: 0o600 });
        await syncDir(this.dir);
      }
    });
    this.journalLines = 0;
  }

  async close(): Promise<void> {
    if (!this.journal) return;
    await this.compact();
    await this.journal.close();
    this.journal = undefined;
  }
}

/** Format tag of an evidence file (docs/RECEIVER.md "Evidence files"). */
export const EVIDENCE_FORMAT = 'ghostpipe-log-evidence/1';

export interface EvidenceFile {
  format: typeof EVIDENCE_FORMAT;
  /** The integrity code: fork, rollback, wrong_origin, new_epoch, … */
  reason: string;
  detectedAt: string;
  message: string;
  /** Both signed notes exactly as served (signature lines included): an auditor verifies them with the pinned key alone. */
  trusted: string | null;
  offered: string;
  /** The consistency proof served with `offered` (hashes base64), or null when none was served. */
  proof: { from: number; to: number; hashes: string[] } | null;
}

/**
 * Keeps what proves a signed conflict (both signed notes and the proof) in `<dir>/evidence/`
 * (0700) as `<ISO time with - for : and .>-<reason>.json` (0600); returns the file written.
 */
export async function saveEvidence(
  dir: string,
  kind: string,
  evidence: { trusted?: string | undefined; offered: string; proof?: { from: number; to: number; hashes: Uint8Array[] } },
  message = '',
  now = new Date(),
): Promise<string> {
  const folder = path.join(dir, 'evidence');
  await ensurePrivateDir(folder);
  const file = path.join(folder, `${now.toISOString().replace(/[:.]/g, '-')}-${kind}.json`);
  const body: EvidenceFile = {
    format: EVIDENCE_FORMAT, reason: kind, detectedAt: now.toISOString(), message,
    trusted: evidence.trusted ?? null, offered: evidence.offered,
    proof: evidence.proof ? { from: evidence.proof.from, to: evidence.proof.to, hashes: evidence.proof.hashes.map((h) => Buffer.from(h).toString('base64')) } : null,
  };
  await writeFileAtomic(file, JSON.stringify(body, null, 2) + '\n');
  return file;
}
