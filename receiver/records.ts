/**
 * The receiver's output: one JSON object per reading (a JSON line in the stdout and file sinks,
 * the MQTT payload, an element of the webhook batch). Documented in docs/RECEIVER.md.
 */
import type { Frame, ReadingValue } from '../protocol/frame.js';

export type ValueType = 'null' | 'boolean' | 'number' | 'bigint' | 'string';

export interface ReadingRecord {
  /** Sending device, did:ghostpipe:… */
  device: string;
  tap: string;
  point: string;
  /** JSON value; a bigint (64-bit register) is a decimal string so no precision is lost. NaN/±Infinity are strings too. */
  value: number | string | boolean | null;
  /** How to read `value`: "bigint" means a decimal string holding an exact integer. */
  type: ValueType;
  unit: string | null;
  quality: 'good' | 'uncertain' | 'bad';
  reason: string | null;
  /** ISO 8601 UTC with milliseconds, or null when the source gave none. */
  sourceTime: string | null;
  readTime: string;
  serverTime: string | null;
  stale: boolean;
  /** Envelope sequence number (u64, decimal string) and stream id: the anti-replay key with device. */
  seq: string;
  stream: number;
  /** Frame sequence number within the envelope's batch (u64, decimal string). */
  frame: string;
  /** Envelope id: lowercase hex SHA-256 of the envelope, also the transparency-log leaf data. */
  envelope: string;
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

function encodeValue(v: ReadingValue): { value: ReadingRecord['value']; type: ValueType } {
  if (v === null) return { value: null, type: 'null' };
  if (typeof v === 'bigint') return { value: v.toString(), type: 'bigint' };
  if (typeof v === 'number') return { value: Number.isFinite(v) ? v : String(v), type: 'number' };
  if (typeof v === 'boolean') return { value: v, type: 'boolean' };
  return { value: v, type: 'string' };
}

export function toRecords(frames: Frame[], meta: { device: string; seq: bigint; stream: number; envelope: string }): ReadingRecord[] {
  const out: ReadingRecord[] = [];
  for (const frame of frames) {
    for (const r of frame.readings) {
      out.push({
        device: meta.device,
        tap: r.tap,
        point: r.point,
        ...encodeValue(r.value),
        unit: r.unit ?? null,
        quality: r.quality,
        reason: r.reason ?? null,
        sourceTime: iso(r.sourceTime),
        readTime: new Date(r.readTime).toISOString(),
        serverTime: iso(r.serverTime),
        stale: r.stale === true,
        seq: meta.seq.toString(),
        stream: meta.stream,
        frame: frame.sequence.toString(),
        envelope: meta.envelope,
      });
    }
  }
  return out;
}
