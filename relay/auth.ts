/**
 * Who is asking: the API key of `Authorization: Bearer …` and its role, and the client address
 * (behind trusted proxies, from X-Forwarded-For). Failures are counted in the audit trail.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../common/log.js';
import type { Role } from '../protocol/api/index.js';
import { presentedKeyId, type KeyRecord } from './api-keys.js';
import { refuse } from './http.js';
import { normalizeAddress } from './connections.js';
import { Refusal } from './refusal.js';
import type { RelayState } from './state.js';

const AUTH_MESSAGES = {
  missing_key: 'Authorization: Bearer <key> is required',
  invalid_key: 'unknown or malformed API key',
  key_revoked: 'this API key was revoked',
} as const;

export class Authenticator {
  constructor(private readonly state: RelayState, private readonly trustedProxies: readonly string[], private readonly logger: Logger) {}

  /** The caller's key when it is valid and has one of `roles`; otherwise throws the 401 or 403. */
  authenticate(req: IncomingMessage, ...roles: Role[]): KeyRecord {
    const result = this.state.keys.authenticate(req.headers.authorization);
    if (typeof result === 'string') {
      const ip = this.clientAddress(req);
      const keyId = presentedKeyId(req.headers.authorization);
      // Counted per (ip, key id, reason) and minute (relay/audit.ts); only the first of each is logged now, so a flood cannot fill journald.
      if (this.state.audit.authFailed({ ip, keyId, outcome: result })) {
        this.logger.warn({ ip, path: pathOnly(req.url), reason: result, ...(keyId ? { keyId } : {}) }, 'authentication failed (further failures like it this minute are counted in the audit trail)');
      }
      refuse(new Refusal(result, AUTH_MESSAGES[result]));
    }
    if (!roles.includes(result.role)) refuse(new Refusal('forbidden', `a ${result.role} key may not use this endpoint`));
    return result;
  }

  /** Whether the TCP peer is a trusted proxy (its X-Forwarded-For names the client). */
  viaProxy(req: IncomingMessage): boolean {
    return this.isTrustedProxy(req.socket.remoteAddress);
  }

  /** `address` as the socket reports it; an IPv4-mapped IPv6 form matches its IPv4 entry. */
  isTrustedProxy(address: string | undefined): boolean {
    return address !== undefined && (this.trustedProxies.includes(address) || this.trustedProxies.includes(normalizeAddress(address)));
  }

  /** The client's address: the TCP peer, or behind trusted proxies the last untrusted X-Forwarded-For hop. */
  clientAddress(req: IncomingMessage): string | undefined {
    const direct = req.socket.remoteAddress;
    const forwarded = req.headers['x-forwarded-for'];
    if (direct && typeof forwarded === 'string' && this.viaProxy(req)) {
      const hops = forwarded.split(',').map((h) => h.trim()).filter(Boolean);
      for (let i = hops.length - 1; i >= 0; i--) if (!this.trustedProxies.includes(hops[i]!)) return hops[i];
    }
    return direct;
  }
}

/** The request path without its query, bounded, for log lines. */
export function pathOnly(url: string | undefined): string {
  return (url ?? '/').split('?')[0]!.slice(0, 200);
}
