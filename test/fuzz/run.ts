/**
 * The fuzz run: workers send mutated requests (requests.ts) at a relay, a slow lane holds a few
 * slowloris-ish partial requests open, a parser lane feeds mutated inputs to the receiver's
 * parsers and its relay client (parsers.ts). Findings: the relay exiting or logging at error
 * level, a 5xx that is not documented backpressure, a refusal that breaks the error contract, a
 * request with no answer, a parser throwing anything but its typed error, an unhandled rejection
 * in the fuzzer, and a relay that no longer serves a valid request afterwards.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { RELAY_ERRORS, isRelayErrorCode } from '../../protocol/api/index.js';
import { type FuzzContext, baseRequest, remember, sealFor } from './corpus.js';
import { HostileRelay, parserCorpus, runClientCase, runParserCase, type ParserCorpus } from './parsers.js';
import { Rng } from './mutate.js';
import { buildRequest, closeAgents, send, type Answer, type WireRequest } from './requests.js';

/**
 * 5xx answers that are documented backpressure, not faults (docs/API.md): 507 memory_full (the
 * memory cap or in-flight limit; the fuzz relay's cap is small on purpose), 503 log_busy (the log's
 * disk behind) and 503 shutting_down (only while stopping; the run ends before the relay stops).
 */
export const EXCLUDED_5XX: Readonly<Record<number, readonly string[]>> = { 503: ['log_busy', 'shutting_down'], 507: ['memory_full'] };

export type FindingKind = '5xx' | 'contract' | 'no_answer' | 'relay_exit' | 'relay_error_log' | 'parser' | 'unhandled_rejection' | 'uncaught_exception' | 'liveness';

export interface Finding {
  kind: FindingKind;
  detail: string;
  index?: number;
  route?: string;
  mutations?: string[];
  request?: { method: string; target: string; headers: [string, string][]; bodyBase64?: string; rawBase64?: string };
  answer?: { status: number; body?: string };
  input?: string;
}

/** Judges one answer; undefined when it is fine. */
export function judge(request: WireRequest, answer: Answer): Pick<Finding, 'kind' | 'detail'> | undefined {
  if (answer.status === 0) return answer.error === 'timeout' ? { kind: 'no_answer', detail: 'no answer before the deadline' } : undefined;
  const statuses = answer.statuses ?? [answer.status];
  let code: string | undefined;
  if (answer.body && answer.body.length > 0 && answer.status >= 400) {
    try {
      const parsed = JSON.parse(answer.body.toString('utf8')) as { error?: unknown; message?: unknown };
      if (!isRelayErrorCode(parsed.error) || RELAY_ERRORS[parsed.error] !== answer.status || typeof parsed.message !== 'string') {
        return { kind: 'contract', detail: `refusal ${answer.status} with body ${answer.body.toString('utf8').slice(0, 200)}` };
      }
      code = parsed.error;
    } catch {
      return { kind: 'contract', detail: `refusal ${answer.status} with a body that is not JSON` };
    }
  }
  for (const status of statuses) {
    if (status < 500) continue;
    // A raw answer's code is not parsed: 503/507 on a raw socket are judged by status alone.
    const excused = EXCLUDED_5XX[status];
    if (excused && (code === undefined ? request.raw !== undefined : excused.includes(code))) continue;
    return { kind: '5xx', detail: `HTTP ${status}${code ? ` ${code}` : ''}` };
  }
  return undefined;
}

export interface FuzzTarget {
  url: string;
  ctx: FuzzContext;
  /** The relay process, when the fuzzer started it: watched for exit, error logs and RSS. */
  child?: ChildProcess;
  output?: () => string;
}

export interface FuzzOptions {
  requests: number;
  seed: number;
  concurrency: number;
  parserCases: number;
  clientCases: number;
  /** Slowloris-ish partial requests held open at once. */
  slow: number;
  /** Replay only this case number (relay request, parser and client case). */
  only?: number;
  timeoutMs: number;
  /** Stop sending after this long (the report says how many were sent): a run that must end by a deadline. */
  maxSeconds?: number;
  /** Progress lines; `urgent` ones (findings) are not to be throttled. */
  progress?: (line: string, urgent?: boolean) => void;
  /** Check afterwards that the relay serves a valid upload and lease (default true; off for a target that is no relay). */
  liveness?: boolean;
  /** For tests: parser table to fuzz instead of the real one. */
  parsers?: Parameters<typeof runParserCase>[3];
}

export interface RssSample { seconds: number; requests: number; relayKiB?: number; fuzzerKiB: number; relayCpuSeconds?: number; fuzzerCpuSeconds: number }

export interface FuzzReport {
  seed: number;
  requests: number;
  parserCases: number;
  clientCases: number;
  slowRequests: number;
  seconds: number;
  requestsPerSecond: number;
  statuses: Record<string, number>;
  transportErrors: Record<string, number>;
  validByRoute: Record<string, number>;
  rss: RssSample[];
  findings: Finding[];
}

export function rssKiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) of a process, from /proc/<pid>/stat (clock ticks of 10 ms). */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

const b64 = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString('base64') : undefined);

export async function runFuzz(target: FuzzTarget, o: FuzzOptions, parserInputs?: ParserCorpus): Promise<FuzzReport> {
  const url = new URL(target.url);
  const findings: Finding[] = [];
  // Said as they happen (the first 20): a long run's findings can be looked into before it ends.
  const found = (f: Finding): void => {
    if (findings.length < 20) o.progress?.(`finding: ${f.kind}${f.index !== undefined ? ` case ${f.index}` : ''}${f.route ? ` ${f.route}` : ''}: ${f.detail.split('\n')[0]!.slice(0, 300)}`, true);
    findings.push(f);
  };
  const statuses: Record<string, number> = {};
  const transportErrors: Record<string, number> = {};
  const validByRoute: Record<string, number> = {};
  const rss: RssSample[] = [];
  const started = performance.now();
  let done = 0;
  let next = o.only ?? 0;
  const last = o.only !== undefined ? o.only + 1 : o.requests;
  let stop = false;
  let current = -1;

  const onRejection = (reason: unknown) => found({ kind: 'unhandled_rejection', detail: String((reason as Error)?.stack ?? reason).slice(0, 2000), index: current });
  const onException = (err: Error) => found({ kind: 'uncaught_exception', detail: String(err.stack ?? err).slice(0, 2000), index: current });
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);

  const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
    found({ kind: 'relay_exit', detail: `relay exited (${code ?? signal}) during the run:\n${target.output?.().slice(-4000) ?? ''}` });
    stop = true;
  };
  target.child?.once('exit', onExit);

  let outputSeen = 0;
  const scanOutput = () => {
    const out = target.output?.() ?? '';
    const fresh = out.slice(outputSeen);
    const cut = fresh.lastIndexOf('\n') + 1;
    outputSeen += cut;
    for (const line of fresh.slice(0, cut).split('\n')) {
      if (line === '') continue;
      let level = 60; // not JSON (a stack trace on stderr): as bad as fatal
      try {
        level = (JSON.parse(line) as { level?: number }).level ?? 60;
      } catch {
        // keep 60
      }
      if (level >= 50) found({ kind: 'relay_error_log', detail: line.slice(0, 2000) });
    }
  };
  const sample = () => {
    rss.push({ seconds: Math.round((performance.now() - started) / 100) / 10, requests: done, relayKiB: rssKiB(target.child?.pid), fuzzerKiB: Math.round(process.memoryUsage().rss / 1024),
      relayCpuSeconds: cpuSeconds(target.child?.pid), fuzzerCpuSeconds: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1e4) / 100 });
    scanOutput();
  };
  sample();
  const sampler = setInterval(() => {
    sample();
    o.progress?.(`${done}/${o.requests} requests, ${findings.length} findings, relay RSS ${rss.at(-1)?.relayKiB ?? '-'} KiB`);
  }, 2000);

  const deadline = o.maxSeconds !== undefined ? started + o.maxSeconds * 1000 : Infinity;
  const worker = async () => {
    while (!stop && next < last) {
      if (performance.now() > deadline) {
        stop = true;
        break;
      }
      const index = next++;
      const rng = Rng.forCase(o.seed, index);
      const request = buildRequest(target.ctx, baseRequest(target.ctx, rng), rng, index, url.host);
      current = index;
      const answer = await send(url, request, o.timeoutMs);
      done++;
      if (answer.status === 0) transportErrors[answer.error ?? 'none'] = (transportErrors[answer.error ?? 'none'] ?? 0) + 1;
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      if (answer.status >= 200 && answer.status < 300) validByRoute[request.route] = (validByRoute[request.route] ?? 0) + 1;
      learn(target.ctx, request, answer);
      const bad = judge(request, answer);
      if (bad) {
        found({
          ...bad, index, route: request.route, mutations: request.mutations,
          request: { method: request.method, target: request.target.slice(0, 4000), headers: request.headers.map(([n, v]) => [n, v.slice(0, 200)]), bodyBase64: b64(request.body), rawBase64: b64(request.raw) },
          answer: { status: answer.status, body: answer.body?.toString('utf8').slice(0, 500) },
        });
      }
    }
  };

  let slowRequests = 0;
  const slowLane = async () => {
    let i = 0;
    while (!stop && next < last) {
      const rng = Rng.forCase(o.seed ^ 0x51057, i++);
      const answer = await slowRequest(url, rng, () => stop || next >= last);
      slowRequests++;
      const request: WireRequest = { index: -i, route: 'slow', mutations: ['slowloris'], method: 'POST', target: '/v2/envelopes', headers: [], raw: new Uint8Array() };
      const bad = judge(request, answer);
      if (bad && bad.kind !== 'no_answer') found({ ...bad, route: 'slow', mutations: ['slowloris'] });
    }
  };

  let parserCases = 0;
  let clientCases = 0;
  const parserLane = async () => {
    if (!parserInputs) return;
    const hostile = new HostileRelay();
    await hostile.start();
    const client = new RelayClient({ baseUrl: hostile.url, apiKey: 'pgp_000000000000' + 'A'.repeat(43), timeoutMs: 10_000 });
    try {
      const firstCase = o.only ?? 0;
      const parserEnd = o.only !== undefined ? o.only + 1 : o.parserCases;
      const clientEnd = o.only !== undefined ? o.only + 1 : o.clientCases;
      for (let i = firstCase; i < Math.max(parserEnd, clientEnd) && !stop; i++) {
        if (i < parserEnd) {
          current = i;
          const f = runParserCase(o.seed, i, parserInputs, o.parsers);
          parserCases++;
          if (f) found({ kind: 'parser', index: f.index, route: f.parser, detail: f.error, input: f.input });
        }
        if (i < clientEnd) {
          const f = await runClientCase(o.seed, i, parserInputs, hostile, client);
          clientCases++;
          if (f) found({ kind: 'parser', index: f.index, route: f.parser, detail: f.error, input: f.input });
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      await hostile.stop();
    }
  };

  try {
    const workers = Array.from({ length: o.only !== undefined ? 1 : o.concurrency }, worker);
    const slow = o.only !== undefined ? [] : Array.from({ length: o.slow }, slowLane);
    await Promise.all([...workers, parserLane()]);
    stop = true;
    await Promise.all(slow);
    const seconds = (performance.now() - started) / 1000;
    sample();
    if (o.liveness !== false && !findings.some((f) => f.kind === 'relay_exit')) await liveness(target, found);
    scanOutput();
    return {
      seed: o.seed, requests: done, parserCases, clientCases, slowRequests, seconds: Math.round(seconds * 10) / 10,
      requestsPerSecond: Math.round(done / seconds), statuses, transportErrors, validByRoute, rss, findings,
    };
  } finally {
    clearInterval(sampler);
    target.child?.off('exit', onExit);
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
    closeAgents();
  }
}

/** Keeps what valid answers hand out (lease ids, challenges, envelope ids), so later requests can use them. */
function learn(ctx: FuzzContext, request: WireRequest, answer: Answer): void {
  if (answer.status === 200 && request.route === 'POST /v2/inbox/:recipient/lease') {
    const lease = answer.headers?.['ghostpipe-lease-id'];
    if (typeof lease === 'string') remember(ctx.pools.leases, lease);
  } else if (answer.status === 200 && request.route === 'POST /v2/did/challenge' && answer.body) {
    try {
      remember(ctx.pools.challenges, (JSON.parse(answer.body.toString('utf8')) as { challenge: string }).challenge);
    } catch { /* judged elsewhere */ }
  } else if (answer.status === 201 && request.route === 'POST /v2/envelopes' && answer.body) {
    try {
      remember(ctx.pools.uploaded, (JSON.parse(answer.body.toString('utf8')) as { id: string }).id);
    } catch { /* judged elsewhere */ }
  }
}

/**
 * A slowloris-ish request: a partial request (headers unfinished, or a body short of its length)
 * trickled a byte at a time until the relay ends it (408, 400 or a close) or the run ends.
 */
function slowRequest(url: URL, rng: Rng, ended: () => boolean): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    const headersDone = rng.chance(0.5);
    const head = `POST /v2/envelopes HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/vnd.ghostpipe.envelope\r\ncontent-length: ${1000 + rng.int(100_000)}\r\n${headersDone ? '\r\n' : ''}`;
    let timer: NodeJS.Timeout | undefined;
    const trickle = () => {
      if (ended()) return socket.destroy();
      socket.write(headersDone ? 'x' : 'x-slow: y\r\n'.slice(0, 1 + rng.int(4)), () => undefined);
      timer = setTimeout(trickle, 200 + rng.int(1500));
    };
    socket.on('connect', () => {
      socket.write(head);
      trickle();
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const statuses = [...Buffer.concat(chunks).toString('latin1').matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ status: statuses[0] ?? 0, statuses });
    });
  });
}

/** After the run: the relay still answers healthz, takes a valid upload, and hands out a lease that acks. */
async function liveness(target: FuzzTarget, found: (f: Finding) => void): Promise<void> {
  const { ctx } = target;
  const fail = (detail: string): void => {
    found({ kind: 'liveness', detail });
  };
  try {
    const health = await new RelayClient({ baseUrl: target.url }).health();
    if (health.status !== 'ok') return fail(`healthz answered ${JSON.stringify(health)}`);
    const device = new RelayClient({ baseUrl: target.url, apiKey: ctx.keys.device });
    const receiver = new RelayClient({ baseUrl: target.url, apiKey: ctx.keys.receiver });
    const envelope = sealFor(ctx);
    // The fuzz may have filled the (small) memory cap: a documented 507 clears as the TTL expires envelopes.
    for (let attempt = 0; ; attempt++) {
      try {
        await device.upload(envelope);
        break;
      } catch (err) {
        if (!(err instanceof RelayError) || err.kind !== 'retryAfter' || attempt >= 60) throw err;
        await new Promise((resolve) => setTimeout(resolve, err.retryAfterMs ?? 1000));
      }
    }
    const lease = await receiver.lease(ctx.recipient, { waitMs: 1000 });
    if (!lease) return fail('no envelope to lease right after a valid upload');
    await receiver.ack(lease.leaseId);
  } catch (err) {
    fail(`a valid request failed after the run: ${(err as Error).message}`);
  }
}

export { parserCorpus };
