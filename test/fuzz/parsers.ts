/**
 * The receiver's side: its pure parsers called in process with mutated inputs, and the relay
 * client (the receiver's only reader of relay answers) against an in-process server that answers
 * with mutated bodies and headers. A parser may only throw its documented typed error (a
 * ProtocolError subclass); the client may only reject with RelayError. Anything else is a finding.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { ProtocolError } from '../../protocol/errors.js';
import { decodeFrames, encodeFrames, type Frame } from '../../protocol/frame.js';
import { openEnvelope, parseEnvelope, verifyEnvelope, KEM } from '../../protocol/envelope/index.js';
import { decodeLogEntry, encodeLogEntry } from '../../protocol/log-entries.js';
import { didDocument, parseDid, readDidDocument } from '../../protocol/did.js';
import {
  encodeBundle, leafHash, MerkleTree, openCheckpoint, parseBundle, parseCheckpoint, parseNote, parseTilePath, parseVerifierKey, verifyConsistency, verifyInclusion,
  type NoteVerifier,
} from '../../protocol/tlog/index.js';
import { ENVELOPE_MEDIA_TYPE, LEASE_HEADERS } from '../../protocol/api/index.js';
import type { FuzzContext } from './corpus.js';
import { Rng, mutateBytes, mutateJson, mutateString } from './mutate.js';
import { resign } from './requests.js';

export interface ParserFinding {
  index: number;
  parser: string;
  error: string;
  input: string;
}

/** What the parser cases need: valid inputs to mutate. */
export interface ParserCorpus {
  ctx: FuzzContext;
  checkpoint: string;
  verifier: NoteVerifier;
  origin: string;
  frames: Uint8Array;
  entries: Uint8Array[];
  tree: MerkleTree;
  didDoc: unknown;
}

export async function parserCorpus(ctx: FuzzContext, client: RelayClient): Promise<ParserCorpus> {
  const key = await client.logKey();
  const frame: Frame = {
    sequence: 42n, time: Date.now(), intervalMs: 15_000,
    readings: [
      { tap: 'plc', point: 'temp', value: 21.5, unit: '°C', quality: 'good', readTime: Date.now(), sourceTime: Date.now() },
      { tap: 'plc', point: 'count', value: 2n ** 60n, quality: 'uncertain', reason: 'stale', readTime: Date.now(), stale: true },
      { tap: 'mqtt', point: 'state', value: 'run', quality: 'good', readTime: Date.now() },
      { tap: 'mqtt', point: 'gone', value: null, quality: 'bad', reason: 'timeout', readTime: Date.now() },
      { tap: 'opc', point: 'on', value: true, quality: 'good', readTime: Date.now(), serverTime: Date.now() },
    ],
  };
  const entries = [
    encodeLogEntry({ type: 'transfer', envelopeHash: new Uint8Array(32).fill(7) }),
    ...(await client.entries(0, 2)).map((e) => e.data),
  ];
  const tree = new MerkleTree();
  for (let i = 0; i < 9; i++) tree.append(leafHash(new Uint8Array([i])));
  return {
    ctx, checkpoint: await client.checkpoint(), verifier: parseVerifierKey(key.verifierKey), origin: key.origin,
    frames: encodeFrames([frame, { ...frame, sequence: 43n }]), entries, tree,
    didDoc: didDocument({ signingPublicKey: ctx.victimSigning.publicKey, kemPublicKey: ctx.victimKem.publicKey }),
  };
}

export type ParserCase = (rng: Rng, c: ParserCorpus) => { input: string; run: () => unknown };

const show = (b: Uint8Array | string) => (typeof b === 'string' ? JSON.stringify(b.slice(0, 4000)) : Buffer.from(b).toString('base64'));

/** The pure parsers of protocol/ the receiver runs on what a relay hands it. */
export const PARSERS: Record<string, ParserCase> = {
  envelope: (rng, c) => {
    const base = rng.pick(c.ctx.envelopes);
    const bytes = rng.chance(0.15) ? resign(rng, c.ctx, base, () => {}) : mutateBytes(rng, base);
    return {
      input: show(bytes),
      run: () => {
        const env = parseEnvelope(bytes);
        verifyEnvelope(env, c.ctx.signer.publicKey);
        openEnvelope(env, { kemId: KEM.XWING, seed: c.ctx.receiverKem.seed, publicKey: c.ctx.receiverKem.publicKey }, c.ctx.signer.publicKey);
      },
    };
  },
  frames: (rng, c) => {
    const bytes = mutateBytes(rng, c.frames);
    return { input: show(bytes), run: () => decodeFrames(bytes) };
  },
  checkpoint: (rng, c) => {
    const text = rng.chance(0.7) ? mutateString(rng, c.checkpoint) : Buffer.from(mutateBytes(rng, Buffer.from(c.checkpoint))).toString('utf8');
    return { input: show(text), run: () => { parseNote(text); openCheckpoint(text, [c.verifier], c.origin); parseCheckpoint(text.split('\n\n')[0] + '\n'); } };
  },
  logEntry: (rng, c) => {
    const bytes = mutateBytes(rng, rng.pick(c.entries));
    return { input: show(bytes), run: () => decodeLogEntry(bytes) };
  },
  did: (rng, c) => {
    const doc = mutateJson(rng, c.didDoc);
    const text = mutateString(rng, (c.didDoc as { id: string }).id);
    return { input: show(JSON.stringify(doc) + ' ' + text), run: () => { readDidDocument(doc); parseDid(text); } };
  },
  tiles: (rng) => {
    const segments = mutateString(rng, rng.pick(['0/x001/234.p/7', 'entries/000.p/2', '1/000', '0/x123/x456/789'])).split('/');
    const bundle = mutateBytes(rng, encodeBundle([new Uint8Array(3), new Uint8Array(70), new Uint8Array(1)]));
    const width = rng.pick([undefined, 0, 1, 3, 256, 257, -1]);
    return { input: show(segments.join('/')) + ' ' + show(bundle), run: () => { try { parseTilePath(segments); } finally { parseBundle(bundle, width, { prefix: rng.chance(0.5) }); } } };
  },
  proofs: (rng, c) => {
    const size = rng.pick([9, 8, 1, 0, -1, 2 ** 53, 1.5, NaN, 100]);
    const index = rng.pick([0, 4, 8, 9, -1, 2 ** 53, 0.5]);
    const from = rng.pick([1, 3, 0, 9, 10, -1]);
    const good = c.tree.inclusionProof(4, 9);
    // Type-correct inputs only (the relay client hands the receiver arrays of byte strings): lengths,
    // counts and values are what a hostile relay controls.
    const proof = rng.chance(0.1) ? null : good.map((h) => (rng.chance(0.3) ? mutateBytes(rng, h) : h)).slice(0, rng.chance(0.2) ? rng.int(good.length + 1) : undefined);
    if (proof && rng.chance(0.1)) proof.push(...good);
    const leaf = rng.chance(0.8) ? leafHash(new Uint8Array([4])) : mutateBytes(rng, leafHash(new Uint8Array([4])));
    return {
      input: JSON.stringify({ size, index, from, proof: proof === null ? null : proof.map((p) => show(p)) }),
      run: () => {
        try {
          verifyInclusion(leaf, index, size, proof, c.tree.root());
        } finally {
          verifyConsistency(from, size, proof, c.tree.root(from > 0 && from <= 9 ? from : 1), c.tree.root());
        }
      },
    };
  },
};

/** True for the errors a parser documents: ProtocolError subclasses. */
export function isTypedParserError(err: unknown): boolean {
  return err instanceof ProtocolError;
}

export function runParserCase(seed: number, index: number, c: ParserCorpus, parsers: Record<string, ParserCase> = PARSERS): ParserFinding | undefined {
  const rng = Rng.forCase(seed ^ 0x5bd1e995, index);
  const name = rng.pick(Object.keys(parsers));
  const { input, run } = parsers[name]!(rng, c);
  try {
    run();
  } catch (err) {
    if (!isTypedParserError(err)) return { index, parser: name, error: String((err as Error)?.stack ?? err).slice(0, 2000), input };
  }
  return undefined;
}

/**
 * A hostile relay for the client: each request gets an answer shaped like the real one, mutated
 * (status, headers, JSON, bytes). The client call must settle with a value or a RelayError.
 */
export class HostileRelay {
  private server?: http.Server;
  /** The answer the next request gets; set by the case before it calls the client. */
  next: { status: number; headers: Record<string, string>; body: Buffer } = { status: 200, headers: {}, body: Buffer.alloc(0) };
  url = '';

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const { status, headers, body } = this.next;
        try {
          res.writeHead(status, { ...headers, 'content-length': String(body.length) });
          res.end(body);
        } catch {
          // A mutated header node refuses to write: end the connection instead (the client sees a reset).
          res.socket?.destroy();
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

type ClientCase = (rng: Rng, c: ParserCorpus, client: RelayClient) => { answer: HostileRelay['next']; call: () => Promise<unknown> };

const jsonAnswer = (rng: Rng, value: unknown, status = 200) => {
  const text = rng.chance(0.85) ? JSON.stringify(mutateJson(rng, value)) : mutateString(rng, JSON.stringify(value));
  return { status: rng.chance(0.1) ? rng.pick([200, 201, 204, 299, 400, 404, 410, 429, 500, 503, 507, 600, 999]) : status, headers: { 'content-type': 'application/json' }, body: Buffer.from(text ?? '') };
};

/** Every relay answer the receiver (and the agent) parses through RelayClient. */
export const CLIENT_CASES: Record<string, ClientCase> = {
  lease: (rng, c, client) => {
    const headers: Record<string, string> = {
      'content-type': ENVELOPE_MEDIA_TYPE, [LEASE_HEADERS.envelopeId]: 'a'.repeat(64), [LEASE_HEADERS.leaseId]: 'A'.repeat(22),
      [LEASE_HEADERS.leafIndex]: '3', [LEASE_HEADERS.expiresAt]: new Date().toISOString(), [LEASE_HEADERS.receivedAt]: new Date().toISOString(),
    };
    const names = Object.keys(headers);
    for (let i = rng.int(3); i >= 0; i--) {
      const name = rng.pick(names);
      if (rng.chance(0.4)) delete headers[name];
      else headers[name] = mutateString(rng, headers[name] ?? '');
    }
    const body = Buffer.from(rng.chance(0.5) ? mutateBytes(rng, rng.pick(c.ctx.envelopes)) : rng.pick(c.ctx.envelopes));
    return { answer: { status: rng.chance(0.8) ? 200 : rng.pick([204, 201, 202, 206, 300, 404]), headers, body }, call: () => client.lease(c.ctx.recipient, { waitMs: 0 }) };
  },
  inclusion: (rng, c, client) => ({ answer: jsonAnswer(rng, { leafIndex: 1, treeSize: 2, proof: ['KyF9ERbgZFFoj9Q1jlMdpF0mUEgWsBK5mldcv+CbB6E='] }), call: () => client.inclusionProof({ index: 1 }, 2) }),
  consistency: (rng, c, client) => ({ answer: jsonAnswer(rng, { from: 1, to: 2, proof: ['Xg2cywk07cxxSWHzorP2i13GSc7Gl580XS3NCFFWThM='] }), call: () => client.consistencyProof(1, 2) }),
  entries: (rng, c, client) => ({ answer: jsonAnswer(rng, { entries: [{ index: 0, data: 'ASLAzPG+rk2eIbNnjE928W0OciPkEwnKEGbst94eae3m' }] }), call: () => client.entries(0, 1) }),
  checkpoint: (rng, c, client) => ({ answer: { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(mutateString(rng, c.checkpoint)) }, call: () => client.checkpoint() }),
  inbox: (rng, c, client) => ({ answer: jsonAnswer(rng, { envelopes: [{ id: 'a'.repeat(64), size: 4608, leafIndex: 42, receivedAt: new Date().toISOString(), state: 'pending' }] }), call: () => client.inbox(c.ctx.recipient) }),
  logKey: (rng, c, client) => ({ answer: jsonAnswer(rng, { origin: c.origin, verifierKey: 'x', publicKey: 'eA==', publicKeyPem: '' }), call: () => client.logKey() }),
  refusal: (rng, c, client) => ({
    answer: { ...jsonAnswer(rng, { error: 'rate_limited', message: 'slow down' }, rng.pick([400, 401, 402, 403, 404, 409, 410, 413, 429, 500, 503, 507])), headers: { 'content-type': 'application/json', 'retry-after': mutateString(rng, '5') } },
    call: () => client.ack('A'.repeat(22)),
  }),
};

export async function runClientCase(seed: number, index: number, c: ParserCorpus, hostile: HostileRelay, client: RelayClient): Promise<ParserFinding | undefined> {
  const rng = Rng.forCase(seed ^ 0x27d4eb2f, index);
  const name = rng.pick(Object.keys(CLIENT_CASES));
  const { answer, call } = CLIENT_CASES[name]!(rng, c, client);
  hostile.next = answer;
  const input = JSON.stringify({ status: answer.status, headers: answer.headers, body: answer.body.toString('base64') });
  try {
    await call();
  } catch (err) {
    if (!(err instanceof RelayError)) return { index, parser: `client.${name}`, error: String((err as Error)?.stack ?? err).slice(0, 2000), input };
  }
  return undefined;
}
