/**
 * The RAM-only envelope store: ciphertext buffers, per-recipient queues, leases, memory
 * accounting and burning. Nothing here touches the disk.
 *
 * Memory: every held envelope counts its byte length plus ENTRY_OVERHEAD (bookkeeping) against
 * the cap; uploads in progress reserve their declared length first. Nothing undelivered is
 * evicted before its TTL. Burn = overwrite the buffer with zeros, then drop every reference.
 */
import { randomBytes } from 'node:crypto';
import { BufferPool } from './buffer-pool.js';

/**
 * Bookkeeping bytes charged per held envelope, so the cap counts real memory: bench/relay.ts
 * measured 417-534 bytes of RSS per held 4 KiB envelope beyond its own bytes (its log leaf and
 * index included) with --max-semi-space-size=1. Rounded up with room for the tombstone it
 * leaves behind.
 */
export const ENTRY_OVERHEAD = 640;

export type HeldState = 'pending' | 'leased';
export type FinalState = 'delivered' | 'expired';

/**
 * One held envelope, kept compact (100,000 of them must cost <= 512 bytes each beyond their
 * bytes): the id as 32 raw bytes in a one-byte string (not 64 hex digits), the payload as
 * (ArrayBuffer, offset, size) rather than a Buffer object, the arrival time relative to the
 * store's start (a small integer, no boxed double) and no stored expiry (arrival + TTL).
 */
export class Held {
  lease: Lease | undefined = undefined;
  constructor(
    /** The envelope hash as 32 latin1 characters: the store's map key. */
    readonly key: string,
    private memory: ArrayBufferLike,
    private offset: number,
    public size: number,
    readonly recipient: string,
    readonly uploaderKeyId: string,
    readonly leafIndex: number,
    /** ms since EPOCH. */
    readonly arrival: number,
  ) {}

  /** Envelope id: the SHA-256 of its bytes, 64 lowercase hex digits. */
  get id(): string {
    return Buffer.from(this.key, 'latin1').toString('hex');
  }

  /** A view of the held bytes (no copy); empty once burned. */
  get bytes(): Buffer {
    return Buffer.from(this.memory, this.offset, this.size);
  }

  /** Derived, not stored (one field less per envelope): burned ones have no bytes left. */
  get state(): HeldState | 'burned' {
    return this.size === 0 ? 'burned' : this.lease ? 'leased' : 'pending';
  }

  get receivedAt(): number {
    return EPOCH + this.arrival;
  }

  /** Drops the reference to the payload memory (after it was zeroed). */
  forget(): void {
    this.memory = EMPTY.buffer;
    this.offset = 0;
    this.size = 0;
  }
}

/** Arrival times are kept relative to this (small integers for 24 days, then still correct). */
const EPOCH = Date.now();
const idKey = (id: string): string => Buffer.from(id, 'hex').toString('latin1');

export interface Lease {
  id: string;
  held: Held;
  receiverKeyId: string;
  expiresAt: number;
}

/**
 * What a burned envelope leaves behind for status queries and duplicate refusal: one small
 * integer, (uploader number << 1) | (1 when expired), under its 32-byte key. At most
 * statusMemory of them are kept, oldest dropped first (~100 bytes each).
 */
const EXPIRED_BIT = 1;

type Waiter = () => void;

/**
 * One recipient's pending envelopes. Arrival order lives in a Set, so an envelope that is leased,
 * burned or expires leaves it at once (O(1)) instead of lingering as a stale array slot: a queue
 * nobody reads costs nothing once its envelopes expired (issue 11: 154-515 B of heap per expired
 * envelope stayed behind). Leases that come back go before everything else, newest first.
 */
class Queue {
  constructor(readonly recipient: string) {}
  private readonly waiting = new Set<Held>();
  private readonly returned: Held[] = [];
  leased = 0;
  waiters = new Set<Waiter>();

  get pending(): number {
    return this.waiting.size + this.returned.length;
  }
  /** Nothing held, leased or waited for: the store drops it. */
  get empty(): boolean {
    return this.pending === 0 && this.leased === 0 && this.waiters.size === 0;
  }
  push(held: Held): void {
    this.waiting.add(held);
  }
  pushFront(held: Held): void {
    this.returned.unshift(held);
  }
  /** Takes the oldest pending entry out of the queue. */
  shift(): Held | undefined {
    const held = this.returned.shift() ?? this.waiting.values().next().value;
    if (held !== undefined) this.waiting.delete(held);
    return held;
  }
  /** Takes a pending entry out (it burned or expired). */
  remove(held: Held): void {
    if (this.waiting.delete(held)) return;
    const i = this.returned.indexOf(held);
    if (i >= 0) this.returned.splice(i, 1);
  }
  list(limit: number): Held[] {
    const out: Held[] = [];
    for (const held of this.returned) if (out.length < limit) out.push(held);
    for (const held of this.waiting) {
      if (out.length >= limit) break;
      out.push(held);
    }
    return out;
  }
}

export interface StoreEvents {
  onExpired(held: Held): void;
  onLeaseExpired(lease: Lease): void;
}

export class EnvelopeStore {
  private readonly held = new Map<string, Held>();
  private readonly queues = new Map<string, Queue>();
  private readonly leases = new Map<string, Lease>();
  /** Recently timed-out leases, so their holder gets 410 rather than 404. */
  private readonly expiredLeases = new Map<string, { receiverKeyId: string; at: number }>();
  private readonly tombstones = new Map<string, number>();
  /** Uploader key ids by number, for tombstones. */
  private readonly uploaders: string[] = [];
  private readonly uploaderNumbers = new Map<string, number>();
  private readonly pool = new BufferPool();
  heldBytes = 0;
  inFlightBytes = 0;
  /** Bytes of firmware packages held (chunks and key wraps). */
  firmwareBytes = 0;
  delivered = 0;
  expired = 0;
  purged = 0;
  /** Per uploader key id: held bytes (as heldBytes) and reserved bytes; a key at 0 is removed. */
  private readonly heldByKey = new Map<string, number>();
  private readonly inFlightByKey = new Map<string, number>();
  /** Who reserved each buffer handed out by allocate(), until add() or discard(). */
  private readonly reservedBy = new Map<Buffer, string>();

  constructor(
    readonly capBytes: number,
    readonly maxInFlightBytes: number,
    private readonly ttlMs: number,
    private readonly leaseMs: number,
    private readonly statusMemory: number,
    private readonly events: StoreEvents,
  ) {}

  get count(): number {
    return this.held.size;
  }

  /**
   * Reserves room for an upload of `size` bytes by `keyId` and returns the buffer to receive it
   * into; undefined when memory is full. Give it back with add() or discard().
   */
  allocate(size: number, keyId = ''): Buffer | undefined {
    if (!this.canAllocate(size)) return undefined;
    this.inFlightBytes += size;
    this.inFlightByKey.set(keyId, (this.inFlightByKey.get(keyId) ?? 0) + size);
    const bytes = this.pool.allocate(size);
    this.reservedBy.set(bytes, keyId);
    return bytes;
  }

  /** What counts against the cap: held and in-flight envelopes, and firmware packages. */
  private get usedBytes(): number {
    return this.heldBytes + this.inFlightBytes + this.firmwareBytes;
  }

  /** Whether allocate(size) would succeed now. */
  canAllocate(size: number): boolean {
    return this.usedBytes + size + ENTRY_OVERHEAD <= this.capBytes && this.inFlightBytes + size <= this.maxInFlightBytes;
  }

  /**
   * Firmware packages (relay/firmware.ts) take their share of the cap like envelopes, and never
   * evict one: false when `size` more does not fit now.
   */
  holdFirmware(size: number): boolean {
    if (this.usedBytes + size > this.capBytes) return false;
    this.firmwareBytes += size;
    return true;
  }

  releaseFirmware(size: number): void {
    this.firmwareBytes -= size;
  }

  /** An upload that was refused after allocate(): zeroed and returned. */
  discard(bytes: Buffer): void {
    this.unreserve(bytes);
    this.pool.release(bytes);
  }

  /** What `keyId` holds now: its stored envelopes (as heldBytes counts them) and its reservations. */
  usage(keyId: string): { heldBytes: number; inFlightBytes: number } {
    return { heldBytes: this.heldByKey.get(keyId) ?? 0, inFlightBytes: this.inFlightByKey.get(keyId) ?? 0 };
  }

  /** Key ids holding something now. */
  holders(): Set<string> {
    return new Set([...this.heldByKey.keys(), ...this.inFlightByKey.keys()]);
  }

  /**
   * Burns every envelope `keyId` uploaded that is still held, leased ones included (their lease
   * ends; an ack then gets 404). An operator's remedy for a flooding key: revocation alone frees
   * nothing until the TTL. Tombstones say "expired" to status queries.
   */
  purge(keyId: string): { envelopes: number; bytes: number } {
    let envelopes = 0;
    const before = this.heldBytes;
    for (const held of [...this.held.values()]) {
      if (held.uploaderKeyId !== keyId) continue;
      this.evict(held);
      this.purged++;
      envelopes++;
    }
    return { envelopes, bytes: before - this.heldBytes };
  }

  private unreserve(bytes: Buffer): string {
    const keyId = this.reservedBy.get(bytes) ?? '';
    this.reservedBy.delete(bytes);
    this.inFlightBytes -= bytes.length;
    const left = (this.inFlightByKey.get(keyId) ?? 0) - bytes.length;
    if (left > 0) this.inFlightByKey.set(keyId, left);
    else this.inFlightByKey.delete(keyId);
    return keyId;
  }

  /** Held or remembered (delivered/expired) by this relay. */
  seen(id: string): boolean {
    const key = idKey(id);
    return this.held.has(key) || this.tombstones.has(key);
  }

  /** Adds an envelope whose `size` bytes were reserved. */
  add(entry: { id: string; bytes: Buffer; recipient: string; uploaderKeyId: string; leafIndex: number }, now = Date.now()): Held {
    this.unreserve(entry.bytes);
    const queue = this.queue(entry.recipient);
    // The queue's own key string: one copy per recipient, not one per envelope.
    const { buffer, byteOffset, length } = entry.bytes;
    const held = new Held(idKey(entry.id), buffer, byteOffset, length, queue.recipient, entry.uploaderKeyId, entry.leafIndex, now - EPOCH);
    this.held.set(held.key, held);
    this.heldBytes += length + ENTRY_OVERHEAD;
    this.heldByKey.set(entry.uploaderKeyId, (this.heldByKey.get(entry.uploaderKeyId) ?? 0) + length + ENTRY_OVERHEAD);
    queue.push(held);
    this.wake(queue);
    return held;
  }

  status(id: string, uploaderKeyId: string): HeldState | FinalState | 'unknown' {
    const key = idKey(id);
    const held = this.held.get(key);
    if (held) return held.uploaderKeyId === uploaderKeyId ? (held.lease ? 'leased' : 'pending') : 'unknown';
    const tomb = this.tombstones.get(key);
    if (tomb === undefined || this.uploaders[tomb >> 1] !== uploaderKeyId) return 'unknown';
    return tomb & EXPIRED_BIT ? 'expired' : 'delivered';
  }

  list(recipient: string, limit: number): Held[] {
    return this.queues.get(recipient)?.list(limit) ?? [];
  }

  /** Leases the oldest pending envelope of `recipient`. */
  lease(recipient: string, receiverKeyId: string, now = Date.now()): Lease | undefined {
    const queue = this.queues.get(recipient);
    const held = queue?.shift();
    if (!queue || !held) return undefined;
    const lease: Lease = { id: randomBytes(16).toString('base64url'), held, receiverKeyId, expiresAt: now + this.leaseMs };
    held.lease = lease;
    queue.leased++;
    this.leases.set(lease.id, lease);
    return lease;
  }

  /** The lease if it exists and belongs to this receiver key; 'expired' for its own timed-out lease. */
  findLease(leaseId: string, receiverKeyId: string): Lease | 'expired' | undefined {
    const lease = this.leases.get(leaseId);
    if (lease) return lease.receiverKeyId === receiverKeyId ? lease : undefined;
    const gone = this.expiredLeases.get(leaseId);
    return gone && gone.receiverKeyId === receiverKeyId ? 'expired' : undefined;
  }

  /** Acknowledged: burn. */
  ack(lease: Lease): void {
    this.leases.delete(lease.id);
    const queue = this.queue(lease.held.recipient);
    queue.leased--;
    this.burn(lease.held, 'delivered');
    this.delivered++;
    this.dropIfEmpty(queue);
  }

  /** Back to the head of its queue. */
  release(lease: Lease): void {
    this.leases.delete(lease.id);
    const held = lease.held;
    held.lease = undefined;
    const queue = this.queue(held.recipient);
    queue.leased--;
    queue.pushFront(held);
    this.wake(queue);
  }

  /** Waits until `recipient` may have something pending, or `ms` passes, or `signal` aborts. */
  waitFor(recipient: string, ms: number, signal: AbortSignal): Promise<void> {
    if ((this.queues.get(recipient)?.pending ?? 0) > 0 || ms <= 0 || signal.aborted) return Promise.resolve();
    const queue = this.queue(recipient);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        queue.waiters.delete(done);
        signal.removeEventListener('abort', done);
        this.dropIfEmpty(queue);
        resolve();
      };
      const timer = setTimeout(done, ms);
      queue.waiters.add(done);
      signal.addEventListener('abort', done);
    });
  }

  /** Lease timeouts and TTL expiry; called periodically. */
  sweep(now = Date.now()): void {
    for (const lease of this.leases.values()) {
      if (lease.expiresAt > now) continue;
      this.expiredLeases.set(lease.id, { receiverKeyId: lease.receiverKeyId, at: now });
      this.release(lease);
      this.events.onLeaseExpired(lease);
    }
    for (const [id, gone] of this.expiredLeases) {
      if (gone.at + 10 * 60_000 > now) break;
      this.expiredLeases.delete(id);
    }
    const sinceEpoch = now - EPOCH;
    // Insertion order is arrival order and the TTL is fixed, so expiry order too.
    for (const held of this.held.values()) {
      if (held.arrival + this.ttlMs > sinceEpoch) break;
      this.evict(held);
      this.expired++;
      this.events.onExpired(held);
    }
  }

  /** Burns everything (shutdown). */
  burnAll(): number {
    const count = this.held.size;
    for (const held of [...this.held.values()]) this.burn(held, 'expired');
    this.leases.clear();
    this.queues.clear();
    return count;
  }

  stats(): { pending: number; leased: number; waiting: number; recipientQueues: number; queues: Record<string, { pending: number; leased: number }> } {
    let pending = 0;
    let leased = 0;
    let waiting = 0;
    const queues: Record<string, { pending: number; leased: number }> = {};
    for (const [recipient, queue] of this.queues) {
      pending += queue.pending;
      leased += queue.leased;
      waiting += queue.waiters.size;
      if (queue.pending + queue.leased > 0) queues[recipient] = { pending: queue.pending, leased: queue.leased };
    }
    return { pending, leased, waiting, recipientQueues: this.queues.size, queues };
  }

  /** Takes a held envelope out of its queue or lease (TTL or purge) and burns it as expired. */
  private evict(held: Held): void {
    const queue = this.queue(held.recipient);
    if (held.lease) {
      this.leases.delete(held.lease.id);
      queue.leased--;
    } else {
      queue.remove(held);
    }
    this.burn(held, 'expired');
    this.dropIfEmpty(queue);
  }

  private burn(held: Held, state: FinalState): void {
    this.heldBytes -= held.size + ENTRY_OVERHEAD;
    const left = (this.heldByKey.get(held.uploaderKeyId) ?? 0) - held.size - ENTRY_OVERHEAD;
    if (left > 0) this.heldByKey.set(held.uploaderKeyId, left);
    else this.heldByKey.delete(held.uploaderKeyId);
    this.pool.release(held.bytes); // zeroes it
    held.forget();
    held.lease = undefined;
    this.held.delete(held.key);
    this.tombstones.set(held.key, (this.uploaderNumber(held.uploaderKeyId) << 1) | (state === 'expired' ? EXPIRED_BIT : 0));
    if (this.tombstones.size > this.statusMemory) {
      const oldest = this.tombstones.keys().next();
      if (!oldest.done) this.tombstones.delete(oldest.value);
    }
  }

  private uploaderNumber(keyId: string): number {
    let n = this.uploaderNumbers.get(keyId);
    if (n === undefined) {
      n = this.uploaders.push(keyId) - 1;
      this.uploaderNumbers.set(keyId, n);
    }
    return n;
  }

  private queue(recipient: string): Queue {
    let queue = this.queues.get(recipient);
    if (!queue) {
      queue = new Queue(recipient);
      this.queues.set(recipient, queue);
    }
    return queue;
  }

  /** A queue with nothing held, leased or waited for is forgotten (it is made again on demand). */
  private dropIfEmpty(queue: Queue): void {
    if (queue.empty && this.queues.get(queue.recipient) === queue) this.queues.delete(queue.recipient);
  }

  /** How many recipient queues exist (for tests and stats: empty ones are dropped). */
  get queueCount(): number {
    return this.queues.size;
  }

  private wake(queue: Queue): void {
    for (const waiter of [...queue.waiters]) waiter();
  }
}

const EMPTY = Buffer.alloc(0);
