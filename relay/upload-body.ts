/**
 * Streams an upload body into one buffer of the declared envelope length. Refuses as soon as the
 * size is known to be wrong (413 over the limit, 400 inconsistent), the header's checks fail or
 * memory is full (`reserve`, relay/upload.ts), or the body arrives slower than the minimum rate
 * (408), without reading the rest (the refusal is the outcome). Nothing is reserved until the
 * envelope header arrived and passed `reserve`; the returned buffer's length is reserved in the
 * store. Its SHA-256 (the envelope id) is computed chunk by chunk while the body streams in.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { EnvelopeError, decodeHeaderPrefix, type DecodedHeader } from './envelope-check.js';
import { Refusal, keyRevoked, type Outcome } from './refusal.js';
import { malformed, tooLarge, type ReceivedEnvelope } from './upload.js';

/** Bytes read while looking for the envelope header (its length field) before giving up. */
const MAX_PREFIX = 4096;

export interface ReceiveOptions {
  /** Largest envelope the key's plan takes. */
  limit: number;
  contentLength: number | undefined;
  planName: string;
  /** Aborts when the key is revoked: the upload ends at once. */
  revoked: AbortSignal;
  /** The header's checks, then a buffer of header.totalLength reserved bytes, or why not. */
  reserve(header: DecodedHeader): Outcome<Buffer>;
  /** Gives back a buffer `reserve` returned (on any refusal after it). */
  discard(buffer: Buffer): void;
  /** At least `bytes` must arrive in every `windowMs`, counted from now; undefined: no rule. */
  minRate: { bytes: number; windowMs: number } | undefined;
}

export const tooSlow = (bytes: number, windowMs: number): Refusal =>
  new Refusal('too_slow', `upload body slower than the relay's minimum of ${bytes} bytes per ${windowMs} ms`, 1000);

export function receiveEnvelope(req: IncomingMessage, o: ReceiveOptions): Promise<Outcome<ReceivedEnvelope>> {
  const { limit, contentLength, planName } = o;
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
      if (buffer) o.discard(buffer);
      req.pause();
      resolve(refusal);
    };
    // The minimum rate, measured per window: a body that trickles (issue 11: a byte every 8 s
    // kept 35 reservations alive past the idle timeout) is cut off after one slow window.
    let windowStart = 0;
    const rateTimer = o.minRate && o.minRate.bytes > 0
      ? setInterval(() => {
        if (received - windowStart < o.minRate!.bytes) return fail(tooSlow(o.minRate!.bytes, o.minRate!.windowMs));
        windowStart = received;
      }, o.minRate.windowMs)
      : undefined;
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
      let header: DecodedHeader | undefined;
      try {
        header = decodeHeaderPrefix(head);
      } catch (err) {
        if (err instanceof EnvelopeError) return fail(err.code === 'too_large' ? tooLarge(limit, planName) : malformed(`envelope: ${err.message}`));
        throw err;
      }
      if (header === undefined) {
        if (prefixLength > MAX_PREFIX) fail(malformed('envelope header not found'));
        return;
      }
      const declared = header.totalLength;
      if (declared > limit) return fail(tooLarge(limit, planName));
      if (contentLength !== undefined && contentLength !== declared) return fail(malformed(`Content-Length ${contentLength} differs from the envelope's declared length ${declared}`));
      if (received > declared) return fail(malformed(`body is longer than the declared envelope length ${declared}`));
      const reserved = o.reserve(header);
      if (reserved instanceof Refusal) return fail(reserved);
      buffer = reserved;
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
      if (rateTimer) clearInterval(rateTimer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      o.revoked.removeEventListener('abort', onRevoked);
    };
    if (o.revoked.aborted) return onRevoked();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    o.revoked.addEventListener('abort', onRevoked);
  });
}
