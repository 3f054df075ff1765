/**
 * The relay's HTTP layer: listening and limits, the route table of docs/API.md, authentication,
 * bodies and responses. Each handler parses its request, calls a domain module (enroll.ts,
 * upload.ts, deliver.ts, operator.ts, log-api.ts) with plain values, and sends the body or the
 * refusal it returns. State lives in RelayState (relay/state.ts).
 */
import type http from 'node:http';
import type https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../common/log.js';
import {
  CHALLENGE_PATTERN, CHUNK_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE, FIRMWARE_ID_PATTERN, KEM_PROOF_BYTES, KEY_ID_PATTERN, LEASE_HEADERS, type HealthBody,
} from '../protocol/api/index.js';
import { LIMITS as FIRMWARE_LIMITS, CHUNK_TAG_LENGTH } from '../protocol/firmware/manifest.js';
import { MAX_RECEIPT_BYTES } from '../protocol/firmware/receipt.js';
import { MAX_FLEET_STATEMENT } from '../protocol/enrollment.js';
import { ML_DSA65 } from '../protocol/crypto/sizes.js';
import { XWING } from '../protocol/crypto/xwing.js';
import { MAX_EXPORT_ROWS, sendAuditExport } from './audit.js';
import type { KeyRecord } from './api-keys.js';
import { Authenticator, pathOnly } from './auth.js';
import type { RelayConfig } from './config.js';
import { SourceLimit, normalizeAddress } from './connections.js';
import { Delivery } from './deliver.js';
import { Enrollment } from './enroll.js';
import { FirmwareRollouts, MAX_WRAP_BYTES } from './firmware.js';
import { Groups } from './groups.js';
import {
  HttpError, accepted, contentLength, discardBody, drain, mediaType, queryInt, queryTime, queryWait, readBody, readJson, refuse, requireMediaType, sendError, sendJson, sendNoContent,
} from './http.js';
import { LogCorruptError, LogPrunedError } from './log.js';
import { LogReads } from './log-api.js';
import { Operator } from './operator.js';
import { Refusal, badRequest, notFound } from './refusal.js';
import { Router, type Params, type Route } from './router.js';
import type { RelayState } from './state.js';
import { receiveEnvelope } from './upload-body.js';
import { Uploads, type Admitted } from './upload.js';

export const VERSION = '0.1.0';
/**
 * node:http through require, not `import`: on Node 24 an ESM import of node:http materialises
 * every lazy export (WebSocket, ...), loading undici, http2, zlib and worker_threads: ~13 MB of
 * idle RSS for nothing. node:https is loaded only when TLS is configured.
 */
const require = createRequire(import.meta.url);
const nodeHttp = require('node:http') as typeof http;
/** Largest body discarded after a refusal before the connection is cut (a 5 MiB envelope and then some). */
const MAX_DISCARD = 6 * 1024 * 1024;

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  params: Params;
  query: URLSearchParams;
}
type Handler = (call: Call) => Promise<void>;

export class RelayServer {
  private readonly servers: (http.Server | https.Server)[] = [];
  private inFlight = 0;
  private stopping = false;
  /** Aborted at shutdown: ends every long-poll at once. */
  private readonly shutdownSignal = new AbortController();
  readonly startedAt = Date.now();
  private readonly auth: Authenticator;
  private readonly enrollment: Enrollment;
  private readonly uploads: Uploads;
  private readonly delivery: Delivery;
  private readonly operator: Operator;
  private readonly logReads: LogReads;
  private readonly groups: Groups;
  private readonly firmware: FirmwareRollouts;
  /** Open connections per TCP peer address (trusted proxies not counted: see admitConnection). */
  private readonly peers: SourceLimit;
  /** Requests in progress per forwarded client address, for connections from trusted proxies. */
  private readonly proxied: SourceLimit;
  private openConnections = 0;
  private slowUploads = 0;
  /** limits.minUploadRate as bytes per window (undefined: off), resolved once. */
  private readonly minUploadRate: { bytes: number; windowMs: number } | undefined;

  /** Every endpoint of docs/API.md, and the only list of them: 404 and 405 are derived from it (relay/router.ts). */
  private readonly router = new Router<Handler>([
    ['GET', '/healthz', (c) => this.health(c)],
    ['GET', '/v2/stats', (c) => this.stats(c)],
    ['POST', '/v2/did/challenge', (c) => this.challenge(c)],
    ['POST', '/v2/did/register', (c) => this.register(c)],
    ['GET', '/v2/did/:did', (c) => this.getDid(c)],
    ['POST', '/v2/did/:did/revoke', (c) => this.revokeDevice(c)],
    ['POST', '/v2/did/:did/approval', (c) => this.renewApproval(c)],
    ['POST', '/v2/envelopes', (c) => this.upload(c)],
    ['POST', '/v2/envelopes/status', (c) => this.status(c)],
    ['GET', '/v2/inbox/:recipient', (c) => this.inbox(c)],
    ['POST', '/v2/inbox/:recipient/lease', (c) => this.lease(c)],
    ['POST', '/v2/leases/:lease/ack', (c) => this.finishLease(c, 'ack')],
    ['POST', '/v2/leases/:lease/release', (c) => this.finishLease(c, 'release')],
    ['GET', '/v2/log/checkpoint', (c) => this.checkpoint(c)],
    ['GET', '/v2/log/key', (c) => this.logKey(c)],
    ['GET', '/v2/log/proof/inclusion', (c) => this.inclusion(c)],
    ['GET', '/v2/log/proof/consistency', (c) => this.consistency(c)],
    ['GET', '/v2/log/entries', (c) => this.entries(c)],
    ['GET', '/v2/log/tile/*', (c) => this.tile(c)],
    ['POST', '/v2/keys', (c) => this.createKey(c)],
    ['GET', '/v2/keys', (c) => this.listKeys(c)],
    ['DELETE', '/v2/keys/:id', (c) => this.revokeKey(c)],
    ['POST', '/v2/keys/:id/purge', (c) => this.purgeKey(c)],
    ['GET', '/v2/audit', (c) => this.audit(c)],
    ['GET', '/v2/groups', (c) => this.listGroups(c)],
    ['PUT', '/v2/groups/:group/devices/:did', (c) => this.setGroup(c, true)],
    ['DELETE', '/v2/groups/:group/devices/:did', (c) => this.setGroup(c, false)],
    ['POST', '/v2/firmware', (c) => this.publishFirmware(c)],
    ['GET', '/v2/firmware', (c) => this.deviceRollouts(c)],
    ['GET', '/v2/firmware/rollouts', (c) => this.listRollouts(c)],
    ['GET', '/v2/firmware/:id', (c) => this.firmwareOffer(c)],
    ['GET', '/v2/firmware/:id/status', (c) => this.rolloutStatus(c)],
    ['POST', '/v2/firmware/:id/targets', (c) => this.widenRollout(c)],
    ['PUT', '/v2/firmware/:id/chunks/:index', (c) => this.putChunk(c)],
    ['GET', '/v2/firmware/:id/chunks/:index', (c) => this.getChunk(c)],
    ['PUT', '/v2/firmware/:id/wraps/:did', (c) => this.putWrap(c)],
    ['POST', '/v2/firmware/:id/downloaded', (c) => this.firmwareDownloaded(c)],
    ['POST', '/v2/firmware/:id/receipt', (c) => this.firmwareReceipt(c)],
  ] satisfies Route<Handler>[]);

  constructor(private readonly config: RelayConfig, private readonly state: RelayState, private readonly logger: Logger) {
    this.auth = new Authenticator(state, config.trustedProxies, logger);
    this.enrollment = new Enrollment(state, logger);
    this.uploads = new Uploads(state);
    this.delivery = new Delivery(state);
    this.operator = new Operator(config, state, logger);
    this.logReads = new LogReads(state);
    this.groups = new Groups(state, logger);
    this.firmware = new FirmwareRollouts(config.firmware, state, this.groups, logger);
    this.peers = new SourceLimit(config.limits.maxConnectionsPerSource);
    this.proxied = new SourceLimit(config.limits.maxConnectionsPerSource);
    const { minUploadRate, uploadRateWindow } = config.limits;
    this.minUploadRate = minUploadRate > 0 ? { bytes: Math.ceil((minUploadRate * uploadRateWindow) / 1000), windowMs: uploadRateWindow } : undefined;
  }

  async listen(): Promise<{ host: string; port: number }[]> {
    const limits = this.config.limits;
    const options: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      keepAliveTimeout: limits.keepAliveTimeout,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 2))),
    };
    const tls = this.config.tls ? { cert: readFileSync(this.config.tls.cert), key: readFileSync(this.config.tls.key) } : undefined;
    const bound: { host: string; port: number }[] = [];
    for (const address of this.config.listen) {
      const server = tls ? (require('node:https') as typeof https).createServer({ ...options, ...tls }) : nodeHttp.createServer(options);
      server.maxConnections = limits.maxConnections;
      server.setTimeout(limits.idleTimeout); // no 'timeout' listener: idle sockets are destroyed
      server.on('connection', (socket: Socket) => this.admitConnection(socket));
      server.on('request', (req, res) => void this.dispatch(req, res));
      server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        this.logger.debug({ code: err.code }, 'client error');
        if (!socket.writable) return socket.destroy();
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
        socket.end(`HTTP/1.1 ${status} ${nodeHttp.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address.port, address.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const info = server.address() as AddressInfo;
      bound.push({ host: info.address, port: info.port });
      this.servers.push(server);
    }
    return bound;
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes every connection. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.shutdownSignal.abort();
    this.firmware.close();
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.servers) s.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closed);
  }

  // ---------------------------------------------------------------------------------------
  // Connections

  /**
   * Closes a new connection at once when its source already has limits.maxConnectionsPerSource
   * open, before it costs a parser or a request. A trusted proxy's connections are not counted
   * per address (they carry many clients, pooled); their requests are, per forwarded address.
   */
  private admitConnection(socket: Socket): void {
    this.openConnections++;
    socket.once('close', () => this.openConnections--);
    const source = normalizeAddress(socket.remoteAddress);
    if (this.auth.isTrustedProxy(socket.remoteAddress)) return;
    if (!this.peers.take(source)) {
      // One line per refused connection would let a flood fill the journal: the first, then every 1000th.
      if (this.peers.refused % 1000 === 1) this.logger.warn({ ip: source, open: this.peers.count(source), refused: this.peers.refused }, 'connection closed: source address at limits.maxConnectionsPerSource (counted in /v2/stats connections.refused)');
      socket.destroy();
      return;
    }
    socket.once('close', () => this.peers.release(source));
  }

  /** Behind a trusted proxy: one more request of this forwarded client, or 429 (released when it ends). */
  private admitProxied(req: IncomingMessage, res: ServerResponse): void {
    if (!this.auth.viaProxy(req)) return;
    const client = normalizeAddress(this.auth.clientAddress(req));
    if (!this.proxied.take(client)) {
      refuse(new Refusal('too_many_connections', `client ${client} has ${this.proxied.perSource} requests in progress (limits.maxConnectionsPerSource)`, 1000));
    }
    res.once('close', () => this.proxied.release(client));
  }

  // ---------------------------------------------------------------------------------------
  // Dispatch

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    const started = performance.now();
    res.on('close', () => {
      this.inFlight--;
      this.logger.debug({ method: req.method, path: pathOnly(req.url), status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
    });
    try {
      if (this.stopping) refuse(new Refusal('shutting_down', 'relay is shutting down', 1000));
      this.admitProxied(req, res);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://relay.invalid');
      } catch {
        refuse(badRequest('malformed request target'));
      }
      const { handler, params } = accepted(this.router.match(req.method ?? 'GET', url.pathname));
      await handler({ req, res, params, query: url.searchParams });
    } catch (caught) {
      let refusal: Refusal | undefined;
      if (caught instanceof HttpError) refusal = caught.refusal;
      else if (caught instanceof LogPrunedError) refusal = new Refusal('log_pruned', caught.message);
      else if (caught instanceof LogCorruptError) {
        this.logger.error({ err: caught.message }, 'transparency log file damaged; request refused');
        refusal = new Refusal('log_corrupt', 'a transparency log file is damaged; the relay operator has been told');
      }
      if (refusal) {
        // Unread body: cut off oversized and unauthenticated senders; otherwise discard the rest
        // (bounded) so the client can read the answer instead of a reset connection. A 507 is
        // discarded too: dropping chunks as they arrive costs bandwidth, not memory, and a cut-off
        // raced the client's read of the answer (under load it saw a reset, not 507 + Retry-After).
        // The answer waits until the rest is read: Node closes a connection whose request is still
        // arriving when the response ends, and a client still writing then sees EPIPE, not the answer.
        // A too-slow body is cut off too: waiting for its rest is what the rule ends.
        const cutOff = !req.complete && (refusal.status === 413 || refusal.status === 401 || refusal.code === 'too_slow');
        if (cutOff) {
          sendError(res, refusal, true);
          req.pause();
        } else if (!req.complete) {
          if (await discardBody(req, MAX_DISCARD)) sendError(res, refusal);
        } else {
          sendError(res, refusal);
        }
      } else {
        this.logger.error({ err: (caught as Error).message, stack: (caught as Error).stack }, 'request failed');
        sendError(res, new Refusal('internal', 'internal error'), true);
      }
    }
  }

  /** Ends with the client's connection or the relay's shutdown: long-polls stop waiting at either. */
  /** Ends a waiting request when its client leaves, the relay stops, or its key is revoked. */
  private abortOnClose(res: ServerResponse, key: KeyRecord): AbortSignal {
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    return AbortSignal.any([controller.signal, this.shutdownSignal.signal, this.state.keys.revokedSignal(key)]);
  }

  /**
   * A long-poll is silent for up to `waitMs` by design: the socket's idle timeout covers that wait
   * (plus the usual idle time) while it runs, and is the plain idle timeout again afterwards.
   * Otherwise a wait=20s ended in a reset at the 15 s idle timeout.
   */
  private holdOpen(req: IncomingMessage, res: ServerResponse, waitMs: number): void {
    const idle = this.config.limits.idleTimeout;
    req.socket.setTimeout(waitMs + idle);
    res.once('finish', () => req.socket.setTimeout(idle));
  }

  // ---------------------------------------------------------------------------------------
  // Health and stats

  private async health({ res }: Call): Promise<void> {
    const body: HealthBody = { status: 'ok', version: VERSION, uptimeSeconds: this.uptimeSeconds() };
    sendJson(res, 200, body);
  }

  private async stats({ req, res }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    sendJson(res, 200, this.operator.stats(this.uptimeSeconds(), {
      open: this.openConnections, sources: this.peers.sources, refused: this.peers.refused + this.proxied.refused, slowUploads: this.slowUploads,
    }));
  }

  private uptimeSeconds(): number {
    return Math.floor((Date.now() - this.startedAt) / 1000);
  }

  // ---------------------------------------------------------------------------------------
  // Enrollment

  private async challenge({ req, res }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const body = await readJson(req);
    const kemPublicKey = base64Field(body, 'kemPublicKey', XWING.publicKey);
    sendJson(res, 200, accepted(this.enrollment.challenge(key, kemPublicKey)));
  }

  private async register({ req, res }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const body = await readJson(req);
    const signingPublicKey = base64Field(body, 'signingPublicKey', ML_DSA65.publicKey);
    const kemPublicKey = base64Field(body, 'kemPublicKey', XWING.publicKey);
    const signature = base64Field(body, 'signature', ML_DSA65.signature);
    const kemProof = base64Field(body, 'kemProof', KEM_PROOF_BYTES);
    const challenge = body['challenge'];
    if (typeof challenge !== 'string' || !CHALLENGE_PATTERN.test(challenge)) refuse(badRequest('challenge must be the 43-character string from /v2/did/challenge'));
    // The statement's own parser checks its length and layout; here only that it is base64 of a sane size.
    let approval: { statement: Uint8Array; signature: Uint8Array } | undefined;
    if (body['fleetStatement'] !== undefined || body['fleetSignature'] !== undefined) {
      approval = { statement: base64Field(body, 'fleetStatement', undefined, MAX_FLEET_STATEMENT), signature: base64Field(body, 'fleetSignature', ML_DSA65.signature) };
    }
    const registered = accepted(await this.enrollment.register(key, { signingPublicKey, kemPublicKey, challenge, kemProof, signature, ...(approval ? { approval } : {}) }));
    sendJson(res, registered.created ? 201 : 200, registered.body);
  }

  private async getDid({ res, params }: Call): Promise<void> {
    sendJson(res, 200, accepted(this.enrollment.device(didParam(params['did']!))));
  }

  private async revokeDevice({ req, res, params }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    await drain(req);
    sendJson(res, 200, accepted(await this.enrollment.revoke(operator, didParam(params['did']!))));
  }

  private async renewApproval({ req, res, params }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    const body = await readJson(req);
    const approval = { statement: base64Field(body, 'fleetStatement', undefined, MAX_FLEET_STATEMENT), signature: base64Field(body, 'fleetSignature', ML_DSA65.signature) };
    sendJson(res, 200, accepted(await this.enrollment.renewApproval(operator, didParam(params['did']!), approval)));
  }

  // ---------------------------------------------------------------------------------------
  // Inbound

  private async upload({ req, res }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const declared = contentLength(req);
    const receive = (admitted: Admitted) => receiveEnvelope(req, {
      limit: admitted.limit, contentLength: declared, planName: key.plan, revoked: this.state.keys.revokedSignal(key), minRate: this.minUploadRate,
      reserve: (header) => this.uploads.reserve(key, admitted, header),
      discard: (buffer) => this.state.store.discard(buffer),
    });
    const outcome = await this.uploads.upload(key, { mediaType: mediaType(req), contentLength: declared }, receive);
    if (outcome instanceof Refusal && outcome.code === 'too_slow') {
      this.slowUploads++;
      this.logger.info({ keyId: key.id, ip: this.auth.clientAddress(req) }, 'upload cut off: body slower than limits.minUploadRate');
    }
    sendJson(res, 201, accepted(outcome));
  }

  private async status({ req, res }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const body = await readJson(req);
    const ids = body['ids'];
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((id) => typeof id === 'string' && id.length <= 128)) {
      refuse(badRequest('ids must be a list of 1 to 1000 envelope id strings'));
    }
    sendJson(res, 200, accepted(this.delivery.statuses(key, ids as string[])));
  }

  // ---------------------------------------------------------------------------------------
  // Outbound

  private async inbox({ req, res, params, query }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'receiver');
    const recipient = accepted(this.delivery.recipient(key, params['recipient']!));
    const limit = queryInt(query, 'limit', { min: 1, max: 1000, fallback: 100 });
    const waitMs = queryWait(query, this.config.limits.maxWait);
    this.holdOpen(req, res, waitMs);
    const body = accepted(await this.delivery.inbox(key, recipient, limit, { waitMs, signal: this.abortOnClose(res, key) }));
    if (!res.destroyed) sendJson(res, 200, body);
  }

  private async lease({ req, res, params, query }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'receiver');
    const recipient = accepted(this.delivery.recipient(key, params['recipient']!));
    const waitMs = queryWait(query, this.config.limits.maxWait);
    await drain(req);
    this.holdOpen(req, res, waitMs);
    const lease = accepted(await this.delivery.lease(key, recipient, { waitMs, signal: this.abortOnClose(res, key) }));
    if (!lease) {
      if (!res.destroyed) sendNoContent(res);
      return;
    }
    if (res.destroyed) return this.delivery.giveBack(lease);
    const bytes = this.delivery.handOut(key, lease);
    res.on('close', () => {
      if (!res.writableFinished) this.delivery.abandoned(key, lease);
    });
    const held = lease.held;
    res.writeHead(200, {
      'content-type': ENVELOPE_MEDIA_TYPE,
      'content-length': held.size,
      'cache-control': 'no-store',
      [LEASE_HEADERS.envelopeId]: held.id,
      [LEASE_HEADERS.leaseId]: lease.id,
      [LEASE_HEADERS.leafIndex]: String(held.leafIndex),
      [LEASE_HEADERS.expiresAt]: new Date(lease.expiresAt).toISOString(),
      [LEASE_HEADERS.receivedAt]: new Date(held.receivedAt).toISOString(),
    });
    res.end(bytes);
  }

  private async finishLease({ req, res, params }: Call, action: 'ack' | 'release'): Promise<void> {
    const key = this.auth.authenticate(req, 'receiver');
    await drain(req);
    accepted(this.delivery.finish(key, params['lease']!, action));
    sendNoContent(res);
  }

  // ---------------------------------------------------------------------------------------
  // Log (public)

  private async checkpoint({ res }: Call): Promise<void> {
    const text = this.logReads.checkpoint();
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  }

  private async logKey({ res }: Call): Promise<void> {
    sendJson(res, 200, this.logReads.key());
  }

  private async inclusion({ res, query }: Call): Promise<void> {
    const signed = this.logReads.signedSize;
    const size = queryInt(query, 'size', { min: 1, max: Math.max(1, signed), fallback: signed });
    // The bound queryInt cannot express for an empty log (its max is at least the min, 1).
    if (size > signed) refuse(badRequest(`size must be at most the signed tree size ${signed}`));
    let index: number;
    const hash = query.get('hash');
    if (hash !== null) {
      if (!/^[0-9a-f]{64}$/.test(hash)) refuse(badRequest('hash must be 64 lowercase hex digits (a leaf hash)'));
      index = accepted(await this.logReads.leafIndex(Buffer.from(hash, 'hex'), size));
    } else {
      index = queryInt(query, 'index', { min: 0 });
      if (index >= size) refuse(badRequest(`index must be below size ${size}`));
    }
    sendJson(res, 200, await this.logReads.inclusion(index, size));
  }

  private async consistency({ res, query }: Call): Promise<void> {
    const from = queryInt(query, 'from', { min: 0 });
    const to = queryInt(query, 'to', { min: 0 });
    sendJson(res, 200, accepted(await this.logReads.consistency(from, to)));
  }

  private async entries({ res, query }: Call): Promise<void> {
    const start = queryInt(query, 'start', { min: 0 });
    const end = queryInt(query, 'end', { min: 0 });
    sendJson(res, 200, accepted(await this.logReads.entries(start, end)));
  }

  /**
   * C2SP tlog-tiles, read-only: GET /v2/log/tile/<L>/<N>[.p/<W>] and /v2/log/tile/entries/<N>[.p/<W>]
   * (the checkpoint is /v2/log/checkpoint). Tile contents never change, so they may be cached forever.
   */
  private async tile({ req, res, params }: Call): Promise<void> {
    const { tile, bytes } = accepted(await this.logReads.tile(params['*']!));
    const gzip = tile.level === 'entries' && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? gzipSync(bytes) : bytes;
    res.writeHead(200, {
      'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'public, max-age=31536000, immutable',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}), vary: 'accept-encoding',
    });
    res.end(body);
  }

  // ---------------------------------------------------------------------------------------
  // Keys and audit (operator)

  private async createKey({ req, res }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    const body = await readJson(req);
    sendJson(res, 201, accepted(await this.operator.issueKey(operator, body)));
  }

  private async listKeys({ req, res }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    sendJson(res, 200, this.operator.listKeys());
  }

  private async revokeKey({ req, res, params }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    await drain(req);
    sendJson(res, 200, accepted(await this.operator.revokeKey(operator, params['id']!)));
  }

  private async purgeKey({ req, res, params }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    await drain(req);
    sendJson(res, 200, accepted(this.operator.purgeKey(operator, params['id']!)));
  }

  private async audit({ req, res, query }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    const key = query.get('key') ?? undefined;
    if (key !== undefined && !KEY_ID_PATTERN.test(key)) refuse(badRequest('key must be a 12-hex-digit key id'));
    const format = query.get('format') ?? 'json';
    if (format !== 'json' && format !== 'csv') refuse(badRequest('format must be json or csv'));
    const from = queryTime(query, 'from');
    const to = queryTime(query, 'to');
    const limit = queryInt(query, 'limit', { min: 1, max: MAX_EXPORT_ROWS, fallback: MAX_EXPORT_ROWS });
    const exported = await this.state.audit.export({ ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}), ...(key !== undefined ? { key } : {}) }, limit);
    await sendAuditExport(res, exported, format);
  }

  // ---------------------------------------------------------------------------------------
  // Groups and firmware (docs/API.md "Groups", "Firmware")

  private async listGroups({ req, res }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    sendJson(res, 200, this.groups.list());
  }

  private async setGroup({ req, res, params }: Call, member: boolean): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    await drain(req);
    sendJson(res, 200, accepted(await this.groups.set(operator, params['group']!, didParam(params['did']!), member)));
  }

  private async publishFirmware({ req, res }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    const body = await readJson(req, MAX_PUBLISH_JSON);
    const published = accepted(await this.firmware.publish(operator, {
      manifest: base64Field(body, 'manifest', undefined, MAX_PUBLISH_JSON), signatures: body['signatures'],
      publisherPublicKey: base64Field(body, 'publisherPublicKey', ML_DSA65.publicKey), targets: targetsField(body), ...firstField(body), roots: body['roots'],
    }));
    sendJson(res, published.created ? 201 : 200, published.body);
  }

  private async widenRollout({ req, res, params }: Call): Promise<void> {
    const operator = this.auth.authenticate(req, 'operator');
    const body = await readJson(req);
    sendJson(res, 200, accepted(await this.firmware.widen(operator, firmwareId(params), targetsField(body))));
  }

  private async putChunk({ req, res, params }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    requireMediaType(req, CHUNK_MEDIA_TYPE);
    const id = firmwareId(params);
    const index = chunkIndex(params);
    const bytes = await readBody(req, FIRMWARE_LIMITS.maxChunkSize + CHUNK_TAG_LENGTH, 'chunk');
    accepted(this.firmware.putChunk(id, index, bytes));
    sendNoContent(res);
  }

  private async putWrap({ req, res, params }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    requireMediaType(req, ENVELOPE_MEDIA_TYPE);
    const id = firmwareId(params);
    const bytes = await readBody(req, MAX_WRAP_BYTES, 'key wrap');
    accepted(this.firmware.putWrap(id, didParam(params['did']!), bytes));
    sendNoContent(res);
  }

  private async rolloutStatus({ req, res, params }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    sendJson(res, 200, accepted(this.firmware.status(firmwareId(params))));
  }

  private async listRollouts({ req, res }: Call): Promise<void> {
    this.auth.authenticate(req, 'operator');
    sendJson(res, 200, this.firmware.list());
  }

  private async deviceRollouts({ req, res }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    sendJson(res, 200, accepted(this.firmware.forDevice(key)));
  }

  private async firmwareOffer({ req, res, params }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    sendJson(res, 200, accepted(this.firmware.offer(key, firmwareId(params))));
  }

  /** A chunk's ETag is "<package id>.<index>": bound to the manifest, so a resumed download never mixes packages. */
  private async getChunk({ req, res, params }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const id = firmwareId(params);
    const index = chunkIndex(params);
    const bytes = accepted(this.firmware.chunk(key, id, index));
    res.writeHead(200, { 'content-type': CHUNK_MEDIA_TYPE, 'content-length': bytes.length, etag: `"${id}.${index}"`, 'cache-control': 'no-store' });
    res.end(bytes);
  }

  private async firmwareDownloaded({ req, res, params }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    await drain(req);
    accepted(this.firmware.downloaded(key, firmwareId(params)));
    sendNoContent(res);
  }

  private async firmwareReceipt({ req, res, params }: Call): Promise<void> {
    const key = this.auth.authenticate(req, 'device');
    const body = await readJson(req);
    const receipt = base64Field(body, 'receipt', undefined, MAX_RECEIPT_BYTES);
    const signature = base64Field(body, 'signature', ML_DSA65.signature);
    sendJson(res, 201, accepted(await this.firmware.receipt(key, firmwareId(params), receipt, signature)));
  }
}

/** A manifest for 64 MiB in 4 KiB chunks lists 16,384 hashes: about 700 KB as base64 JSON. */
const MAX_PUBLISH_JSON = 2 * 1024 * 1024;

function firmwareId(params: Params): string {
  const id = params['id']!;
  if (!FIRMWARE_ID_PATTERN.test(id)) refuse(notFound());
  return id;
}

function chunkIndex(params: Params): number {
  const text = params['index']!;
  if (!/^(0|[1-9]\d{0,8})$/.test(text)) refuse(badRequest('chunk index must be a decimal number'));
  return Number(text);
}

function firstField(body: Record<string, unknown>): { first?: number } {
  const first = body['first'];
  if (first === undefined) return {};
  if (!Number.isSafeInteger(first) || (first as number) < 1) refuse(badRequest('first must be a whole number >= 1 (targets offered before the rollout is widened)'));
  return { first: first as number };
}

function targetsField(body: Record<string, unknown>): string[] {
  const targets = body['targets'];
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) refuse(badRequest('targets must be a list of device DIDs'));
  return targets as string[];
}

/** A DID path segment, percent-decoded; one that does not decode names nothing. */
function didParam(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    refuse(notFound());
  }
}

/** A base64 field of exactly `length` bytes, or (length undefined) of 1..maxLength bytes. */
function base64Field(body: Record<string, unknown>, name: string, length: number | undefined, maxLength = length ?? 0): Uint8Array {
  const value = body[name];
  if (typeof value !== 'string' || value.length > 2 * maxLength || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) refuse(badRequest(`${name} must be base64`));
  const bytes = Buffer.from(value, 'base64');
  if (length !== undefined && bytes.length !== length) refuse(badRequest(`${name} must be ${length} bytes, got ${bytes.length}`));
  if (length === undefined && (bytes.length === 0 || bytes.length > maxLength)) refuse(badRequest(`${name} must be 1..${maxLength} bytes, got ${bytes.length}`));
  return new Uint8Array(bytes);
}
