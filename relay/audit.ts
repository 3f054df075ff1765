/**
 * Per-key audit trail: time, event, key id and label, device DID, envelope hash, size, outcome
 * (no payload, no secrets). Every event is also a pino line. docs/RELAY.md "Audit trail".
 *
 * Files (state directory, 0600): `audit.jsonl` is appended to; before it would pass
 * `maxFileSize` it becomes `audit.jsonl.1`, `.1` becomes `.2` and so on; `keepFiles` files are
 * kept, the active one included, so the trail never takes more than keepFiles × maxFileSize.
 * Without a state directory the trail is one file's worth of lines in RAM (oldest dropped).
 *
 * Bounded RAM: nothing is read at start except the active file's last byte; an export streams
 * the files twice (count, then send the newest `limit` matches) through a 64 KiB buffer.
 *
 * `auth_failed` is aggregated: one line per (source address, presented key id, reason) and
 * minute with a count, written when the minute closes or at shutdown; at most
 * `authFailureBuckets` counters a minute, the rest go into one `ip: "other"` counter. A flood of
 * bad keys therefore writes at most authFailureBuckets + 1 lines a minute, whatever its rate.
 */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { StateFileError, describeFileError, stateExitCode } from '../common/state-errors.js';
import type { AuditEvent } from '../protocol/api/messages.js';

/** One audit event (the wire shape of the export lives in the API contract). */
export type { AuditEvent };

export interface AuditOptions {
  /** The active file (rotated ones are `<file>.1` … `<file>.<keepFiles-1>`); undefined = RAM only. */
  file: string | undefined;
  maxFileSize: number;
  keepFiles: number;
  authFailureBuckets: number;
}

export interface AuditFilter {
  /** Epoch ms, inclusive. */
  from?: number;
  to?: number;
  key?: string;
}

/** One export: counted once, then streamed; close() releases the file handles. */
export interface AuditExport {
  /** Events matching the filter (before the limit). */
  matched: number;
  /** Older matches left out to keep the answer at `limit` rows. */
  omitted: number;
  /** Lines that were not audit events (torn by a crash, garbled) and were skipped. */
  unreadable: number;
  rows(): AsyncGenerator<AuditEvent>;
  close(): Promise<void>;
}

/** Rows per export at most (about 30 MB of CSV); docs/API.md. */
export const MAX_EXPORT_ROWS = 100_000;
const COLUMNS = ['time', 'event', 'keyId', 'keyLabel', 'did', 'envelopeHash', 'size', 'outcome', 'ip', 'count', 'group', 'packageId'] as const;
/** Real lines are under 1 KiB (labels <= 100 characters); a longer "line" is garbage and is skipped unbuffered. */
const MAX_LINE_BYTES = 16 * 1024;
const READ_CHUNK = 64 * 1024;
/** Events waiting for a slow disk; beyond this they are dropped (counted, logged once). */
const MAX_UNWRITTEN_BYTES = 4 * 1024 * 1024;
/** Batching window: one append per 50 ms at most. */
const WRITE_DELAY_MS = 50;
/** A forwarded address is attacker-shaped text: keep at most this much of it. */
const MAX_IP_LENGTH = 64;
const MINUTE_MS = 60_000;

interface Counter { ip: string; keyId: string | undefined; outcome: string; count: number }
interface Source { name: string; handle?: FileHandle; size: number; lines?: string[]; ino?: number }

export class AuditTrail {
  private unwritten: string[] = [];
  private unwrittenBytes = 0;
  private writeTimer: NodeJS.Timeout | undefined;
  /** Appends, rotations and export snapshots run one at a time, in order. */
  private lock: Promise<unknown> = Promise.resolve();
  private activeSize = 0;
  /** A write failed part-way: the active file may end in a torn line. */
  private tailSuspect = false;
  private writeFailing = false;
  private droppedEvents = 0;
  /** RAM-only mode: newest lines, at most maxFileSize bytes. */
  private readonly ramLines: string[] = [];
  private ramHead = 0;
  private ramBytes = 0;
  private minute = -1;
  private readonly counters = new Map<string, Counter>();
  private overflow: Counter | undefined;
  private minuteTimer: NodeJS.Timeout | undefined;
  private readonly warnedUnreadable = new Set<string>();
  private closed = false;

  private constructor(private readonly options: AuditOptions, private readonly logger: Logger) {}

  static async open(options: AuditOptions, logger: Logger): Promise<AuditTrail> {
    const trail = new AuditTrail(options, logger);
    if (options.file !== undefined) {
      const file = options.file;
      await trail.locked(() => trail.prepareFiles()).catch((err: unknown) => {
        if (err instanceof StateFileError) throw err;
        // One line naming the file, and 65 (damaged, not a file) or 74 (disk) as docs/RELIABILITY.md says.
        throw new StateFileError((err as NodeJS.ErrnoException).path ?? file, describeFileError(err), stateExitCode(err));
      });
    }
    return trail;
  }

  /** Events dropped because the disk refused them or was too slow (since start). */
  get dropped(): number {
    return this.droppedEvents;
  }

  record(event: Omit<AuditEvent, 'time'>, now = new Date()): void {
    this.emit({ time: now.toISOString(), ...event });
  }

  /**
   * Counts one failed authentication. `keyId` is the public id of the presented key when it
   * parses (never the secret). True when it is the first of its counter this minute, i.e.
   * when a log line about it is worth writing now; the rest are summed into the minute's line.
   */
  authFailed(failure: { ip: string | undefined; keyId: string | undefined; outcome: string }, now = Date.now()): boolean {
    const minute = Math.floor(now / MINUTE_MS);
    if (minute !== this.minute) {
      this.closeMinute();
      this.minute = minute;
      this.scheduleMinuteClose(now);
    }
    const ip = (failure.ip ?? 'unknown').slice(0, MAX_IP_LENGTH);
    const id = `${ip}\n${failure.keyId ?? ''}\n${failure.outcome}`;
    let counter = this.counters.get(id);
    if (counter === undefined) {
      if (this.counters.size >= this.options.authFailureBuckets) {
        this.overflow ??= { ip: 'other', keyId: undefined, outcome: 'other', count: 0 };
        return ++this.overflow.count === 1;
      }
      counter = { ip, keyId: failure.keyId, outcome: failure.outcome, count: 0 };
      this.counters.set(id, counter);
    }
    return ++counter.count === 1;
  }

  /** Resolves when every event recorded so far is written (or dropped after a write error). */
  async flush(): Promise<void> {
    if (this.writeTimer) {
      clearTimeout(this.writeTimer);
      this.writeTimer = undefined;
    }
    await this.locked(() => this.writeOut());
  }

  /** Shutdown: the open minute's counters are written too. */
  async close(): Promise<void> {
    this.closeMinute();
    if (this.minuteTimer) clearTimeout(this.minuteTimer);
    this.minuteTimer = undefined;
    await this.flush();
    this.closed = true;
  }

  /**
   * The newest `limit` events matching `filter`, oldest first, across every kept file, plus the
   * open minute's auth_failed counters. Reads the files twice (count, then stream); RAM stays at
   * one read buffer whatever their size.
   */
  async export(filter: AuditFilter, limit = MAX_EXPORT_ROWS): Promise<AuditExport> {
    if (this.writeTimer) {
      clearTimeout(this.writeTimer);
      this.writeTimer = undefined;
    }
    const sources = await this.locked(async () => {
      await this.writeOut();
      return this.snapshot();
    });
    const pending: string[] = [];
    for (const counter of this.openCounters()) pending.push(JSON.stringify(this.counterEvent(counter)));
    sources.push({ name: 'open minute', size: 0, lines: pending });
    const close = async () => {
      for (const s of sources) await s.handle?.close().catch(() => undefined);
    };
    try {
      let matched = 0;
      let unreadable = 0;
      for (const source of sources) {
        let bad = 0;
        for await (const line of linesOf(source)) {
          const event = parseEvent(line);
          if (event === null) bad++;
          else if (event !== undefined && matches(event, filter)) matched++;
        }
        unreadable += bad;
        if (bad > 0) this.warnUnreadable(source, bad);
      }
      const omitted = Math.max(0, matched - limit);
      return {
        matched, omitted, unreadable, close,
        async *rows() {
          let seen = 0;
          let sent = 0;
          for (const source of sources) {
            for await (const line of linesOf(source)) {
              const event = parseEvent(line);
              if (!event || !matches(event, filter)) continue;
              if (seen++ < omitted) continue;
              yield event;
              // Lines appended after the snapshot are not read (sizes are fixed), so this holds.
              if (++sent >= limit) return;
            }
          }
        },
      };
    } catch (err) {
      await close();
      throw err;
    }
  }

  // ---- writing ------------------------------------------------------------------------------

  private emit(entry: AuditEvent): void {
    const level = entry.outcome === 'ok' ? 'info' : 'warn';
    this.logger[level]({ audit: entry }, `audit ${entry.event} ${entry.outcome}`);
    const line = JSON.stringify(entry) + '\n';
    if (this.options.file === undefined) return this.keepInRam(line);
    if (this.unwrittenBytes + line.length > MAX_UNWRITTEN_BYTES) {
      if (this.droppedEvents++ === 0) this.logger.error({ file: this.options.file }, 'audit trail: the disk is not keeping up; events are dropped (counted)');
      return;
    }
    this.unwritten.push(line);
    this.unwrittenBytes += line.length;
    if (this.writeTimer === undefined && !this.closed) {
      this.writeTimer = setTimeout(() => {
        this.writeTimer = undefined;
        void this.locked(() => this.writeOut());
      }, WRITE_DELAY_MS);
    }
  }

  private keepInRam(line: string): void {
    this.ramLines.push(line);
    this.ramBytes += line.length;
    while (this.ramBytes > this.options.maxFileSize && this.ramHead < this.ramLines.length - 1) {
      this.ramBytes -= this.ramLines[this.ramHead]!.length;
      this.ramLines[this.ramHead++] = '';
    }
    // Compact now and then instead of shifting on every event.
    if (this.ramHead > 1024 && this.ramHead * 2 > this.ramLines.length) {
      this.ramLines.splice(0, this.ramHead);
      this.ramHead = 0;
    }
  }

  /** Runs `task` after every earlier append, rotation and snapshot. */
  private locked<T>(task: () => Promise<T>): Promise<T> {
    const run = this.lock.then(task);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async writeOut(): Promise<void> {
    while (this.unwritten.length > 0) {
      const lines = this.unwritten;
      this.unwritten = [];
      this.unwrittenBytes = 0;
      try {
        if (this.tailSuspect) await this.closeTornTail();
        await this.append(lines);
        if (this.writeFailing) this.logger.warn({ file: this.options.file, dropped: this.droppedEvents }, 'audit trail writes work again');
        this.writeFailing = false;
      } catch (err) {
        this.droppedEvents += lines.length;
        this.tailSuspect = true;
        if (!this.writeFailing) this.logger.error({ file: this.options.file, err: (err as Error).message }, 'audit trail write failed; events are dropped (counted) until a write succeeds');
        this.writeFailing = true;
        return;
      }
    }
  }

  /** Appends whole lines, rotating first whenever the next line would take the file past maxFileSize. */
  private async append(lines: string[]): Promise<void> {
    const file = this.options.file!;
    let chunk = '';
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = Buffer.byteLength(line);
      if (this.activeSize + chunkBytes + bytes > this.options.maxFileSize && this.activeSize + chunkBytes > 0) {
        if (chunkBytes > 0) await fs.appendFile(file, chunk, { mode: 0o600 });
        this.activeSize += chunkBytes;
        chunk = '';
        chunkBytes = 0;
        await this.rotate();
      }
      chunk += line;
      chunkBytes += bytes;
    }
    if (chunkBytes > 0) await fs.appendFile(file, chunk, { mode: 0o600 });
    this.activeSize += chunkBytes;
  }

  /** audit.jsonl → .1 → .2 …; the file that would become .<keepFiles> is deleted. Renames keep 0600. */
  private async rotate(): Promise<void> {
    const file = this.options.file!;
    await ignoreMissing(fs.unlink(`${file}.${this.options.keepFiles - 1}`));
    for (let n = this.options.keepFiles - 2; n >= 1; n--) await ignoreMissing(fs.rename(`${file}.${n}`, `${file}.${n + 1}`));
    await ignoreMissing(fs.rename(file, `${file}.1`));
    this.activeSize = 0;
  }

  /** Start: drop files beyond keepFiles (the setting shrank), close a torn last line, rotate an oversized file. */
  private async prepareFiles(): Promise<void> {
    const file = this.options.file!;
    const dir = path.dirname(file);
    const base = path.basename(file);
    for (const name of await fs.readdir(dir)) {
      const n = rotatedNumber(base, name);
      if (n !== undefined && n >= this.options.keepFiles) {
        await fs.unlink(path.join(dir, name));
        this.logger.info({ file: path.join(dir, name), keepFiles: this.options.keepFiles }, 'audit trail: deleted a file beyond keepFiles');
      }
    }
    await this.closeTornTail();
    if (this.activeSize >= this.options.maxFileSize) {
      await this.rotate();
      this.logger.info({ file, maxFileSize: this.options.maxFileSize }, 'audit trail: rotated a file at or above maxFileSize');
    }
  }

  /** A crash mid-append leaves a line without its newline; end it so the next line is not glued to it (it is skipped as unreadable). */
  private async closeTornTail(): Promise<void> {
    const file = this.options.file!;
    let handle: FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.activeSize = 0;
      this.tailSuspect = false;
      return;
    }
    try {
      const { size } = await handle.stat();
      this.activeSize = size;
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) {
          await fs.appendFile(file, '\n', { mode: 0o600 });
          this.activeSize += 1;
          this.logger.warn({ file }, 'audit trail: the last line was torn (crash or failed write); it is kept and skipped as unreadable');
        }
      }
      this.tailSuspect = false;
    } finally {
      await handle.close();
    }
  }

  // ---- aggregation --------------------------------------------------------------------------

  private openCounters(): Counter[] {
    return this.overflow ? [...this.counters.values(), this.overflow] : [...this.counters.values()];
  }

  private counterEvent(counter: Counter): AuditEvent {
    return {
      time: new Date(this.minute * MINUTE_MS).toISOString(), event: 'auth_failed',
      ...(counter.keyId !== undefined ? { keyId: counter.keyId } : {}), outcome: counter.outcome, ip: counter.ip, count: counter.count,
    };
  }

  private closeMinute(): void {
    for (const counter of this.openCounters()) this.emit(this.counterEvent(counter));
    this.counters.clear();
    this.overflow = undefined;
  }

  /** An idle minute still gets its lines written once it is over (not only when the next failure comes). */
  private scheduleMinuteClose(now: number): void {
    if (this.minuteTimer) clearTimeout(this.minuteTimer);
    this.minuteTimer = setTimeout(() => {
      this.minuteTimer = undefined;
      if (Math.floor(Date.now() / MINUTE_MS) !== this.minute) {
        this.closeMinute();
        this.minute = -1;
      }
    }, MINUTE_MS - (now % MINUTE_MS) + 10);
    this.minuteTimer.unref();
  }

  // ---- reading ------------------------------------------------------------------------------

  /** Open handles on every kept file, oldest first, with their sizes now: later appends and renames do not disturb the export. */
  private async snapshot(): Promise<Source[]> {
    const file = this.options.file;
    if (file === undefined) return [{ name: 'memory', size: 0, lines: this.ramLines.slice(this.ramHead) }];
    const sources: Source[] = [];
    try {
      for (let n = this.options.keepFiles - 1; n >= 0; n--) {
        const name = n === 0 ? file : `${file}.${n}`;
        let handle: FileHandle;
        try {
          handle = await fs.open(name, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        sources.push({ name, handle, size: 0 });
        const stat = await handle.stat();
        sources[sources.length - 1]!.size = stat.size;
        sources[sources.length - 1]!.ino = stat.ino;
      }
    } catch (err) {
      for (const s of sources) await s.handle?.close().catch(() => undefined);
      throw new Error(`audit trail: cannot read ${(err as NodeJS.ErrnoException).path ?? file}: ${(err as Error).message}`);
    }
    return sources;
  }

  private warnUnreadable(source: Source, lines: number): void {
    const id = source.ino !== undefined ? `${source.ino}` : source.name;
    if (this.warnedUnreadable.has(id)) return;
    this.warnedUnreadable.add(id);
    this.logger.warn({ file: source.name, lines }, 'audit trail: unreadable lines skipped (torn by a crash or garbled)');
  }
}

/** "audit.jsonl.3" → 3 for base "audit.jsonl". */
function rotatedNumber(base: string, name: string): number | undefined {
  if (!name.startsWith(base + '.')) return undefined;
  const rest = name.slice(base.length + 1);
  return /^[1-9]\d{0,5}$/.test(rest) ? Number(rest) : undefined;
}

async function ignoreMissing(op: Promise<void>): Promise<void> {
  try {
    await op;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Lines of a source; null for a line longer than MAX_LINE_BYTES (skipped without buffering it) or a final line without newline. */
async function* linesOf(source: Source): AsyncGenerator<string | null> {
  if (source.lines) {
    for (const line of source.lines) if (line !== '') yield line.endsWith('\n') ? line.slice(0, -1) : line;
    return;
  }
  const handle = source.handle!;
  const buffer = Buffer.allocUnsafe(READ_CHUNK);
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let overlong = false;
  let position = 0;
  while (position < source.size) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_CHUNK, source.size - position), position);
    if (bytesRead === 0) break;
    position += bytesRead;
    const chunk = buffer.subarray(0, bytesRead);
    let start = 0;
    while (start < bytesRead) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? bytesRead : newline;
      if (!overlong) {
        if (carryBytes + end - start > MAX_LINE_BYTES) {
          overlong = true;
          carry = [];
          carryBytes = 0;
        } else if (newline !== -1 && carryBytes === 0) {
          yield chunk.toString('utf8', start, end);
          start = newline + 1;
          continue;
        } else {
          carry.push(Buffer.from(chunk.subarray(start, end)));
          carryBytes += end - start;
        }
      }
      if (newline === -1) break;
      yield overlong ? null : Buffer.concat(carry, carryBytes).toString('utf8');
      carry = [];
      carryBytes = 0;
      overlong = false;
      start = newline + 1;
    }
  }
  if (overlong || carryBytes > 0) yield null;
}

/** An audit event with known fields only; undefined for a blank line, null for anything unreadable. */
function parseEvent(line: string | null): AuditEvent | null | undefined {
  if (line === null) return null;
  if (line.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v['time'] !== 'string' || Number.isNaN(Date.parse(v['time'])) || typeof v['event'] !== 'string' || typeof v['outcome'] !== 'string') return null;
  const event: AuditEvent = { time: v['time'], event: v['event'], outcome: v['outcome'] };
  for (const name of ['keyId', 'keyLabel', 'did', 'envelopeHash', 'ip', 'group', 'packageId'] as const) if (typeof v[name] === 'string') event[name] = v[name] as string;
  for (const name of ['size', 'count'] as const) if (typeof v[name] === 'number') event[name] = v[name] as number;
  return event;
}

function matches(e: AuditEvent, filter: AuditFilter): boolean {
  if (filter.key !== undefined && e.keyId !== filter.key) return false;
  if (filter.from === undefined && filter.to === undefined) return true;
  const t = Date.parse(e.time);
  if (filter.from !== undefined && t < filter.from) return false;
  if (filter.to !== undefined && t > filter.to) return false;
  return true;
}

/** One CSV cell: always quoted; a leading = + - @ tab or CR is defused with a quote mark. */
export function csvCell(value: unknown): string {
  let text = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return `"${text.replace(/"/g, '""')}"`;
}

export function csvRow(e: AuditEvent): string {
  return COLUMNS.map((c) => csvCell(e[c])).join(',') + '\r\n';
}

/**
 * Streams an export as CSV or JSON (`{"omitted":N,"unreadable":N,"events":[…]}`), 64 KiB at a
 * time and only as fast as the client reads; stops when the client goes away.
 */
export async function sendAuditExport(res: ServerResponse, exported: AuditExport, format: 'json' | 'csv'): Promise<void> {
  const csv = format === 'csv';
  try {
    res.writeHead(200, {
      'content-type': csv ? 'text/csv; charset=utf-8' : 'application/json',
      ...(csv ? { 'content-disposition': 'attachment; filename="ghostpipe-audit.csv"' } : {}),
      'cache-control': 'no-store',
      'x-audit-omitted': String(exported.omitted),
      'x-audit-unreadable': String(exported.unreadable),
    });
    let out = csv ? COLUMNS.join(',') + '\r\n' : `{"omitted":${exported.omitted},"unreadable":${exported.unreadable},"events":[`;
    let first = true;
    for await (const event of exported.rows()) {
      out += csv ? csvRow(event) : (first ? '' : ',') + JSON.stringify(event);
      first = false;
      if (out.length >= READ_CHUNK) {
        if (!res.write(out)) await drained(res);
        out = '';
        if (res.destroyed) return;
      }
    }
    res.end(csv ? out : out + ']}');
  } finally {
    await exported.close();
  }
}

/**
 * Resolves at the next 'drain' or 'close'; at once when the response is already destroyed: its
 * 'close' has been emitted, and waiting for it held the export's file handles until GC closed
 * them (found by the fuzzer: a client gone while an export was written).
 */
function drained(res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
