/**
 * A transparent HTTP proxy between a real receiver and a real relay that keeps a copy of every
 * envelope the relay leased (by envelope id) and the answer to every ack and release, and can
 * stop handing out leases. Nothing is changed on the way: bytes, statuses and headers pass as
 * they came (hop-by-hop headers aside). Used by test/helpers/agent-receiver.ts for what the
 * receiver's records do not carry (frame time and interval, envelope size) and to stop a
 * receiver with no lease in its hands.
 *
 * The relay may be down or restarting: a request it does not answer is cut (the receiver sees a
 * reset, as it would without the tap). One connection per upstream request (agent: false).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LEASE_HEADERS } from '../../protocol/api/messages.js';

export interface TappedLease {
  leaseId: string;
  envelopeId: string;
  bytes: Buffer;
  /** The receiver's ack or release of this lease and the relay's status for it (undefined: none yet). */
  answer?: { kind: 'ack' | 'release'; status: number };
}

const LEASE_PATH = /^\/v2\/inbox\/[^/?]+\/lease(?:\?|$)/;
const ANSWER_PATH = /^\/v2\/leases\/([^/?]+)\/(ack|release)(?:\?|$)/;
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade'];
/** How long a lease request waits while leasing is paused before it gets 204 (a relay with nothing to lease). */
const PAUSED_WAIT_MS = 200;

export class LeaseTap {
  /** Every lease the relay handed out through the tap, in order. */
  readonly leases: TappedLease[] = [];
  private readonly byLeaseId = new Map<string, TappedLease>();
  private readonly envelopes = new Map<string, Buffer>();
  private inFlightLeases = 0;
  private paused = false;
  private readonly held = new Set<http.ServerResponse>();
  /** Called after a lease's response went on to the receiver. */
  onLease: ((lease: TappedLease) => void) | undefined;

  private constructor(private readonly server: http.Server, private readonly upstream: URL, readonly url: string) {}

  /** Listens on 127.0.0.1 port 0 and forwards to `upstreamUrl` (the relay's base URL). */
  static async start(upstreamUrl: string): Promise<LeaseTap> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const tap = new LeaseTap(server, new URL(upstreamUrl), `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('request', (req, res) => tap.forward(req, res));
    return tap;
  }

  /** The bytes of an envelope the relay leased through the tap (undefined: never leased). */
  envelope(envelopeId: string): Buffer | undefined {
    return this.envelopes.get(envelopeId);
  }

  /** The newest lease of an envelope (undefined: never leased). */
  lastLeaseOf(envelopeId: string): TappedLease | undefined {
    for (let i = this.leases.length - 1; i >= 0; i--) if (this.leases[i]!.envelopeId === envelopeId) return this.leases[i];
    return undefined;
  }

  /** From now on lease requests are not forwarded: each waits PAUSED_WAIT_MS and gets 204. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** No lease request is on its way to the relay and every lease handed out was acked or released. */
  settled(): boolean {
    return this.inFlightLeases === 0 && this.leases.every((l) => l.answer !== undefined);
  }

  /** Leases handed out that the receiver has not answered yet. */
  unanswered(): TappedLease[] {
    return this.leases.filter((l) => l.answer === undefined);
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.held.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = req.url ?? '/';
    const isLease = req.method === 'POST' && LEASE_PATH.test(target);
    const answer = req.method === 'POST' ? ANSWER_PATH.exec(target) : null;
    if (isLease && this.paused) {
      req.resume();
      this.held.add(res);
      const timer = setTimeout(() => {
        this.held.delete(res);
        res.writeHead(204).end();
      }, PAUSED_WAIT_MS);
      res.once('close', () => {
        clearTimeout(timer);
        this.held.delete(res);
      });
      return;
    }
    let leaseDone = !isLease;
    const leaseEnded = () => {
      if (!leaseDone) this.inFlightLeases--;
      leaseDone = true;
    };
    if (isLease) this.inFlightLeases++;
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: this.upstream.host };
    for (const h of HOP_BY_HOP) delete headers[h];
    const cut = () => {
      leaseEnded();
      // The relay did not answer an ack or release: the receiver is told so (a reset) and moves on.
      const lease = answer ? this.byLeaseId.get(decodeURIComponent(answer[1]!)) : undefined;
      if (lease && lease.answer === undefined) lease.answer = { kind: answer![2] as 'ack' | 'release', status: 0 };
      res.destroy();
    };
    const up = http.request(new URL(target, this.upstream), { method: req.method, headers, agent: false }, (upRes) => {
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => chunks.push(c));
      upRes.on('error', cut);
      upRes.on('end', () => {
        const body = Buffer.concat(chunks);
        const status = upRes.statusCode ?? 502;
        let leased: TappedLease | undefined;
        if (isLease && status === 200) {
          const leaseId = String(upRes.headers[LEASE_HEADERS.leaseId]);
          const envelopeId = String(upRes.headers[LEASE_HEADERS.envelopeId]);
          leased = { leaseId, envelopeId, bytes: body };
          this.leases.push(leased);
          this.byLeaseId.set(leaseId, leased);
          this.envelopes.set(envelopeId, body);
        }
        if (answer) {
          const lease = this.byLeaseId.get(decodeURIComponent(answer[1]!));
          if (lease) lease.answer = { kind: answer[2] as 'ack' | 'release', status };
        }
        leaseEnded();
        const out: http.OutgoingHttpHeaders = { ...upRes.headers, 'content-length': String(body.length) };
        for (const h of HOP_BY_HOP) delete out[h];
        res.writeHead(status, out);
        res.end(body);
        if (leased) this.onLease?.(leased);
      });
    });
    up.on('error', cut);
    req.on('error', () => up.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }
}
