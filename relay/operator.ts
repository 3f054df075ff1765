/**
 * What operator keys do (docs/API.md "Keys and audit" and "GET /v2/stats"): issue, list, revoke
 * and purge API keys, and read the relay's counters. Plain values in; a response body or a Refusal out.
 */
import type { Logger } from '../common/log.js';
import {
  KEY_ID_PATTERN, RECIPIENT_ID_PATTERN, type IssuedKeyBody, type KeyInfoBody, type KeyListBody, type KeyPurgedBody, type KeyRevokedBody, type KeyUsageBody, type StatsBody,
} from '../protocol/api/index.js';
import { maskKey, type KeyRecord } from './api-keys.js';
import type { RelayConfig } from './config.js';
import { Refusal, badRequest, notFound, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

export class Operator {
  constructor(private readonly config: RelayConfig, private readonly state: RelayState, private readonly logger: Logger) {}

  /** `request` is the JSON body as sent: its fields are checked here, in this order (role, plan, label, recipients). */
  async issueKey(operator: KeyRecord, request: Readonly<Record<string, unknown>>): Promise<Outcome<IssuedKeyBody>> {
    const { role, plan, label, recipients } = request;
    if (role !== 'device' && role !== 'receiver') return badRequest('role must be "device" or "receiver"');
    if (typeof plan !== 'string' || !Object.hasOwn(this.config.plans, plan)) return badRequest(`plan must be one of ${Object.keys(this.config.plans).join(', ')}`);
    if (typeof label !== 'string' || label.length < 1 || label.length > 100 || !/^[^\p{Cc}]+$/u.test(label)) return badRequest('label must be 1 to 100 printable characters');
    let list: string[] | undefined;
    if (role === 'receiver') {
      if (!Array.isArray(recipients) || recipients.length < 1 || recipients.length > 64 || !recipients.every((r) => typeof r === 'string' && RECIPIENT_ID_PATTERN.test(r))) {
        return badRequest('a receiver key needs recipients: 1 to 64 recipient key ids (64 lowercase hex digits each)');
      }
      list = [...new Set(recipients as string[])];
    } else if (recipients !== undefined) {
      return badRequest('recipients are only for receiver keys');
    }
    const { record, key } = this.state.keys.issue(role, plan, label, list);
    await this.state.save();
    this.state.audit.record({ event: 'key_issued', keyId: record.id, keyLabel: record.label, outcome: 'ok' });
    this.logger.info({ keyId: record.id, role, plan, by: operator.id }, 'API key issued');
    return { id: record.id, key, role, plan, label, createdAt: new Date(record.createdAt).toISOString(), ...(list ? { recipients: list } : {}) };
  }

  listKeys(): KeyListBody {
    const keys = this.state.keys.all().map((r): KeyInfoBody => {
      const plan = this.config.plans[r.plan];
      return {
        id: r.id, masked: maskKey(r), role: r.role, plan: r.plan, label: r.label, createdAt: new Date(r.createdAt).toISOString(),
        revoked: r.revokedAt !== undefined,
        ...(r.revokedAt !== undefined ? { revokedAt: new Date(r.revokedAt).toISOString() } : {}),
        ...(r.did ? { did: r.did } : {}),
        ...(r.recipients ? { recipients: r.recipients } : {}),
        ...(r.role !== 'operator' && plan ? { usage: { periodStart: new Date(r.usage.periodStart).toISOString(), transfers: r.usage.transfers, quota: plan.quota } } : {}),
      };
    });
    return { keys };
  }

  /** Revoking a revoked key answers the same again; the last active operator key stays. */
  async revokeKey(operator: KeyRecord, id: string): Promise<Outcome<KeyRevokedBody>> {
    const record = KEY_ID_PATTERN.test(id) ? this.state.keys.get(id) : undefined;
    if (!record) return notFound();
    if (record.role === 'operator' && record.revokedAt === undefined && this.state.keys.activeOperators() <= 1) {
      return new Refusal('last_operator_key', 'refusing to revoke the last active operator key');
    }
    if (record.revokedAt === undefined) {
      this.state.keys.revoke(id);
      await this.state.save();
      this.state.audit.record({ event: 'key_revoked', keyId: record.id, keyLabel: record.label, outcome: 'ok' });
      this.logger.info({ keyId: record.id, by: operator.id }, 'API key revoked');
    }
    return { id, revoked: true };
  }

  /**
   * Burns every envelope the key uploaded that the relay still holds (revoked or not: revoking a
   * flooding key alone frees nothing until the TTL). Purging a key that holds nothing answers 0s.
   */
  purgeKey(operator: KeyRecord, id: string): Outcome<KeyPurgedBody> {
    const record = KEY_ID_PATTERN.test(id) ? this.state.keys.get(id) : undefined;
    if (!record) return notFound();
    const { envelopes, bytes } = this.state.store.purge(record.id);
    this.state.audit.record({ event: 'key_purged', keyId: record.id, keyLabel: record.label, size: bytes, count: envelopes, outcome: 'ok' });
    this.logger.info({ keyId: record.id, envelopes, bytes, by: operator.id }, 'API key purged: the envelopes it uploaded were burned');
    return { id: record.id, envelopes, bytes };
  }

  stats(uptimeSeconds: number, connections: StatsBody['connections']): StatsBody {
    const { store, log } = this.state;
    const q = store.stats();
    const keys = this.state.keys.all();
    const devices = this.state.devices.all();
    const { rss, heapUsed } = process.memoryUsage(); // one call: it measures RSS too
    return {
      uptimeSeconds,
      memory: {
        heldBytes: store.heldBytes, inFlightBytes: store.inFlightBytes, capBytes: store.capBytes, rssBytes: rss,
        heapUsedBytes: heapUsed, recipientQueues: q.recipientQueues, firmwareBytes: store.firmwareBytes,
      },
      envelopes: { pending: q.pending, leased: q.leased, delivered: store.delivered, expired: store.expired, purged: store.purged, waiting: q.waiting },
      queues: q.queues,
      log: {
        size: log.signedSize, origin: this.state.origin,
        checkpointLatencyMs: { last: Math.round(log.lastCheckpointMs), max: Math.round(log.maxCheckpointMs) },
      },
      keys: { active: keys.filter((k) => k.revokedAt === undefined).length, revoked: keys.filter((k) => k.revokedAt !== undefined).length },
      devices: { active: devices.filter((d) => d.revokedAt === undefined).length, revoked: devices.filter((d) => d.revokedAt !== undefined).length },
      byKey: this.byKey(),
      connections,
    };
  }

  private byKey(): Record<string, KeyUsageBody> {
    const ids = this.state.store.holders();
    for (const record of this.state.keys.all()) if (this.state.keys.inProgress(record) > 0) ids.add(record.id);
    const out: Record<string, KeyUsageBody> = {};
    for (const id of [...ids].sort()) {
      const record = this.state.keys.get(id);
      out[id] = { ...this.state.store.usage(id), uploads: record ? this.state.keys.inProgress(record) : 0 };
    }
    return out;
  }
}
