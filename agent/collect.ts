/**
 * One interval's collection: ask every due tap for its readings by the deadline, in parallel,
 * so a slow or dead tap never delays the others. Every configured point appears in the result:
 * a tap that misses the deadline yields its points bad ("deadline exceeded"), a point the tap
 * forgot yields bad ("no reading"), and a tap on a longer interval repeats its last readings,
 * marked stale once they are older than its own interval. Gaps are data.
 */
import { badReadings, type Reading, type Tap } from './tap.js';

export interface ScheduledTap {
  tap: Tap;
  /** The tap's own interval, ms (>= the agent interval). */
  intervalMs: number;
  /** When the tap was last asked (ms since epoch); undefined before the first collection. */
  lastAsked?: number;
  /** Its readings from then. */
  last?: Reading[];
}

export interface TapOutcome {
  tap: string;
  /** 'fresh' (asked this interval and answered), 'late' (missed the deadline), 'cached' (not due), 'failed' (threw). */
  outcome: 'fresh' | 'late' | 'cached' | 'failed';
  latencyMs: number;
  reason?: string;
}

/** Small slack so an interval boundary computed from timers does not skip a due tap. */
const DUE_SLACK_MS = 50;

/** A tap is due when its own interval has passed since it was last asked. */
export function isDue(s: ScheduledTap, now: number): boolean {
  return s.lastAsked === undefined || now - s.lastAsked + DUE_SLACK_MS >= s.intervalMs;
}

function complete(tap: Tap, readings: Reading[], now: number): Reading[] {
  const byPoint = new Map<string, Reading>();
  for (const r of readings) if (r.tap === tap.name && tap.points.includes(r.point) && !byPoint.has(r.point)) byPoint.set(r.point, r);
  return tap.points.map((point) => byPoint.get(point) ?? { tap: tap.name, point, value: null, quality: 'bad' as const, reason: 'no reading returned by the tap', readTime: now });
}

function cached(s: ScheduledTap, now: number): Reading[] {
  if (s.last === undefined) return badReadings(s.tap.name, s.tap.points, 'not collected yet', now);
  // A repeated reading older than the tap's own interval is flagged, never passed off as fresh.
  return s.last.map((r) => (now - r.readTime > s.intervalMs && r.stale !== true ? { ...r, stale: true } : r));
}

/**
 * Collects from every tap; resolves at the latest at `deadline` (+ the time to build results).
 * Readings come back in config order: taps, then points.
 */
export async function collectInterval(taps: readonly ScheduledTap[], start: number, deadline: number, now: () => number = Date.now): Promise<{ readings: Reading[]; outcomes: TapOutcome[] }> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), Math.max(0, deadline - now()));
  });
  try {
    const results = await Promise.all(
      taps.map(async (s): Promise<{ readings: Reading[]; outcome: TapOutcome }> => {
        if (!isDue(s, start)) return { readings: cached(s, now()), outcome: { tap: s.tap.name, outcome: 'cached', latencyMs: 0 } };
        s.lastAsked = start;
        const asked = now();
        let answer: Reading[] | 'late';
        try {
          answer = await Promise.race([s.tap.collect(deadline), expired]);
        } catch (err) {
          const reason = `collect failed: ${(err as Error).message}`;
          s.last = badReadings(s.tap.name, s.tap.points, reason, now());
          return { readings: s.last, outcome: { tap: s.tap.name, outcome: 'failed', latencyMs: now() - asked, reason } };
        }
        if (answer === 'late') {
          s.last = badReadings(s.tap.name, s.tap.points, 'deadline exceeded', now());
          return { readings: s.last, outcome: { tap: s.tap.name, outcome: 'late', latencyMs: now() - asked, reason: 'deadline exceeded' } };
        }
        s.last = complete(s.tap, answer, now());
        return { readings: s.last, outcome: { tap: s.tap.name, outcome: 'fresh', latencyMs: now() - asked } };
      }),
    );
    return { readings: results.flatMap((r) => r.readings), outcomes: results.map((r) => r.outcome) };
  } finally {
    clearTimeout(timer);
  }
}
