/**
 * Typed client for the relay's HTTP API (docs/API.md), over node:http(s) (common/http-client.ts).
 * Every failure is a RelayError: HTTP refusals carry the status, the relay's stable code and
 * Retry-After; network failures, timeouts and abort() use status 0 and codes "network" /
 * "timeout" / "aborted".
 */
import { setMaxListeners } from 'node:events';
import type { AuditEvent } from './audit.js'; // type only: no server code is loaded
import { HttpClient, HttpClientError, type HttpResponse } from '../common/http-client.js';

export const ENVELOPE_MEDIA_TYPE = 'application/vnd.ghostpipe.envelope';
/** ML-DSA-65 context of the enrollment proof of possession. */
export const ENROLL_CONTEXT = new TextEncoder().encode('ghostpipe/enroll/v1');

export class RelayError extends Error {
  constructor(
    /** HTTP status; 0 when no response arrived. */
    readonly status: number,
    /** Stable code: the relay's "error" field, or "network", "timeout", "aborted", "bad_response", "http_<status>". */
    readonly code: string,
    message: string,
    /** From Retry-After (429, 507, 503), in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'RelayError';
  }
}

export type Role = 'device' | 'receiver' | 'operator';
export type EnvelopeStatus = 'pending' | 'leased' | 'delivered' | 'expired' | 'unknown';

export interface Health { status: string; version: string; uptimeSeconds: number }
export interface Stats {
  uptimeSeconds: number;
  memory: { heldBytes: number; inFlightBytes: number; capBytes: number; rssBytes: number };
  envelopes: { pending: number; leased: number; delivered: number; expired: number };
  queues: Record<string, { pending: number; leased: number }>;
  log: { size: number; origin: string; checkpointLatencyMs: { last: number; max: number } };
  keys: { active: number; revoked: number };
  devices: { active: number; revoked: number };
}
export interface Challenge { challenge: string; expiresAt: string }
export interface Registration { did: string; document: Record<string, unknown>; leafIndex: number }
export interface DidRecord extends Registration {
  revoked: boolean;
  registeredAt: string;
  revokedAt?: string;
  revocationLeafIndex?: number;
}
export interface UploadResult { id: string; leafIndex: number; size: number }
export interface InboxItem { id: string; size: number; leafIndex: number; receivedAt: string; state: EnvelopeStatus }
export interface Lease {
  envelopeId: string;
  leaseId: string;
  leafIndex: number;
  expiresAt: string;
  receivedAt: string;
  bytes: Uint8Array;
}
export interface LogKey { origin: string; verifierKey: string; publicKey: string; publicKeyPem: string }
export interface InclusionProof { leafIndex: number; treeSize: number; proof: Uint8Array[] }
export interface ConsistencyProof { from: number; to: number; proof: Uint8Array[] }
export interface LogEntry { index: number; data: Uint8Array }
export interface IssueKeyRequest { role: 'device' | 'receiver'; plan: string; label: string; recipients?: string[] }
export interface IssuedKey { id: string; key: string; role: Role; plan: string; label: string; createdAt: string }
export interface KeyInfo {
  id: string;
  masked: string;
  role: Role;
  plan: string;
  label: string;
  createdAt: string;
  revoked: boolean;
  revokedAt?: string;
  did?: string;
  recipients?: string[];
  usage?: { periodStart: string; transfers: number; quota: number };
}
/** One audit event as the relay exports it. */
export type { AuditEvent };
export interface AuditQuery { from?: string | Date; to?: string | Date; key?: string; /** newest rows kept, at most 100,000 */ limit?: number }

export interface RelayClientOptions {
  /** e.g. "http://127.0.0.1:8787" */
  baseUrl: string;
  /** pgp_… or plk_…; omit for public endpoints only. */
  apiKey?: string;
  /** Per-request timeout in ms, on top of any long-poll wait (default 30 s). */
  timeoutMs?: number;
  /** PEM CA bundle or certificate to trust for an https relay instead of the system CAs. */
  ca?: string | Buffer;
  /** Share connections with another client of the same relay (see withKey). */
  http?: HttpClient;
}

/** The message a device signs to prove possession at enrollment: challenge (32 B) || ML-DSA pk || X-Wing pk. */
export function enrollmentMessage(challenge: string, signingPublicKey: Uint8Array, kemPublicKey: Uint8Array): Uint8Array {
  const c = Buffer.from(challenge, 'base64url');
  return Buffer.concat([c, signingPublicKey, kemPublicKey]);
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function retryAfterMs(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function waitParam(waitMs: number | undefined): string {
  return waitMs === undefined || waitMs <= 0 ? '' : `wait=${Math.round(waitMs)}ms`;
}

export class RelayClient {
  readonly baseUrl: string;
  private apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly http: HttpClient;
  /** Aborted by abort(): every request in flight and every later one fails at once. */
  private readonly aborter = new AbortController();

  constructor(options: RelayClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.http = options.http ?? new HttpClient(options.ca !== undefined ? { ca: options.ca } : {});
    // One abort listener per request in flight: many concurrent requests are normal, not a leak.
    setMaxListeners(0, this.aborter.signal);
  }

  /** Every later request carries this key (the agent re-read a rotated key file); requests in flight keep theirs. */
  useApiKey(apiKey: string): void {
    this.apiKey = apiKey;
  }

  /** Same relay, another key. */
  withKey(apiKey: string): RelayClient {
    return new RelayClient({ baseUrl: this.baseUrl, apiKey, timeoutMs: this.timeoutMs, http: this.http });
  }

  /**
   * Fails every request in flight and every later one with RelayError(0, "aborted"): for a
   * shutdown that must not wait out a hung relay's request timeout. Final for this client.
   */
  /** True once abort() was called. */
  get aborted(): boolean {
    return this.aborter.signal.aborted;
  }

  abort(): void {
    this.aborter.abort();
  }

  // ---- health ----
  health(): Promise<Health> {
    return this.json('GET', '/healthz');
  }
  stats(): Promise<Stats> {
    return this.json('GET', '/v2/stats');
  }

  // ---- enrollment ----
  challenge(): Promise<Challenge> {
    return this.json('POST', '/v2/did/challenge');
  }
  register(request: { signingPublicKey: Uint8Array; kemPublicKey: Uint8Array; challenge: string; signature: Uint8Array }): Promise<Registration> {
    return this.json('POST', '/v2/did/register', {
      signingPublicKey: b64(request.signingPublicKey),
      kemPublicKey: b64(request.kemPublicKey),
      challenge: request.challenge,
      signature: b64(request.signature),
    });
  }
  /** challenge + sign + register in one call; `sign(message, context)` is the device's ML-DSA-65 signer. */
  async enroll(signingPublicKey: Uint8Array, kemPublicKey: Uint8Array, sign: (message: Uint8Array, context: Uint8Array) => Uint8Array): Promise<Registration> {
    const { challenge } = await this.challenge();
    const signature = sign(enrollmentMessage(challenge, signingPublicKey, kemPublicKey), ENROLL_CONTEXT);
    return this.register({ signingPublicKey, kemPublicKey, challenge, signature });
  }
  getDid(did: string): Promise<DidRecord> {
    return this.json('GET', `/v2/did/${encodeURIComponent(did)}`);
  }
  revokeDevice(did: string): Promise<{ did: string; revoked: true; leafIndex: number }> {
    return this.json('POST', `/v2/did/${encodeURIComponent(did)}/revoke`);
  }

  // ---- inbound ----
  upload(envelope: Uint8Array): Promise<UploadResult> {
    return this.json('POST', '/v2/envelopes', envelope);
  }
  async status(ids: string[]): Promise<Record<string, EnvelopeStatus>> {
    const result = await this.json<{ statuses: Record<string, EnvelopeStatus> }>('POST', '/v2/envelopes/status', { ids });
    return result.statuses;
  }

  // ---- outbound ----
  async inbox(recipientKeyId: string, options: { waitMs?: number; limit?: number } = {}): Promise<InboxItem[]> {
    const query = [waitParam(options.waitMs), options.limit === undefined ? '' : `limit=${options.limit}`].filter(Boolean).join('&');
    const result = await this.json<{ envelopes: InboxItem[] }>('GET', `/v2/inbox/${encodeURIComponent(recipientKeyId)}${query ? '?' + query : ''}`, undefined, options.waitMs);
    return result.envelopes;
  }
  /** The oldest pending envelope, or null when none arrived within waitMs. */
  async lease(recipientKeyId: string, options: { waitMs?: number } = {}): Promise<Lease | null> {
    const query = waitParam(options.waitMs);
    const response = await this.request('POST', `/v2/inbox/${encodeURIComponent(recipientKeyId)}/lease${query ? '?' + query : ''}`, undefined, options.waitMs);
    if (response.status === 204) return null;
    const header = (name: string): string => {
      const value = response.header(name);
      if (value === undefined) throw new RelayError(response.status, 'bad_response', `lease response lacks ${name}`);
      return value;
    };
    const lease = {
      envelopeId: header('ghostpipe-envelope-id'),
      leaseId: header('ghostpipe-lease-id'),
      leafIndex: Number(header('ghostpipe-leaf-index')),
      expiresAt: header('ghostpipe-lease-expires'),
      receivedAt: header('ghostpipe-received-at'),
    };
    const bytes = new Uint8Array(response.body.buffer, response.body.byteOffset, response.body.byteLength);
    return { ...lease, bytes };
  }
  async ack(leaseId: string): Promise<void> {
    await this.request('POST', `/v2/leases/${encodeURIComponent(leaseId)}/ack`);
  }
  async release(leaseId: string): Promise<void> {
    await this.request('POST', `/v2/leases/${encodeURIComponent(leaseId)}/release`);
  }

  // ---- log ----
  async checkpoint(): Promise<string> {
    return (await this.request('GET', '/v2/log/checkpoint')).body.toString('utf8');
  }
  logKey(): Promise<LogKey> {
    return this.json('GET', '/v2/log/key');
  }
  async inclusionProof(at: { index: number } | { hash: Uint8Array | string }, size?: number): Promise<InclusionProof> {
    const where = 'index' in at ? `index=${at.index}` : `hash=${typeof at.hash === 'string' ? at.hash : Buffer.from(at.hash).toString('hex')}`;
    const raw = await this.json<{ leafIndex: number; treeSize: number; proof: string[] }>('GET', `/v2/log/proof/inclusion?${where}${size === undefined ? '' : `&size=${size}`}`);
    return { leafIndex: raw.leafIndex, treeSize: raw.treeSize, proof: raw.proof.map((p) => new Uint8Array(Buffer.from(p, 'base64'))) };
  }
  async consistencyProof(from: number, to: number): Promise<ConsistencyProof> {
    const raw = await this.json<{ from: number; to: number; proof: string[] }>('GET', `/v2/log/proof/consistency?from=${from}&to=${to}`);
    return { from: raw.from, to: raw.to, proof: raw.proof.map((p) => new Uint8Array(Buffer.from(p, 'base64'))) };
  }
  /** Leaves [start, end), at most 1000. */
  async entries(start: number, end: number): Promise<LogEntry[]> {
    const raw = await this.json<{ entries: { index: number; data: string }[] }>('GET', `/v2/log/entries?start=${start}&end=${end}`);
    return raw.entries.map((e) => ({ index: e.index, data: new Uint8Array(Buffer.from(e.data, 'base64')) }));
  }

  // ---- keys (operator) ----
  createKey(request: IssueKeyRequest): Promise<IssuedKey> {
    return this.json('POST', '/v2/keys', request);
  }
  async listKeys(): Promise<KeyInfo[]> {
    return (await this.json<{ keys: KeyInfo[] }>('GET', '/v2/keys')).keys;
  }
  revokeKey(id: string): Promise<{ id: string; revoked: true }> {
    return this.json('DELETE', `/v2/keys/${encodeURIComponent(id)}`);
  }

  // ---- audit (operator) ----
  async audit(query: AuditQuery = {}): Promise<AuditEvent[]> {
    return (await this.json<{ events: AuditEvent[] }>('GET', `/v2/audit?${auditQuery(query, 'json')}`)).events;
  }
  async auditCsv(query: AuditQuery = {}): Promise<string> {
    return (await this.request('GET', `/v2/audit?${auditQuery(query, 'csv')}`)).body.toString('utf8');
  }

  // ---- plumbing ----
  private async json<T>(method: string, path: string, body?: unknown, waitMs?: number): Promise<T> {
    const response = await this.request(method, path, body, waitMs);
    try {
      return JSON.parse(response.body.toString('utf8')) as T;
    } catch {
      throw new RelayError(response.status, 'bad_response', `${method} ${path}: response is not JSON`);
    }
  }

  private async request(method: string, path: string, body?: unknown, waitMs = 0): Promise<HttpResponse> {
    const headers: Record<string, string> = {};
    if (this.apiKey !== undefined) headers['authorization'] = `Bearer ${this.apiKey}`;
    let payload: string | Uint8Array | undefined;
    if (body instanceof Uint8Array) {
      headers['content-type'] = ENVELOPE_MEDIA_TYPE;
      payload = body;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let response: HttpResponse;
    try {
      // A repeated request after a lost answer is safe: a repeated upload answers 409 duplicate,
      // a repeated ack 404.
      response = await this.http.request(this.baseUrl + path, { method, headers, body: payload, timeoutMs: this.timeoutMs + waitMs, signal: this.aborter.signal });
    } catch (err) {
      if (!(err instanceof HttpClientError)) throw err;
      if (err.failure === 'aborted') throw new RelayError(0, 'aborted', `${method} ${path}: aborted (client shut down)`);
      const timedOut = err.failure === 'timeout';
      throw new RelayError(0, timedOut ? 'timeout' : err.failure === 'too_large' ? 'bad_response' : 'network', `${method} ${path}: ${timedOut ? 'timed out' : err.message}`);
    }
    if (response.status >= 200 && response.status < 300) return response;
    let code = `http_${response.status}`;
    let message = `${method} ${path}: HTTP ${response.status}`;
    try {
      const parsed = JSON.parse(response.body.toString('utf8')) as { error?: unknown; message?: unknown };
      if (typeof parsed.error === 'string') code = parsed.error;
      if (typeof parsed.message === 'string') message = `${method} ${path}: ${parsed.message}`;
    } catch {
      // Non-JSON refusals (431/408 from node itself): keep the generic code.
    }
    throw new RelayError(response.status, code, message, retryAfterMs(response.header('retry-after')));
  }
}

function auditQuery(query: AuditQuery, format: 'json' | 'csv'): string {
  const params = new URLSearchParams({ format });
  const iso = (t: string | Date): string => (t instanceof Date ? t.toISOString() : t);
  if (query.from !== undefined) params.set('from', iso(query.from));
  if (query.to !== undefined) params.set('to', iso(query.to));
  if (query.key !== undefined) params.set('key', query.key);
  if (query.limit !== undefined) params.set('limit', String(query.limit));
  return params.toString();
}
