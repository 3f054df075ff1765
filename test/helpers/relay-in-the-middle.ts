/**
 * A relay-in-the-middle: an HTTP proxy on loopback in front of a real relay that can hold a
 * request before forwarding it and replace any answer (lease bodies, proofs, checkpoints, DID
 * records, log entries). Receivers pointed at it see a hostile relay; the relay behind it is real.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LEASE_HEADERS } from '../../protocol/api/messages.js';
import { envelopeId } from '../../protocol/envelope/index.js';

export interface Answer { status: number; headers: Record<string, string>; body: Buffer }
/** Returns a replacement answer, or undefined to pass the relay's answer through. */
export type Rewrite = (method: string, url: string, answer: Answer) => Answer | undefined | Promise<Answer | undefined>;
/** Runs before the request is forwarded; the request waits for it (e.g. an ack held until its lease expired). */
export type Hold = (method: string, url: string) => Promise<void> | undefined;

export interface RelayInTheMiddle {
  url: string;
  rewrite: Rewrite;
  hold: Hold;
  /** Every request seen, in order, as "METHOD url". */
  seen: string[];
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['content-length', 'connection', 'keep-alive', 'transfer-encoding']);

export async function startRelayInTheMiddle(target: string): Promise<RelayInTheMiddle> {
  const proxy: RelayInTheMiddle = { url: '', rewrite: () => undefined, hold: () => undefined, seen: [], close: async () => undefined };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
    try {
      proxy.seen.push(`${req.method} ${req.url}`);
      await proxy.hold(req.method!, req.url!);
      const upstream = await fetch(target + req.url, { method: req.method!, headers, ...(chunks.length ? { body: Buffer.concat(chunks) } : {}) });
      const answer: Answer = { status: upstream.status, headers: {}, body: Buffer.from(await upstream.arrayBuffer()) };
      upstream.headers.forEach((v, k) => { if (!HOP_BY_HOP.has(k)) answer.headers[k] = v; });
      const out = (await proxy.rewrite(req.method!, req.url!, answer)) ?? answer;
      res.writeHead(out.status, { ...out.headers, 'content-length': String(out.body.length) }).end(out.body);
    } catch {
      res.destroy();
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return proxy;
}

export const isLease = (method: string, url: string): boolean => method === 'POST' && /^\/v2\/inbox\/[0-9a-f]+\/lease/.test(url);
export const isAck = (method: string, url: string): boolean => method === 'POST' && /^\/v2\/leases\/[^/]+\/ack$/.test(url);

/** A lease answer carrying other envelope bytes (and, if given, another leaf index) under the relay's lease id. */
export function withEnvelope(answer: Answer, bytes: Uint8Array, leafIndex?: number): Answer {
  return {
    ...answer,
    headers: {
      ...answer.headers,
      [LEASE_HEADERS.envelopeId]: envelopeId(bytes),
      ...(leafIndex === undefined ? {} : { [LEASE_HEADERS.leafIndex]: String(leafIndex) }),
    },
    body: Buffer.from(bytes),
  };
}

export const json = (a: Answer) => JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
export const withJson = (a: Answer, value: unknown): Answer => ({ ...a, body: Buffer.from(JSON.stringify(value)) });
