/**
 * HTTP POST of one JSON batch per envelope: {"readings":[…]} (Content-Type application/json).
 * 2xx = accepted. Anything else, a timeout or a network error is retried with exponential
 * backoff and jitter up to `retries` times; then write() fails and the envelope is not acknowledged.
 */
import type { ReadingRecord } from '../records.js';
import { Backoff, sleep } from '../../common/backoff.js';
import { SinkError, type Sink } from './sink.js';
import { HttpClient, HttpClientError } from '../../common/http-client.js';

export interface WebhookSinkOptions {
  url: string;
  timeoutMs: number;
  retries: number;
  headers: Record<string, string>;
  backoff?: { initialMs: number; maxMs: number };
  /** PEM CA bundle or certificate to trust for an https URL instead of the system CAs. */
  ca?: string | Buffer;
}

export class WebhookSink implements Sink {
  readonly name: string;
  private readonly http: HttpClient;
  private readonly stop = new AbortController();

  constructor(private readonly o: WebhookSinkOptions) {
    const u = new URL(o.url);
    this.name = `webhook ${u.protocol}//${u.host}${u.pathname}`; // no query (may hold a token) and no userinfo
    this.http = new HttpClient(o.ca !== undefined ? { ca: o.ca } : {});
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
        const response = await this.http.request(this.o.url, {
          method: 'POST',
          headers: { ...this.o.headers, 'content-type': 'application/json' },
          body,
          timeoutMs: this.o.timeoutMs,
          signal: this.stop.signal,
        });
        if (response.status >= 200 && response.status < 300) return;
        last = `HTTP ${response.status}`;
      } catch (err) {
        if (!(err instanceof HttpClientError)) throw err;
        last = err.failure === 'timeout' ? `no answer within ${this.o.timeoutMs} ms` : err.message;
      }
    }
    throw new SinkError(this.name, `not accepted after ${this.o.retries + 1} attempts (last: ${last})`);
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.http.close();
  }
}
