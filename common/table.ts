/** One measured line of `npm run bench`. Times are milliseconds. */
export interface Row {
  section: string;
  name: string;
  provider: string;
  p50_ms: number;
  p95_ms: number;
  ops_per_s?: number;
  note?: string;
}

/** Percentile of already-collected samples (nearest rank). */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Runs `fn` `iterations` times after `warmup` runs and returns p50/p95 in ms and the op rate. */
export async function measure(fn: () => unknown, iterations: number, warmup = Math.min(5, iterations)): Promise<{ p50_ms: number; p95_ms: number; ops_per_s: number }> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  const total = performance.now() - start;
  return { p50_ms: percentile(samples, 50), p95_ms: percentile(samples, 95), ops_per_s: (iterations / total) * 1000 };
}

function formatNumber(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return '';
  if (value >= 100) return value.toFixed(0);
  if (value >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

/** A Markdown table, so the output pastes straight into docs/PERFORMANCE.md. */
export function formatTable(rows: Row[]): string {
  const header = ['section', 'name', 'provider', 'p50 ms', 'p95 ms', 'ops/s', 'note'];
  const body = rows.map((r) => [r.section, r.name, r.provider, formatNumber(r.p50_ms), formatNumber(r.p95_ms), formatNumber(r.ops_per_s), r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((line) => line[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [line(header), '| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |', ...body.map(line)].join('\n');
}
