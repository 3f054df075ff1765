/**
 * API keys. Format: "pgp_" | "plk_", 12 hex digits of public id, 43 base64url characters of
 * secret (32 random bytes). Only SHA-256 of the whole key is kept; a presented key is looked up
 * by its id and its hash compared in constant time (a dummy comparison runs for unknown ids).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Role } from '../protocol/api/index.js';
import type { Plan } from './config.js';

export interface KeyRecord {
  id: string;
  role: Role;
  /** hex SHA-256 of the full key string. */
  hash: string;
  plan: string;
  label: string;
  recipients?: string[];
  createdAt: number;
  revokedAt?: number;
  /** Device DID this device key is bound to (set at enrollment). */
  did?: string;
  usage: { periodStart: number; transfers: number };
}

export type AuthFailure = 'missing_key' | 'invalid_key' | 'key_revoked';

const KEY_PATTERN = /^(pgp|plk)_([0-9a-f]{12})([A-Za-z0-9_-]{43})$/;
const DUMMY_HASH = Buffer.alloc(32);

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** The public id part of an "Authorization: Bearer …" key when it has the key format (never the secret part), for auditing failures. */
export function presentedKeyId(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer +(\S+)$/i.exec(header);
  return match ? KEY_PATTERN.exec(match[1]!)?.[2] : undefined;
}

export function maskKey(record: KeyRecord): string {
  return `${record.role === 'operator' ? 'plk' : 'pgp'}_${record.id}…`;
}

export class ApiKeys {
  private readonly byId = new Map<string, KeyRecord>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Quota slots held by uploads in progress, per key id (RAM only: a restart ends those uploads). */
  private readonly reserved = new Map<string, number>();
  private readonly revocations = new Map<string, AbortController>();
  /** Recipient key ids listed by active receiver keys; rebuilt after a key is issued or revoked. */
  private listed: Set<string> | undefined;

  constructor(records: KeyRecord[] = []) {
    for (const record of records) this.byId.set(record.id, record);
  }

  all(): KeyRecord[] {
    return [...this.byId.values()];
  }

  get(id: string): KeyRecord | undefined {
    return this.byId.get(id);
  }

  /** Creates a key; returns the record and the key string (shown once). */
  issue(role: Role, plan: string, label: string, recipients?: string[], now = Date.now()): { record: KeyRecord; key: string } {
    let id: string;
    do id = randomBytes(6).toString('hex');
    while (this.byId.has(id));
    const key = `${role === 'operator' ? 'plk' : 'pgp'}_${id}${randomBytes(32).toString('base64url')}`;
    const record: KeyRecord = {
      id, role, hash: sha256(key).toString('hex'), plan, label, createdAt: now, usage: { periodStart: now, transfers: 0 },
      ...(recipients === undefined ? {} : { recipients }),
    };
    this.byId.set(id, record);
    this.listed = undefined;
    return { record, key };
  }

  /** The record behind an "Authorization: Bearer …" header, or why not. */
  authenticate(header: string | undefined): KeyRecord | AuthFailure {
    if (header === undefined || header === '') return 'missing_key';
    const match = /^Bearer +(\S+)$/i.exec(header);
    if (!match) return 'missing_key';
    const key = match[1]!;
    const parts = KEY_PATTERN.exec(key);
    const record = parts ? this.byId.get(parts[2]!) : undefined;
    const expected = record ? Buffer.from(record.hash, 'hex') : DUMMY_HASH;
    const equal = timingSafeEqual(sha256(key), expected);
    if (!parts || !record || !equal) return 'invalid_key';
    if ((parts[1] === 'plk') !== (record.role === 'operator')) return 'invalid_key';
    if (record.revokedAt !== undefined) return 'key_revoked';
    return record;
  }

  revoke(id: string, now = Date.now()): KeyRecord | undefined {
    const record = this.byId.get(id);
    if (record && record.revokedAt === undefined) record.revokedAt = now;
    this.listed = undefined;
    this.revocations.get(id)?.abort();
    this.revocations.delete(id);
    return record;
  }

  /**
   * Aborts when the key is revoked: requests of the key that wait (long-polls) or stream (uploads)
   * end at once instead of finishing with a key that is no longer valid. One controller per key.
   */
  revokedSignal(record: KeyRecord): AbortSignal {
    if (record.revokedAt !== undefined) return AbortSignal.abort();
    let controller = this.revocations.get(record.id);
    if (!controller) {
      controller = new AbortController();
      this.revocations.set(record.id, controller);
    }
    return controller.signal;
  }

  activeOperators(): number {
    return this.all().filter((r) => r.role === 'operator' && r.revokedAt === undefined).length;
  }

  /** Token bucket: 0 when an upload may go now, else ms until one token is back. Takes the token. */
  takeRateToken(record: KeyRecord, plan: Plan, now = Date.now()): number {
    const perMs = plan.ratePerMinute / 60_000;
    const bucket = this.buckets.get(record.id) ?? { tokens: plan.burst, at: now };
    bucket.tokens = Math.min(plan.burst, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    this.buckets.set(record.id, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / perMs);
  }

  /** Rolls the quota period forward; true when one more transfer is allowed. */
  quotaAllows(record: KeyRecord, plan: Plan, now = Date.now()): boolean {
    if (now >= record.usage.periodStart + plan.period) {
      const periods = Math.floor((now - record.usage.periodStart) / plan.period);
      record.usage = { periodStart: record.usage.periodStart + periods * plan.period, transfers: 0 };
    }
    return plan.quota === 0 || record.usage.transfers + (this.reserved.get(record.id) ?? 0) < plan.quota;
  }

  /**
   * Holds a quota slot for an upload that passed its checks and is still sending its body: without
   * it, twelve concurrent uploads under a quota of 3 all pass the check before the first one counts.
   * Given back by releaseTransfer() whatever the outcome (countTransfer() counts a stored one).
   */
  reserveTransfer(record: KeyRecord): void {
    this.reserved.set(record.id, (this.reserved.get(record.id) ?? 0) + 1);
  }

  /** Uploads of this key in progress (each holds one reserved slot). */
  inProgress(record: KeyRecord): number {
    return this.reserved.get(record.id) ?? 0;
  }

  /** Whether an active receiver key may read `recipient` (64 hex digits): otherwise nobody could ever collect it. */
  recipientListed(recipient: string): boolean {
    if (!this.listed) {
      this.listed = new Set();
      for (const r of this.byId.values()) if (r.role === 'receiver' && r.revokedAt === undefined) for (const id of r.recipients ?? []) this.listed.add(id);
    }
    return this.listed.has(recipient);
  }

  releaseTransfer(record: KeyRecord): void {
    const left = (this.reserved.get(record.id) ?? 0) - 1;
    if (left > 0) this.reserved.set(record.id, left);
    else this.reserved.delete(record.id);
  }

  /** Ms until the key's current quota period rolls over (call after quotaAllows rolled it forward). */
  quotaResetsInMs(record: KeyRecord, plan: Plan, now = Date.now()): number {
    return Math.max(0, record.usage.periodStart + plan.period - now);
  }

  countTransfer(record: KeyRecord): void {
    record.usage.transfers++;
  }
}
