/**
 * Outbound envelopes (docs/API.md "Outbound" and the status batch): a receiver key sees only its
 * recipients' queues; listing and leasing wait (long-poll) until something arrives or the wait
 * ends; ack burns, release puts back; a device learns the fate of what it uploaded, also with the
 * keys it had before a rotation. The audit records of leases, acks and releases are written here.
 */
import { ENVELOPE_ID_PATTERN, LEASE_ID_PATTERN, RECIPIENT_ID_PATTERN, type EnvelopeStatus, type InboxBody, type StatusBody } from '../protocol/api/index.js';
import type { KeyRecord } from './api-keys.js';
import { Refusal, keyRevoked, notFound, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';
import type { HeldState, Lease } from './store.js';

/** Envelopes up to this size come from the slab pool (relay/buffer-pool.ts). */
const COPY_ON_SEND_BYTES = 256 * 1024;

/** How long a list or lease may wait for something to arrive. */
export interface Wait {
  waitMs: number;
  /** Ends the wait at once (the client went away, or the relay is stopping). */
  signal: AbortSignal;
}

export class Delivery {
  constructor(private readonly state: RelayState) {}

  /** A recipient id from the path: only one listed on the receiver key exists for it. */
  recipient(key: KeyRecord, segment: string): Outcome<string> {
    if (!RECIPIENT_ID_PATTERN.test(segment) || !key.recipients?.includes(segment)) return notFound();
    return segment;
  }

  async inbox(key: KeyRecord, recipient: string, limit: number, wait: Wait): Promise<Outcome<InboxBody>> {
    const listed = () => {
      if (key.revokedAt !== undefined) return undefined;
      const held = this.state.store.list(recipient, limit);
      return held.length > 0 ? held : undefined;
    };
    const items = (await this.untilArrival(recipient, wait, listed)) ?? [];
    if (key.revokedAt !== undefined) return keyRevoked();
    // Listed envelopes are pending (a leased one is not listed), never burned.
    return { envelopes: items.map((h) => ({ id: h.id, size: h.size, leafIndex: h.leafIndex, receivedAt: new Date(h.receivedAt).toISOString(), state: h.state as HeldState })) };
  }

  /**
   * The oldest pending envelope of `recipient`, leased to `key`; undefined when none came in time.
   * Never leased to a key revoked while it waited: that wait ends in key_revoked.
   */
  async lease(key: KeyRecord, recipient: string, wait: Wait): Promise<Outcome<Lease | undefined>> {
    const lease = await this.untilArrival(recipient, wait, () => (key.revokedAt === undefined ? this.state.store.lease(recipient, key.id) : undefined));
    return lease === undefined && key.revokedAt !== undefined ? keyRevoked() : lease;
  }

  /** The long-poll of inbox and lease: `attempt()` now, and again whenever something arrives for `recipient`, until it gives a value or the wait ends. */
  private async untilArrival<T>(recipient: string, { waitMs, signal }: Wait, attempt: () => T | undefined): Promise<T | undefined> {
    const deadline = Date.now() + waitMs;
    let value = attempt();
    while (value === undefined && Date.now() < deadline && !signal.aborted) {
      await this.state.store.waitFor(recipient, deadline - Date.now(), signal);
      value = attempt();
    }
    return value;
  }

  /** The lease is being sent: audited, and the bytes to send. */
  handOut(key: KeyRecord, lease: Lease): Uint8Array {
    const held = lease.held;
    this.state.audit.record({ event: 'lease', keyId: key.id, keyLabel: key.label, envelopeHash: held.id, size: held.size, outcome: 'ok' });
    // Small envelopes live in reused slab slots: send a private copy, so a slow reader whose
    // lease expires can never be handed a slot that was burned and reused meanwhile.
    const bytes = held.bytes;
    return bytes.length <= COPY_ON_SEND_BYTES ? Buffer.from(bytes) : bytes;
  }

  /** The receiver left before the lease was sent: the envelope goes back to the queue. */
  giveBack(lease: Lease): void {
    this.state.store.release(lease);
  }

  /** The receiver vanished before it got every byte: give the envelope back at once, if the lease is still this one. */
  abandoned(key: KeyRecord, lease: Lease): void {
    if (this.state.store.findLease(lease.id, key.id) === lease) this.state.store.release(lease);
  }

  /** Ack (burn) or release (back to the queue) a lease of this key. */
  finish(key: KeyRecord, leaseId: string, action: 'ack' | 'release'): Outcome<void> {
    const store = this.state.store;
    const lease = LEASE_ID_PATTERN.test(leaseId) ? store.findLease(leaseId, key.id) : undefined;
    if (lease === undefined) return notFound();
    if (lease === 'expired') return new Refusal('lease_expired', 'the lease timed out; the envelope went back to the queue');
    const { id, size } = lease.held;
    if (action === 'ack') store.ack(lease);
    else store.release(lease);
    this.state.audit.record({ event: action, keyId: key.id, keyLabel: key.label, envelopeHash: id, size, outcome: 'ok' });
  }

  /** What became of envelopes this device uploaded (ids already checked to be 1..1000 short strings). */
  statuses(key: KeyRecord, ids: readonly string[]): Outcome<StatusBody> {
    // A key bound to no device uploaded nothing; "unknown" would tell a freshly rotated agent to re-send everything.
    if (key.did === undefined) return new Refusal('device_not_enrolled', 'this key is not bound to an enrolled device; register first');
    // After a key rotation the device still learns the fate of what it uploaded with its former keys.
    const former = this.state.devices.get(key.did)?.formerApiKeyIds ?? [];
    const statusOf = (id: string): EnvelopeStatus => {
      let status: EnvelopeStatus = this.state.store.status(id, key.id);
      for (let i = former.length - 1; status === 'unknown' && i >= 0; i--) status = this.state.store.status(id, former[i]!);
      return status;
    };
    const statuses: Record<string, EnvelopeStatus> = Object.create(null) as Record<string, EnvelopeStatus>;
    for (const id of ids) statuses[id] = ENVELOPE_ID_PATTERN.test(id) ? statusOf(id) : 'unknown';
    return { statuses };
  }
}
