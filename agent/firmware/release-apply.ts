/**
 * The release service: `ghostpipe release apply`, run as root by ghostpipe-release.path when the
 * agent leaves a request (release-handoff.ts). The agent verified the package; this process does
 * it again with the same pure checks (verify.ts) against the pinned root, and keeps a release
 * counter floor of its own, so an agent that is not itself (a compromised process) cannot make
 * root install anything but a signed, newer release. Then, in order:
 *
 *   1. unpack    the staged tarball to <prefix>/releases/<version> (release-layout.ts)
 *   2. switch    `current` to it, the switch recorded first in <release.stateDir>/state.json
 *   3. restart   the units (the `restart` command), which start from the new release
 *   4. health    within `healthTimeout`: an agent of the new release had a frame accepted
 *                after the switch and found the relay answering /healthz (its running.json;
 *                this service itself has no network)
 *   5. decide    healthy: installed, the release before it kept for a switch back by hand.
 *                Not: `current` back to the old release, the units restarted, the new release
 *                removed, rolled_back (failed if even the switch back failed).
 *   6. answer    result.json for the agent (which signs the receipt), then the request is removed.
 *
 * Killed or powered off anywhere: the request is still there, so the path unit starts this again
 * (at boot too). Before 2 it starts over (a half-unpacked scratch folder is removed); a recorded
 * switch is switched and restarted again and gets a fresh health window; a decided install whose
 * answer was lost is answered installed.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../common/log.js';
import { readOptional, writeFileAtomic } from '../../common/atomic-file.js';
import { formatDuration } from '../../common/duration.js';
import { sleep } from '../../common/backoff.js';
import { runCommand } from './commands.js';
import { RELEASE_INSTALL_TYPE, stagingRoot, type FirmwareConfig, type FirmwareSecrets, type ReleaseConfig } from './config.js';
import { HandoffError, handoffFiles, readRequest, readRunning, writeHandoff, type ReleaseOutcome, type ReleaseRequest, type ReleaseResult } from './release-handoff.js';
import { ReleaseLayoutError, currentVersion, pruneReleases, releaseDir, removeRelease, removeScratch, switchCurrent, unpackRelease } from './release-layout.js';
import { StagedDownload } from './staging.js';
import { FirmwareRefusal, checkOffer } from './verify.js';
import type { FirmwareManifest } from '../../protocol/firmware/index.js';

export interface ApplyOptions {
  firmware: FirmwareConfig & { release: ReleaseConfig };
  secrets: FirmwareSecrets;
  /** The agent's state folder (where the handoff files are). */
  stateDir: string;
  logger: Logger;
  /** How often the health condition is looked at. */
  pollMs?: number;
}

/** The service's own record, <release.stateDir>/state.json (root's, 0600). */
interface ApplyState {
  version: 1;
  /** The last release it installed: its counter is the floor for the next. */
  installed: { id: string; version: string; counter: number };
  /** A switch made and not decided yet. */
  switching?: { id: string; from: string; to: string; counter: number; switchedAt: number };
}

const NOTHING: ApplyState = { version: 1, installed: { id: '', version: '', counter: 0 } };

export class ReleaseStateError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}; it holds the release counter floor: restore it from a backup, never delete it`);
    this.name = 'ReleaseStateError';
  }
}

/**
 * Applies the pending request. Returns its result (also written for the agent), or undefined
 * when there is no request. A request that cannot be read is set aside as request.json.rejected
 * (HandoffError): nothing was switched, and the agent reports the install failed when it times out.
 */
export async function applyRelease(o: ApplyOptions): Promise<ReleaseResult | undefined> {
  const files = handoffFiles(o.stateDir);
  let request: ReleaseRequest | undefined;
  try {
    request = await readRequest(files.request);
  } catch (err) {
    if (err instanceof HandoffError) await fs.rename(files.request, `${files.request}.rejected`).catch(() => undefined);
    throw err;
  }
  if (request === undefined) return undefined;
  const { prefix } = o.firmware.release;
  const stateFile = path.join(o.firmware.release.stateDir, 'state.json');
  await fs.mkdir(o.firmware.release.stateDir, { recursive: true, mode: 0o700 });
  const state = await readApplyState(stateFile);
  await removeScratch(prefix);
  const running = await currentVersion(prefix);
  const fields = { packageId: request.id };
  let result: Omit<ReleaseResult, 'id' | 'at'>;
  if (state.installed.id === request.id) {
    // Decided before a kill took the answer with it.
    result = { outcome: 'installed', reason: '', running: running ?? '' };
  } else if (state.switching?.id === request.id && existsSync(path.join(releaseDir(prefix, state.switching.to), 'dist', 'cli', 'ghostpipe.js'))) {
    // Interrupted between recording the switch and deciding it (a kill, a power loss): the switch
    // and the restart again (either may not have happened), then a fresh health window.
    const switching = { ...state.switching, switchedAt: Date.now() };
    o.logger.warn({ ...fields, from: switching.from, to: switching.to }, 'release switch interrupted before it was decided; switching and checking it again');
    await writeApplyState(stateFile, { ...state, switching });
    result = await switchAndDecide(o, stateFile, state, switching);
  } else {
    // A switch recorded for a release no longer on disk (a kill during the switch back) starts over.
    const fresh: ApplyState = { version: 1, installed: state.installed };
    if (state.switching) await writeApplyState(stateFile, fresh);
    const checked = await checkRequest(o, request, fresh, running);
    if ('refused' in checked) {
      o.logger.error({ ...fields, reason: checked.refused }, 'release refused');
      result = { outcome: 'failed', reason: checked.refused, running: running ?? '' };
    } else {
      result = await install(o, stateFile, fresh, request.id, checked.manifest, checked.staged, running!);
    }
  }
  const answer: ReleaseResult = { id: request.id, ...result, at: new Date().toISOString() };
  await writeHandoff(files.result, answer);
  // The agent runs unprivileged and removes the answer once its receipt is stored.
  const owner = await fs.stat(files.dir);
  await fs.chown(files.result, owner.uid, owner.gid);
  await fs.rm(files.request, { force: true });
  return answer;
}

type Checked = { manifest: FirmwareManifest; staged: StagedDownload } | { refused: string };

/** The agent's checks again, with this service's own floor, and the staged file against the manifest. */
async function checkRequest(o: ApplyOptions, request: ReleaseRequest, state: ApplyState, running: string | undefined): Promise<Checked> {
  let manifest: FirmwareManifest;
  try {
    manifest = checkOffer(request.id, request.offer, o.secrets.root.root, {
      groups: [o.firmware.group], hardwareId: o.firmware.hardwareId, installedCounter: state.installed.counter, now: Date.now(),
    }).manifest;
  } catch (err) {
    if (err instanceof FirmwareRefusal) return { refused: `the release service refused the package: ${err.code}: ${err.message}` };
    throw err;
  }
  if (manifest.installType !== RELEASE_INSTALL_TYPE) return { refused: `install type ${manifest.installType} is not ${RELEASE_INSTALL_TYPE}` };
  if (running === undefined) return { refused: `${path.join(o.firmware.release.prefix, 'current')} does not exist: this host was not installed with the release layout (scripts/install.sh)` };
  if (manifest.version === running) return { refused: `version ${manifest.version} is the one running` };
  const staged = await StagedDownload.open(stagingRoot(o.firmware, o.stateDir), request.id, manifest);
  const wrong = staged.chunksDone < staged.chunks ? 'the staged file is missing' : await staged.finish();
  if (wrong !== undefined) return { refused: `the staged package does not match its manifest: ${wrong}` };
  return { manifest, staged };
}

async function install(o: ApplyOptions, stateFile: string, state: ApplyState, id: string, m: FirmwareManifest, staged: StagedDownload, from: string): Promise<Omit<ReleaseResult, 'id' | 'at'>> {
  const { prefix } = o.firmware.release;
  const fields = { packageId: id, from, to: m.version };
  try {
    await unpackRelease(prefix, staged.file, m.version);
  } catch (err) {
    if (!(err instanceof ReleaseLayoutError)) throw err;
    o.logger.error({ ...fields, reason: err.message }, 'release refused');
    return { outcome: 'failed', reason: `the release cannot be unpacked: ${err.message}`, running: from };
  }
  const switching = { id, from, to: m.version, counter: m.counter, switchedAt: Date.now() };
  await writeApplyState(stateFile, { ...state, switching });
  return switchAndDecide(o, stateFile, state, switching);
}

async function switchAndDecide(o: ApplyOptions, stateFile: string, state: ApplyState, switching: NonNullable<ApplyState['switching']>): Promise<Omit<ReleaseResult, 'id' | 'at'>> {
  const { prefix } = o.firmware.release;
  await switchCurrent(prefix, switching.to);
  o.logger.info({ packageId: switching.id, from: switching.from, to: switching.to }, 'release switched; restarting the units');
  const restarted = await runCommand('restart', o.firmware.release.restart, [], { GHOSTPIPE_RELEASE_VERSION: switching.to }, o.logger);
  if (!restarted.ok) return switchBack(o, stateFile, state, switching, `restart command: ${restarted.outcome}`);
  return decide(o, stateFile, state, switching);
}

/** Waits for the health condition, then keeps the new release or switches back. */
async function decide(o: ApplyOptions, stateFile: string, state: ApplyState, switching: NonNullable<ApplyState['switching']>): Promise<Omit<ReleaseResult, 'id' | 'at'>> {
  const { prefix, healthTimeout } = o.firmware.release;
  const files = handoffFiles(o.stateDir);
  const deadline = switching.switchedAt + healthTimeout;
  let healthy = false;
  while (!healthy && Date.now() < deadline) {
    const mark = await readRunning(files.running).catch(() => undefined);
    healthy = mark !== undefined && mark.version === switching.to && mark.acceptedAt >= switching.switchedAt;
    if (!healthy) await sleep(o.pollMs ?? 500);
  }
  if (!healthy) {
    return switchBack(o, stateFile, state, switching, `health check: no agent of ${switching.to} had a frame accepted with the relay healthy within ${formatDuration(healthTimeout)}`);
  }
  await writeApplyState(stateFile, { version: 1, installed: { id: switching.id, version: switching.to, counter: switching.counter } });
  const removed = await pruneReleases(prefix, [switching.to, switching.from]);
  o.logger.info({ packageId: switching.id, version: switching.to, previous: switching.from, removed }, 'release installed: healthy');
  return { outcome: 'installed', reason: '', running: switching.to };
}

async function switchBack(o: ApplyOptions, stateFile: string, state: ApplyState, switching: NonNullable<ApplyState['switching']>, failure: string): Promise<Omit<ReleaseResult, 'id' | 'at'>> {
  const { prefix } = o.firmware.release;
  const fields = { packageId: switching.id, from: switching.to, to: switching.from };
  o.logger.error({ ...fields, reason: failure }, 'release unhealthy; switching back');
  let outcome: ReleaseOutcome = 'rolled_back';
  let reason = `${failure}; switched back to ${switching.from}`;
  try {
    await switchCurrent(prefix, switching.from);
    const restarted = await runCommand('restart', o.firmware.release.restart, [], { GHOSTPIPE_RELEASE_VERSION: switching.from }, o.logger);
    if (!restarted.ok) {
      outcome = 'failed';
      reason = `${failure}; switched back to ${switching.from}, but the restart command: ${restarted.outcome}`;
    }
  } catch (err) {
    outcome = 'failed';
    reason = `${failure}; the switch back to ${switching.from} failed: ${(err as Error).message}`;
  }
  // The switch is undone before the release goes: a kill in between must not leave a recorded
  // switch to a release that is no longer there.
  await writeApplyState(stateFile, { version: 1, installed: state.installed });
  await removeRelease(prefix, switching.to);
  o.logger.error({ ...fields, outcome, reason }, outcome === 'rolled_back' ? 'release rolled back' : 'release rolled back, but not cleanly');
  return { outcome, reason, running: (await currentVersion(prefix).catch(() => undefined)) ?? '' };
}

async function readApplyState(file: string): Promise<ApplyState> {
  const text = await readOptional(file);
  if (text === undefined) return NOTHING;
  let v: Partial<ApplyState>;
  try {
    v = JSON.parse(text) as Partial<ApplyState>;
  } catch {
    throw new ReleaseStateError(file, 'not valid JSON');
  }
  const i = v?.installed;
  if (v?.version !== 1 || typeof i !== 'object' || i === null || typeof i.id !== 'string' || typeof i.version !== 'string' || !Number.isSafeInteger(i.counter) || i.counter < 0) {
    throw new ReleaseStateError(file, 'not {version: 1, installed: {id, version, counter}}');
  }
  const s = v.switching;
  if (s !== undefined && (typeof s !== 'object' || s === null || typeof s.id !== 'string' || typeof s.from !== 'string' || typeof s.to !== 'string' || !Number.isSafeInteger(s.counter) || !Number.isSafeInteger(s.switchedAt))) {
    throw new ReleaseStateError(file, 'switching is not {id, from, to, counter, switchedAt}');
  }
  return v as ApplyState;
}

const writeApplyState = (file: string, state: ApplyState): Promise<void> => writeFileAtomic(file, JSON.stringify(state, null, 2) + '\n');
