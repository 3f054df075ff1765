/**
 * Exponential backoff with proportional jitter (±20 % of the delay by default), never above maxMs.
 * Every reconnecting driver uses it so a plant full of gateways does not hammer a recovering
 * server in lockstep.
 */
export interface BackoffOptions {
  /** First delay, ms. */
  initialMs?: number;
  /** Upper bound for any delay, ms. */
  maxMs?: number;
  factor?: number;
  /** Fraction of the delay randomised, 0..1 (0.2 = ±20 %). */
  jitter?: number;
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 0.2;
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt; grows with each call until reset(). */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt++;
    const spread = base * this.jitter;
    // Clamped after jitter: maxMs is a promise to the operator (reconnect.max), not a midpoint.
    return Math.min(this.maxMs, Math.max(0, Math.round(base - spread + this.random() * 2 * spread)));
  }

  /** Attempts made since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
