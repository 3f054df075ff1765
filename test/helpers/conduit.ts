/**
 * Shared pieces of the end-to-end tests: a Conduit (plant/conduit.ts: relay, agent and receiver
 * as separate `ghostpipe` processes) in a temp folder, a file sink that the tests read back, and
 * the checks "every frame exactly once".
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Conduit, type ConduitOptions } from '../../plant/conduit.js';
import { cliPath } from './paths.js';
import { until } from './wait.js';
import { completeJsonLines } from './json-lines.js';
import { reservePort } from './ports.js';
import { stopChild } from './stop.js';
import type { ReadingRecord } from '../../receiver/records.js';

export const INTERVAL_MS = 400;

/** One line of the file sink: the receiver's JSON record of one reading. */
export type SinkRecord = ReadingRecord;

export async function makeConduit(name: string, options: Partial<ConduitOptions> = {}): Promise<{ conduit: Conduit; dir: string; sinkFile: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `ghostpipe-e2e-${name}-`));
  const sinkFile = path.join(dir, 'sink', 'readings.jsonl');
  const conduit = new Conduit({
    dir, cli: cliPath, intervalMs: INTERVAL_MS, devicePlan: 'enterprise', logLevel: 'info',
    sinks: [{ type: 'file', path: sinkFile }],
    relaySettings: { leaseTimeout: '2s' },
    receiverSettings: {},
    ...options,
  });
  // The tests restart the relay, and the agent's config names its URL: a port reserved for this
  // test process, which no other bind can take in between (test/helpers/ports.ts).
  conduit.relayPort = await reservePort();
  return { conduit, dir, sinkFile };
}

/**
 * Test cleanup: SIGTERM to every role still running, agent and receiver first, relay last; fails
 * unless each exits 0 (a role SIGKILLed after the deadline fails too, see test/helpers/stop.ts).
 */
export async function stopConduit(conduit: Conduit): Promise<void> {
  const problems: string[] = [];
  for (const group of [[conduit.agent, conduit.receiver], [conduit.relay]]) {
    for (const problem of await Promise.all(group.map((role) => (role ? stopChild(role.child, role.name) : undefined)))) {
      if (problem) problems.push(problem);
    }
  }
  if (problems.length > 0) throw new Error(`cleanup: ${problems.join('; ')}`);
}

/** Every record in the sink file (none yet: empty). */
export async function readSink(file: string): Promise<SinkRecord[]> {
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  return completeJsonLines<SinkRecord>(text);
}

/** Frame numbers (as bigint) of the agent's frames in the sink, stream 1 only. */
export function frameNumbers(records: SinkRecord[]): bigint[] {
  return [...new Set(records.filter((r) => r.stream === 1).map((r) => r.frame))].map(BigInt).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Readings that appear more than once: "frame/tap/point" keys. */
export function duplicateReadings(records: SinkRecord[]): string[] {
  const seen = new Set<string>();
  const dups: string[] = [];
  for (const r of records) {
    const key = `${r.stream}/${r.frame}/${r.tap}/${r.point}`;
    if (seen.has(key)) dups.push(key);
    seen.add(key);
  }
  return dups;
}

/** Frames missing between the lowest and `upTo`. */
export function missingFrames(records: SinkRecord[], upTo: bigint): bigint[] {
  const have = new Set(frameNumbers(records).map(String));
  const first = frameNumbers(records)[0];
  if (first === undefined) return [upTo];
  const missing: bigint[] = [];
  for (let f = first; f <= upTo; f++) if (!have.has(String(f))) missing.push(f);
  return missing;
}

export { until } from './wait.js';

/** Waits until the sink holds every frame from the first one up to `upTo`. */
export function untilContiguous(sinkFile: string, upTo: bigint, timeoutMs = 30_000): Promise<SinkRecord[]> {
  let last: bigint[] = [];
  return until(`every frame up to ${upTo} in the sink`, async () => {
    const records = await readSink(sinkFile);
    last = missingFrames(records, upTo);
    return last.length === 0 ? records : undefined;
  }, timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; still missing frames ${last.slice(0, 20).join(', ')}`);
  });
}

/** The highest frame number in the sink (0n when empty). */
export async function lastFrame(sinkFile: string): Promise<bigint> {
  return frameNumbers(await readSink(sinkFile)).at(-1) ?? 0n;
}
