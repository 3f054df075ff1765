/**
 * The one rule for plain HTTP to a relay, for every role that talks to one (agent, receiver,
 * audit): `http://` only to a loopback address. Envelopes are safe on any path, but the API key
 * is not, and anyone on the path can feed the client garbage answers.
 */
import { isIP } from 'node:net';

/** True for 127.0.0.0/8, ::1 and "localhost": plain HTTP never leaves the host. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

export class TransportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransportError';
  }
}

/** The refusal's text for `url` at `what` (a setting or option), or undefined when the URL is fine. */
export function plainHttpProblem(url: string, what: string, alternative?: string): string | undefined {
  const u = new URL(url);
  if (u.protocol !== 'http:' || isLoopbackHost(u.hostname)) return undefined;
  return `${what}: plain HTTP is only allowed to a loopback address (127.0.0.1, ::1, localhost); use https:// with a pinned ca for ${u.hostname}${alternative ? `, ${alternative}` : ''}`;
}

export function checkTransport(url: string, what: string, file?: string, alternative?: string): void {
  const problem = plainHttpProblem(url, what, alternative);
  if (problem !== undefined) throw new TransportError(`${file ? file + ': ' : ''}${problem}`);
}

/** True when a config accepts plain HTTP to a non-loopback relay (the role's start line warns about it). */
export function plainHttpOffLoopback(url: string): boolean {
  const u = new URL(url);
  return u.protocol === 'http:' && !isLoopbackHost(u.hostname);
}
