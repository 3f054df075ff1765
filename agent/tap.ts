/**
 * The contract between the agent core and its protocol drivers (agent/modbus, agent/opcua,
 * agent/mqtt). A driver owns its connection, timeouts, retries and backoff; the core only
 * asks it, once per interval, for the readings it has by a deadline.
 */

/** One reading type for the whole conduit: the frame carries exactly what a tap returns. */
import type { Reading } from '../protocol/frame.js';
export type { Quality, Reading, ReadingValue } from '../protocol/frame.js';

export type TapState = 'up' | 'down';

export interface TapStatus {
  state: TapState;
  /** Human reason for the current state, e.g. "connect ECONNREFUSED 127.0.0.1:5020". */
  reason?: string;
  /** Number of protocol requests sent since start (Modbus requests, OPC-UA reads). */
  requests: number;
  /** The peer the tap talks to, named in the core's `tap up`/`tap down` lines: a Modbus link ("tcp 10.0.0.5:502"), an MQTT broker URL (no credentials), an OPC-UA endpoint. */
  peer: string;
  /** How it talks to the peer, logged with `tap up` (OPC-UA security mode and policy, MQTT client id). Never values or secrets. */
  details?: Readonly<Record<string, string>>;
}

export interface Tap {
  readonly name: string;
  readonly kind: 'modbus' | 'opcua' | 'mqtt';
  /** Names of every configured point, so the core can mark them bad if the tap misses the deadline. */
  readonly points: readonly string[];
  /**
   * Optional: load the protocol library (node-opcua-client takes seconds of CPU to import).
   * The core awaits every tap's prepare() before starting any tap, so one tap's import never
   * blocks the event loop while another tap's connect or request timer is running.
   */
  prepare?(): Promise<void>;
  /** Begin connecting in the background; resolves quickly, never rejects because a peer is down. */
  start(): Promise<void>;
  /**
   * Readings for every point by `deadline` (ms since epoch). Must resolve by the deadline even
   * when the peer is dead: points that could not be read are returned with quality 'bad' and a reason.
   */
  collect(deadline: number): Promise<Reading[]>;
  status(): TapStatus;
  /**
   * Calls `listener` at once whenever status() changed state or reason (not after stop()), so the
   * core logs a drop when it happens, not at the next interval. Drivers only report: the core
   * (agent/tap-health.ts) decides what is a transition and writes the log lines. Returns a
   * function that removes the listener.
   */
  onStatusChange(listener: () => void): () => void;
  /** Close connections and timers; idempotent. */
  stop(): Promise<void>;
}

/** A driver's half of Tap.onStatusChange: the listeners to call when its status changed. */
export class StatusListeners {
  private readonly listeners = new Set<() => void>();

  add(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** prepare() every tap (heavy imports first, see Tap.prepare), then start them all. */
export async function startTaps(taps: readonly Tap[], onStartError: (tap: Tap, err: Error) => void): Promise<void> {
  await Promise.all(taps.map((tap) => tap.prepare?.().catch((err: Error) => onStartError(tap, err))));
  await Promise.all(taps.map((tap) => tap.start().catch((err: Error) => onStartError(tap, err))));
}

/** Readings for every point of a tap that failed as a whole. */
export function badReadings(tap: string, points: readonly string[], reason: string, now = Date.now()): Reading[] {
  return points.map((point) => ({ tap, point, value: null, quality: 'bad' as const, reason, readTime: now }));
}
