/**
 * Human-readable output for the demo: the receiver's JSON reading lines become one compact block
 * per frame, and the roles' pino log lines become one short line each.
 */

export interface RecordLike {
  device?: string;
  tap: string;
  point: string;
  value: unknown;
  unit?: string | null;
  quality: string;
  reason?: string | null;
  readTime?: string;
  stale?: boolean;
  seq?: string;
  frame?: string;
  envelope?: string;
}

export function isReadingRecord(json: Record<string, unknown>): boolean {
  return typeof json['tap'] === 'string' && typeof json['point'] === 'string' && 'quality' in json && 'envelope' in json;
}

function formatValue(r: RecordLike): string {
  if (r.quality === 'bad') return `✗ (${r.reason ?? 'bad'})`;
  let v: string;
  if (typeof r.value === 'number') v = Number.isInteger(r.value) ? String(r.value) : String(Number(r.value.toFixed(3)));
  else v = String(r.value);
  const unit = r.unit ? ` ${r.unit}` : '';
  const flag = r.quality === 'uncertain' ? ` (uncertain${r.stale ? ', stale' : ''})` : '';
  return `${v}${unit}${flag}`;
}

/** One frame's readings: a header line, then one line per tap. */
export function formatFrame(records: RecordLike[]): string {
  const first = records[0]!;
  const time = first.readTime ? first.readTime.slice(11, 19) : '--:--:--';
  const good = records.filter((r) => r.quality === 'good').length;
  const header = `frame ${first.frame ?? '?'} · ${time} UTC · ${good}/${records.length} good · envelope ${String(first.envelope ?? '').slice(0, 12)}… seq ${first.seq ?? '?'}`;
  const byTap = new Map<string, RecordLike[]>();
  for (const r of records) {
    const list = byTap.get(r.tap) ?? [];
    list.push(r);
    byTap.set(r.tap, list);
  }
  const width = Math.max(...[...byTap.keys()].map((t) => t.length));
  const lines = [...byTap].map(([tap, list]) => {
    // A tap that is down gives every point the same reason: say it once.
    const reasons = new Set(list.map((r) => r.reason));
    const text = list.length > 1 && list.every((r) => r.quality === 'bad') && reasons.size === 1
      ? `✗ all ${list.length} points bad: ${list[0]!.reason ?? 'bad'}`
      : list.map((r) => `${r.point} ${formatValue(r)}`).join(' · ');
    return `  ${tap.padEnd(width)}  ${text}`;
  });
  return [header, ...lines].join('\n');
}

/** Groups reading records into frames: flushes when the frame changes or after a short quiet time. */
export class FrameGrouper {
  private pending: RecordLike[] = [];
  private key = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: (block: string) => void, private readonly quietMs = 150) {}

  add(r: RecordLike): void {
    const key = `${r.envelope}/${r.frame}`;
    if (this.pending.length > 0 && key !== this.key) this.flush();
    this.key = key;
    this.pending.push(r);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.quietMs);
  }

  flush(): void {
    clearTimeout(this.timer);
    if (this.pending.length === 0) return;
    const block = formatFrame(this.pending);
    this.pending = [];
    this.out(block);
  }
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v']);

/** "[agent] WARN relay unreachable relay=http://… reason=…" (info level without the word). */
export function formatLogLine(role: string, json: Record<string, unknown>): string {
  const level = typeof json['level'] === 'number' ? json['level'] : 30;
  const fields = Object.entries(json)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const tag = level === 30 ? '' : `${LEVELS[level] ?? level} `;
  return `[${role}] ${tag}${String(json['msg'] ?? '')}${fields ? '  ' + fields : ''}`;
}
