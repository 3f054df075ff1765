/**
 * `ghostpipe audit`: an independent monitor of the relay's transparency log. Verifies the latest
 * checkpoint's signature (pinned relay key), its consistency with the last run's (state folder),
 * and with `full`, re-derives the root from every entry (GET /v2/log/entries, 1000 at a time).
 */
import path from 'node:path';
import { RelayClient } from '../common/relay-client.js';
import { sameHash } from '../protocol/tlog/index.js';
import { decodeLogEntry, LogEntryError } from '../protocol/log-entries.js';
import { LogIntegrityError, LogTrust, type EpochChange, type NewEpochPolicy } from './log-trust.js';
import { readEntries } from './log-scan.js';
import { CompactRange } from '../protocol/tlog/subtrees.js';
import { ensurePrivateDir } from '../common/atomic-file.js';
import { saveEvidence } from './state.js';

export interface AuditOptions {
  client: RelayClient;
  relayPublicKey: Uint8Array;
  origin?: string;
  /** Folder for the witness state; undefined = this run only (signature check, no history). */
  stateDir?: string;
  full: boolean;
  /** A relay that rebooted into a new epoch of its log (same pinned key): default accept. */
  newEpoch?: NewEpochPolicy;
}

export interface AuditResult {
  origin: string;
  size: number;
  root: string;
  previousSize: number;
  /** Set when this run moved to a new epoch: the origin left and its last trusted size. */
  newEpoch?: { from: string; to: string; previousSize: number };
  /** With full: entry counts by type. */
  entries?: Record<string, number>;
}

export async function audit(o: AuditOptions): Promise<AuditResult> {
  if (o.stateDir !== undefined) await ensurePrivateDir(o.stateDir);
  let epoch: EpochChange | undefined;
  let log: LogTrust;
  let previousSize = 0;
  try {
    log = await LogTrust.open({
      client: o.client, relayPublicKey: o.relayPublicKey, newEpoch: o.newEpoch ?? 'accept', onNewEpoch: (change) => (epoch = change),
      ...(o.origin !== undefined ? { origin: o.origin } : {}), ...(o.stateDir !== undefined ? { stateFile: path.join(o.stateDir, 'witness.json') } : {}),
    });
    previousSize = log.trusted.size; // what the last run trusted (0 when open() just moved to a new epoch)
    await log.refresh();
  } catch (err) {
    if (err instanceof LogIntegrityError && err.evidence && o.stateDir !== undefined) {
      const file = await saveEvidence(o.stateDir, err.code, err.evidence, err.message).catch(() => undefined);
      if (file) err.message += ` (evidence: ${file})`;
    }
    throw err;
  }
  const cp = log.trusted;
  const change = epoch as EpochChange | undefined;
  if (change) previousSize = 0;
  const result: AuditResult = {
    origin: cp.origin, size: cp.size, root: Buffer.from(cp.root).toString('base64'), previousSize,
    ...(change ? { newEpoch: { from: change.from, to: change.to, previousSize: change.previous.size } } : {}),
  };
  if (o.full) {
    const range = new CompactRange();
    const counts: Record<string, number> = {};
    await readEntries(o.client, range, cp.size, (_index, data) => {
      let type = 'malformed';
      try {
        type = decodeLogEntry(data).type;
      } catch (err) {
        if (!(err instanceof LogEntryError)) throw err;
      }
      counts[type] = (counts[type] ?? 0) + 1;
    });
    if (!sameHash(range.root(), cp.root)) {
      throw new LogIntegrityError('fork', `the ${cp.size} entries the relay serves do not hash to the signed root: the served log differs from the signed one`, 'unproven');
    }
    result.entries = counts;
  }
  return result;
}
