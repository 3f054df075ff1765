/**
 * `ghostpipe audit`: an independent monitor of the relay's transparency log. Verifies the latest
 * checkpoint's signature (pinned relay key), its consistency with the last run's (state folder),
 * and with `full`, re-derives the root from every entry (GET /v2/log/entries, 1000 at a time) and
 * checks every install receipt (0x06) with its device's key from the log's approved registrations.
 */
import path from 'node:path';
import { RelayClient } from '../common/relay-client.js';
import { sameHash } from '../protocol/tlog/index.js';
import { decodeLogEntry, LogEntryError, type LogEntry } from '../protocol/log-entries.js';
import { FleetStatementError, decodeEnrollmentStatement, verifyFleetSignature } from '../protocol/enrollment.js';
import { FirmwareError, decodeReceipt, verifyReceipt } from '../protocol/firmware/index.js';
import { LogIntegrityError, LogTrust, type EpochChange, type NewEpochPolicy } from '../common/log-trust.js';
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
  /** The fleet public key: every registration's approval is checked against it (implies `full`). */
  fleetPublicKey?: Uint8Array;
}

/** What the registrations in the log say about the fleet key's approvals. */
export interface FleetReport {
  /** Registration leaves whose approval the fleet key signed. */
  approved: number;
  /** DIDs registered without an approval (relays before fleet enrollment, or without a fleet key). */
  unapproved: string[];
  /** Registration leaves carrying an approval the fleet key did NOT sign: the relay logged a forgery. */
  forged: { leafIndex: number; did: string }[];
  /** Per approved DID, the end of its newest approval (ISO time): what to renew before. */
  approvedUntil: Record<string, string>;
}

/** What the install receipts (0x06 leaves) prove, from the log alone. */
export interface ReceiptReport {
  /** Signed by the device's key, as its approved registration (0x05) earlier in the log names it. */
  verified: number;
  /** Of devices with no approved registration before the receipt: the log does not hold their key. */
  unverifiable: number;
  /** The signature does not verify with the device's key: the relay logged a receipt the device never signed. */
  forged: { leafIndex: number; did: string }[];
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
  /** With a fleet key. */
  fleet?: FleetReport;
  /** With full: the install receipts. */
  receipts?: ReceiptReport;
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
  if (o.full || o.fleetPublicKey !== undefined) {
    const range = new CompactRange();
    const counts: Record<string, number> = {};
    const fleet = o.fleetPublicKey === undefined ? undefined : new FleetAudit(o.fleetPublicKey);
    const receipts = new ReceiptAudit();
    await readEntries(o.client, range, cp.size, (index, data) => {
      let entry: LogEntry | undefined;
      try {
        entry = decodeLogEntry(data);
      } catch (err) {
        if (!(err instanceof LogEntryError)) throw err;
      }
      const type = entry?.type ?? 'malformed';
      counts[type] = (counts[type] ?? 0) + 1;
      if (entry?.type === 'registration') {
        fleet?.registration(index, entry);
        receipts.registration(entry);
      }
      if (entry?.type === 'receipt') receipts.receipt(index, entry);
    });
    if (!sameHash(range.root(), cp.root)) {
      throw new LogIntegrityError('fork', `the ${cp.size} entries the relay serves do not hash to the signed root: the served log differs from the signed one`, 'unproven');
    }
    result.entries = counts;
    result.receipts = receipts.report();
    if (fleet) result.fleet = fleet.report();
  }
  return result;
}

/** Checks each registration's approval against the fleet key; a renewal supersedes the approval before it. */
class FleetAudit {
  private approved = 0;
  private readonly unapproved = new Set<string>();
  private readonly forged: FleetReport['forged'] = [];
  private readonly until = new Map<string, number>();

  constructor(private readonly fleetPublicKey: Uint8Array) {}

  registration(leafIndex: number, entry: Extract<LogEntry, { type: 'registration' }>): void {
    if (entry.approval === undefined) {
      this.unapproved.add(entry.did);
      return;
    }
    try {
      // decodeLogEntry already matched the statement's DID and keys to the leaf's.
      const statement = verifyFleetSignature(entry.approval.statement, entry.approval.signature, this.fleetPublicKey);
      this.approved++;
      this.unapproved.delete(entry.did);
      this.until.set(entry.did, Math.max(this.until.get(entry.did) ?? 0, statement.notAfter));
    } catch (err) {
      if (!(err instanceof FleetStatementError)) throw err;
      this.forged.push({ leafIndex, did: entry.did });
    }
  }

  report(): FleetReport {
    return {
      approved: this.approved, unapproved: [...this.unapproved].sort(), forged: this.forged,
      approvedUntil: Object.fromEntries([...this.until].sort(([a], [b]) => (a < b ? -1 : 1)).map(([did, ms]) => [did, new Date(ms).toISOString()])),
    };
  }
}

/**
 * Checks each install receipt with its device's signing key. The key comes from the log itself: an
 * approved registration (0x05) carries the full key in its statement, bound to the DID (the DID is
 * derived from it), so no answer of the relay is believed. A 0x02 registration holds only a key id.
 */
export class ReceiptAudit {
  private readonly keys = new Map<string, Uint8Array>();
  private verified = 0;
  private unverifiable = 0;
  private readonly forged: ReceiptReport['forged'] = [];

  registration(entry: Extract<LogEntry, { type: 'registration' }>): void {
    if (entry.approval === undefined) return;
    const statement = decodeEnrollmentStatement(entry.approval.statement); // decodeLogEntry parsed it already
    this.keys.set(statement.did, statement.signingPublicKey);
  }

  receipt(leafIndex: number, entry: Extract<LogEntry, { type: 'receipt' }>): void {
    const { did } = decodeReceipt(entry.receipt); // decodeLogEntry parsed it already
    const key = this.keys.get(did);
    if (key === undefined) {
      this.unverifiable++;
      return;
    }
    try {
      verifyReceipt(entry.receipt, entry.signature, key);
      this.verified++;
    } catch (err) {
      if (!(err instanceof FirmwareError)) throw err;
      this.forged.push({ leafIndex, did });
    }
  }

  report(): ReceiptReport {
    return { verified: this.verified, unverifiable: this.unverifiable, forged: this.forged };
  }
}
