/**
 * The relay client: every endpoint of the wire contract in protocol/api/ (docs/API.md) over
 * node:http(s) (common/http-client.ts). Bodies are protocol/api's *Body types as they travel;
 * the client decodes only what travels as text: base64 proofs and log entries to bytes, a lease's
 * headers and body to a Lease.
 *
 * Every failure is a RelayError. Its `kind` says what a caller can do and follows the HTTP
 * status alone; `code` tells refusals of one kind apart; `status` is for logs (0: no answer).
 *
 *   kind          when                                          code
 *   retryAfter    402, 408, 429, 503, 507: come back later       quota_exceeded, rate_limited, log_busy,
 *                 (retryAfterMs from Retry-After; 408: the       shutting_down, memory_full, key_memory_full,
 *                 body came slower than the relay's minimum      too_many_uploads, too_many_connections,
 *                 rate, a slow link may do better next time)     too_slow
 *   tooLarge      413: send less                                 too_large
 *   unauthorized  401: the key is missing, unknown or revoked    missing_key, invalid_key, key_revoked
 *   rejected      any other 4xx: this request will not succeed   bad_request, malformed_envelope,
 *                 as it is (403 is here: the key is known but    forbidden, device_not_enrolled,
 *                 may not do this; 422: no receiver key lists    not_found, duplicate, lease_expired,
 *                 the envelope's recipient)                      unknown_recipient, …
 *   unreachable   no usable answer: connection failed, timed     network, timeout, aborted,
 *                 out, abort() was called, the answer is not     bad_response; internal, log_corrupt
 *                 the contract (not JSON, a lease without its
 *                 headers, over the response cap), 5xx, 1xx/3xx
 *
 * A code is believed only with the status protocol/api gives it: a refusal without a body, with
 * a code the contract does not list (a newer relay, a proxy) or with a code under another
 * status gets `http_<status>`, and the kind still follows the status.
 */
import { setMaxListeners } from 'node:events';
import { HttpClient, HttpClientError, type HttpResponse } from './http-client.js';
import {
  CHALLENGE_PATTERN,
  ENROLL_CONTEXT,
  ENVELOPE_MEDIA_TYPE,
  LEASE_HEADERS,
  RELAY_ERRORS,
  enrollmentMessage,
  isRelayErrorCode,
  kemProof,
  type ChallengeRequest,
  type AuditBody,
  CHUNK_MEDIA_TYPE,
  type DeviceRolloutsBody,
  type FirmwareOfferBody,
  type GroupMembershipBody,
  type GroupsBody,
  type PublishRequest,
  type ReceiptBody,
  type RolloutBody,
  type RolloutListBody,
  type RolloutStatusBody,
  type AuditEvent,
  type ChallengeBody,
  type ConsistencyProofBody,
  type DeviceRevokedBody,
  type DidRecordBody,
  type EntriesBody,
  type EnvelopeStatus,
  type HealthBody,
  type InboxBody,
  type InboxItemBody,
  type InclusionProofBody,
  type IssueKeyRequest,
  type IssuedKeyBody,
  type KeyInfoBody,
  type KeyListBody,
  type KeyPurgedBody,
  type KeyRevokedBody,
  type LogKeyBody,
  type RegisterRequest,
  type RegistrationBody,
  type RelayErrorCode,
  type StatsBody,
  type StatusBody,
  type UploadBody,
} from '../protocol/api/index.js';

export type RelayErrorKind = 'retryAfter' | 'tooLarge' | 'rejected' | 'unauthorized' | 'unreachable';
/** The client's own codes, for failures that carry no relay code. */
export type ClientErrorCode = 'network' | 'timeout' | 'aborted' | 'bad_response';
export type RelayFailureCode = RelayErrorCode | ClientErrorCode | `http_${number}`;

/** Statuses whose refusal says when to come back (docs/API.md: they carry Retry-After). */
const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([402, 408, 429, 503, 507]);

function kindOf(status: number, code: RelayFailureCode): RelayErrorKind {
  if (code === 'bad_response' || status < 400 || status >= 600) return 'unreachable';
  if (RETRY_AFTER_STATUSES.has(status)) return 'retryAfter';
  if (status === 413) return 'tooLarge';
  if (status === 401) return 'unauthorized';
  return status < 500 ? 'rejected' : 'unreachable';
}

export class RelayError extends Error {
  readonly kind: RelayErrorKind;

  constructor(
    /** HTTP status, for logs; 0 when no answer arrived. */
    readonly status: number,
    readonly code: RelayFailureCode,
    message: string,
    /** From Retry-After, in ms (the relay sends it with every retryAfter refusal). */
    readonly retryAfterMs?: number,
    /**
     * With no answer (status 0): whether the request may still have reached the relay (it was
     * connected: a timeout, a reset mid-request), or certainly did not (connection refused).
     */
    readonly mayHaveArrived = status !== 0,
  ) {
    super(message);
    this.name = 'RelayError';
    this.kind = kindOf(status, code);
  }
}

/** POST /v2/inbox/{recipient}/lease, 200: the envelope bytes and the lease headers, decoded. */
export interface Lease {
  envelopeId: string;
  leaseId: string;
  leafIndex: number;
  expiresAt: string;
  receivedAt: string;
  bytes: Uint8Array;
}
export interface InclusionProof { leafIndex: number; treeSize: number; proof: Uint8Array[] }
export interface ConsistencyProof { from: number; to: number; proof: Uint8Array[] }
export interface LogEntry { index: number; data: Uint8Array }
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

/** What a device proves at enrollment: its two public keys and the operations of their private halves. */
export interface DeviceProver {
  signingPublicKey: Uint8Array;
  kemPublicKey: Uint8Array;
  sign(message: Uint8Array, context: Uint8Array): Uint8Array;
  decapsulate(ciphertext: Uint8Array): Uint8Array;
}

/** A fleet approval as bytes (protocol/enrollment.ts). */
export interface FleetApprovalBytes { statement: Uint8Array; signature: Uint8Array }

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

  /** True once abort() was called. */
  get aborted(): boolean {
    return this.aborter.signal.aborted;
  }

  /**
   * Fails every request in flight and every later one (unreachable, code "aborted"): for a
   * shutdown that must not wait out a hung relay's request timeout. Final for this client.
   */
  abort(): void {
    this.aborter.abort();
  }

  // ---- health ----
  health(): Promise<HealthBody> {
    return this.json('GET', '/healthz');
  }
  stats(): Promise<StatsBody> {
    return this.json('GET', '/v2/stats');
  }

  // ---- enrollment ----
  /** A challenge, with the X-Wing proof-of-possession challenge encapsulated to `kemPublicKey`. */
  challenge(kemPublicKey: Uint8Array): Promise<ChallengeBody> {
    // enrollmentMessage() takes no other challenge: a relay that sends one breaks the contract.
    const body: ChallengeRequest = { kemPublicKey: b64(kemPublicKey) };
    return this.json<ChallengeBody>('POST', '/v2/did/challenge', body, undefined, (answer) =>
      typeof answer.challenge !== 'string' || !CHALLENGE_PATTERN.test(answer.challenge) ? 'the challenge is not 43 base64url characters'
        : typeof answer.kemCiphertext !== 'string' ? 'the challenge has no kemCiphertext' : undefined);
  }
  register(request: {
    signingPublicKey: Uint8Array; kemPublicKey: Uint8Array; challenge: string; kemProof: Uint8Array; signature: Uint8Array; approval?: FleetApprovalBytes;
  }): Promise<RegistrationBody> {
    const body: RegisterRequest = {
      signingPublicKey: b64(request.signingPublicKey),
      kemPublicKey: b64(request.kemPublicKey),
      challenge: request.challenge,
      kemProof: b64(request.kemProof),
      signature: b64(request.signature),
      ...(request.approval ? { fleetStatement: b64(request.approval.statement), fleetSignature: b64(request.approval.signature) } : {}),
    };
    return this.json('POST', '/v2/did/register', body);
  }
  /**
   * challenge + proofs of possession + register in one call: `decapsulate(ciphertext)` is the
   * device's X-Wing decapsulation, `sign(message, context)` its ML-DSA-65 signer; `approval` the
   * fleet approval from `ghostpipe device approve`.
   */
  async enroll(device: DeviceProver, approval?: FleetApprovalBytes): Promise<RegistrationBody> {
    const { challenge, kemCiphertext } = await this.challenge(device.kemPublicKey);
    const ciphertext = new Uint8Array(Buffer.from(kemCiphertext, 'base64'));
    const secret = device.decapsulate(ciphertext);
    const proof = kemProof(challenge, ciphertext, secret);
    secret.fill(0);
    const signature = device.sign(enrollmentMessage(challenge, device.signingPublicKey, device.kemPublicKey, proof), ENROLL_CONTEXT);
    return this.register({ signingPublicKey: device.signingPublicKey, kemPublicKey: device.kemPublicKey, challenge, kemProof: proof, signature, ...(approval ? { approval } : {}) });
  }
  getDid(did: string): Promise<DidRecordBody> {
    return this.json('GET', `/v2/did/${encodeURIComponent(did)}`);
  }
  revokeDevice(did: string): Promise<DeviceRevokedBody> {
    return this.json('POST', `/v2/did/${encodeURIComponent(did)}/revoke`);
  }
  /** A new fleet approval for an enrolled device (operator key): logged as a new registration leaf. */
  renewApproval(did: string, approval: FleetApprovalBytes): Promise<RegistrationBody> {
    return this.json('POST', `/v2/did/${encodeURIComponent(did)}/approval`, {
      fleetStatement: Buffer.from(approval.statement).toString('base64'), fleetSignature: Buffer.from(approval.signature).toString('base64'),
    });
  }

  // ---- inbound ----
  upload(envelope: Uint8Array): Promise<UploadBody> {
    return this.json('POST', '/v2/envelopes', envelope);
  }
  async status(ids: string[]): Promise<Record<string, EnvelopeStatus>> {
    const result = await this.json<StatusBody>('POST', '/v2/envelopes/status', { ids });
    return result.statuses;
  }

  // ---- outbound ----
  async inbox(recipientKeyId: string, options: { waitMs?: number; limit?: number } = {}): Promise<InboxItemBody[]> {
    const query = [waitParam(options.waitMs), options.limit === undefined ? '' : `limit=${options.limit}`].filter(Boolean).join('&');
    const result = await this.json<InboxBody>('GET', `/v2/inbox/${encodeURIComponent(recipientKeyId)}${query ? '?' + query : ''}`, undefined, options.waitMs);
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
    const leafIndexOf = (value: string): number => {
      // Only digits: Number() would also take '', '0x7' or '1e3', and a NaN index asks for a proof of nothing.
      const index = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(index)) throw new RelayError(response.status, 'bad_response', `lease response has ${LEASE_HEADERS.leafIndex} ${JSON.stringify(value.slice(0, 40))}, not a leaf index`);
      return index;
    };
    const lease = {
      envelopeId: header(LEASE_HEADERS.envelopeId),
      leaseId: header(LEASE_HEADERS.leaseId),
      leafIndex: leafIndexOf(header(LEASE_HEADERS.leafIndex)),
      expiresAt: header(LEASE_HEADERS.expiresAt),
      receivedAt: header(LEASE_HEADERS.receivedAt),
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
  logKey(): Promise<LogKeyBody> {
    return this.json('GET', '/v2/log/key');
  }
  async inclusionProof(at: { index: number } | { hash: Uint8Array | string }, size?: number): Promise<InclusionProof> {
    const where = 'index' in at ? `index=${at.index}` : `hash=${typeof at.hash === 'string' ? at.hash : Buffer.from(at.hash).toString('hex')}`;
    const raw = await this.json<InclusionProofBody>('GET', `/v2/log/proof/inclusion?${where}${size === undefined ? '' : `&size=${size}`}`, undefined, undefined, proofShape);
    return { leafIndex: raw.leafIndex, treeSize: raw.treeSize, proof: raw.proof.map((p) => new Uint8Array(Buffer.from(p, 'base64'))) };
  }
  async consistencyProof(from: number, to: number): Promise<ConsistencyProof> {
    const raw = await this.json<ConsistencyProofBody>('GET', `/v2/log/proof/consistency?from=${from}&to=${to}`, undefined, undefined, proofShape);
    return { from: raw.from, to: raw.to, proof: raw.proof.map((p) => new Uint8Array(Buffer.from(p, 'base64'))) };
  }
  /** Leaves [start, end), at most 1000. */
  async entries(start: number, end: number): Promise<LogEntry[]> {
    const raw = await this.json<EntriesBody>('GET', `/v2/log/entries?start=${start}&end=${end}`, undefined, undefined, entriesShape);
    return raw.entries.map((e) => ({ index: e.index, data: new Uint8Array(Buffer.from(e.data, 'base64')) }));
  }

  // ---- keys (operator) ----
  createKey(request: IssueKeyRequest): Promise<IssuedKeyBody> {
    return this.json('POST', '/v2/keys', request);
  }
  async listKeys(): Promise<KeyInfoBody[]> {
    return (await this.json<KeyListBody>('GET', '/v2/keys')).keys;
  }
  revokeKey(id: string): Promise<KeyRevokedBody> {
    return this.json('DELETE', `/v2/keys/${encodeURIComponent(id)}`);
  }
  purgeKey(id: string): Promise<KeyPurgedBody> {
    return this.json('POST', `/v2/keys/${encodeURIComponent(id)}/purge`);
  }

  // ---- audit (operator) ----
  async audit(query: AuditQuery = {}): Promise<AuditEvent[]> {
    return (await this.json<AuditBody>('GET', `/v2/audit?${auditQuery(query, 'json')}`)).events;
  }
  async auditCsv(query: AuditQuery = {}): Promise<string> {
    return (await this.request('GET', `/v2/audit?${auditQuery(query, 'csv')}`)).body.toString('utf8');
  }

  // ---- groups and firmware (operator) ----
  groups(): Promise<GroupsBody> {
    return this.json('GET', '/v2/groups');
  }
  setGroup(group: string, did: string, member: boolean): Promise<GroupMembershipBody> {
    return this.json(member ? 'PUT' : 'DELETE', `/v2/groups/${encodeURIComponent(group)}/devices/${encodeURIComponent(did)}`);
  }
  publishFirmware(request: PublishRequest): Promise<RolloutBody> {
    return this.json('POST', '/v2/firmware', request);
  }
  widenRollout(id: string, targets: string[]): Promise<RolloutBody> {
    return this.json('POST', `/v2/firmware/${id}/targets`, { targets });
  }
  async putFirmwareChunk(id: string, index: number, bytes: Uint8Array): Promise<void> {
    await this.request('PUT', `/v2/firmware/${id}/chunks/${index}`, bytes, 0, CHUNK_MEDIA_TYPE);
  }
  async putFirmwareWrap(id: string, did: string, envelope: Uint8Array): Promise<void> {
    await this.request('PUT', `/v2/firmware/${id}/wraps/${encodeURIComponent(did)}`, envelope);
  }
  rolloutStatus(id: string): Promise<RolloutStatusBody> {
    return this.json('GET', `/v2/firmware/${id}/status`);
  }
  async rollouts(): Promise<RolloutStatusBody[]> {
    return (await this.json<RolloutListBody>('GET', '/v2/firmware/rollouts')).rollouts;
  }

  // ---- firmware (device) ----
  async firmwareRollouts(): Promise<DeviceRolloutsBody['rollouts']> {
    return (await this.json<DeviceRolloutsBody>('GET', '/v2/firmware')).rollouts;
  }
  firmwareOffer(id: string): Promise<FirmwareOfferBody> {
    return this.json('GET', `/v2/firmware/${id}`);
  }
  /** One encrypted chunk, as served (the caller checks it against the manifest before using it). */
  /** `maxBytes`: the chunk's length from the manifest; a longer answer is cut off there (a relay serving endless data). */
  async firmwareChunk(id: string, index: number, maxBytes?: number): Promise<{ bytes: Uint8Array; etag: string | undefined }> {
    // A refusal's JSON must still fit when the chunk is tiny (the last one may be a few bytes).
    const response = await this.request('GET', `/v2/firmware/${id}/chunks/${index}`, undefined, 0, undefined, maxBytes === undefined ? undefined : Math.max(maxBytes, 4096));
    const body = response.body;
    return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.length), etag: response.header('etag') }; // a view: the chunk is not copied
  }
  async firmwareDownloaded(id: string): Promise<void> {
    await this.request('POST', `/v2/firmware/${id}/downloaded`);
  }
  firmwareReceipt(id: string, receipt: Uint8Array, signature: Uint8Array): Promise<ReceiptBody> {
    return this.json('POST', `/v2/firmware/${id}/receipt`, { receipt: b64(receipt), signature: b64(signature) });
  }

  // ---- plumbing ----
  /** `check` names what is wrong with a parsed body the contract does not allow (undefined: fine). */
  private async json<T>(method: string, path: string, body?: unknown, waitMs?: number, check?: (value: T) => string | undefined): Promise<T> {
    const response = await this.request(method, path, body, waitMs);
    let value: T;
    try {
      value = JSON.parse(response.body.toString('utf8')) as T;
    } catch {
      throw new RelayError(response.status, 'bad_response', `${method} ${path}: response is not JSON`);
    }
    // Every JSON answer of the contract is an object; reading a field of null threw a TypeError.
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RelayError(response.status, 'bad_response', `${method} ${path}: response is not a JSON object`);
    const problem = check?.(value);
    if (problem !== undefined) throw new RelayError(response.status, 'bad_response', `${method} ${path}: ${problem}`);
    return value;
  }

  /** A Uint8Array body is sent as `binaryType` (an envelope unless said otherwise), anything else as JSON. */
  private async request(method: string, path: string, body?: unknown, waitMs = 0, binaryType = ENVELOPE_MEDIA_TYPE, maxResponseBytes?: number): Promise<HttpResponse> {
    const headers: Record<string, string> = {};
    if (this.apiKey !== undefined) headers['authorization'] = `Bearer ${this.apiKey}`;
    let payload: string | Uint8Array | undefined;
    if (body instanceof Uint8Array) {
      headers['content-type'] = binaryType;
      payload = body;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let response: HttpResponse;
    try {
      // A repeated request after a lost answer is safe: a repeated upload answers 409 duplicate,
      // a repeated ack 404.
      response = await this.http.request(this.baseUrl + path, { method, headers, body: payload, timeoutMs: this.timeoutMs + waitMs, signal: this.aborter.signal, ...(maxResponseBytes === undefined ? {} : { maxResponseBytes }) });
    } catch (err) {
      if (!(err instanceof HttpClientError)) throw err;
      if (err.failure === 'aborted') throw new RelayError(0, 'aborted', `${method} ${path}: aborted (client shut down)`, undefined, err.mayHaveArrived);
      const timedOut = err.failure === 'timeout';
      throw new RelayError(0, timedOut ? 'timeout' : err.failure === 'too_large' ? 'bad_response' : 'network', `${method} ${path}: ${timedOut ? 'timed out' : err.message}`, undefined, err.mayHaveArrived);
    }
    if (response.status >= 200 && response.status < 300) return response;
    throw refusal(`${method} ${path}`, response);
  }
}

/** A non-2xx answer as a RelayError; see the header for when the relay's code is believed. */
function refusal(request: string, response: HttpResponse): RelayError {
  const { status } = response;
  let code: RelayFailureCode = `http_${status}`;
  let message = `${request}: HTTP ${status}`;
  try {
    const parsed = JSON.parse(response.body.toString('utf8')) as { error?: unknown; message?: unknown };
    if (typeof parsed.message === 'string') message = `${request}: ${parsed.message}`;
    if (isRelayErrorCode(parsed.error) && RELAY_ERRORS[parsed.error] === status) code = parsed.error;
    else if (parsed.error !== undefined) message += ` (relay code ${JSON.stringify(parsed.error)?.slice(0, 80)} is not in the contract for HTTP ${status})`;
  } catch {
    // Not JSON (431/408 from node itself, a proxy's page): the generic code.
  }
  return new RelayError(status, code, message, retryAfterMs(response.header('retry-after')));
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

/** Shapes of the log answers, checked so that garbage is a bad_response, never a TypeError later. */
function proofShape(v: { proof?: unknown }): string | undefined {
  return typeof v === 'object' && v !== null && Array.isArray(v.proof) && v.proof.every((p) => typeof p === 'string') ? undefined : 'proof must be a list of base64 strings';
}
function entriesShape(v: { entries?: unknown }): string | undefined {
  const ok = typeof v === 'object' && v !== null && Array.isArray(v.entries)
    && v.entries.every((e: unknown) => typeof e === 'object' && e !== null && Number.isSafeInteger((e as { index?: unknown }).index) && typeof (e as { data?: unknown }).data === 'string');
  return ok ? undefined : 'entries must be a list of {index, data}';
}
