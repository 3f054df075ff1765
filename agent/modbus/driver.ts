/**
 * The Modbus tap: runs on processed settings (schema.ts resolved the points and planned the
 * merged reads once), and per collect() walks the plan on its link
 * (one request in flight per link), decodes, and turns every failure into bad readings with a
 * reason. Failure scopes: a Modbus exception marks the points of that request; a timeout marks
 * the points of that unit id (the unit is skipped for the rest of the collect); a transport
 * failure marks every point of the tap.
 */
import type { Logger } from '../../common/log.js';
import { StatusListeners, type Reading, type Tap, type TapState, type TapStatus } from '../tap.js';
import { applyScale, decodeRegisters, exceptionName, type RegisterType } from './decode.js';
import { acquireLink, errorText, LinkDownError, releaseLink, RequestTimeoutError, type ModbusLink } from './link.js';
import { isBitTable, type PlannedRequest } from './plan.js';
import type { ResolvedPoint } from './points.js';
import type { ModbusTapSettings } from './schema.js';

export interface ModbusTapDeps {
  logger: Logger;
}

interface ModbusError extends Error {
  modbusCode?: number;
}

/** The tap for processed settings (schema.ts: modbusTapSchema or processModbusTap). */
export function createModbusTap(settings: ModbusTapSettings, deps: ModbusTapDeps): Tap {
  return new ModbusTap(settings, deps);
}

function rangeText(req: PlannedRequest, addressBase: number): string {
  const first = req.start + addressBase;
  return req.count === 1 ? `${req.table} ${first}` : `${req.table} ${first}..${first + req.count - 1}`;
}

class ModbusTap implements Tap {
  readonly kind = 'modbus' as const;
  readonly name: string;
  readonly points: readonly string[];
  private readonly resolved: readonly ResolvedPoint[];
  private readonly plan: readonly PlannedRequest[];
  private readonly link: ModbusLink;
  private readonly logger: Logger;
  private readonly retries: number;
  private readonly addressBase: number;
  private state: TapState = 'down';
  private reason: string | undefined = 'not started';
  private requests = 0;
  private stopped = false;
  private started = false;
  private unsubscribe: (() => void) | undefined;
  private readonly statusListeners = new StatusListeners();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(settings: ModbusTapSettings, deps: ModbusTapDeps) {
    this.name = settings.name;
    this.logger = deps.logger.child({ kind: 'modbus' }); // createTap() binds the tap name
    this.addressBase = settings.addressBase;
    this.retries = settings.retries;
    this.resolved = settings.points;
    this.points = settings.points.map((p) => p.name);
    this.plan = settings.plan;
    this.link = acquireLink(settings.target, {
      timeoutMs: settings.timeout,
      backoff: { initialMs: settings.backoff.initial, maxMs: settings.backoff.max },
      logger: this.logger,
    });
  }

  async start(): Promise<void> {
    if (this.started || this.stopped) return;
    this.started = true;
    this.reason = 'connecting';
    this.unsubscribe = this.link.onStateChange((state, reason) => this.setState(state, state === 'down' ? `${this.link.description}: ${reason}` : undefined));
    this.link.start();
    if (this.link.state === 'up') this.setState('up');
    this.logger.info({ link: this.link.description, points: this.points.length, requests: this.plan.length }, 'modbus tap started');
  }

  status(): TapStatus {
    return { state: this.state, ...(this.reason !== undefined && { reason: this.reason }), requests: this.requests, peer: this.link.description };
  }

  onStatusChange(listener: () => void): () => void {
    return this.statusListeners.add(listener);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    await Promise.allSettled([...this.inFlight]);
    await releaseLink(this.link);
    this.logger.info('modbus tap stopped');
  }

  async collect(deadline: number): Promise<Reading[]> {
    const results: (Reading | undefined)[] = new Array(this.resolved.length);
    if (this.stopped || !this.started) return this.fill(results, this.stopped ? 'tap stopped' : 'tap not started');
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const reachedDeadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        abort.abort();
        resolve();
      }, Math.max(0, deadline - Date.now()));
    });
    const work = this.poll(results, abort.signal);
    this.inFlight.add(work);
    work.finally(() => this.inFlight.delete(work)).catch(() => undefined);
    try {
      await Promise.race([work, reachedDeadline]);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    return this.fill(results, 'deadline reached before the point was read');
  }

  private fill(results: (Reading | undefined)[], reason: string): Reading[] {
    const now = Date.now();
    // Copy, so a poll still finishing in the background cannot change what was returned.
    return this.resolved.map((p, i) => results[i] ?? { tap: this.name, point: p.name, value: null, quality: 'bad' as const, reason, readTime: now });
  }

  private markBad(results: (Reading | undefined)[], indexes: readonly number[], reason: string): void {
    const now = Date.now();
    for (const i of indexes) results[i] ??= { tap: this.name, point: this.resolved[i]!.name, value: null, quality: 'bad', reason, readTime: now };
  }

  private async poll(results: (Reading | undefined)[], signal: AbortSignal): Promise<void> {
    const silentUnits = new Map<number, string>();
    let answered = 0;
    let timedOut = 0;
    for (const [n, req] of this.plan.entries()) {
      if (signal.aborted) return;
      const skip = silentUnits.get(req.unitId);
      if (skip) {
        this.markBad(results, req.points, skip);
        continue;
      }
      try {
        const data = await this.read(req, signal);
        answered++;
        this.decode(req, data, results);
      } catch (err) {
        if (err instanceof LinkDownError) {
          const reason = `not connected: ${this.link.description}: ${err.message}`;
          for (const rest of this.plan.slice(n)) this.markBad(results, rest.points, reason);
          this.setState('down', reason);
          return;
        }
        if (err instanceof RequestTimeoutError) {
          timedOut++;
          const reason = `timeout after ${err.timeoutMs} ms (unit ${req.unitId}, ${rangeText(req, this.addressBase)})`;
          silentUnits.set(req.unitId, reason);
          this.markBad(results, req.points, reason);
          this.logger.warn({ unitId: req.unitId, range: rangeText(req, this.addressBase), reason }, 'modbus unit not answering');
          continue;
        }
        const code = (err as ModbusError).modbusCode;
        if (typeof code === 'number') {
          answered++;
          const reason = `modbus exception ${code} (${exceptionName(code)}) for ${rangeText(req, this.addressBase)}`;
          this.markBad(results, req.points, reason);
          this.logger.warn({ unitId: req.unitId, reason }, 'modbus exception');
          continue;
        }
        const reason = `${errorText(err)} (unit ${req.unitId}, ${rangeText(req, this.addressBase)})`;
        this.markBad(results, req.points, reason);
        this.logger.warn({ unitId: req.unitId, reason }, 'modbus request failed');
      }
    }
    if (answered > 0) {
      this.link.healthy();
      this.setState('up');
    } else if (timedOut > 0) {
      const reason = `no unit answered on ${this.link.description}: ${[...silentUnits.values()][0]}`;
      this.setState('down', reason);
      // A TCP peer that answers nothing is likely a dead or half-open connection: start over.
      if (this.link.target.transport !== 'rtu') this.link.reset(reason);
    }
  }

  /** One planned request with retries; resolves to the register words or bits. */
  private async read(req: PlannedRequest, signal: AbortSignal): Promise<ArrayLike<number> | ArrayLike<boolean>> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.link.request(async (client) => {
          this.requests++;
          client.setID(req.unitId);
          switch (req.table) {
            case 'coil':
              return (await client.readCoils(req.start, req.count)).data;
            case 'discrete':
              return (await client.readDiscreteInputs(req.start, req.count)).data;
            case 'holding':
              return (await client.readHoldingRegisters(req.start, req.count)).data;
            case 'input':
              return (await client.readInputRegisters(req.start, req.count)).data;
          }
        }, signal);
      } catch (err) {
        const retryable = !(err instanceof LinkDownError) && typeof (err as ModbusError).modbusCode !== 'number';
        if (!retryable || attempt >= this.retries || signal.aborted) throw err;
        this.logger.debug({ unitId: req.unitId, attempt: attempt + 1, error: errorText(err) }, 'modbus request retry');
      }
    }
  }

  private decode(req: PlannedRequest, data: ArrayLike<number> | ArrayLike<boolean>, results: (Reading | undefined)[]): void {
    const now = Date.now();
    // readCoils returns whole bytes of bits: anything past req.count is padding and never read.
    if (data.length < req.count) {
      this.markBad(results, req.points, `short response: ${data.length} of ${req.count} ${isBitTable(req.table) ? 'bits' : 'registers'} (unit ${req.unitId}, ${rangeText(req, this.addressBase)})`);
      return;
    }
    for (const i of req.points) {
      const p = this.resolved[i]!;
      const at = p.address - req.start;
      const base = { tap: this.name, point: p.name, readTime: now, ...(p.unit !== undefined && { unit: p.unit }) };
      try {
        let value: Reading['value'];
        if (p.type === 'bool') {
          value = Boolean((data as ArrayLike<boolean>)[at]);
        } else {
          const words = Array.prototype.slice.call(data, at, at + p.width) as number[];
          const raw = decodeRegisters(words, p.type as RegisterType, p.order, { ...(p.bit !== undefined && { bit: p.bit }), ...(p.length !== undefined && { length: p.length }) });
          value = typeof raw === 'number' || typeof raw === 'bigint' ? applyScale(raw, p.scale, p.offset) : raw;
        }
        if (typeof value === 'number' && !Number.isFinite(value)) {
          results[i] = { ...base, value: null, quality: 'bad', reason: `value is ${value} (${p.type} at ${p.table} ${p.configAddress})` };
          continue;
        }
        results[i] = { ...base, value, quality: 'good' };
        if (this.logger.isLevelEnabled('debug')) this.logger.debug({ point: p.name, value: String(value) }, 'modbus reading');
      } catch (err) {
        results[i] = { ...base, value: null, quality: 'bad', reason: errorText(err) };
      }
    }
  }

  /** Records the link's state; the agent core (agent/tap-health.ts) decides what to log. */
  private setState(state: TapState, reason?: string): void {
    const next = state === 'up' ? undefined : reason;
    const changed = state !== this.state || next !== this.reason;
    this.state = state;
    this.reason = next;
    if (changed && !this.stopped) this.statusListeners.notify();
  }
}
