/**
 * One Modbus connection (a TCP socket or a serial line) with its own reconnect loop, and the
 * rule that only one request is ever in flight on it. Serial lines are shared: every tap that
 * names the same serial path gets the same ModbusLink, so the bus sees strictly one request at
 * a time. modbus-serial never reconnects by itself and has no default timeout; both live here.
 */
import ModbusSerial from 'modbus-serial';
import type { Logger } from '../../common/log.js';
import { Backoff, sleep } from '../../common/backoff.js';

export type Parity = 'none' | 'even' | 'odd';

export type LinkTarget =
  | { transport: 'tcp' | 'rtu-over-tcp'; host: string; port: number }
  | { transport: 'rtu'; path: string; baudRate: number; parity: Parity; dataBits: number; stopBits: number };

export interface LinkOptions {
  /** Connect timeout and per-request timeout, ms. */
  timeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
  logger: Logger;
}

export type LinkState = 'up' | 'down';

/** The link has no open connection; carries the reason of the last failure. */
export class LinkDownError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'LinkDownError';
  }
}

/** The peer did not answer one request in time. */
export class RequestTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`timeout after ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** Two taps name the same serial path with different line settings. */
export class LinkConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkConfigError';
  }
}

export function describeTarget(target: LinkTarget): string {
  return target.transport === 'rtu' ? `rtu ${target.path}` : `${target.transport} ${target.host}:${target.port}`;
}

// modbus-serial is CommonJS and sets module.exports.default = module.exports, so `.default` is the
// client class both for TypeScript (which reads its `export default`) and at run time.
const ModbusRTU = ModbusSerial.default;
type Client = InstanceType<typeof ModbusRTU>;

/** Quiet time before the next request after an RTU timeout (well above 3.5 characters at 1200 baud). */
const STALE_SETTLE_MS = 100;

export class ModbusLink {
  readonly description: string;
  private client: Client | undefined;
  private stateValue: LinkState = 'down';
  private reasonValue = 'connecting';
  private readonly listeners = new Set<(state: LinkState, reason?: string) => void>();
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  /** Resolves the wait of the connect loop when the current connection ends. */
  private dropCurrent: ((reason: string) => void) | undefined;
  /** A request timed out on an RTU-framed link; its answer may still arrive. */
  private staleInput = false;
  /** Tail of the request queue: one request in flight per link. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly target: LinkTarget,
    private readonly options: LinkOptions,
  ) {
    this.description = describeTarget(target);
    this.backoff = new Backoff({ initialMs: options.backoff.initialMs, maxMs: options.backoff.maxMs });
  }

  get state(): LinkState {
    return this.stateValue;
  }

  get reason(): string | undefined {
    return this.stateValue === 'up' ? undefined : this.reasonValue;
  }

  get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  onStateChange(listener: (state: LinkState, reason?: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Starts the background connect loop (idempotent). */
  start(): void {
    if (!this.loop && !this.abort.signal.aborted) this.loop = this.connectLoop();
  }

  /**
   * Runs `fn` with the connected client once every earlier request on this link has finished.
   * Rejects with LinkDownError when not connected, RequestTimeoutError when the peer is silent.
   */
  request<T>(fn: (client: Client) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const run = async () => {
      if (signal?.aborted) throw new LinkDownError('aborted before sending');
      const client = this.client;
      if (!client || this.stateValue !== 'up') throw new LinkDownError(this.reasonValue);
      if (this.target.transport !== 'tcp') await this.discardStaleInput(client);
      try {
        return await this.withTimeout(fn(client));
      } catch (err) {
        // On RTU framing a late answer to a timed-out request could be taken for the next one's.
        if (err instanceof RequestTimeoutError && this.target.transport !== 'tcp') this.staleInput = true;
        throw err;
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Drops the current connection (e.g. a TCP peer that stopped answering); the loop reconnects. */
  reset(reason: string): void {
    this.dropCurrent?.(reason);
  }

  /** A request got an answer: the peer is healthy, so the next outage starts at the initial delay. */
  healthy(): void {
    this.backoff.reset();
  }

  async close(): Promise<void> {
    if (this.abort.signal.aborted) return;
    this.abort.abort();
    this.dropCurrent?.('closed');
    await this.loop;
    await this.queue;
  }

  private async withTimeout<T>(work: Promise<T>): Promise<T> {
    // modbus-serial has its own per-request timer (setTimeout on the client); this one is the
    // backstop for a connection that dies without the library noticing.
    const ms = this.options.timeoutMs;
    let cancelTimer = () => undefined as void;
    const timeout = new Promise<never>((_, reject) => {
      cancelTimer = ioFairTimer(ms + 50, () => reject(new RequestTimeoutError(ms)));
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      // modbus-serial's errors are plain objects with a name, not Error instances.
      if ((err as { name?: unknown } | null)?.name === 'TransactionTimedOutError') throw new RequestTimeoutError(ms);
      throw err;
    } finally {
      cancelTimer();
    }
  }

  /**
   * RTU framing has no transaction ids: bytes buffered before a request is sent can only be a
   * late answer or line noise, so they are dropped; after a timeout the line first gets time to
   * go quiet. modbus-serial has no flush, so this clears the private `_buffer` that its
   * RTUBufferedPort and TelnetPort keep.
   */
  private async discardStaleInput(client: Client): Promise<void> {
    if (this.staleInput) await sleep(STALE_SETTLE_MS, this.abort.signal);
    this.staleInput = false;
    const port = (client as unknown as { _port?: { _buffer?: Buffer } })._port;
    if (port && Buffer.isBuffer(port._buffer) && port._buffer.length > 0) port._buffer = Buffer.alloc(0);
  }

  private setState(state: LinkState, reason?: string): void {
    const changed = state !== this.stateValue || (state === 'down' && reason !== undefined && reason !== this.reasonValue);
    if (reason) this.reasonValue = reason;
    this.stateValue = state;
    if (changed) for (const listener of this.listeners) listener(state, reason);
  }

  private async connectLoop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let reason: string;
      try {
        const client = await this.connectOnce();
        if (signal.aborted) {
          await closeClient(client);
          break;
        }
        this.client = client;
        this.setState('up');
        this.options.logger.debug({ link: this.description }, 'modbus link connected');
        reason = await new Promise<string>((resolve) => {
          this.dropCurrent = resolve;
          client.on('close', () => resolve(`connection closed by ${this.description}`));
          client.on('error', (err: unknown) => resolve(errorText(err)));
        });
        this.dropCurrent = undefined;
        this.client = undefined;
        await closeClient(client);
      } catch (err) {
        reason = errorText(err);
      }
      if (signal.aborted) break;
      this.setState('down', reason);
      await sleep(this.backoff.next(), signal);
    }
    this.client = undefined;
    this.setState('down', 'closed');
  }

  private async connectOnce(): Promise<Client> {
    const client = new ModbusRTU();
    // The request timeout is set only once connected: modbus-serial would also use it as the
    // socket's connect timer, which is not I/O-fair (see ioFairTimer).

    // Errors are reported through the connect promise or the connection wait; never unhandled.
    client.on('error', () => undefined);
    const target = this.target;
    let connecting: Promise<void>;
    if (target.transport === 'rtu') {
      const { baudRate, parity, dataBits, stopBits } = target;
      connecting = client.connectRTUBuffered(target.path, { baudRate, parity, dataBits, stopBits });
    } else if (target.transport === 'rtu-over-tcp') {
      // connectTelnet sends raw RTU frames (with CRC) over the socket; connectTcpRTUBuffered,
      // despite its name, wraps them in Modbus TCP (MBAP) headers.
      connecting = client.connectTelnet(target.host, { port: target.port });
    } else {
      connecting = client.connectTCP(target.host, { port: target.port });
    }
    let cancelTimer = () => undefined as void;
    const timeout = new Promise<never>((_, reject) => {
      cancelTimer = ioFairTimer(this.options.timeoutMs, () => reject(new Error(`connect timeout after ${this.options.timeoutMs} ms to ${this.description}`)));
    });
    try {
      await Promise.race([connecting, timeout]);
      client.setTimeout(this.options.timeoutMs);
      return client;
    } catch (err) {
      connecting.catch(() => undefined);
      await closeClient(client);
      throw err;
    } finally {
      cancelTimer();
    }
  }
}

/**
 * Calls onTimeout `ms` after now, but only after pending I/O had its turn. When the event loop
 * was blocked (a large import, a first seal), Node runs due timers before it polls sockets, so
 * a plain timer declares a timeout although the peer's answer is already waiting. setImmediate
 * runs after the poll phase. Returns the cancel function.
 */
export function ioFairTimer(ms: number, onTimeout: () => void): () => void {
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(onTimeout);
  }, ms);
  return () => {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  };
}

function closeClient(client: Client): Promise<void> {
  const internals = client as unknown as { _port?: { destroy?: unknown }; _cancelPendingTransactions?: () => void };
  return new Promise((resolve) => {
    // Bounded: a serial port that never confirms its close must not hold up stop().
    const timer = setTimeout(resolve, 1000);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      internals._cancelPendingTransactions?.();
      // Sockets have destroy(), which tears down at once; the RTU serial port only has close().
      if (typeof internals._port?.destroy === 'function') client.destroy(done);
      else client.close(done);
    } catch {
      done();
    }
  });
}

/** A one-line reason from anything thrown (modbus-serial throws plain objects with message/name). */
export function errorText(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const { message, code, name } = err as { message?: unknown; code?: unknown; name?: unknown };
    for (const text of [message, code, name]) if (typeof text === 'string' && text !== '') return text;
  }
  return String(err);
}

interface SharedLine {
  link: ModbusLink;
  users: number;
}

/** Serial lines by device path: one ModbusLink (and one request in flight) per physical bus. */
const serialLines = new Map<string, SharedLine>();

/**
 * The link for `target`. TCP targets get a connection of their own; a serial path already in
 * use by another tap returns that tap's link, provided the line settings agree.
 */
export function acquireLink(target: LinkTarget, options: LinkOptions): ModbusLink {
  if (target.transport !== 'rtu') return new ModbusLink(target, options);
  const shared = serialLines.get(target.path);
  if (shared) {
    const a = shared.link.target;
    if (a.transport === 'rtu' && (a.baudRate !== target.baudRate || a.parity !== target.parity || a.dataBits !== target.dataBits || a.stopBits !== target.stopBits)) {
      throw new LinkConfigError(
        `serial line ${target.path} is already open at ${a.baudRate} ${a.dataBits}${a.parity[0]!.toUpperCase()}${a.stopBits}; ` +
          `taps sharing a line must use the same settings (got ${target.baudRate} ${target.dataBits}${target.parity[0]!.toUpperCase()}${target.stopBits})`,
      );
    }
    shared.users++;
    return shared.link;
  }
  const link = new ModbusLink(target, options);
  serialLines.set(target.path, { link, users: 1 });
  return link;
}

export async function releaseLink(link: ModbusLink): Promise<void> {
  const target = link.target;
  if (target.transport === 'rtu') {
    const shared = serialLines.get(target.path);
    if (shared && shared.link === link) {
      shared.users--;
      if (shared.users > 0) return;
      serialLines.delete(target.path);
    }
  }
  await link.close();
}
