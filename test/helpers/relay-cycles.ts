/**
 * The relay fault loop shared by relay-kill.test.ts and relay-stop.test.ts: under real traffic
 * (plant -> agent -> relay -> receiver -> file sink), the relay is stopped and started again at
 * seeded random moments — at rest, while the agent re-sends what the last restart lost, and in
 * the middle of a burst of uploads from a second device (many log appends at once). After every
 * restart the log must extend what it signed before; at the end every frame the agent sealed is
 * in the sink once. Described, with figures, in docs/RELIABILITY.md.
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { until } from './conduit.js';
import { BurstDevice, FAULT_INTERVAL_MS, finishAndCheckExactlyOnce, sleep, type Rig, type Schedule } from './faults.js';
import { TILE_WIDTH, listTiles, signedFullTiles, tileFile } from './tile-reader.js';

export type Moment = 'at-rest' | 'mid-resend' | 'mid-burst';

export interface CycleOptions {
  signal: 'SIGKILL' | 'SIGTERM';
  cycles: number;
  ramOnly?: boolean;
  /**
   * Called after the relay is down and before it starts again (torn writes): returns what it did
   * and a check to run once the relay is up again.
   */
  whileDown?: (cycle: number) => Promise<{ what: string; check: () => Promise<void> }>;
}

/** Waits until the agent has had a new frame accepted since `mark` accepted lines. */
async function untilProgress(rig: Rig, mark: number): Promise<void> {
  const run = rig.agentRuns.at(-1)!;
  await until('a frame accepted after the restart', async () => run.lines('envelope uploaded').length > mark, 20_000, 50);
}

/**
 * The relay fault loop. Each cycle: traffic flows, the test's witness takes the relay's
 * checkpoint, the relay is stopped at a seeded moment, (optionally something is torn on disk),
 * it starts again after a seeded down time, and the witness checks the new checkpoint against
 * everything it saw (same origin: consistency proof; RAM-only: a new origin under the same key).
 */
export async function relayCycles(t: TestContext, rig: Rig, s: Schedule, o: CycleOptions): Promise<Record<Moment, number>> {
  const { conduit } = rig;
  const burst = await BurstDevice.enroll(conduit);
  const moments: Record<Moment, number> = { 'at-rest': 0, 'mid-resend': 0, 'mid-burst': 0 };
  const run = rig.agentRuns.at(-1)!;
  await untilProgress(rig, 0);
  const firstOrigin = (await rig.log.observe(conduit)).origin;
  // Where the time goes, per phase (ms, summed over the cycles): for the budget in docs/RELIABILITY.md.
  const phases = { moment: 0, stop: 0, restart: 0, progress: 0 };
  let mark = Date.now();
  const phase = (name: keyof typeof phases) => {
    const now = Date.now();
    phases[name] += now - mark;
    mark = now;
  };
  const pickMoment = (): Moment => s.pick(['at-rest', 'mid-resend', 'mid-burst'] as const);
  // The first kill cannot land in a re-send batch: there was no restart yet.
  let moment: Moment = s.pick(['at-rest', 'mid-burst'] as const);
  for (let cycle = 1; cycle <= o.cycles; cycle++) {
    moments[moment]++;
    // In a re-send batch every millisecond counts: the checkpoint taken after the restart stands for "before".
    const before = moment === 'mid-resend' ? rig.log.latest! : await rig.log.observe(conduit);
    if (moment === 'at-rest') await sleep(s.between(0, 2 * FAULT_INTERVAL_MS));
    phase('moment');
    let stopped: Promise<number | null | void>;
    if (moment === 'mid-burst') {
      const envelopes = burst.seal(s.between(12, 30));
      const killAfter = s.between(1, envelopes.length - 1);
      let fire!: () => void;
      const reached = new Promise<void>((resolve) => { fire = resolve; });
      const uploading = burst.upload(envelopes, 4, (n) => { if (n >= killAfter) fire(); });
      await Promise.race([reached, uploading]);
      stopped = o.signal === 'SIGKILL' ? conduit.relay!.kill() : conduit.relay!.stop();
      await uploading;
    } else {
      stopped = o.signal === 'SIGKILL' ? conduit.relay!.kill() : conduit.relay!.stop();
    }
    const code = await stopped;
    if (o.signal === 'SIGTERM') assert.equal(code, 0, `cycle ${cycle}: relay exit code after SIGTERM`);
    phase('stop');
    const uploadsBefore = run.lines('envelope uploaded').length;
    const resendsBefore = run.lines('envelope uploaded').filter((m) => m['resend'] === true).length;
    const damage = o.whileDown ? await o.whileDown(cycle) : undefined;
    const tear = damage?.what ?? '';
    await sleep(s.between(0, FAULT_INTERVAL_MS)); // down time: the agent keeps frames in its backlog
    await conduit.startRelay().catch((err: Error) => {
      throw new Error(`cycle ${cycle} (${o.signal} ${moment}${tear ? `, ${tear}` : ''}): the relay did not start again: ${err.message}`);
    });
    const after = await rig.log.observe(conduit).catch((err: Error) => {
      throw new Error(`cycle ${cycle} (${o.signal} ${moment}${tear ? `, ${tear}` : ''}): log after restart does not extend size ${before.size}: ${err.message}`);
    });
    phase('restart');
    await damage?.check();
    if (o.ramOnly) {
      assert.ok(rig.log.epochs.slice(0, -1).every((e) => e.first.origin !== after.origin), `cycle ${cycle}: a RAM-only boot starts a new log under an origin never seen before (${after.origin})`);
    } else {
      assert.equal(after.origin, firstOrigin, `cycle ${cycle}: origin kept across restarts`);
      assert.ok(after.size >= before.size, `cycle ${cycle}: size ${after.size} < ${before.size} before the restart`);
    }
    let next = pickMoment();
    if (next === 'mid-resend') {
      // Right after a restart the agent re-sends every envelope the relay forgot (it asks for their
      // status every 500 ms): the next kill lands in that batch. Re-sends are traffic too. When the
      // relay had nothing unconfirmed to forget there is no such batch: then a kill at rest.
      const resending = await until('the agent re-sending after the restart', async () => run.lines('envelope uploaded').filter((m) => m['resend'] === true).length > resendsBefore, 3_000, 20).then(() => true, () => false);
      if (!resending) {
        next = 'at-rest';
        await untilProgress(rig, uploadsBefore);
      }
    } else {
      await untilProgress(rig, uploadsBefore);
    }
    phase('progress');
    moment = next;
  }
  t.diagnostic(`${o.signal} cycles: ${JSON.stringify(moments)}; ms per phase: ${JSON.stringify(phases)}`);
  return moments;
}

/** The end of every relay scenario: the log still extends its first checkpoint, and the sink is exactly-once. */
export async function finishRelayScenario(t: TestContext, rig: Rig, ramOnly = false): Promise<void> {
  if (!ramOnly) {
    const { from, to } = await rig.log.proveFromFirst(rig.conduit);
    t.diagnostic(`consistency proof ${from} -> ${to} verified across every restart`);
  } else {
    t.diagnostic(`${rig.log.epochs.length} log epochs, one origin per boot, all signed by the pinned relay key`);
  }
  const { frames, readings } = await finishAndCheckExactlyOnce(rig);
  t.diagnostic(`sink: ${frames} frames, ${readings} readings, each exactly once`);
  assert.ok(rig.conduit.receiver!.running(), 'the receiver kept running through every restart (no fork, no rollback)');
  assert.equal(await rig.conduit.receiver!.stop(), 0);
  assert.equal(await rig.conduit.relay!.stop(), 0);
}

/**
 * Simulates a relay that died while writing: damages something written after the durable
 * checkpoint of `size` (the newest such tile or bundle, truncated or garbled), or, when the kill
 * left nothing beyond it, writes what a torn next append leaves: a partial entry bundle or hash
 * tile one entry wider with a half-written last entry, a half-written `checkpoint.tmp` (the
 * relay renames it into place), or a torn `checkpoint` itself (as a file system that reorders
 * the rename may leave it; the relay keeps `checkpoint.prev` for that).
 */
export async function tearAfterCheckpoint(logDir: string, size: number, s: Schedule): Promise<string> {
  const beyond = (await listTiles(logDir)).filter((f) => f.end > size && f.size > 0).sort((a, b) => b.mtimeMs - a.mtimeMs);
  const kind = s.pick(['truncate', 'garble', 'torn-bundle', 'torn-tile', 'half-checkpoint', 'torn-checkpoint'] as const);
  const newest = beyond[0];
  if ((kind === 'truncate' || kind === 'garble') && newest) {
    const bytes = await fs.readFile(newest.file);
    if (kind === 'truncate') {
      const keep = s.between(0, bytes.length - 1);
      await fs.truncate(newest.file, keep);
      return `truncated ${newest.rel} ${bytes.length} -> ${keep} bytes`;
    }
    const from = s.between(Math.floor(bytes.length / 2), bytes.length - 1);
    for (let i = from; i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0xa5;
    await fs.writeFile(newest.file, bytes);
    return `garbled ${newest.rel} from byte ${from} of ${bytes.length}`;
  }
  const index = Math.floor(size / TILE_WIDTH);
  const width = (size % TILE_WIDTH) + 1;
  if (kind === 'torn-tile') {
    const rel = tileFile(0, index, width);
    const existing = width > 1 ? await fs.readFile(path.join(logDir, tileFile(0, index, width - 1))).catch(() => Buffer.alloc((width - 1) * 32)) : Buffer.alloc(0);
    await writeTorn(path.join(logDir, rel), Buffer.concat([existing.subarray(0, (width - 1) * 32), Buffer.alloc(s.between(1, 31), 0x5a)]));
    return `torn hash tile ${rel}`;
  }
  if (kind === 'half-checkpoint') {
    // The relay writes checkpoint.tmp, then renames it into place: a crash can leave it half-written.
    const note = await fs.readFile(path.join(logDir, 'checkpoint'));
    await writeTorn(path.join(logDir, 'checkpoint.tmp'), note.subarray(0, s.between(1, note.length - 1)));
    return 'half-written checkpoint.tmp';
  }
  if (kind === 'torn-checkpoint' && existsSync(path.join(logDir, 'checkpoint.prev'))) {
    // A file system that tore the renamed checkpoint itself: the relay keeps checkpoint.prev for
    // this (from its second checkpoint on; with only one, a torn one is refused by design).
    const file = path.join(logDir, 'checkpoint');
    const note = await fs.readFile(file);
    const keep = s.between(1, note.length - 1);
    await writeTorn(file, note.subarray(0, keep));
    return `torn checkpoint (${note.length} -> ${keep} bytes)`;
  }
  // torn-bundle (also truncate/garble when nothing lies beyond the checkpoint): entries are
  // big-endian u16 length + data; the last one is cut short.
  const rel = tileFile('entries', index, width);
  const existing = width > 1 ? await fs.readFile(path.join(logDir, tileFile('entries', index, width - 1))).catch(() => Buffer.alloc(0)) : Buffer.alloc(0);
  const entry = Buffer.alloc(2 + 32, 0x3c);
  entry.writeUInt16BE(32, 0);
  await writeTorn(path.join(logDir, rel), Buffer.concat([existing, entry.subarray(0, s.between(1, entry.length - 1))]));
  return `torn entry bundle ${rel}${kind !== 'torn-bundle' ? ` (in place of ${kind}, not possible here: checkpoint ${size})` : ''}`;
}

/**
 * Leaves `bytes` under `file` as a new file (a new inode), the way a crash leaves a file the relay
 * renamed into place: never a write through an existing inode, which may be shared with a hard
 * link (`checkpoint` and `checkpoint.prev` are one inode for an instant while a checkpoint is
 * installed).
 */
async function writeTorn(file: string, bytes: Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(`${file}.torn`, bytes);
  await fs.rename(`${file}.torn`, file);
}

/** The torn-write step of relayCycles: tear what followed the durable checkpoint, then check nothing signed changed. */
export function tornWrites(rig: Rig, s: Schedule, tears: string[]): NonNullable<CycleOptions['whileDown']> {
  const logDir = path.join(rig.conduit.paths.relayState, 'log');
  return async (cycle) => {
    const note = await fs.readFile(path.join(logDir, 'checkpoint'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new Error(`cycle ${cycle}: no ${path.join(logDir, 'checkpoint')} (${err.code}): the relay's log is not stored as tlog-tiles`);
    });
    // The last checkpoint the relay made durable, signed by the pinned key: as good as served.
    const durable = rig.log.open(note);
    const signedTiles = await signedFullTiles(logDir, durable.size);
    const what = await tearAfterCheckpoint(logDir, durable.size, s);
    tears.push(what);
    return {
      what,
      check: async () => {
        await rig.log.proveFrom(rig.conduit, durable).catch((err: Error) => {
          throw new Error(`cycle ${cycle}, after "${what}": the durable checkpoint of size ${durable.size} is not extended: ${err.message}`);
        });
        const afterTiles = await signedFullTiles(logDir, durable.size);
        for (const [rel, hash] of signedTiles) assert.equal(afterTiles.get(rel), hash, `cycle ${cycle}, after "${what}": signed full tile ${rel} changed`);
      },
    };
  };
}
