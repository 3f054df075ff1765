/**
 * `ghostpipe doctor`: probe each tap once (start, one collect, stop), check the relay and the
 * enrollment, and render a table an OT engineer can read at the console.
 */
import type { Logger } from '../common/log.js';
import { RelayClient } from '../relay/client.js';
import { tapInterval, type AgentConfig, type AgentSecrets } from './config.js';
import { checkEnrollment, type Enrollment } from './enroll.js';
import { createTap } from './taps.js';
import { collectInterval } from './collect.js';
import type { Reading, TapStatus } from './tap.js';

export interface TapProbe {
  tap: string;
  kind: string;
  status: TapStatus;
  latencyMs: number;
  outcome: string;
  readings: Reading[];
}

export interface DoctorReport {
  taps: TapProbe[];
  relay: { url: string; reachable: boolean; version?: string; error?: string };
  enrollment: Enrollment;
  healthy: boolean;
}

/** Longest a single tap probe may take; a tap's own timeouts are usually far shorter. */
const PROBE_DEADLINE_MS = 10_000;

export async function runDoctor(config: AgentConfig, secrets: AgentSecrets, logger: Logger, probeMs = PROBE_DEADLINE_MS): Promise<DoctorReport> {
  const created = config.taps.map((tc) => createTap(config, tc, { logger, onEvent: () => undefined }));
  // Heavy imports first, so no probe's connect timer runs while node-opcua loads (see Tap.prepare).
  await Promise.all(created.map((tap) => tap.prepare?.().catch(() => undefined)));
  const taps = await Promise.all(
    config.taps.map(async (tc, i): Promise<TapProbe> => {
      const tap = created[i]!;
      try {
        await tap.start();
        const start = Date.now();
        const deadline = start + Math.min(probeMs, Math.max(1000, tapInterval(config, tc)));
        // Give the connection a moment: collect the first time the tap is up, or at the deadline.
        await waitUntilUp(tap.status.bind(tap), Math.min(deadline - 200, start + 3_000));
        const { readings, outcomes } = await collectInterval([{ tap, intervalMs: tapInterval(config, tc) }], Date.now(), deadline);
        return { tap: tc.name, kind: tc.type, status: tap.status(), latencyMs: outcomes[0]!.latencyMs, outcome: outcomes[0]!.outcome, readings };
      } finally {
        await tap.stop().catch(() => undefined);
      }
    }),
  );
  const client = new RelayClient({ baseUrl: config.relay.url, apiKey: secrets.apiKey, timeoutMs: Math.min(config.relay.timeout, 5_000) });
  let relay: DoctorReport['relay'];
  try {
    const health = await client.health();
    relay = { url: config.relay.url, reachable: true, version: health.version };
  } catch (err) {
    relay = { url: config.relay.url, reachable: false, error: (err as Error).message };
  }
  const enrollment = await checkEnrollment(client, secrets.device.did);
  const tapsHealthy = taps.every((t) => t.readings.every((r) => r.quality === 'good'));
  return { taps, relay, enrollment, healthy: tapsHealthy && relay.reachable && enrollment.state === 'enrolled' };
}

async function waitUntilUp(status: () => TapStatus, until: number): Promise<void> {
  while (status().state !== 'up' && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
}

function show(value: Reading['value']): string {
  if (value === null) return '-';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  return String(value);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The console report. Values are shown: doctor is run by an operator at the console, not logged. */
export function formatDoctorReport(report: DoctorReport): string {
  const rows = [['TAP', 'POINT', 'VALUE', 'UNIT', 'QUALITY', 'LATENCY', 'REASON']];
  for (const t of report.taps) {
    for (const r of t.readings) {
      rows.push([t.tap, r.point, show(r.value), r.unit ?? '', r.quality + (r.stale ? ' (stale)' : ''), `${t.latencyMs} ms`, r.reason ?? '']);
    }
  }
  const lines = [table(rows), ''];
  for (const t of report.taps) lines.push(`tap ${t.tap} (${t.kind}): ${t.status.state}${t.status.reason ? ` (${t.status.reason})` : ''}, ${t.status.requests} requests, ${t.outcome}`);
  lines.push(report.relay.reachable ? `relay ${report.relay.url}: reachable (version ${report.relay.version})` : `relay ${report.relay.url}: UNREACHABLE (${report.relay.error})`);
  const e = report.enrollment;
  lines.push(e.state === 'enrolled' ? `device ${e.did}: enrolled (log leaf ${e.leafIndex})` : `device ${e.did}: ${e.state === 'not_enrolled' ? 'NOT ENROLLED' : 'enrollment UNKNOWN'} (${e.reason})${e.state === 'not_enrolled' ? '; run ghostpipe enroll --config …' : ''}`);
  lines.push(report.healthy ? 'healthy' : 'NOT HEALTHY');
  return lines.join('\n') + '\n';
}
