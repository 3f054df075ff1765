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
 * measured 840 (Node 20) to 1,210 (Node 24) bytes of RSS per held 4 KiB envelope beyond its own
 * bytes, its log leaf and index included. Rounded up.
 */
export const ENTRY_OVERHEAD = 1280;

export type HeldState = 'pending' | 'leased';
export type FinalState = 'delivered' | 'expired';

export interface Held {
  id: string;
  bytes: Buffer;
  recipient: string;
  uploaderKeyId: string;
  leafIndex: number;
  receivedAt: number;
  expiresAt: number;
  state: HeldState | FinalState;
  lease: Lease | undefined;
}

/** A class, so every held envelope has one fixed, compact shape. */
class HeldEnvelope implements Held {
  state: HeldState | FinalState = 'pending';
  lease: Lease | undefined = undefined;
  constructor(
    readonly id: string,
    public bytes: Buffer,
    readonly recipient: string,
    readonly uploaderKeyId: string,
    readonly leafIndex: number,
    readonly receivedAt: number,
    readonly expiresAt: number,
  ) {}
}

export interface Lease {
  id: string;
  held: Held;
  receiverKeyId: string;
  expiresAt: number;
}

interface Tombstone {
  state: FinalState;
  uploaderKeyId: string;
  at: number;
}

type Waiter = () => void;

class Queue {
  constructor(readonly recipient: string) {}
  items: Held[] = [];
  head = 0;
  pending = 0;
  leased = 0;
  waiters = new Set<Waiter>();

  push(held: Held): void {
    this.items.push(held);
  }
  pushFront(held: Held): void {
    if (this.head > 0) this.items[--this.head] = held;
    else this.items.unshift(held);
  }
  /** Oldest entry still pending; drops stale entries (leased elsewhere, burned) on the way. */
  shift(): Held | undefined {
    while (this.head < this.items.length) {
      const held = this.items[this.head]!;
      this.items[this.head++] = undefined as unknown as Held;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head);
        this.head = 0;
      }
      if (held.state === 'pending') return held;
    }
    return undefined;
  }
  list(limit: number): Held[] {
    const out: Held[] = [];
    for (let i = this.head; i < this.items.length && out.length < limit; i++) {
      const held = this.items[i]!;
      if (held.state === 'pending') out.push(held);
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
  private readonly tombstones = new Map<string, Tombstone>();
  private readonly pool = new BufferPool();
  heldBytes = 0;
  inFlightBytes = 0;
  delivered = 0;
  expired = 0;

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
   * Reserves room for an upload of `size` bytes and returns the buffer to receive it into;
   * undefined when memory is full. Give it back with add() or discard().
   */
  allocate(size: number): Buffer | undefined {
    if (this.heldBytes + this.inFlightBytes + size + ENTRY_OVERHEAD > this.capBytes) return undefined;
    if (this.inFlightBytes + size > this.maxInFlightBytes) return undefined;
    this.inFlightBytes += size;
    return this.pool.allocate(size);
  }

  /** An upload that was refused after allocate(): zeroed and returned. */
  discard(bytes: Buffer): void {
    this.inFlightBytes -= bytes.length;
    this.pool.release(bytes);
  }

  /** Held or remembered (delivered/expired) by this relay. */
  seen(id: string): boolean {
    return this.held.has(id) || this.tombstones.has(id);
  }

  /** Adds an envelope whose `size` bytes were reserved. */
  add(entry: { id: string; bytes: Buffer; recipient: string; uploaderKeyId: string; leafIndex: number }, now = Date.now()): Held {
    this.inFlightBytes -= entry.bytes.length;
    const queue = this.queue(entry.recipient);
    // The queue's own key string: one copy per recipient, not one per envelope.
    const held: Held = new HeldEnvelope(entry.id, entry.bytes, queue.recipient, entry.uploaderKeyId, entry.leafIndex, now, now + this.ttlMs);
    this.held.set(held.id, held);
    this.heldBytes += held.bytes.length + ENTRY_OVERHEAD;
    queue.push(held);
    queue.pending++;
    this.wake(queue);
    return held;
  }

  status(id: string, uploaderKeyId: string): HeldState | FinalState | 'unknown' {
    const held = this.held.get(id);
    if (held) return held.uploaderKeyId === uploaderKeyId ? held.state : 'unknown';
    const tomb = this.tombstones.get(id);
    return tomb && tomb.uploaderKeyId === uploaderKeyId ? tomb.state : 'unknown';
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
    held.state = 'leased';
    held.lease = lease;
    queue.pending--;
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
  }

  /** Back to the head of its queue. */
  release(lease: Lease): void {
    this.leases.delete(lease.id);
    const held = lease.held;
    held.lease = undefined;
    held.state = 'pending';
    const queue = this.queue(held.recipient);
    queue.leased--;
    queue.pending++;
    queue.pushFront(held);
    this.wake(queue);
  }

  /** Waits until `recipient` may have something pending, or `ms` passes, or `signal` aborts. */
  waitFor(recipient: string, ms: number, signal: AbortSignal): Promise<void> {
    const queue = this.queue(recipient);
    if (queue.pending > 0 || ms <= 0 || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        queue.waiters.delete(done);
        signal.removeEventListener('abort', done);
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
    for (const [id, tomb] of this.tombstones) {
      if (tomb.at + this.ttlMs > now) break;
      this.tombstones.delete(id);
    }
    // Insertion order is arrival order and the TTL is fixed, so expiry order too.
    for (const held of this.held.values()) {
      if (held.expiresAt > now) break;
      if (held.lease) {
        this.leases.delete(held.lease.id);
        this.queue(held.recipient).leased--;
      } else {
        this.queue(held.recipient).pending--;
      }
      this.burn(held, 'expired');
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

  stats(): { pending: number; leased: number; queues: Record<string, { pending: number; leased: number }> } {
    let pending = 0;
    let leased = 0;
    const queues: Record<string, { pending: number; leased: number }> = {};
    for (const [recipient, queue] of this.queues) {
      pending += queue.pending;
      leased += queue.leased;
      if (queue.pending + queue.leased > 0) queues[recipient] = { pending: queue.pending, leased: queue.leased };
    }
    return { pending, leased, queues };
  }

  private burn(held: Held, state: FinalState): void {
    this.heldBytes -= held.bytes.length + ENTRY_OVERHEAD;
    this.pool.release(held.bytes); // zeroes it
    held.bytes = EMPTY;
    held.lease = undefined;
    held.state = state;
    this.held.delete(held.id);
    this.tombstones.set(held.id, { state, uploaderKeyId: held.uploaderKeyId, at: Date.now() });
    if (this.tombstones.size > this.statusMemory) {
      const oldest = this.tombstones.keys().next();
      if (!oldest.done) this.tombstones.delete(oldest.value);
    }
  }

  private queue(recipient: string): Queue {
    let queue = this.queues.get(recipient);
    if (!queue) {
      queue = new Queue(recipient);
      this.queues.set(recipient, queue);
    }
    return queue;
  }

  private wake(queue: Queue): void {
    for (const waiter of [...queue.waiters]) waiter();
  }
}

const EMPTY = Buffer.alloc(0);
