/**
 * The one owner of tap health: it follows every tap's status, decides what is a transition and
 * writes the only log lines about it, `tap up` (info, with the peer and how the tap talks to it)
 * and `tap down` (warn, with the peer and the reason; never values). Drivers only report
 * (Tap.status(), Tap.onStatusChange()). The rules:
 *
 * - A transition is a change between up and down: one line each, not one per interval. A new
 *   reason while a tap stays down is not a transition (a dead peer gives several in turn: connect
 *   refused, not connected, timeout); it goes to debug (`tap still down`).
 * - A tap's first status is logged whatever it is (a tap that never comes up says so once),
 *   except "connecting": a freshly started tap is not down yet. Only collections judge it: the
 *   first one that finds the tap connecting marks it starting, the next one that still does logs
 *   it down (a driver's word meanwhile, e.g. Modbus "not connected: …: connecting", is not).
 * - A driver tells when its status changed, so a drop is logged when it happens, not at the next
 *   interval. The collection adds what only the core sees: a tap that missed the deadline
 *   ('late') or threw ('failed') is down with that reason; a tap that answered ('fresh') is as
 *   its status says.
 * - forget() (a SIGHUP reload) drops every tap: the new taps' first status is logged again, and
 *   removed taps are never heard of again.
 */
import type { Logger } from '../common/log.js';
import type { TapOutcome } from './collect.js';
import type { Tap, TapState } from './tap.js';

/** The drivers' reason while a tap's first connection attempt is still under way. */
const CONNECTING = /(^|: )connecting$/;

interface Watched {
  readonly tap: Tap;
  /** Last state logged; 'starting' while the first status was "connecting"; undefined before the first. */
  state: TapState | 'starting' | undefined;
  /** The reason of the last down status seen (for the debug line when it changes). */
  reason: string | undefined;
  unsubscribe: () => void;
}

export class TapHealth {
  private readonly watched = new Map<string, Watched>();

  constructor(private readonly logger: Logger) {}

  /** Follows `tap` from now on (before its start(), so its first status change is seen); replaces a tap of the same name. */
  watch(tap: Tap): void {
    this.watched.get(tap.name)?.unsubscribe();
    const entry: Watched = { tap, state: undefined, reason: undefined, unsubscribe: () => undefined };
    this.watched.set(tap.name, entry);
    entry.unsubscribe = tap.onStatusChange(() => this.judge(entry, tap.status(), false));
  }

  /** One interval's collection outcomes (agent/collect.ts); outcomes of taps not watched are ignored. */
  collected(outcomes: readonly TapOutcome[]): void {
    for (const o of outcomes) {
      const entry = this.watched.get(o.tap);
      if (entry === undefined) continue;
      if (o.outcome === 'late' || o.outcome === 'failed') this.judge(entry, { state: 'down', reason: o.reason ?? o.outcome }, true);
      else if (o.outcome === 'fresh') this.judge(entry, entry.tap.status(), true);
    }
  }

  /** Stops following every tap (a reload replaces them all): the next watched taps start with no history. */
  forget(): void {
    for (const entry of this.watched.values()) entry.unsubscribe();
    this.watched.clear();
  }

  private judge(entry: Watched, status: { state: TapState; reason?: string }, byCollection: boolean): void {
    const { tap } = entry;
    const reason = status.state === 'down' ? (status.reason ?? 'down') : undefined;
    if ((entry.state === undefined || entry.state === 'starting') && reason !== undefined && CONNECTING.test(reason)) {
      if (!byCollection) return;
      if (entry.state === undefined) {
        entry.state = 'starting';
        return;
      }
    }
    if (entry.state === status.state) {
      if (reason !== entry.reason) this.logger.debug({ tap: tap.name, reason }, 'tap still down');
      entry.reason = reason;
      return;
    }
    entry.state = status.state;
    entry.reason = reason;
    const { peer, details } = tap.status();
    if (reason === undefined) this.logger.info({ tap: tap.name, kind: tap.kind, peer, ...details }, 'tap up');
    else this.logger.warn({ tap: tap.name, kind: tap.kind, peer, reason }, 'tap down');
  }
}
