/**
 * `ghostpipe doctor`: probe each tap once (start, one collect, stop), check the relay and the
 * enrollment, and render a table an OT engineer can read at the console. Taps that report by
 * exception (MQTT, OPC-UA subscribe) are given time for their first values before the collect.
 */
import type { Logger } from '../common/log.js';
import { sleep } from '../common/backoff.js';
import { RelayClient } from '../common/relay-client.js';
import { relayClientOptions, tapInterval, type AgentConfig, type AgentSecrets, type TapConfig } from './config.js';
import { checkEnrollment, type Enrollment } from './enroll.js';
import { createTap } from './taps.js';
import { collectInterval } from './collect.js';
import type { Reading, Tap, TapStatus } from './tap.js';

export interface TapProbe {
  tap: string;
  kind: string;
  status: TapStatus;
  latencyMs: number;
  outcome: string;
  readings: Reading[];
  /** Push taps: points that had no value when the probe gave up waiting (named in the report). */
  stillBad?: string[];
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
  const created = config.taps.map((tc) => createTap(config, tc, { logger }));
  // Heavy imports first, so no probe's connect timer runs while node-opcua loads (see Tap.prepare).
  await Promise.all(created.map((tap) => tap.prepare?.().catch(() => undefined)));
  const taps = await Promise.all(config.taps.map((tc, i) => probeTap(config, tc, created[i]!, probeMs)));
  const client = new RelayClient(relayClientOptions(config, secrets, Math.min(config.relay.timeout, 5_000)));
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

/**
 * Taps that report by exception: they are up (MQTT CONNACK, OPC-UA session and subscription)
 * before the first message or notification, and their collect() is a snapshot of what arrived.
 * Collecting the moment they are up would report every healthy point bad.
 */
function reportsByException(tc: TapConfig): boolean {
  return tc.type === 'mqtt' || (tc.type === 'opcua' && tc.mode === 'subscribe');
}

/**
 * Connect, collect once, stop. A polled tap is asked once. A push tap is watched until every
 * point has had a value or the deadline passes; each point then shows its first value (a value
 * that arrived early is not reported stale just because another point kept the probe waiting).
 */
async function probeTap(config: AgentConfig, tc: TapConfig, tap: Tap, probeMs: number): Promise<TapProbe> {
  try {
    await tap.start();
    const start = Date.now();
    const intervalMs = tapInterval(config, tc);
    const push = reportsByException(tc);
    // A polled tap answers within its interval; a push tap gets the whole probe time to deliver first values.
    const deadline = start + (push ? probeMs : Math.min(probeMs, Math.max(1000, intervalMs)));
    // Give the connection a moment: go on the first time the tap is up. A polled tap gets 3 s, so
    // time is left to collect; a push tap may use its whole probe time (a first OPC-UA connect
    // creates the client certificate, which takes seconds on a Pi).
    await waitUntilUp(tap.status.bind(tap), push ? deadline - 200 : Math.min(deadline - 200, start + 3_000));
    const watched = push ? await watchFirstValues(tap, deadline - 200) : undefined;
    const { readings: latest, outcomes } = await collectInterval([{ tap, intervalMs }], Date.now(), deadline);
    const up = tap.status().state === 'up';
    // A tap that went down meanwhile shows its current (bad) readings, not older first values.
    const readings = watched && up ? latest.map((r) => watched.first.get(r.point) ?? r) : latest;
    const stillBad = watched && up ? readings.filter((r) => r.quality === 'bad').map((r) => r.point) : [];
    return {
      tap: tc.name,
      kind: tc.type,
      status: tap.status(),
      // For a push tap: how long after coming up its last point got a first value (or the wait gave up).
      latencyMs: watched ? watched.latencyMs : outcomes[0]!.latencyMs,
      outcome: outcomes[0]!.outcome,
      readings,
      ...(stillBad.length > 0 ? { stillBad } : {}),
    };
  } finally {
    await tap.stop().catch(() => undefined);
  }
}

async function waitUntilUp(status: () => TapStatus, until: number): Promise<void> {
  while (status().state !== 'up' && Date.now() < until) await sleep(50);
}

/**
 * Snapshots a push tap until every point has had a value (quality not bad), the tap goes down,
 * or `until` passes. Returns each point's first reading with a value (its first good one, if any).
 */
async function watchFirstValues(tap: Tap, until: number): Promise<{ first: Map<string, Reading>; latencyMs: number }> {
  const started = Date.now();
  const first = new Map<string, Reading>();
  while (tap.status().state === 'up') {
    for (const reading of await tap.collect(until)) {
      const kept = first.get(reading.point);
      // The first value, or the first good one if the first was only uncertain.
      if (reading.quality === 'good' ? kept?.quality !== 'good' : reading.quality === 'uncertain' && kept === undefined) first.set(reading.point, reading);
    }
    if (tap.points.every((point) => first.has(point)) || Date.now() >= until) break;
    await sleep(50);
  }
  return { first, latencyMs: Date.now() - started };
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
  for (const t of report.taps) {
    const waited = t.stillBad ? `; no value after waiting ${t.latencyMs} ms: ${t.stillBad.join(', ')}` : '';
    lines.push(`tap ${t.tap} (${t.kind}): ${t.status.state}${t.status.reason ? ` (${t.status.reason})` : ''}, ${t.status.requests} requests, ${t.outcome}${waited}`);
  }
  lines.push(report.relay.reachable ? `relay ${report.relay.url}: reachable (version ${report.relay.version})` : `relay ${report.relay.url}: UNREACHABLE (${report.relay.error})`);
  const e = report.enrollment;
  lines.push(e.state === 'enrolled' ? `device ${e.did}: enrolled (log leaf ${e.leafIndex})` : `device ${e.did}: ${e.state === 'not_enrolled' ? 'NOT ENROLLED' : 'enrollment UNKNOWN'} (${e.reason})${e.state === 'not_enrolled' ? '; run ghostpipe enroll --config …' : ''}`);
  lines.push(report.healthy ? 'healthy' : 'NOT HEALTHY');
  return lines.join('\n') + '\n';
}
