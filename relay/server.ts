/**
 * The relay's HTTP server: routing, authentication, and every endpoint of docs/API.md.
 * State lives in RelayState (relay/state.ts); this file only speaks HTTP.
 */
import type http from 'node:http';
import type https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../common/log.js';
import { HttpError, badRequest, drain, mediaType, notFound, queryInt, queryTime, queryWait, readJson, sendError, sendJson } from './http.js';
import { KEY_ID_PATTERN, maskKey, presentedKeyId, type KeyRecord, type Role } from './api-keys.js';
import { CHALLENGE_TTL_MS, FORMER_KEYS_KEPT } from './devices.js';
import { ENROLL_CONTEXT, ENVELOPE_MEDIA_TYPE, enrollmentMessage } from './client.js';
import { EnvelopeError, peekEnvelopeLength, parseForRelay, signatureValid } from './envelope-check.js';
import { transferLeafFromHash, encodeLogEntry } from '../protocol/log-entries.js';
import { keyId, keyIdHex, encodePublicKeyPem } from '../protocol/keys.js';
import { didDocument, didFromSigningKey, parseDid } from '../protocol/did.js';
import { mlDsaVerifierKey } from '../protocol/tlog/note.js';
import { parseTilePath, tilePath, TileError } from '../protocol/tlog/tiles.js';
import { LogCorruptError, LogPrunedError } from './log.js';
import { gzipSync } from 'node:zlib';
import { getProvider } from '../protocol/crypto/provider.js';
import { MAX_EXPORT_ROWS, sendAuditExport } from './audit.js';
import type { RelayState } from './state.js';
import type { RelayConfig } from './config.js';

export const VERSION = '0.1.0';
/**
 * node:http through require, not `import`: on Node 24 an ESM import of node:http materialises
 * every lazy export (WebSocket, ...), loading undici, http2, zlib and worker_threads: ~13 MB of
 * idle RSS for nothing. node:https is loaded only when TLS is configured.
 */
const require = createRequire(import.meta.url);
const nodeHttp = require('node:http') as typeof http;
const RECIPIENT_PATTERN = /^[0-9a-f]{64}$/;
const ENVELOPE_ID_PATTERN = /^[0-9a-f]{64}$/;
const LEASE_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
const MAX_PREFIX = 4096;
/** Largest body discarded after a refusal before the connection is cut (a 5 MiB envelope and then some). */
const MAX_DISCARD = 6 * 1024 * 1024;
/** Envelopes up to this size come from the slab pool (relay/buffer-pool.ts). */
const COPY_ON_SEND_BYTES = 256 * 1024;

type Handler = (req: IncomingMessage, res: ServerResponse, parts: string[], query: URLSearchParams) => Promise<void>;

export class RelayServer {
  private readonly servers: (http.Server | https.Server)[] = [];
  private inFlight = 0;
  private stopping = false;
  /** Aborted at shutdown: ends every long-poll at once. */
  private readonly shutdownSignal = new AbortController();
  readonly startedAt = Date.now();
  /** One signature verification per event-loop turn, so timers (the checkpoint signer) stay on time. */
  private readonly cpuTurns = new CpuTurns();

  constructor(private readonly config: RelayConfig, private readonly state: RelayState, private readonly log: Logger) {}

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
      server.on('request', (req, res) => void this.dispatch(req, res));
      server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        this.log.debug({ code: err.code }, 'client error');
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
    const closed = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const s of this.servers) s.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.servers) s.closeAllConnections();
    await Promise.all(closed);
  }

  // ---------------------------------------------------------------------------------------
  // Dispatch

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    const started = performance.now();
    res.on('close', () => {
      this.inFlight--;
      this.log.debug({ method: req.method, path: pathOnly(req.url), status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
    });
    try {
      if (this.stopping) throw new HttpError(503, 'shutting_down', 'relay is shutting down', 1000);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://relay.invalid');
      } catch {
        throw badRequest('malformed request target');
      }
      const parts = url.pathname.split('/').slice(1);
      const handler = this.route(req.method ?? 'GET', parts);
      await handler(req, res, parts, url.searchParams);
    } catch (caught) {
      let err = caught;
      if (err instanceof LogPrunedError) err = new HttpError(410, 'log_pruned', err.message);
      else if (err instanceof LogCorruptError) {
        this.log.error({ err: err.message }, 'transparency log file damaged; request refused');
        err = new HttpError(500, 'log_corrupt', 'a transparency log file is damaged; the relay operator has been told');
      }
      if (err instanceof HttpError) {
        // Unread body: cut off oversized and unauthenticated senders; otherwise discard the rest
        // (bounded) so the client can read the answer instead of a reset connection.
        // A 507 body is not read either: reading megabytes only to drop them is what a full relay must avoid.
        const cutOff = !req.complete && (err.status === 413 || err.status === 401 || err.status === 507);
        sendError(res, err, cutOff);
        if (cutOff) req.pause();
        else if (!req.complete) discardBody(req, MAX_DISCARD);
      } else {
        this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'request failed');
        sendError(res, new HttpError(500, 'internal', 'internal error'), true);
      }
    }
  }

  private route(method: string, p: string[]): Handler {
    const is = (m: string, ...pattern: (string | null)[]): boolean =>
      method === m && p.length === pattern.length && pattern.every((seg, i) => seg === null || seg === p[i]);
    const known = (...pattern: (string | null)[]): boolean => p.length === pattern.length && pattern.every((seg, i) => seg === null || seg === p[i]);
    if (is('GET', 'healthz')) return this.health;
    if (p[0] === 'v2') {
      if (is('GET', 'v2', 'stats')) return this.stats;
      if (is('POST', 'v2', 'did', 'challenge')) return this.challenge;
      if (is('POST', 'v2', 'did', 'register')) return this.register;
      if (is('GET', 'v2', 'did', null)) return this.getDid;
      if (is('POST', 'v2', 'did', null, 'revoke')) return this.revokeDevice;
      if (is('POST', 'v2', 'envelopes')) return this.upload;
      if (is('POST', 'v2', 'envelopes', 'status')) return this.status;
      if (is('GET', 'v2', 'inbox', null)) return this.inbox;
      if (is('POST', 'v2', 'inbox', null, 'lease')) return this.lease;
      if (is('POST', 'v2', 'leases', null, 'ack')) return this.ack;
      if (is('POST', 'v2', 'leases', null, 'release')) return this.release;
      if (is('GET', 'v2', 'log', 'checkpoint')) return this.checkpoint;
      if (is('GET', 'v2', 'log', 'key')) return this.logKey;
      if (is('GET', 'v2', 'log', 'proof', 'inclusion')) return this.inclusion;
      if (is('GET', 'v2', 'log', 'proof', 'consistency')) return this.consistency;
      if (is('GET', 'v2', 'log', 'entries')) return this.entries;
      if (p[1] === 'log' && p[2] === 'tile' && p.length > 3) return method === 'GET' ? this.tile : async () => { throw new HttpError(405, 'method_not_allowed', `${method} is not allowed here`); };
      if (is('POST', 'v2', 'keys')) return this.createKey;
      if (is('GET', 'v2', 'keys')) return this.listKeys;
      if (is('DELETE', 'v2', 'keys', null)) return this.revokeKey;
      if (is('GET', 'v2', 'audit')) return this.audit;
      const fixed = [['v2', 'stats'], ['v2', 'did', 'challenge'], ['v2', 'did', 'register'], ['v2', 'envelopes'], ['v2', 'envelopes', 'status'], ['v2', 'keys'], ['v2', 'audit'],
        ['v2', 'log', 'checkpoint'], ['v2', 'log', 'key'], ['v2', 'log', 'entries'], ['v2', 'log', 'proof', 'inclusion'], ['v2', 'log', 'proof', 'consistency']];
      if (fixed.some((f) => known(...f))) return async () => { throw new HttpError(405, 'method_not_allowed', `${method} is not allowed here`); };
    }
    return async () => { throw notFound(); };
  }

  // ---------------------------------------------------------------------------------------
  // Auth

  private authenticate(req: IncomingMessage, ...roles: Role[]): KeyRecord {
    const result = this.state.keys.authenticate(req.headers.authorization);
    if (typeof result === 'string') {
      const message = { missing_key: 'Authorization: Bearer <key> is required', invalid_key: 'unknown or malformed API key', key_revoked: 'this API key was revoked' }[result];
      const ip = this.clientIp(req);
      const keyId = presentedKeyId(req.headers.authorization);
      // Counted per (ip, key id, reason) and minute (relay/audit.ts); only the first of each is logged now, so a flood cannot fill journald.
      if (this.state.audit.authFailed({ ip, keyId, outcome: result })) {
        this.log.warn({ ip, path: pathOnly(req.url), reason: result, ...(keyId ? { keyId } : {}) }, 'authentication failed (further failures like it this minute are counted in the audit trail)');
      }
      throw new HttpError(401, result, message);
    }
    if (!roles.includes(result.role)) throw new HttpError(403, 'forbidden', `a ${result.role} key may not use this endpoint`);
    return result;
  }

  private clientIp(req: IncomingMessage): string | undefined {
    const direct = req.socket.remoteAddress;
    const forwarded = req.headers['x-forwarded-for'];
    if (direct && typeof forwarded === 'string' && this.config.trustedProxies.includes(direct)) {
      const hops = forwarded.split(',').map((h) => h.trim()).filter(Boolean);
      for (let i = hops.length - 1; i >= 0; i--) if (!this.config.trustedProxies.includes(hops[i]!)) return hops[i];
    }
    return direct;
  }

  // ---------------------------------------------------------------------------------------
  // Health and stats

  private health: Handler = async (_req, res) => {
    sendJson(res, 200, { status: 'ok', version: VERSION, uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000) });
  };

  private stats: Handler = async (req, res) => {
    this.authenticate(req, 'operator');
    const store = this.state.store;
    const q = store.stats();
    const keys = this.state.keys.all();
    const devices = this.state.devices.all();
    sendJson(res, 200, {
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      memory: { heldBytes: store.heldBytes, inFlightBytes: store.inFlightBytes, capBytes: store.capBytes, rssBytes: process.memoryUsage.rss() },
      envelopes: { pending: q.pending, leased: q.leased, delivered: store.delivered, expired: store.expired },
      queues: q.queues,
      log: {
        size: this.state.log.signedSize, origin: this.state.origin,
        checkpointLatencyMs: { last: Math.round(this.state.log.lastCheckpointMs), max: Math.round(this.state.log.maxCheckpointMs) },
      },
      keys: { active: keys.filter((k) => k.revokedAt === undefined).length, revoked: keys.filter((k) => k.revokedAt !== undefined).length },
      devices: { active: devices.filter((d) => d.revokedAt === undefined).length, revoked: devices.filter((d) => d.revokedAt !== undefined).length },
    });
  };

  // ---------------------------------------------------------------------------------------
  // Enrollment

  private challenge: Handler = async (req, res) => {
    const key = this.authenticate(req, 'device');
    await drain(req);
    const issued = this.state.devices.newChallenge(key.id);
    if (!issued) throw new HttpError(429, 'rate_limited', 'too many outstanding challenges for this key', CHALLENGE_TTL_MS);
    this.state.audit.record({ event: 'challenge', keyId: key.id, keyLabel: key.label, outcome: 'ok' });
    sendJson(res, 200, { challenge: issued.challenge, expiresAt: new Date(issued.expiresAt).toISOString() });
  };

  private register: Handler = async (req, res) => {
    const key = this.authenticate(req, 'device');
    const body = await readJson(req);
    const signingPublicKey = base64Field(body, 'signingPublicKey', 1952);
    const kemPublicKey = base64Field(body, 'kemPublicKey', 1216);
    const signature = base64Field(body, 'signature', 3309);
    const challenge = body['challenge'];
    if (typeof challenge !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) throw badRequest('challenge must be the 43-character string from /v2/did/challenge');
    const audit = (outcome: string, did?: string) => this.state.audit.record({ event: 'register', keyId: key.id, keyLabel: key.label, ...(did ? { did } : {}), outcome });
    if (!this.state.devices.takeChallenge(challenge, key.id)) {
      audit('challenge_expired');
      throw new HttpError(410, 'challenge_expired', 'challenge unknown, already used or expired; ask for a new one');
    }
    const message = enrollmentMessage(challenge, signingPublicKey, kemPublicKey);
    if (!getProvider().mlDsa65.verify(signingPublicKey, message, signature, ENROLL_CONTEXT)) {
      audit('bad_signature');
      throw new HttpError(403, 'bad_signature', 'proof-of-possession signature does not verify');
    }
    const did = didFromSigningKey(signingPublicKey);
    const existing = this.state.devices.get(did);
    // Key rotation: once the operator revoked the key a device is bound to, an unbound device key
    // may take its place with the same proof of possession. No log entry: DID and keys are unchanged.
    const boundKey = existing ? this.state.keys.get(existing.apiKeyId) : undefined;
    const rebind = existing !== undefined && existing.apiKeyId !== key.id && key.did === undefined && (boundKey === undefined || boundKey.revokedAt !== undefined);
    if ((key.did !== undefined && key.did !== did) || (existing && existing.apiKeyId !== key.id && !rebind)) {
      audit('already_bound', did);
      throw new HttpError(409, 'already_bound', 'this key is bound to another device, or this device to another key');
    }
    const document = didDocument({ signingPublicKey, kemPublicKey });
    if (existing) {
      if (existing.revokedAt !== undefined) throw new HttpError(403, 'device_revoked', 'this device was revoked');
      if (existing.kemPublicKey !== Buffer.from(kemPublicKey).toString('base64')) throw new HttpError(409, 'already_bound', 'this device is registered with another KEM key');
      if (rebind) {
        existing.formerApiKeyIds = [...(existing.formerApiKeyIds ?? []), existing.apiKeyId].slice(-FORMER_KEYS_KEPT);
        existing.apiKeyId = key.id;
        key.did = did;
        await this.state.save();
        this.log.info({ did, keyId: key.id, formerKeyId: existing.formerApiKeyIds.at(-1) }, 'device bound to a new API key (the former one is revoked)');
      }
      audit(rebind ? 'rebound' : 'ok', did);
      sendJson(res, 200, { did, document, leafIndex: existing.leafIndex });
      return;
    }
    const leafIndex = this.state.log.append(encodeLogEntry({ type: 'registration', signingKeyId: keyId('ML-DSA-65', signingPublicKey), kemKeyId: keyId('X-Wing', kemPublicKey), did }));
    // The device record names its leaf: the leaf must be durable first, or a crash could leave
    // the record pointing at a position a different leaf takes after the restart.
    await this.state.log.flush();
    this.state.devices.add({
      did, signingPublicKey: Buffer.from(signingPublicKey).toString('base64'), kemPublicKey: Buffer.from(kemPublicKey).toString('base64'),
      signingKeyId: keyIdHex('ML-DSA-65', signingPublicKey), apiKeyId: key.id, registeredAt: Date.now(), leafIndex,
    });
    key.did = did;
    await this.state.save();
    audit('ok', did);
    sendJson(res, 201, { did, document, leafIndex });
  };

  private didParam(segment: string): string {
    let did: string;
    try {
      did = decodeURIComponent(segment);
      parseDid(did);
    } catch {
      throw notFound();
    }
    return did;
  }

  private getDid: Handler = async (_req, res, p) => {
    const device = this.state.devices.get(this.didParam(p[2]!));
    if (!device) throw notFound();
    const document = didDocument({ signingPublicKey: Buffer.from(device.signingPublicKey, 'base64'), kemPublicKey: Buffer.from(device.kemPublicKey, 'base64') });
    sendJson(res, 200, {
      did: device.did, document, revoked: device.revokedAt !== undefined, registeredAt: new Date(device.registeredAt).toISOString(), leafIndex: device.leafIndex,
      ...(device.revokedAt !== undefined ? { revokedAt: new Date(device.revokedAt).toISOString(), revocationLeafIndex: device.revocationLeafIndex } : {}),
    });
  };

  private revokeDevice: Handler = async (req, res, p) => {
    const operator = this.authenticate(req, 'operator');
    await drain(req);
    const device = this.state.devices.get(this.didParam(p[2]!));
    if (!device) throw notFound();
    if (device.revokedAt === undefined) {
      device.revocationLeafIndex = this.state.log.append(encodeLogEntry({ type: 'revocation', signingKeyId: Buffer.from(device.signingKeyId, 'hex'), did: device.did }));
      await this.state.log.flush();
      device.revokedAt = Date.now();
      await this.state.save();
      this.state.audit.record({ event: 'device_revoked', keyId: operator.id, keyLabel: operator.label, did: device.did, outcome: 'ok' });
    }
    sendJson(res, 200, { did: device.did, revoked: true, leafIndex: device.revocationLeafIndex });
  };

  // ---------------------------------------------------------------------------------------
  // Inbound

  private upload: Handler = async (req, res) => {
    const key = this.authenticate(req, 'device');
    const plan = this.state.plan(key);
    const audit = (outcome: string, extra: { did?: string; envelopeHash?: string; size?: number } = {}) =>
      this.state.audit.record({ event: 'upload', keyId: key.id, keyLabel: key.label, ...extra, outcome });
    const refuse = (err: HttpError): never => {
      audit(err.code);
      throw err;
    };
    const wait = this.state.keys.takeRateToken(key, plan.plan);
    if (wait > 0) refuse(new HttpError(429, 'rate_limited', `plan "${key.plan}" allows ${plan.plan.ratePerMinute} uploads per minute`, wait));
    if (!this.state.keys.quotaAllows(key, plan.plan)) refuse(quotaExceeded(key.plan, plan.plan.quota, this.state.keys.quotaResetsInMs(key, plan.plan)));
    if (mediaType(req) !== ENVELOPE_MEDIA_TYPE) refuse(new HttpError(415, 'unsupported_media_type', `expected Content-Type: ${ENVELOPE_MEDIA_TYPE}`));
    // The log's unwritten tiles are RAM: when the disk falls that far behind, uploads wait.
    if (this.state.log.congested) refuse(new HttpError(503, 'log_busy', 'the transparency log is writing a large backlog; retry shortly', 1000));
    const limit = plan.envelopeLimit;
    const lengthHeader = req.headers['content-length'];
    const contentLength = lengthHeader === undefined ? undefined : Number(lengthHeader);
    if (contentLength !== undefined && contentLength > limit) refuse(tooLarge(limit, key.plan));
    // Full before the first byte: refuse now, read nothing (the connection is then cut off).
    if (contentLength !== undefined && !this.state.store.canAllocate(contentLength)) refuse(memoryFull(this.state.retryAfterMs()));

    const { bytes, sha256 } = await this.receiveEnvelope(req, limit, contentLength, key.plan).catch((err: unknown) => {
      if (err instanceof HttpError) refuse(err);
      throw err;
    });
    let stored = false;
    try {
      let env;
      try {
        env = parseForRelay(bytes, limit);
      } catch (err) {
        if (err instanceof EnvelopeError) refuse(new HttpError(400, 'malformed_envelope', `envelope: ${err.message}`));
        throw err;
      }
      const device = key.did === undefined ? undefined : this.state.devices.get(key.did);
      if (!device) refuse(new HttpError(403, 'device_not_enrolled', 'this key is not bound to an enrolled device; register first'));
      const did = device!.did;
      if (device!.revokedAt !== undefined) refuse(new HttpError(403, 'device_revoked', 'the device bound to this key was revoked'));
      const sender = Buffer.from(env.header.senderKeyId);
      const expected = Buffer.from(device!.signingKeyId, 'hex');
      if (sender.length !== expected.length || !timingSafeEqual(sender, expected)) {
        audit('wrong_signer', { did, size: bytes.length });
        throw new HttpError(403, 'wrong_signer', 'envelope sender is not the device bound to this key');
      }
      await this.cpuTurns.next();
      if (!signatureValid(env, this.state.devices.signingKey(device!))) {
        audit('bad_signature', { did, size: bytes.length });
        throw new HttpError(403, 'bad_signature', 'envelope signature does not verify');
      }
      const leaf = transferLeafFromHash(sha256);
      const id = Buffer.from(leaf.envelopeHash).toString('hex');
      if (this.state.store.seen(id)) {
        audit('duplicate', { did, envelopeHash: id, size: bytes.length });
        throw new HttpError(409, 'duplicate', 'this envelope is already held or was already delivered');
      }
      // A re-upload of a recent envelope (held ones are refused above) keeps its leaf.
      const leafIndex = (await this.state.log.indexOfLeafHash(leaf.hash)) ?? this.state.log.append(leaf.data);
      this.state.store.add({ id, bytes, recipient: Buffer.from(env.header.recipientKeyId).toString('hex'), uploaderKeyId: key.id, leafIndex });
      stored = true;
      this.state.keys.countTransfer(key);
      this.state.usageChanged();
      audit('ok', { did, envelopeHash: id, size: bytes.length });
      sendJson(res, 201, { id, leafIndex, size: bytes.length });
    } finally {
      if (!stored) {
        this.state.store.discard(bytes);
      }
    }
  };

  /**
   * Streams the body into one buffer of the declared envelope length. Refuses as soon as the
   * size is known to be wrong (413 over the limit, 400 inconsistent) or memory is full (507),
   * without reading the rest. The returned buffer's length is reserved in the store. Its
   * SHA-256 (the envelope id) is computed chunk by chunk while the body streams in.
   */
  private receiveEnvelope(req: IncomingMessage, limit: number, contentLength: number | undefined, planName: string): Promise<{ bytes: Buffer; sha256: Uint8Array }> {
    return new Promise((resolve, reject) => {
      const hash = createHash('sha256');
      let prefix: Buffer[] = [];
      let prefixLength = 0;
      let buffer: Buffer | undefined;
      let received = 0;
      let settled = false;
      const fail = (err: HttpError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        if (buffer) {
          this.state.store.discard(buffer);
        }
        req.pause();
        reject(err);
      };
      const malformed = (message: string) => new HttpError(400, 'malformed_envelope', message);
      const onData = (chunk: Buffer): void => {
        if (settled) return;
        received += chunk.length;
        if (received > limit) return fail(tooLarge(limit, planName));
        hash.update(chunk);
        if (buffer) {
          if (received > buffer.length) return fail(malformed(`body is longer than the declared envelope length ${buffer.length}`));
          chunk.copy(buffer, received - chunk.length);
          return;
        }
        prefix.push(chunk);
        prefixLength += chunk.length;
        const head = prefix.length === 1 ? prefix[0]! : Buffer.concat(prefix);
        prefix = [head];
        let declared: number | undefined;
        try {
          declared = peekEnvelopeLength(head);
        } catch (err) {
          if (err instanceof EnvelopeError) return fail(err.code === 'too_large' ? tooLarge(limit, planName) : malformed(`envelope: ${err.message}`));
          throw err;
        }
        if (declared === undefined) {
          if (prefixLength > MAX_PREFIX) fail(malformed('envelope header not found'));
          return;
        }
        if (declared > limit) return fail(tooLarge(limit, planName));
        if (contentLength !== undefined && contentLength !== declared) return fail(malformed(`Content-Length ${contentLength} differs from the envelope's declared length ${declared}`));
        if (received > declared) return fail(malformed(`body is longer than the declared envelope length ${declared}`));
        buffer = this.state.store.allocate(declared);
        if (!buffer) return fail(memoryFull(this.state.retryAfterMs()));
        head.copy(buffer, 0);
        prefix = [];
      };
      const onEnd = (): void => {
        if (settled) return;
        if (!buffer || received < buffer.length) return fail(malformed(`envelope truncated: ${received} bytes received${buffer ? ` of ${buffer.length}` : ''}`));
        settled = true;
        cleanup();
        resolve({ bytes: buffer, sha256: hash.digest() });
      };
      const onClose = (): void => {
        if (!settled) fail(malformed('connection closed before the envelope was complete'));
      };
      const cleanup = (): void => {
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('close', onClose);
      };
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('close', onClose);
    });
  }

  private status: Handler = async (req, res) => {
    const key = this.authenticate(req, 'device');
    const body = await readJson(req);
    const ids = body['ids'];
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > 1000 || !ids.every((id) => typeof id === 'string' && id.length <= 128)) {
      throw badRequest('ids must be a list of 1 to 1000 envelope id strings');
    }
    const statuses: Record<string, string> = Object.create(null) as Record<string, string>;
    // A key bound to no device uploaded nothing; "unknown" would tell a freshly rotated agent to re-send everything.
    if (key.did === undefined) throw new HttpError(403, 'device_not_enrolled', 'this key is not bound to an enrolled device; register first');
    // After a key rotation the device still learns the fate of what it uploaded with its former keys.
    const former = this.state.devices.get(key.did)?.formerApiKeyIds ?? [];
    const statusOf = (id: string): string => {
      let status: string = this.state.store.status(id, key.id);
      for (let i = former.length - 1; status === 'unknown' && i >= 0; i--) status = this.state.store.status(id, former[i]!);
      return status;
    };
    for (const id of ids as string[]) statuses[id] = ENVELOPE_ID_PATTERN.test(id) ? statusOf(id) : 'unknown';
    sendJson(res, 200, { statuses });
  };

  // ---------------------------------------------------------------------------------------
  // Outbound

  private recipientParam(key: KeyRecord, segment: string): string {
    if (!RECIPIENT_PATTERN.test(segment) || !key.recipients?.includes(segment)) throw notFound();
    return segment;
  }

  private abortOnClose(res: ServerResponse): AbortSignal {
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    return AbortSignal.any([controller.signal, this.shutdownSignal.signal]);
  }

  private inbox: Handler = async (req, res, p, query) => {
    const key = this.authenticate(req, 'receiver');
    const recipient = this.recipientParam(key, p[2]!);
    const limit = queryInt(query, 'limit', { min: 1, max: 1000, fallback: 100 });
    const waitMs = queryWait(query, this.config.limits.maxWait);
    const signal = this.abortOnClose(res);
    const deadline = Date.now() + waitMs;
    let items = this.state.store.list(recipient, limit);
    while (items.length === 0 && Date.now() < deadline && !signal.aborted) {
      await this.state.store.waitFor(recipient, deadline - Date.now(), signal);
      items = this.state.store.list(recipient, limit);
    }
    if (res.destroyed) return;
    sendJson(res, 200, {
      envelopes: items.map((h) => ({ id: h.id, size: h.size, leafIndex: h.leafIndex, receivedAt: new Date(h.receivedAt).toISOString(), state: h.state })),
    });
  };

  private lease: Handler = async (req, res, p, query) => {
    const key = this.authenticate(req, 'receiver');
    const recipient = this.recipientParam(key, p[2]!);
    const waitMs = queryWait(query, this.config.limits.maxWait);
    await drain(req);
    const signal = this.abortOnClose(res);
    const deadline = Date.now() + waitMs;
    let lease = this.state.store.lease(recipient, key.id);
    while (!lease && Date.now() < deadline && !signal.aborted) {
      await this.state.store.waitFor(recipient, deadline - Date.now(), signal);
      lease = this.state.store.lease(recipient, key.id);
    }
    if (!lease) {
      if (!res.destroyed) {
        res.writeHead(204, { 'cache-control': 'no-store' });
        res.end();
      }
      return;
    }
    if (res.destroyed) {
      this.state.store.release(lease);
      return;
    }
    const held = lease.held;
    const taken = lease;
    this.state.audit.record({ event: 'lease', keyId: key.id, keyLabel: key.label, envelopeHash: held.id, size: held.size, outcome: 'ok' });
    res.on('close', () => {
      // The receiver vanished before it got every byte: give the envelope back at once.
      if (!res.writableFinished && this.state.store.findLease(taken.id, key.id) === taken) this.state.store.release(taken);
    });
    res.writeHead(200, {
      'content-type': ENVELOPE_MEDIA_TYPE,
      'content-length': held.size,
      'cache-control': 'no-store',
      'ghostpipe-envelope-id': held.id,
      'ghostpipe-lease-id': lease.id,
      'ghostpipe-leaf-index': String(held.leafIndex),
      'ghostpipe-lease-expires': new Date(lease.expiresAt).toISOString(),
      'ghostpipe-received-at': new Date(held.receivedAt).toISOString(),
    });
    // Small envelopes live in reused slab slots: send a private copy, so a slow reader whose
    // lease expires can never be handed a slot that was burned and reused meanwhile.
    const bytes = held.bytes;
    res.end(bytes.length <= COPY_ON_SEND_BYTES ? Buffer.from(bytes) : bytes);
  };

  private leaseAction(action: 'ack' | 'release'): Handler {
    return async (req, res, p) => {
      const key = this.authenticate(req, 'receiver');
      await drain(req);
      const leaseId = p[2]!;
      const lease = LEASE_ID_PATTERN.test(leaseId) ? this.state.store.findLease(leaseId, key.id) : undefined;
      if (lease === undefined) throw notFound();
      if (lease === 'expired') throw new HttpError(410, 'lease_expired', 'the lease timed out; the envelope went back to the queue');
      const { id, size } = lease.held;
      if (action === 'ack') this.state.store.ack(lease);
      else this.state.store.release(lease);
      this.state.audit.record({ event: action, keyId: key.id, keyLabel: key.label, envelopeHash: id, size, outcome: 'ok' });
      res.writeHead(204, { 'cache-control': 'no-store' });
      res.end();
    };
  }
  private ack = this.leaseAction('ack');
  private release = this.leaseAction('release');

  // ---------------------------------------------------------------------------------------
  // Log (public)

  private checkpoint: Handler = async (_req, res) => {
    const text = this.state.log.checkpoint;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  };

  private logKey: Handler = async (_req, res) => {
    const pk = this.state.relayPublicKey;
    sendJson(res, 200, {
      origin: this.state.origin, verifierKey: mlDsaVerifierKey(this.state.origin, pk),
      publicKey: Buffer.from(pk).toString('base64'), publicKeyPem: encodePublicKeyPem('ML-DSA-65', pk),
    });
  };

  private inclusion: Handler = async (_req, res, _p, query) => {
    const log = this.state.log;
    const signed = log.signedSize;
    const size = queryInt(query, 'size', { min: 1, max: Math.max(1, signed), fallback: signed });
    if (size > signed) throw badRequest(`size must be at most the signed tree size ${signed}`);
    let index: number;
    const hash = query.get('hash');
    if (hash !== null) {
      if (!/^[0-9a-f]{64}$/.test(hash)) throw badRequest('hash must be 64 lowercase hex digits (a leaf hash)');
      const found = await log.indexOfLeafHash(Buffer.from(hash, 'hex'));
      if (found === undefined || found >= size) throw notFound();
      index = found;
    } else {
      index = queryInt(query, 'index', { min: 0 });
      if (index >= size) throw badRequest(`index must be below size ${size}`);
    }
    sendJson(res, 200, { leafIndex: index, treeSize: size, proof: (await log.inclusionProof(index, size)).map(b64) });
  };

  private consistency: Handler = async (_req, res, _p, query) => {
    const signed = this.state.log.signedSize;
    const from = queryInt(query, 'from', { min: 0 });
    const to = queryInt(query, 'to', { min: 0 });
    if (from > to || to > signed) throw badRequest(`need 0 <= from <= to <= ${signed} (the signed tree size)`);
    sendJson(res, 200, { from, to, proof: (await this.state.log.consistencyProof(from, to)).map(b64) });
  };

  private entries: Handler = async (_req, res, _p, query) => {
    const signed = this.state.log.signedSize;
    const start = queryInt(query, 'start', { min: 0 });
    const end = queryInt(query, 'end', { min: 0 });
    if (start >= end || end > signed || end - start > 1000) throw badRequest(`need start < end <= ${signed} (the signed tree size), at most 1000 entries`);
    const entries: { index: number; data: string }[] = [];
    (await this.state.log.entries(start, end)).forEach((data, i) => entries.push({ index: start + i, data: b64(data) }));
    sendJson(res, 200, { entries });
  };

  /**
   * C2SP tlog-tiles, read-only: GET /v2/log/tile/<L>/<N>[.p/<W>] and /v2/log/tile/entries/<N>[.p/<W>]
   * (the checkpoint is /v2/log/checkpoint). Tile contents never change, so they may be cached forever.
   */
  private tile: Handler = async (req, res, p) => {
    let tile;
    try {
      tile = parseTilePath(p.slice(3));
    } catch (err) {
      if (err instanceof TileError) throw badRequest(err.message);
      throw err;
    }
    const bytes = await this.state.log.tileBytes(tile);
    if (bytes === undefined) throw new HttpError(404, 'not_found', `${tilePath(tile)} is beyond the signed tree size ${this.state.log.signedSize}`);
    const gzip = tile.level === 'entries' && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? gzipSync(bytes) : bytes;
    res.writeHead(200, {
      'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'public, max-age=31536000, immutable',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}), vary: 'accept-encoding',
    });
    res.end(body);
  };

  // ---------------------------------------------------------------------------------------
  // Keys and audit (operator)

  private createKey: Handler = async (req, res) => {
    const operator = this.authenticate(req, 'operator');
    const body = await readJson(req);
    const { role, plan, label, recipients } = body;
    if (role !== 'device' && role !== 'receiver') throw badRequest('role must be "device" or "receiver"');
    if (typeof plan !== 'string' || !Object.hasOwn(this.config.plans, plan)) throw badRequest(`plan must be one of ${Object.keys(this.config.plans).join(', ')}`);
    if (typeof label !== 'string' || label.length < 1 || label.length > 100 || !/^[^\p{Cc}]+$/u.test(label)) throw badRequest('label must be 1 to 100 printable characters');
    let list: string[] | undefined;
    if (role === 'receiver') {
      if (!Array.isArray(recipients) || recipients.length < 1 || recipients.length > 64 || !recipients.every((r) => typeof r === 'string' && RECIPIENT_PATTERN.test(r))) {
        throw badRequest('a receiver key needs recipients: 1 to 64 recipient key ids (64 lowercase hex digits each)');
      }
      list = [...new Set(recipients as string[])];
    } else if (recipients !== undefined) {
      throw badRequest('recipients are only for receiver keys');
    }
    const { record, key } = this.state.keys.issue(role, plan, label, list);
    await this.state.save();
    this.state.audit.record({ event: 'key_issued', keyId: record.id, keyLabel: record.label, outcome: 'ok' });
    this.log.info({ keyId: record.id, role, plan, by: operator.id }, 'API key issued');
    sendJson(res, 201, { id: record.id, key, role, plan, label, createdAt: new Date(record.createdAt).toISOString(), ...(list ? { recipients: list } : {}) });
  };

  private listKeys: Handler = async (req, res) => {
    this.authenticate(req, 'operator');
    const keys = this.state.keys.all().map((r) => {
      const plan = this.config.plans[r.plan];
      return {
        id: r.id, masked: maskKey(r), role: r.role, plan: r.plan, label: r.label, createdAt: new Date(r.createdAt).toISOString(),
        revoked: r.revokedAt !== undefined,
        ...(r.revokedAt !== undefined ? { revokedAt: new Date(r.revokedAt).toISOString() } : {}),
        ...(r.did ? { did: r.did } : {}),
        ...(r.recipients ? { recipients: r.recipients } : {}),
        ...(r.role !== 'operator' && plan ? { usage: { periodStart: new Date(r.usage.periodStart).toISOString(), transfers: r.usage.transfers, quota: plan.quota } } : {}),
      };
    });
    sendJson(res, 200, { keys });
  };

  private revokeKey: Handler = async (req, res, p) => {
    const operator = this.authenticate(req, 'operator');
    await drain(req);
    const id = p[2]!;
    const record = KEY_ID_PATTERN.test(id) ? this.state.keys.get(id) : undefined;
    if (!record) throw notFound();
    if (record.role === 'operator' && record.revokedAt === undefined && this.state.keys.activeOperators() <= 1) {
      throw new HttpError(409, 'last_operator_key', 'refusing to revoke the last active operator key');
    }
    if (record.revokedAt === undefined) {
      this.state.keys.revoke(id);
      await this.state.save();
      this.state.audit.record({ event: 'key_revoked', keyId: record.id, keyLabel: record.label, outcome: 'ok' });
      this.log.info({ keyId: record.id, by: operator.id }, 'API key revoked');
    }
    sendJson(res, 200, { id, revoked: true });
  };

  private audit: Handler = async (req, res, _p, query) => {
    this.authenticate(req, 'operator');
    const key = query.get('key') ?? undefined;
    if (key !== undefined && !KEY_ID_PATTERN.test(key)) throw badRequest('key must be a 12-hex-digit key id');
    const format = query.get('format') ?? 'json';
    if (format !== 'json' && format !== 'csv') throw badRequest('format must be json or csv');
    const from = queryTime(query, 'from');
    const to = queryTime(query, 'to');
    const limit = queryInt(query, 'limit', { min: 1, max: MAX_EXPORT_ROWS, fallback: MAX_EXPORT_ROWS });
    const exported = await this.state.audit.export({ ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}), ...(key !== undefined ? { key } : {}) }, limit);
    await sendAuditExport(res, exported, format);
  };
}

/**
 * Hands out turns one per event-loop iteration. A burst of uploads would otherwise verify
 * back to back in one poll phase (about 7 ms each with @noble/post-quantum), delaying the
 * checkpoint timer past its 250 ms budget; between turns, timers and I/O run.
 */
class CpuTurns {
  private readonly waiting: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  next(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.head === this.waiting.length) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const resolve = this.waiting[this.head++]!;
      if (this.head === this.waiting.length) this.waiting.length = this.head = 0;
      resolve();
      this.schedule();
    });
  }
}

function discardBody(req: IncomingMessage, maxBytes: number): void {
  let seen = 0;
  req.removeAllListeners('data');
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) req.socket.destroy();
  });
  req.resume();
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function pathOnly(url: string | undefined): string {
  return (url ?? '/').split('?')[0]!.slice(0, 200);
}

function memoryFull(retryAfterMs: number): HttpError {
  return new HttpError(507, 'memory_full', 'relay memory is full; retry later', retryAfterMs);
}

/** Retry-After: when the quota period rolls over (an operator may raise the quota sooner). */
function quotaExceeded(plan: string, quota: number, resetsInMs: number): HttpError {
  return new HttpError(402, 'quota_exceeded', `plan "${plan}" quota of ${quota} transfers for this period is used up`, resetsInMs);
}

function tooLarge(limit: number, plan: string): HttpError {
  return new HttpError(413, 'too_large', `envelope larger than ${limit} bytes, the largest allowed for plan "${plan}"`);
}

function base64Field(body: Record<string, unknown>, name: string, length: number): Uint8Array {
  const value = body[name];
  if (typeof value !== 'string' || value.length > 2 * length || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw badRequest(`${name} must be base64`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length !== length) throw badRequest(`${name} must be ${length} bytes, got ${bytes.length}`);
  return new Uint8Array(bytes);
}
