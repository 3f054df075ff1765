/**
 * A driver under test, followed as the agent follows it: the one owner of tap health
 * (agent/tap-health.ts) watches the tap and writes its `tap up`/`tap down` lines into the same
 * log as the driver. `lines` holds every log line, `transitions` those two as { tap, state, reason }.
 */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../common/log.js';
import { TapHealth } from '../../agent/tap-health.js';
import type { Tap, TapState } from '../../agent/tap.js';

export interface Transition {
  tap: string;
  state: TapState;
  reason?: string;
}

export interface FollowedTap<T extends Tap> {
  tap: T;
  lines: Record<string, unknown>[];
  /** The log as written (JSON lines). */
  text: () => string;
  transitions: Transition[];
}

export function followedTap<T extends Tap>(create: (logger: Logger) => T, level: 'info' | 'debug' = 'info'): FollowedTap<T> {
  const lines: Record<string, unknown>[] = [];
  const transitions: Transition[] = [];
  let text = '';
  const sink = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      for (const line of String(chunk).split('\n')) {
        if (!line) continue;
        const l = JSON.parse(line) as Record<string, unknown>;
        lines.push(l);
        if (l['msg'] === 'tap up') transitions.push({ tap: String(l['tap']), state: 'up' });
        if (l['msg'] === 'tap down') transitions.push({ tap: String(l['tap']), state: 'down', reason: String(l['reason']) });
      }
      done();
    },
  });
  const logger = createLogger('test', level, sink);
  const tap = create(logger);
  new TapHealth(logger).watch(tap);
  return { tap, lines, text: () => text, transitions };
}
