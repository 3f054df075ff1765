/**
 * Streams an upload body into one buffer of the declared envelope length. Refuses as soon as the
 * size is known to be wrong (413 over the limit, 400 inconsistent) or memory is full (507),
 * without reading the rest (the refusal is the outcome). The returned buffer's length is reserved in the store. Its SHA-256
 * (the envelope id) is computed chunk by chunk while the body streams in.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { EnvelopeError, peekEnvelopeLength } from './envelope-check.js';
import { keyRevoked, type Outcome, type Refusal } from './refusal.js';
import type { RelayState } from './state.js';
import { malformed, memoryFull, tooLarge, type ReceivedEnvelope } from './upload.js';

/** Bytes read while looking for the envelope header (its length field) before giving up. */
const MAX_PREFIX = 4096;

export function receiveEnvelope(state: RelayState, req: IncomingMessage, limit: number, contentLength: number | undefined, planName: string, revoked: AbortSignal): Promise<Outcome<ReceivedEnvelope>> {
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    let prefix: Buffer[] = [];
    let prefixLength = 0;
    let buffer: Buffer | undefined;
    let received = 0;
    let settled = false;
    const fail = (refusal: Refusal): void => {
      if (settled) return;
      settled = true;
      cleanup();
      if (buffer) {
        state.store.discard(buffer);
      }
      req.pause();
      resolve(refusal);
    };
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
      buffer = state.store.allocate(declared);
      if (!buffer) return fail(memoryFull(state.retryAfterMs()));
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
    const onRevoked = (): void => fail(keyRevoked());
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      revoked.removeEventListener('abort', onRevoked);
    };
    if (revoked.aborted) return onRevoked();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    revoked.addEventListener('abort', onRevoked);
  });
}
