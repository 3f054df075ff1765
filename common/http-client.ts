/**
 * A small HTTP/1.1 client over node:http and node:https for the relay API and webhooks.
 *
 * Why not the global fetch: on the 512 MB gateway every megabyte counts, and fetch loads undici
 * and compiles its WebAssembly HTTP parser (~11 MB of RSS on Node 20 and 24, measured in
 * docs/AGENT.md "Memory"); node:http is already there. It also gives what fetch lacks: a pinned CA
 * per client (Node 20's fetch has no per-request CA) and a cap on every response body, so a
 * hostile or broken server cannot make us buffer without bound.
 */
import { createRequire } from 'node:module';
import type http from 'node:http';
import type https from 'node:https';

/** Responses larger than this are cut off with an error (the largest envelope is about 5 MiB). */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/**
 * Loaded with require, not `import`: on Node 24 an ESM import of node:http materialises every lazy
 * export (WebSocket, ...), which loads undici, http2 and zlib (relay/server.ts has the figures).
 */
const require = createRequire(import.meta.url);

export interface HttpResponse {
  status: number;
  /** Header value by lower-case name; repeated headers joined with ", ". */
  header(name: string): string | undefined;
  body: Buffer;
}

export interface HttpRequest {
  method: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Whole request, response body included. */
  timeoutMs: number;
  /** Aborts the request early (e.g. on shutdown); rejects with an HttpClientError "aborted". */
  signal?: AbortSignal;
  /** This request's answer cap, when it is known to be smaller than the client's (a firmware chunk). */
  maxResponseBytes?: number;
}

export type HttpFailure = 'timeout' | 'network' | 'too_large' | 'aborted';

export class HttpClientError extends Error {
  constructor(
    readonly failure: HttpFailure,
    message: string,
    /**
     * A connection to the server existed when it failed, so the request may have arrived (a
     * timeout, a reset mid-request). False: it never left (connection refused, no route, an
     * abort before connecting) and the server cannot have acted on it.
     */
    readonly mayHaveArrived = false,
  ) {
    super(message);
    this.name = 'HttpClientError';
  }
}

export interface HttpClientOptions {
  /** PEM CA bundle or certificate to trust instead of the system CAs (https only). */
  ca?: string | Buffer;
  maxResponseBytes?: number;
}

export class HttpClient {
  private readonly maxResponseBytes: number;
  private httpAgent: http.Agent | undefined;
  private httpsAgent: https.Agent | undefined;

  constructor(private readonly options: HttpClientOptions = {}) {
    this.maxResponseBytes = options.maxResponseBytes ?? MAX_RESPONSE_BYTES;
  }

  request(url: string | URL, request: HttpRequest): Promise<HttpResponse> {
    const target = new URL(url);
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      return Promise.reject(new HttpClientError('network', `unsupported protocol ${target.protocol}`));
    }
    return this.attempt(target, request, false);
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
  }

  private agentFor(target: URL): { module: typeof http | typeof https; agent: http.Agent } {
    if (target.protocol === 'https:') {
      const module = require('node:https') as typeof https;
      this.httpsAgent ??= new module.Agent({ keepAlive: true, ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}) });
      return { module, agent: this.httpsAgent };
    }
    const module = require('node:http') as typeof http;
    this.httpAgent ??= new module.Agent({ keepAlive: true });
    return { module, agent: this.httpAgent };
  }

  private attempt(target: URL, request: HttpRequest, retried: boolean): Promise<HttpResponse> {
    const { module, agent } = this.agentFor(target);
    const headers: Record<string, string> = { ...request.headers };
    const body = request.body === undefined ? undefined : typeof request.body === 'string' ? Buffer.from(request.body) : request.body;
    if (body !== undefined) headers['content-length'] = String(body.byteLength);
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      let connected = false;
      let req: http.ClientRequest | undefined;
      const fail = (failure: HttpFailure, message: string): void => {
        if (settled) return;
        settled = true;
        cleanup();
        req?.destroy();
        reject(new HttpClientError(failure, message, connected));
      };
      const timer = setTimeout(() => fail('timeout', `no complete answer within ${request.timeoutMs} ms`), request.timeoutMs);
      const onAbort = (): void => fail('aborted', 'request aborted');
      const cleanup = (): void => {
        clearTimeout(timer);
        request.signal?.removeEventListener('abort', onAbort);
      };
      if (request.signal?.aborted) return fail('aborted', 'request aborted');
      request.signal?.addEventListener('abort', onAbort, { once: true });

      req = module.request(target, { method: request.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const limit = Math.min(request.maxResponseBytes ?? Infinity, this.maxResponseBytes);
        // A declared length is filled in place: a 1 MiB answer is not held twice, as pieces and as their concatenation.
        const declared = Number(res.headers['content-length']);
        const whole = Number.isSafeInteger(declared) && declared > 0 && declared <= limit ? Buffer.allocUnsafe(declared) : undefined;
        res.on('data', (chunk: Buffer) => {
          if (size + chunk.length > limit) return fail('too_large', `response larger than ${limit} bytes`);
          if (whole) chunk.copy(whole, size); // node's parser never delivers more than Content-Length
          else chunks.push(chunk);
          size += chunk.length;
        });
        res.on('error', (err) => fail('network', err.message));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          cleanup();
          const raw = res.headers;
          resolve({
            status: res.statusCode ?? 0,
            header: (name) => {
              const value = raw[name.toLowerCase()];
              return Array.isArray(value) ? value.join(', ') : value;
            },
            body: whole ? whole.subarray(0, size) : Buffer.concat(chunks),
          });
        });
      });
      const sent = req;
      sent.on('socket', (socket) => {
        if (!socket.connecting) connected = true; // a kept-alive socket
        else socket.once('connect', () => (connected = true));
      });
      sent.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        // A kept-alive socket the server closed just as we reused it (Node's documented retry
        // case): one immediate retry, safe because a repeated upload is answered 409 duplicate.
        // A large body meets EPIPE instead (still writing when the close arrives). (An agent
        // whose 15 s interval outlasts the relay's 5 s keep-alive met this with every coalesced
        // upload.)
        if (!retried && sent.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          settled = true;
          cleanup();
          // Its fate is still unknown: the server may have read the request before it closed (a
          // close with unread data resets), so a retry's "never arrived" must not hide that.
          const mayHaveArrived = connected;
          this.attempt(target, request, true).then(resolve, (e: unknown) =>
            reject(e instanceof HttpClientError && mayHaveArrived && !e.mayHaveArrived ? new HttpClientError(e.failure, e.message, true) : e));
          return;
        }
        fail('network', err.message);
      });
      sent.end(body);
    });
  }
}
