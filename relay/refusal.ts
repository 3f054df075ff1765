/**
 * A request the relay declines, as a value: the domain modules return it, the HTTP layer sends it
 * as `{ "error": code, "message": message }`. Its status is the code's row in the wire contract
 * (protocol/api/errors.ts), never chosen by the caller.
 */
import { RELAY_ERRORS, type RelayErrorCode } from '../protocol/api/index.js';

export class Refusal {
  constructor(readonly code: RelayErrorCode, readonly message: string, readonly retryAfterMs?: number) {}

  get status(): number {
    return RELAY_ERRORS[this.code];
  }
}

/** A domain result: the value, or why not. */
export type Outcome<T> = T | Refusal;

export const notFound = (): Refusal => new Refusal('not_found', 'no such resource');
/** The key was revoked while its request waited or streamed (it was valid when the request began). */
export const keyRevoked = (): Refusal => new Refusal('key_revoked', 'this API key was revoked while the request was under way');
export const badRequest = (message: string): Refusal => new Refusal('bad_request', message);
