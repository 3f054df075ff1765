/**
 * Mutated requests for the relay: a corpus request (corpus.ts) with header, method, path, query,
 * body and envelope mutations, sent over node:http (keep-alive), or over a raw socket when the
 * mutation is malformed HTTP that node's client refuses to write.
 */
import http from 'node:http';
import net from 'node:net';
import { getProvider } from '../../protocol/crypto/provider.js';
import { HEADER_LENGTH, SIGNATURE_CONTEXT, signatureMessage } from '../../protocol/envelope/index.js';
import { ML_DSA65 } from '../../protocol/crypto/sizes.js';
import type { BaseRequest, FuzzContext } from './corpus.js';
import { Rng, edgeLength, mutateBytes, mutateJsonText, mutateString, randomJson } from './mutate.js';

export interface WireRequest {
  index: number;
  route: string;
  mutations: string[];
  method: string;
  target: string;
  headers: [string, string][];
  body?: Uint8Array;
  /** Set for raw-socket requests: the exact bytes written (in `chunks` pieces). */
  raw?: Uint8Array;
}

export interface Answer {
  /** HTTP status, 0 when none arrived. */
  status: number;
  /** Every status seen on a raw connection (pipelined requests). */
  statuses?: number[];
  headers?: http.IncomingHttpHeaders;
  body?: Buffer;
  /** No answer: the transport's reason (reset, timeout, refused). */
  error?: string;
}

/** encodeURIComponent, except that a lone surrogate (which it refuses) goes through as-is. */
const encode = (s: string): string => {
  try {
    return encodeURIComponent(s);
  } catch {
    return s;
  }
};

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'get', 'G3T'];

/** Header edits: drop, duplicate, garbage, oversized, another key, another media type. */
function mutateHeaders(rng: Rng, ctx: FuzzContext, headers: [string, string][], note: (m: string) => void): void {
  switch (rng.int(6)) {
    case 0:
      if (headers.length > 0) {
        const [name] = headers.splice(rng.int(headers.length), 1)[0]!;
        note(`header-drop:${name}`);
      }
      break;
    case 1: {
      const h = headers.length > 0 ? rng.pick(headers) : (['x-fuzz', 'a'] as [string, string]);
      headers.push([h[0], rng.chance(0.5) ? h[1] : mutateString(rng, h[1])]);
      note(`header-dup:${h[0]}`);
      break;
    }
    case 2: {
      if (headers.length === 0) headers.push(['x-fuzz', 'a']);
      const h = rng.pick(headers);
      h[1] = rng.chance(0.3) ? Buffer.from(rng.bytes(1 + rng.int(40))).toString('latin1') : mutateString(rng, h[1]);
      note(`header-garbage:${h[0]}`);
      break;
    }
    case 3: {
      const size = rng.chance(0.5) ? 17 * 1024 + rng.int(20_000) : 1000 + rng.int(8000);
      headers.push([rng.chance(0.5) ? 'x-fuzz' : 'authorization', 'A'.repeat(size)]);
      note(`header-oversized:${size}`);
      break;
    }
    case 4: {
      const keys = [ctx.keys.device, ctx.keys.receiver, ctx.keys.operator, ctx.keys.unenrolled, ''];
      const value = rng.pick([
        () => `Bearer ${rng.pick(keys)}`,
        () => `Bearer ${mutateString(rng, rng.pick(keys))}`,
        () => 'Bearer',
        () => `Basic ${Buffer.from('a:b').toString('base64')}`,
        () => `bearer ${rng.pick(keys)}`,
        () => `Bearer ${rng.pick(keys)} ${rng.pick(keys)}`,
      ])();
      const at = headers.findIndex(([n]) => n === 'authorization');
      if (at >= 0) headers[at] = ['authorization', value];
      else headers.push(['authorization', value]);
      note('auth-swap');
      break;
    }
    default: {
      const value = rng.pick(['application/json', 'application/vnd.ghostpipe.envelope', 'application/json; charset=utf-8', 'APPLICATION/JSON',
        'text/plain', 'multipart/form-data; boundary=x', '', ';', 'application/vnd.ghostpipe.envelope;;;=']);
      const at = headers.findIndex(([n]) => n === 'content-type');
      if (at >= 0) headers[at] = ['content-type', value];
      else headers.push(['content-type', value]);
      note('content-type');
    }
  }
}

function mutatePath(rng: Rng, segments: string[], note: (m: string) => void): string[] {
  const s = [...segments];
  switch (rng.int(7)) {
    case 0: {
      const i = rng.int(s.length);
      s[i] = mutateString(rng, s[i]!);
      break;
    }
    case 1: s.splice(rng.int(s.length + 1), 0, rng.pick(['', '..', '.', '%2F', 'v2', 'x', 'lease', 'ack', '*'])); break;
    case 2: if (s.length > 1) s.splice(rng.int(s.length), 1); break;
    case 3: {
      const i = rng.int(s.length);
      s[i] = encode(s[i]!).replace(/[a-z0-9]/gi, (c) => (rng.chance(0.3) ? `%${c.charCodeAt(0).toString(16)}` : c));
      break;
    }
    case 4: s.push(''); break;
    case 5: {
      const i = rng.int(s.length);
      s[i] = 'x'.repeat(rng.chance(0.2) ? 9000 : edgeLength(rng));
      break;
    }
    default: return rng.pick([['..', '..', 'etc', 'passwd'], ['v2', '%00'], [''], ['v2', 'did', '%ZZ'], ['v2', 'log', 'tile', ...Array(40).fill('0')]]);
  }
  note('path');
  return s;
}

function mutateQuery(rng: Rng, query: [string, string][], note: (m: string) => void): [string, string][] {
  const q = query.map(([k, v]) => [k, v] as [string, string]);
  const names = ['wait', 'limit', 'index', 'size', 'hash', 'from', 'to', 'start', 'end', 'format', 'key'];
  switch (rng.int(5)) {
    case 0: if (q.length > 0) q.splice(rng.int(q.length), 1); break;
    case 1: q.push([rng.pick(names), rng.pick(['0', '-1', '1e3', '99999999999999999', '', 'abc', '1000', '1001', '60s', '1h', '5ms', '2026-01-01', 'csv', '0x1'])]); break;
    case 2: if (q.length > 0) { const e = rng.pick(q); q.push([e[0], mutateString(rng, e[1])]); } break;
    case 3: if (q.length > 0) { const e = rng.pick(q); e[1] = mutateString(rng, e[1]); } break;
    default: q.push(['x', 'y'.repeat(edgeLength(rng) * 4)]);
  }
  note('query');
  return q;
}

/** An edit of the header (or of the signed bytes' length) with a fresh, valid device signature over it. */
export function resign(rng: Rng, ctx: FuzzContext, envelope: Uint8Array, note: (m: string) => void): Uint8Array {
  const signedLength = envelope.length - ML_DSA65.signature;
  let signed: Uint8Array = envelope.slice(0, signedLength);
  const view = new DataView(signed.buffer);
  // Offsets: docs in protocol/envelope/header.ts.
  const edits: [string, () => void][] = [
    ['sequence', () => view.setBigUint64(21, rng.chance(0.5) ? 0n : BigInt(rng.int(2 ** 31)) << BigInt(rng.int(33)))],
    ['createdAt', () => view.setBigUint64(29, rng.pick([0n, 2n ** 53n, 2n ** 63n, BigInt(Date.now() + 86_400_000 * 365)]))],
    ['streamId', () => view.setUint32(17, rng.int(2 ** 32))],
    ['contentType', () => view.setUint16(11, rng.int(2 ** 16))],
    ['bucket', () => view.setUint32(13, rng.pick([0, 1, 1024, 4096, 65536, 2 ** 32 - 1]))],
    ['recipientKeyId', () => signed.set(rng.bytes(32), 69)],
    ['senderKeyId', () => signed.set(rng.bytes(32), 37)],
    ['suite', () => view.setUint16(rng.pick([5, 7, 9]), rng.pick([0, 1, 2, 3, 0x647a, 0xffff]))],
    ['lengths', () => view.setUint32(103, rng.pick([0, 16, view.getUint32(103) + 1, 2 ** 32 - 1]))],
    ['ciphertext', () => { signed[HEADER_LENGTH + rng.int(signedLength - HEADER_LENGTH)]! ^= 1 << rng.int(8); }],
    ['truncate-ct', () => { signed = signed.subarray(0, HEADER_LENGTH + rng.int(signedLength - HEADER_LENGTH)); }],
  ];
  const [name, edit] = rng.pick(edits);
  edit();
  note(`resign:${name}`);
  const signature = getProvider().mlDsa65.sign(ctx.signer.seed, signatureMessage(signed), SIGNATURE_CONTEXT);
  const out = new Uint8Array(signed.length + signature.length);
  out.set(signed);
  out.set(signature, signed.length);
  return out;
}

function encodeTarget(segments: string[], query: [string, string][], rng: Rng): string {
  const path = '/' + segments.join('/');
  if (query.length === 0) return path;
  // Mostly encoded; sometimes as-is, so raw '&', '#', '%' and non-ASCII reach the URL parser.
  const enc = rng.chance(0.8) ? encode : (s: string) => s;
  return `${path}?${query.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')}`;
}

/** Malformed HTTP that only a raw socket writes: request lines, chunking, length lies, folding, pipelining. */
function rawRequest(rng: Rng, base: WireRequest, host: string, note: (m: string) => void): Uint8Array {
  const body = base.body ?? new Uint8Array();
  const headerLines = (extra: string[]) => [...base.headers.map(([n, v]) => `${n}: ${v}`), `host: ${host}`, 'connection: close', ...extra].join('\r\n');
  const line = `${base.method} ${base.target} HTTP/1.1`;
  const kind = rng.int(10);
  const parts: (string | Uint8Array)[] = [];
  switch (kind) {
    case 0: { // bad request lines
      const bad = rng.pick([`${base.method} ${base.target}`, `${base.method}  ${base.target} HTTP/1.1`, `${base.method} ${base.target} HTTP/9.9`, `${base.method} ${base.target} HTTP/1.1 extra`,
        `${base.method}\t${base.target}\tHTTP/1.1`, ` ${line}`, `${base.method} http://evil.invalid${base.target} HTTP/1.1`, `${base.method} * HTTP/1.1`, `\u0000${line}`,
        `${base.method} ${base.target}\u0000 HTTP/1.1`, `${base.method} /${'a'.repeat(20_000)} HTTP/1.1`, 'HTTP/1.1 200 OK', ''].map(String));
      parts.push(`${bad}\r\n${headerLines([`content-length: ${body.length}`])}\r\n\r\n`, body);
      note('raw-request-line');
      break;
    }
    case 1: case 2: { // chunked bodies, well and badly formed
      const chunkBody = body.length > 0 ? body : new Uint8Array(Buffer.from('{"ids":["a"]}'));
      const size = chunkBody.length.toString(16);
      const bad = rng.pick([
        `${size}\r\n`, `${size};ext=${'x'.repeat(rng.int(5000))}\r\n`, `zz\r\n`, `-1\r\n`, `${'f'.repeat(17)}\r\n`, `${(chunkBody.length + 5).toString(16)}\r\n`, `${size}\n`, ` ${size}\r\n`, `0x${size}\r\n`,
      ]);
      const tail = rng.pick(['\r\n0\r\n\r\n', '\r\n0\r\n', '0\r\n\r\n', '\r\n0\r\nx-trailer: 1\r\n\r\n', '\r\n', '\r\nxx']);
      const te = rng.pick(['transfer-encoding: chunked', 'transfer-encoding: chunked, gzip', 'transfer-encoding: gzip, chunked', 'transfer-encoding: chunked\r\ncontent-length: 5', 'transfer-encoding:  chunked ']);
      parts.push(`${line}\r\n${headerLines([te])}\r\n\r\n${bad}`, chunkBody, tail);
      note('raw-chunked');
      break;
    }
    case 3: case 4: { // content-length lies
      const declared = rng.pick([body.length + 1 + rng.int(100), Math.max(0, body.length - 1 - rng.int(100)), 0, -1, 2 ** 53, 'abc', `${body.length}, ${body.length + 1}`, `${body.length}\r\ncontent-length: ${body.length + 7}`]);
      parts.push(`${line}\r\n${headerLines([`content-length: ${declared}`])}\r\n\r\n`, body);
      note('raw-content-length');
      break;
    }
    case 5: { // header syntax: no colon, folding, spaces before colon, bare LF, NUL
      const bad = rng.pick(['x-fuzz', ' folded: yes', 'x-fuzz : spaced', 'x-fuzz: a\nx-other: b', 'x-fuzz: \u0000', 'x-fuzz:\u007f', ': empty-name', 'authorization: Bearer\r\n  folded']);
      parts.push(`${line}\r\n${headerLines([bad, `content-length: ${body.length}`])}\r\n\r\n`, body);
      note('raw-header-syntax');
      break;
    }
    case 6: { // pipelined: the request, then another (maybe broken) one on the same connection
      parts.push(`${line}\r\n${headerLines([`content-length: ${body.length}`]).replace('connection: close', 'connection: keep-alive')}\r\n\r\n`, body,
        rng.chance(0.5) ? `GET /healthz HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n` : `GARBAGE\r\n\r\n`);
      note('raw-pipelined');
      break;
    }
    case 7: { // the request cut at a random byte
      const whole = Buffer.concat([Buffer.from(`${line}\r\n${headerLines([`content-length: ${body.length}`])}\r\n\r\n`), body]);
      parts.push(whole.subarray(0, rng.int(whole.length)));
      note('raw-cut');
      break;
    }
    case 8: { // random bytes, or a mutated well-formed request
      const whole = Buffer.concat([Buffer.from(`${line}\r\n${headerLines([`content-length: ${body.length}`])}\r\n\r\n`), body]);
      parts.push(rng.chance(0.3) ? rng.bytes(1 + rng.int(2000)) : mutateBytes(rng, whole, 1 + rng.int(4)));
      note('raw-bytes');
      break;
    }
    default: { // the well-formed request as-is (headers node refused to write go through here)
      parts.push(`${line}\r\n${headerLines([`content-length: ${body.length}`])}\r\n\r\n`, body);
      note('raw-plain');
    }
  }
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

/** The case `index` of run `seed`: a corpus request and its mutations. */
export function buildRequest(ctx: FuzzContext, base: BaseRequest, rng: Rng, index: number, host: string): WireRequest {
  const mutations: string[] = [];
  const note = (m: string) => mutations.push(m);
  const headers = base.headers.map(([n, v]) => [n, v] as [string, string]);
  let method = base.method;
  let segments = base.segments;
  let query = base.query;
  let body: Uint8Array | undefined;
  const valid = rng.chance(0.1);
  const b = base.body ?? { kind: 'none' };
  if (b.kind === 'json') body = Buffer.from(JSON.stringify(b.value));
  else if (b.kind === 'envelope') body = b.bytes;

  if (!valid) {
    const rounds = 1 + rng.int(3);
    for (let r = 0; r < rounds; r++) {
      const op = rng.weighted<string>([[3, 'headers'], [1, 'method'], [2, 'path'], [2, 'query'], [b.kind === 'none' ? 1 : 5, 'body'], [b.kind === 'envelope' ? 2 : 0, 'resign']]);
      if (op === 'headers') mutateHeaders(rng, ctx, headers, note);
      else if (op === 'method') { method = rng.pick(METHODS); note(`method:${method}`); }
      else if (op === 'path') segments = mutatePath(rng, segments, note);
      else if (op === 'query') query = mutateQuery(rng, query, note);
      else if (op === 'resign' && b.kind === 'envelope') body = resign(rng, ctx, b.bytes, note); // always over a whole envelope
      else if (op === 'body') {
        if (b.kind === 'json') { body = Buffer.from(mutateJsonText(rng, b.value)); note('json'); }
        else if (b.kind === 'envelope') { body = mutateBytes(rng, body!); note('envelope-bytes'); }
        else { body = Buffer.from(rng.chance(0.5) ? JSON.stringify(randomJson(rng)) : Buffer.from(rng.bytes(edgeLength(rng)))); note('body-unexpected'); }
      }
    }
  }
  const request: WireRequest = { index, route: base.route, mutations, method, target: encodeTarget(segments, query, rng), headers, ...(body ? { body } : {}) };
  if (!valid && rng.chance(0.12)) request.raw = rawRequest(rng, request, host, note);
  return request;
}

const agents = new Map<string, http.Agent>();

/** Sends over node:http on a kept-alive connection; falls back to a raw socket when node refuses to write it. */
export async function send(url: URL, request: WireRequest, timeoutMs: number): Promise<Answer> {
  if (request.raw) return sendRaw(url, request.raw, timeoutMs);
  let agent = agents.get(url.host);
  if (!agent) agents.set(url.host, (agent = new http.Agent({ keepAlive: true, maxSockets: 64 })));
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of request.headers) {
    const had = headers[name];
    headers[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  if (request.body && !request.headers.some(([n]) => n.toLowerCase() === 'content-length')) headers['content-length'] = String(request.body.length);
  let req: http.ClientRequest;
  try {
    req = http.request({ host: url.hostname, port: url.port, method: request.method, path: request.target, headers, agent });
  } catch {
    // Node refuses some methods, paths and header bytes: the same request, written raw.
    const lines = [`${request.method} ${request.target} HTTP/1.1`, `host: ${url.host}`, 'connection: close', ...request.headers.map(([n, v]) => `${n}: ${v}`), `content-length: ${request.body?.length ?? 0}`];
    request.raw = Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), request.body ?? new Uint8Array()]);
    request.mutations.push('raw-fallback');
    return sendRaw(url, request.raw, timeoutMs);
  }
  return new Promise<Answer>((resolve) => {
    let settled = false;
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(a);
    };
    const timer = setTimeout(() => {
      req.destroy();
      done({ status: 0, error: 'timeout' });
    }, timeoutMs);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error: 'reset after status' }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => done({ status: 0, error: err.code ?? err.message }));
    req.end(request.body ? Buffer.from(request.body) : undefined);
  });
}

/** Writes the bytes, half-closes, and collects what comes back until the relay closes or the deadline. */
export function sendRaw(url: URL, bytes: Uint8Array, timeoutMs: number): Promise<Answer> {
  return new Promise<Answer>((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    let size = 0;
    let error: string | undefined;
    const timer = setTimeout(() => {
      error = 'timeout';
      socket.destroy();
    }, timeoutMs);
    socket.on('connect', () => {
      socket.write(bytes);
      socket.end();
    });
    socket.on('data', (c: Buffer) => {
      if (size < 1 << 20) chunks.push(c);
      size += c.length;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ status: statuses[0] ?? 0, statuses, ...(statuses.length === 0 ? { error: error ?? 'closed without an answer' } : {}) });
    });
  });
}

export function closeAgents(): void {
  for (const agent of agents.values()) agent.destroy();
  agents.clear();
}
