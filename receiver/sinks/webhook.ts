/**
 * HTTP POST of one JSON batch per envelope: {"readings":[…]} (Content-Type application/json).
 * 2xx = accepted. Anything else, a timeout or a network error is retried with exponential
 * backoff and jitter up to `retries` times; then write() fails and the envelope is not acknowledged.
 */
import type { ReadingRecord } from '../records.js';
import { Backoff, sleep } from '../../common/backoff.js';
import { SinkError, type Sink } from './sink.js';

export interface WebhookSinkOptions {
  url: string;
  timeoutMs: number;
  retries: number;
  headers: Record<string, string>;
  backoff?: { initialMs: number; maxMs: number };
  fetch?: typeof fetch;
}

export class WebhookSink implements Sink {
  readonly name: string;
  private readonly fetchImpl: typeof fetch;
  private readonly stop = new AbortController();

  constructor(private readonly o: WebhookSinkOptions) {
    const u = new URL(o.url);
    this.name = `webhook ${u.protocol}//${u.host}${u.pathname}`; // no query (may hold a token) and no userinfo
    this.fetchImpl = o.fetch ?? fetch;
  }

  async open(): Promise<void> {}

  async write(records: ReadingRecord[]): Promise<void> {
    const body = JSON.stringify({ readings: records });
    const backoff = new Backoff({ initialMs: this.o.backoff?.initialMs ?? 500, maxMs: this.o.backoff?.maxMs ?? 10_000 });
    let last = '';
    for (let attempt = 0; attempt <= this.o.retries; attempt++) {
      if (attempt > 0) await sleep(backoff.next(), this.stop.signal);
      if (this.stop.signal.aborted) break;
      try {
        const response = await this.fetchImpl(this.o.url, {
          method: 'POST',
          headers: { ...this.o.headers, 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs),
        });
        await response.arrayBuffer().catch(() => undefined);
        if (response.status >= 200 && response.status < 300) return;
        last = `HTTP ${response.status}`;
      } catch (err) {
        const e = err as Error;
        last = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${this.o.timeoutMs} ms` : ((e as { cause?: Error }).cause?.message ?? e.message);
      }
    }
    throw new SinkError(this.name, `not accepted after ${this.o.retries + 1} attempts (last: ${last})`);
  }

  async close(): Promise<void> {
    this.stop.abort();
  }
}
