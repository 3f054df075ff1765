/** Small HTTP helpers for the relay: typed refusals, JSON in and out, query parsing. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseDuration } from '../common/duration.js';

/** A refusal with its status and stable code (docs/API.md). */
export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryAfterMs?: number) {
    super(message);
    this.name = 'HttpError';
  }
}

export const notFound = (): HttpError => new HttpError(404, 'not_found', 'no such resource');
export const badRequest = (message: string): HttpError => new HttpError(400, 'bad_request', message);

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (err.retryAfterMs !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
  if (close) headers['connection'] = 'close';
  sendJson(res, err.status, { error: err.code, message: err.message }, headers);
}

export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

const MAX_JSON_BYTES = 64 * 1024;

/** Reads a JSON object body (<= 64 KiB, application/json). */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (mediaType(req) !== 'application/json') throw new HttpError(415, 'unsupported_media_type', 'expected Content-Type: application/json');
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_JSON_BYTES) throw new HttpError(413, 'too_large', `JSON body over ${MAX_JSON_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of bodyChunks(req)) {
    total += chunk.length;
    if (total > MAX_JSON_BYTES) throw new HttpError(413, 'too_large', `JSON body over ${MAX_JSON_BYTES} bytes`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw badRequest('body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest('body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Drains (discards) a body we do not expect, up to a small limit. */
export async function drain(req: IncomingMessage): Promise<void> {
  let total = 0;
  for await (const chunk of bodyChunks(req)) {
    total += chunk.length;
    if (total > MAX_JSON_BYTES) throw new HttpError(413, 'too_large', 'unexpected request body');
  }
}

/** The body's chunks; a client that closes before sending all it declared gets a typed 400. */
async function* bodyChunks(req: IncomingMessage): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) yield chunk;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || req.destroyed) throw new HttpError(400, 'truncated_body', 'the connection closed before the whole body arrived');
    throw err;
  }
}

export function queryInt(query: URLSearchParams, name: string, o: { min: number; max?: number; fallback?: number }): number {
  const text = query.get(name);
  if (text === null || text === '') {
    if (o.fallback !== undefined) return o.fallback;
    throw badRequest(`query parameter ${name} is required`);
  }
  if (!/^\d{1,16}$/.test(text)) throw badRequest(`query parameter ${name} must be a non-negative integer`);
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < o.min || (o.max !== undefined && value > o.max)) {
    throw badRequest(`query parameter ${name} must be between ${o.min} and ${o.max ?? 'the maximum'}`);
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
    throw badRequest(`query parameter wait: ${(err as Error).message}`);
  }
}

export function queryTime(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  if (text === null || text === '') return undefined;
  const t = Date.parse(text);
  if (text.length > 40 || Number.isNaN(t)) throw badRequest(`query parameter ${name} must be an ISO 8601 time`);
  return t;
}
