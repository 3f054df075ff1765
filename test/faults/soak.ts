/**
 * The long-run fault test (`npm run soak`, not in CI): the conduit on the simulated plant with an
 * accelerated agent interval, the relay SIGKILLed and restarted at seeded moments spread over the
 * run, the RSS of every process sampled. Passes when every restart extends the signed log, every
 * frame the agent sealed is in the sink exactly once, the relay's start time does not grow with
 * its log, and no process's RSS trends upward. Prints a JSON summary (figures for
 * docs/RELIABILITY.md) and exits 1 on any failure.
 *
 *   GHOSTPIPE_SOAK_MINUTES      run length (default 30)
 *   GHOSTPIPE_SOAK_KILLS        relay kills spread over the run (default 100)
 *   GHOSTPIPE_SOAK_INTERVAL_MS  agent interval (default 200)
 *   GHOSTPIPE_SOAK_RAM_ONLY     1: RAM-only relay with an identity directory (default: state directory)
 *   GHOSTPIPE_FAULT_SEED        replay a schedule
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { prng } from '../../common/prng.js';
import { lastFrame, readSink, until } from '../helpers/conduit.js';
import { checkSinkIntegrity, plantForFile, sleep, untilDrained, type Rig } from '../helpers/faults.js';

const minutes = Number(process.env['GHOSTPIPE_SOAK_MINUTES'] ?? 30);
const kills = Number(process.env['GHOSTPIPE_SOAK_KILLS'] ?? 100);
const intervalMs = Number(process.env['GHOSTPIPE_SOAK_INTERVAL_MS'] ?? 200);
const ramOnly = process.env['GHOSTPIPE_SOAK_RAM_ONLY'] === '1';
const seed = process.env['GHOSTPIPE_FAULT_SEED'] ? Number(process.env['GHOSTPIPE_FAULT_SEED']) >>> 0 : randomInt(2 ** 31);
const SAMPLE_MS = 5_000;

const MiB = 1024 * 1024;
const say = (msg: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function rssOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined; // exited between the kill and the restart
  }
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const sxy = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const sxx = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** First and last quarter means and the regression growth over the run, in MiB. */
function trend(points: [number, number][]): { firstQuarterMiB: number; lastQuarterMiB: number; fittedGrowthMiB: number; grows: boolean } {
  // The first minute (at least 10 % of the run) is warm-up (JIT, caches filling), not a trend.
  const t0 = points[0]?.[0] ?? 0;
  const warm = Math.max(Math.floor(points.length / 10), points.findIndex((p) => p[0] - t0 >= 60));
  const steady = points.slice(warm < 0 ? points.length : warm);
  const q = Math.max(1, Math.floor(steady.length / 4));
  const first = mean(steady.slice(0, q).map((p) => p[1])) / MiB;
  const last = mean(steady.slice(-q).map((p) => p[1])) / MiB;
  const span = steady.length > 1 ? steady.at(-1)![0] - steady[0]![0] : 0;
  const fitted = (slope(steady) * span) / MiB;
  // Growth: the last quarter above the first by more than 10 % and 8 MiB, and the fit agreeing.
  const grows = last > first * 1.1 && last - first > 8 && fitted > 8;
  return { firstQuarterMiB: round(first), lastQuarterMiB: round(last), fittedGrowthMiB: round(fitted), grows };
}

const round = (x: number) => Math.round(x * 10) / 10;

async function main(): Promise<number> {
  say(`${minutes} min, ${kills} relay kills, agent interval ${intervalMs} ms, ${ramOnly ? 'RAM-only' : 'state directory'}, seed ${seed} (replay with GHOSTPIPE_FAULT_SEED=${seed})`);
  const random = prng(seed);
  const plant = plantForFile();
  await plant.start();
  let rig: Rig | undefined;
  const failures: string[] = [];
  const samples: Record<string, [number, number][]> = { agent: [], receiver: [], plantAndTest: [] };
  /** RSS of each relay process just before it is killed (all of about the same age). */
  const relayBeforeKill: [number, number][] = [];
  const relayStartMs: number[] = [];
  try {
    rig = await plant.rig(`soak${ramOnly ? '-ramonly' : ''}`, { ramOnly, intervalMs, agentLogLevel: 'info' });
    const { conduit, sinkFile } = rig;
    const started = Date.now();
    const end = started + minutes * 60_000;
    const sampler = setInterval(() => {
      const t = (Date.now() - started) / 1000;
      for (const [role, proc] of [['agent', conduit.agent], ['receiver', conduit.receiver]] as const) {
        const rss = rssOf(proc?.pid);
        if (rss !== undefined) samples[role]!.push([t, rss]);
      }
      samples['plantAndTest']!.push([t, process.memoryUsage.rss()]);
    }, SAMPLE_MS);
    await until('frames in the sink', async () => (await lastFrame(sinkFile)) >= 1n, 60_000);
    await rig.log.observe(conduit);
    const period = (end - Date.now()) / kills;
    for (let k = 1; k <= kills && Date.now() < end; k++) {
      const due = started + k * period + (random() - 0.5) * period;
      if (due > Date.now()) await sleep(due - Date.now());
      try {
        const before = await rig.log.observe(conduit);
        relayBeforeKill.push([(Date.now() - started) / 1000, rssOf(conduit.relay!.pid) ?? 0]);
        await conduit.relay!.kill();
        await sleep(Math.floor(random() * intervalMs * 3));
        const t0 = Date.now();
        await conduit.startRelay();
        relayStartMs.push(Date.now() - t0);
        const after = await rig.log.observe(conduit);
        if (!ramOnly && after.size < before.size) failures.push(`kill ${k}: log size ${after.size} < ${before.size}`);
      } catch (err) {
        failures.push(`kill ${k}: ${(err as Error).message.split('\n')[0]}`);
        if (!conduit.relay?.running()) break;
      }
      if (k % 10 === 0) say(`kill ${k}/${kills}: log size ${rig.log.latest?.size}, sink at frame ${await lastFrame(sinkFile)}, relay start ${relayStartMs.at(-1)} ms`);
    }
    if (Date.now() < end) await sleep(end - Date.now());
    clearInterval(sampler);

    // The end: the log still extends its first checkpoint, and the sink holds every frame once.
    if (!ramOnly) {
      const proof = await rig.log.proveFromFirst(conduit).catch((err: Error) => (failures.push(`consistency from the first checkpoint: ${err.message}`), undefined));
      if (proof) say(`consistency proof ${proof.from} -> ${proof.to} verified`);
    }
    const code = await conduit.agent!.stop();
    const stopLine = conduit.agent!.lines.map((l) => l.json).find((j) => typeof j?.['msg'] === 'string' && (j['msg'] as string).startsWith('agent stopped'));
    if (code !== 0) failures.push(`agent exit code ${code}`);
    if (stopLine?.['unflushedFrames'] !== 0) failures.push(`agent stop line: ${JSON.stringify(stopLine)}`);
    await untilDrained(conduit, 60_000);
    const last = await lastFrame(sinkFile);
    const records = await readSink(sinkFile);
    let frames = 0;
    try {
      const present = checkSinkIntegrity(records);
      frames = present.size;
      // One agent process: frames 1..last, none missing.
      if (BigInt(present.size) !== last) failures.push(`sink holds ${present.size} frames of 1..${last}`);
    } catch (err) {
      failures.push((err as Error).message);
    }
    if (!conduit.receiver!.running()) failures.push('the receiver exited');

    const trends = {
      agent: trend(samples['agent']!),
      receiver: trend(samples['receiver']!),
      plantAndTest: trend(samples['plantAndTest']!),
      relayBeforeKill: trend(relayBeforeKill),
    };
    for (const [role, tr] of Object.entries(trends)) if (tr.grows) failures.push(`${role} RSS grows: ${JSON.stringify(tr)}`);
    const tenth = Math.max(1, Math.floor(relayStartMs.length / 10));
    const startFirst = mean(relayStartMs.slice(0, tenth));
    const startLast = mean(relayStartMs.slice(-tenth));
    if (startLast > startFirst * 2 && startLast - startFirst > 500) failures.push(`relay start time grows: ${Math.round(startFirst)} -> ${Math.round(startLast)} ms`);
    const summary = {
      seed, minutes, intervalMs, ramOnly, kills: relayStartMs.length, failures,
      logSize: rig.log.latest?.size, epochs: rig.log.epochs.length, frames, readings: records.length,
      relayStartMs: { firstTenth: Math.round(startFirst), lastTenth: Math.round(startLast), max: Math.max(...relayStartMs) },
      rss: trends,
      rssSamples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.length])),
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    await conduit.receiver!.stop();
    await conduit.relay!.stop();
  } catch (err) {
    failures.push(`soak aborted: ${(err as Error).stack ?? String(err)}`);
    process.stdout.write(JSON.stringify({ seed, failures }, null, 2) + '\n');
  } finally {
    await plant.stop();
  }
  say(failures.length === 0 ? 'PASS' : `FAIL: ${failures.length} problem(s)`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
