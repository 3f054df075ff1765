/**
 * Anti-replay sliding window per (sender, stream), as in IPsec (RFC 4303 §3.4.3) but keeping a
 * short fingerprint of the envelope id for every seen sequence in the window, so an exact
 * re-delivery (same seq, same envelope) is told apart from a replay (same seq, other envelope).
 *
 *   seq > highest                 -> new (the window slides forward)
 *   seq <= highest - W            -> replay: too old to judge, refused
 *   seq seen, same fingerprint    -> duplicate: dropped silently
 *   seq seen, other fingerprint   -> replay: refused
 *   seq in window, not seen       -> new (late but in order-tolerance)
 *
 * Pure: no I/O. ReplayStore persists it.
 */
import { createHash } from 'node:crypto';

export type ReplayVerdict = 'new' | 'duplicate' | 'replay_old' | 'replay_conflict';

interface StreamWindow {
  highest: bigint;
  /** seq -> fingerprint (hex), only for seqs in (highest - W, highest]. */
  seen: Map<bigint, string>;
}

/** 8 bytes of SHA-256 over the envelope id: collisions between two envelopes of one seq are negligible (2^-64). */
export function fingerprint(envelopeId: string): string {
  return createHash('sha256').update(envelopeId).digest('hex').slice(0, 16);
}

export const streamKey = (senderKeyIdHex: string, streamId: number): string => `${senderKeyIdHex}/${streamId}`;

export class ReplayWindow {
  private readonly streams = new Map<string, StreamWindow>();

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError('replay window size must be a positive integer');
  }

  check(key: string, seq: bigint, fp: string): ReplayVerdict {
    const w = this.streams.get(key);
    if (w === undefined || seq > w.highest) return 'new';
    if (seq <= w.highest - BigInt(this.size)) return 'replay_old';
    const seen = w.seen.get(seq);
    if (seen === undefined) return 'new';
    return seen === fp ? 'duplicate' : 'replay_conflict';
  }

  /** Records a delivered envelope. Idempotent, so replaying a journal twice is harmless. */
  mark(key: string, seq: bigint, fp: string): void {
    let w = this.streams.get(key);
    if (w === undefined) {
      w = { highest: seq, seen: new Map() };
      this.streams.set(key, w);
    }
    const floor = () => w!.highest - BigInt(this.size);
    if (seq <= floor()) return;
    if (seq > w.highest) {
      w.highest = seq;
      const lowest = floor();
      for (const s of w.seen.keys()) if (s <= lowest) w.seen.delete(s);
    }
    if (!w.seen.has(seq)) w.seen.set(seq, fp);
  }

  highest(key: string): bigint | undefined {
    return this.streams.get(key)?.highest;
  }

  toJSON(): { version: 1; window: number; streams: Record<string, { highest: string; seen: [string, string][] }> } {
    const streams: Record<string, { highest: string; seen: [string, string][] }> = {};
    for (const [key, w] of this.streams) {
      streams[key] = { highest: w.highest.toString(), seen: [...w.seen].map(([s, f]) => [s.toString(), f]) };
    }
    return { version: 1, window: this.size, streams };
  }

  /** Restores a snapshot; a different configured window size keeps what still fits. Throws on malformed state. */
  static fromJSON(value: unknown, size: number): ReplayWindow {
    const out = new ReplayWindow(size);
    const v = value as { version?: unknown; streams?: unknown };
    if (typeof v !== 'object' || v === null || v.version !== 1 || typeof v.streams !== 'object' || v.streams === null) {
      throw new Error('replay state: expected {"version":1,"streams":{…}}');
    }
    for (const [key, raw] of Object.entries(v.streams as Record<string, unknown>)) {
      const r = raw as { highest?: unknown; seen?: unknown };
      if (typeof r?.highest !== 'string' || !/^\d{1,20}$/.test(r.highest) || !Array.isArray(r.seen)) throw new Error(`replay state: stream ${key} is malformed`);
      out.mark(key, BigInt(r.highest), '');
      const w = out.streams.get(key)!;
      w.seen.clear();
      for (const entry of r.seen as unknown[]) {
        if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !/^\d{1,20}$/.test(entry[0]) || typeof entry[1] !== 'string') {
          throw new Error(`replay state: stream ${key} has a malformed entry`);
        }
        out.mark(key, BigInt(entry[0]), entry[1]);
      }
    }
    return out;
  }
}
