/** Small HTTP helpers for the relay: refusals as thrown errors, JSON in and out, query parsing, bodies. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDuration } from '../common/duration.js';
import type { RelayErrorBody } from '../protocol/api/index.js';
import { Refusal, badRequest, type Outcome } from './refusal.js';

/** The HTTP layer's carrier of a Refusal: thrown by handlers and body or query parsing, answered by the server's dispatch. */
export class HttpError extends Error {
  constructor(readonly refusal: Refusal) {
    super(refusal.message);
    this.name = 'HttpError';
  }

  get status(): number {
    return this.refusal.status;
  }
}

export function refuse(refusal: Refusal): never {
  throw new HttpError(refusal);
}

/** The value of a domain outcome; a refusal is thrown, to be answered by the dispatch. */
export function accepted<T>(outcome: Outcome<T>): T {
  if (outcome instanceof Refusal) refuse(outcome);
  return outcome;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

export function sendNoContent(res: ServerResponse): void {
  res.writeHead(204, { 'cache-control': 'no-store' });
  res.end();
}

export function sendError(res: ServerResponse, refusal: Refusal, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (refusal.retryAfterMs !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(refusal.retryAfterMs / 1000)));
  if (close) headers['connection'] = 'close';
  const body: RelayErrorBody = { error: refusal.code, message: refusal.message };
  sendJson(res, refusal.status, body, headers);
}

export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** 415 unless the body is of this media type. */
export function requireMediaType(req: IncomingMessage, type: string): void {
  if (mediaType(req) !== type) refuse(new Refusal('unsupported_media_type', `expected Content-Type: ${type}`));
}

/** The declared Content-Length, if any. */
export function contentLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

const MAX_JSON_BYTES = 64 * 1024;

/** Reads a JSON object body (<= 64 KiB, application/json). */
export async function readJson(req: IncomingMessage, maxBytes = MAX_JSON_BYTES): Promise<Record<string, unknown>> {
  requireMediaType(req, 'application/json');
  const body = await readBody(req, maxBytes, 'JSON body'); // outside the try: its 413 is not a parse error
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    refuse(badRequest('body is not valid JSON'));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) refuse(badRequest('body must be a JSON object'));
  return value as Record<string, unknown>;
}

/** A whole body of at most `maxBytes` (413 too_large past it, named `what`). */
export async function readBody(req: IncomingMessage, maxBytes: number, what = 'body'): Promise<Uint8Array> {
  if ((contentLength(req) ?? 0) > maxBytes) refuse(new Refusal('too_large', `${what} over ${maxBytes} bytes`));
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of bodyChunks(req)) {
    total += chunk.length;
    if (total > maxBytes) refuse(new Refusal('too_large', `${what} over ${maxBytes} bytes`));
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Drains (discards) a body we do not expect, up to a small limit. */
export async function drain(req: IncomingMessage): Promise<void> {
  let total = 0;
  for await (const chunk of bodyChunks(req)) {
    total += chunk.length;
    if (total > MAX_JSON_BYTES) refuse(new Refusal('too_large', 'unexpected request body'));
  }
}

/**
 * After a refusal: reads and drops the rest of the body, cutting the connection past `maxBytes`.
 * True once the whole body was read (the answer may go out then), false when it was cut off.
 */
export function discardBody(req: IncomingMessage, maxBytes: number): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = 0;
    req.removeAllListeners('data');
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > maxBytes) {
        req.socket.destroy();
        resolve(false);
      }
    });
    req.once('end', () => resolve(true));
    req.once('close', () => resolve(req.complete));
    req.resume();
  });
}

/** The body's chunks; a client that closes before sending all it declared gets a typed 400. */
async function* bodyChunks(req: IncomingMessage): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) yield chunk;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || req.destroyed) refuse(new Refusal('truncated_body', 'the connection closed before the whole body arrived'));
    throw err;
  }
}

export function queryInt(query: URLSearchParams, name: string, o: { min: number; max?: number; fallback?: number }): number {
  const text = query.get(name);
  if (text === null || text === '') {
    if (o.fallback !== undefined) return o.fallback;
    refuse(badRequest(`query parameter ${name} is required`));
  }
  if (!/^\d{1,16}$/.test(text)) refuse(badRequest(`query parameter ${name} must be a non-negative integer`));
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < o.min || (o.max !== undefined && value > o.max)) {
    refuse(badRequest(`query parameter ${name} must be between ${o.min} and ${o.max ?? 'the maximum'}`));
  }
  return value;
}

/** `wait=20s`: a duration, capped at maxMs. */
export function queryWait(query: URLSearchParams, maxMs: number): number {
  const text = query.get('wait');
  if (text === null || text === '') return 0;
  try {
    return Math.min(parseDuration(text), maxMs);
  } catch (err) {
    refuse(badRequest(`query parameter wait: ${(err as Error).message}`));
  }
}

export function queryTime(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  if (text === null || text === '') return undefined;
  const t = Date.parse(text);
  if (text.length > 40 || Number.isNaN(t)) refuse(badRequest(`query parameter ${name} must be an ISO 8601 time`));
  return t;
}
