/**
 * Per-key audit trail: time, event, key id and label, device DID, envelope hash, size, outcome.
 * Kept in RAM (newest MAX_EVENTS) and, with a state directory, appended to audit.jsonl (no
 * payload, no secrets). Every event is also a pino line.
 */
import { promises as fs } from 'node:fs';
import type { Logger } from '../common/log.js';

export interface AuditEvent {
  time: string;
  event: string;
  keyId?: string;
  keyLabel?: string;
  did?: string;
  envelopeHash?: string;
  size?: number;
  outcome: string;
}

const MAX_EVENTS = 100_000;
const COLUMNS = ['time', 'event', 'keyId', 'keyLabel', 'did', 'envelopeHash', 'size', 'outcome'] as const;

export class AuditTrail {
  private events: AuditEvent[] = [];
  private unwritten: string[] = [];
  private writing: Promise<void> | undefined;

  private constructor(private readonly file: string | undefined, private readonly log: Logger) {}

  static async open(file: string | undefined, log: Logger): Promise<AuditTrail> {
    const trail = new AuditTrail(file, log);
    if (file !== undefined) {
      let text = '';
      try {
        text = await fs.readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      for (const line of text.split('\n').slice(-MAX_EVENTS - 1)) {
        if (line === '') continue;
        try {
          trail.events.push(JSON.parse(line) as AuditEvent);
        } catch {
          // A torn last line after a crash: skip it.
        }
      }
    }
    return trail;
  }

  record(event: Omit<AuditEvent, 'time'>, now = new Date()): void {
    const entry: AuditEvent = { time: now.toISOString(), ...event };
    this.events.push(entry);
    if (this.events.length > MAX_EVENTS * 1.1) this.events = this.events.slice(-MAX_EVENTS);
    const level = entry.outcome === 'ok' ? 'info' : 'warn';
    this.log[level]({ audit: entry }, `audit ${entry.event} ${entry.outcome}`);
    if (this.file !== undefined) {
      this.unwritten.push(JSON.stringify(entry) + '\n');
      this.writing ??= new Promise((resolve) => setTimeout(resolve, 50)).then(() => this.write());
    }
  }

  query(filter: { from?: number; to?: number; key?: string }): AuditEvent[] {
    return this.events.filter((e) => {
      const t = Date.parse(e.time);
      if (filter.from !== undefined && t < filter.from) return false;
      if (filter.to !== undefined && t > filter.to) return false;
      if (filter.key !== undefined && e.keyId !== filter.key) return false;
      return true;
    }).slice(-MAX_EVENTS);
  }

  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async write(): Promise<void> {
    try {
      while (this.unwritten.length > 0) {
        const lines = this.unwritten.join('');
        this.unwritten = [];
        await fs.appendFile(this.file!, lines, { mode: 0o600 });
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'audit trail write failed');
    } finally {
      this.writing = undefined;
    }
  }
}

/** One CSV cell: always quoted; a leading = + - @ tab or CR is defused with a quote mark. */
export function csvCell(value: unknown): string {
  let text = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return `"${text.replace(/"/g, '""')}"`;
}

export function toCsv(events: AuditEvent[]): string {
  const lines = [COLUMNS.join(',')];
  for (const e of events) lines.push(COLUMNS.map((c) => csvCell(e[c])).join(','));
  return lines.join('\r\n') + '\r\n';
}
