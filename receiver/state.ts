/**
 * The receiver's state directory (0700, files 0600):
 *
 *   witness.json      last trusted relay checkpoint (protocol/tlog Witness state), replaced atomically
 *   replay.json       anti-replay window snapshot, replaced atomically
 *   replay.journal    one JSON line per delivered envelope since the snapshot, appended + fsync'ed
 *                     before the ack; folded into replay.json every `compactEvery` lines
 *   revocations.json  how far the verified log was read for revocation leaves (receiver/revocations.ts)
 *   evidence/         signed checkpoints that prove a fork, kept for the operator
 *
 * A torn last journal line (crash during append) is ignored: its envelope was never acknowledged.
 */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { ReplayWindow } from './replay-window.js';
import { ensurePrivateDir, readOptional, syncDir, writeFileAtomic } from '../common/atomic-file.js';

export class StateError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'StateError';
  }
}

interface JournalLine { k: string; s: string; f: string }

export class ReplayStore {
  private journal: fs.FileHandle | undefined;
  private journalLines = 0;

  private constructor(readonly dir: string, readonly window: ReplayWindow, private readonly compactEvery: number) {}

  static async open(dir: string, windowSize: number, compactEvery = 1000): Promise<ReplayStore> {
    await ensurePrivateDir(dir);
    const snapshotFile = path.join(dir, 'replay.json');
    const text = await readOptional(snapshotFile);
    let window = new ReplayWindow(windowSize);
    if (text !== undefined) {
      try {
        window = ReplayWindow.fromJSON(JSON.parse(text), windowSize);
      } catch (err) {
        throw new StateError(snapshotFile, `unreadable replay state (${(err as Error).message}); refusing to start rather than accept replays`);
      }
    }
    const store = new ReplayStore(dir, window, compactEvery);
    const journalFile = path.join(dir, 'replay.journal');
    const journal = (await readOptional(journalFile)) ?? '';
    const lines = journal.split('\n');
    const complete = lines.slice(0, -1); // the part after the last newline is a torn append, if any
    complete.forEach((line, i) => {
      let entry: JournalLine;
      try {
        entry = JSON.parse(line) as JournalLine;
        if (typeof entry.k !== 'string' || typeof entry.s !== 'string' || !/^\d{1,20}$/.test(entry.s) || typeof entry.f !== 'string') throw new Error('fields');
      } catch {
        throw new StateError(journalFile, `line ${i + 1} is malformed; refusing to start rather than accept replays`);
      }
      window.mark(entry.k, BigInt(entry.s), entry.f);
    });
    if (complete.length > 0 || journal.length > 0) await store.compact();
    store.journal = await fs.open(journalFile, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600);
    return store;
  }

  /** Marks and persists one delivered envelope; resolves once it is on disk (then it is safe to ack). */
  async record(key: string, seq: bigint, fp: string): Promise<void> {
    this.window.mark(key, seq, fp);
    if (this.journal === undefined) throw new Error('replay store is closed');
    await this.journal.appendFile(JSON.stringify({ k: key, s: seq.toString(), f: fp }) + '\n');
    await this.journal.datasync();
    if (++this.journalLines >= this.compactEvery) await this.compact();
  }

  /** Snapshot first, then empty the journal: a crash in between only replays lines already in the snapshot. */
  async compact(): Promise<void> {
    await writeFileAtomic(path.join(this.dir, 'replay.json'), JSON.stringify(this.window));
    if (this.journal) {
      await this.journal.truncate(0);
      await this.journal.sync();
    } else {
      await fs.writeFile(path.join(this.dir, 'replay.journal'), '', { mode: 0o600 });
      await syncDir(this.dir);
    }
    this.journalLines = 0;
  }

  async close(): Promise<void> {
    if (!this.journal) return;
    await this.compact();
    await this.journal.close();
    this.journal = undefined;
  }
}

export async function loadWitnessState(file: string): Promise<string | undefined> {
  return readOptional(file);
}

export async function saveWitnessState(file: string, state: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(state) + '\n');
}

/** Keeps the two signed notes that prove a fork or a rollback; returns the file written. */
export async function saveEvidence(dir: string, kind: string, evidence: { trusted?: string | undefined; offered: string }): Promise<string> {
  const folder = path.join(dir, 'evidence');
  await ensurePrivateDir(folder);
  const file = path.join(folder, `${new Date().toISOString().replace(/[:.]/g, '-')}-${kind}.txt`);
  const text = `# Trusted checkpoint\n${evidence.trusted ?? '(empty tree)\n'}\n# Offered checkpoint\n${evidence.offered}`;
  await writeFileAtomic(file, text);
  return file;
}
