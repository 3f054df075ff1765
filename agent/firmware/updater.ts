/**
 * The gateway's side of a firmware rollout (docs/FIRMWARE.md "On the gateway"). Every
 * `checkInterval` (jittered) it asks the relay which rollouts target it and takes the newest:
 *
 *   1. offer    checked by verify.ts (root rotations, signatures, group, hardware, counter, expiry,
 *               the package id), then proven to be in the relay's log under a checkpoint this
 *               gateway's own witness accepts, then the content key unwrapped with its X-Wing key;
 *   2. download chunk by chunk into staging.ts (each checked against the manifest before it is
 *               decrypted, each waiting for the sensor collection to finish first), resumable;
 *   3. install  the install command, the health command, on failure the rollback command; or, for
 *               a `ghostpipe-release` package, the release service (release-apply.ts), which
 *               switches, restarts this agent onto the new release and decides by its health;
 *   4. receipt  signed with the device key, kept in the state until the relay logged it.
 *
 * A refused package gets a `refused` receipt naming the check that failed. What proves nothing
 * (the relay unreachable, a checkpoint not signed yet) is retried at the next check.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sleep } from '../../common/backoff.js';
import { runningRelease } from '../../common/release-info.js';
import type { Logger } from '../../common/log.js';
import { LogIntegrityError, LogTrust, NotYetLoggedError } from '../../common/log-trust.js';
import { RelayClient, RelayError, type RelayClientOptions } from '../../common/relay-client.js';
import { StateFileError } from '../../common/state-errors.js';
import type { DeviceKeys } from '../../common/keyfile.js';
import { formatDuration } from '../../common/duration.js';
import { FIRMWARE_ID_PATTERN, type FirmwareOfferBody } from '../../protocol/api/firmware.js';
import { KEM } from '../../protocol/envelope/constants.js';
import {
  FirmwareError, MAX_REASON_BYTES, checkChunk, decodeManifest, encodeReceipt, encryptedChunkLength, openChunk, signReceipt, signedRootFromJson, signedRootToJson, unwrapContentKey,
  type FirmwareManifest, type FirmwareRoot, type Outcome,
} from '../../protocol/firmware/index.js';
import { encodeLogEntry } from '../../protocol/log-entries.js';
import { leafHash } from '../../protocol/tlog/index.js';
import { runCommand } from './commands.js';
import { RELEASE_INSTALL_TYPE, stagingRoot, type FirmwareConfig, type FirmwareSecrets } from './config.js';
import { handoffFiles, readResult, writeHandoff, type OfferParts, type ReleaseResult } from './release-handoff.js';
import { FirmwareState, type InstalledRelease, type PendingInstall, type StagedRelease, type StoredReceipt } from './state.js';
import { StagedDownload } from './staging.js';
import { FirmwareRefusal, checkOffer } from './verify.js';

export interface UpdaterOptions {
  config: FirmwareConfig;
  secrets: FirmwareSecrets;
  device: DeviceKeys;
  /** The agent's relay client options (URL, key, pinned CA) with the firmware timeout. */
  relay: RelayClientOptions;
  stateDir: string;
  logger: Logger;
  /** Resolves when no sensor collection is running: checks and chunks wait for it (the interval never slips for firmware). */
  quiet: () => Promise<unknown>;
}

/** Each wait between checks is the interval ±20 %: a fleet started together does not ask together. */
const JITTER = 0.2;

export class FirmwareUpdater {
  private readonly client: RelayClient;
  private readonly dir: string;
  private readonly stagingDir: string;
  private readonly stopping = new AbortController();
  private state!: FirmwareState;
  private root!: FirmwareRoot;
  private trust: LogTrust | undefined;
  private loop: Promise<void> | undefined;
  /** The last problem logged by a check, so an unreachable relay is one warn line, not one per check. */
  private lastProblem: string | undefined;
  /** This process told the release service that a frame of it was accepted (once per process). */
  private markedRunning = false;

  constructor(private readonly o: UpdaterOptions) {
    this.client = new RelayClient(o.relay);
    this.dir = path.join(o.stateDir, 'firmware');
    this.stagingDir = stagingRoot(o.config, o.stateDir);
  }

  useApiKey(key: string): void {
    this.client.useApiKey(key);
  }

  /** Opens the state (a damaged file throws StateFileError) and starts checking. */
  async start(): Promise<void> {
    this.state = await FirmwareState.open(this.dir);
    // A kill between deciding a package and removing its staging leaves the plaintext behind.
    for (const decided of [this.state.installed.id, ...this.state.receipts.map((r) => r.id)]) if (decided) await StagedDownload.discard(this.stagingDir, decided);
    const pinned = this.o.secrets.root;
    const stored = this.state.root === undefined ? undefined : signedRootFromJson(this.state.root);
    // The stored root was reached by rotations from a pinned one; a newly pinned newer root wins.
    this.root = stored && stored.root.version > pinned.root.version ? stored.root : pinned.root;
    const { config } = this.o;
    const installed = this.state.installed;
    this.o.logger.info({
      group: config.group, hardwareId: config.hardwareId, rootVersion: this.root.version, threshold: this.root.threshold, installedVersion: installed.version || undefined,
      installedCounter: installed.counter, checkInterval: formatDuration(config.checkInterval),
    }, 'firmware updates on');
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.client.abort();
    await this.loop;
  }

  private get signal(): AbortSignal {
    return this.stopping.signal;
  }

  private async run(): Promise<void> {
    const every = this.o.config.checkInterval;
    // The first check soon after start (a gateway may boot for its update), the rest jittered.
    let wait = Math.random() * Math.min(every * JITTER, 10_000);
    while (!this.signal.aborted) {
      await sleep(wait, this.signal);
      if (this.signal.aborted) break;
      if (!(await this.check())) break;
      wait = every * (1 - JITTER + 2 * JITTER * Math.random());
    }
  }

  /** One check; false when the updater must stop (its state cannot be written). Never throws. */
  async check(): Promise<boolean> {
    try {
      await this.o.quiet();
      if (this.state.pending) await this.decideInterrupted(this.state.pending);
      if (this.state.staged) await this.installStaged(this.state.staged);
      for (const stored of [...this.state.receipts]) await this.deliver(stored);
      const listed = await this.client.firmwareRollouts();
      // A package whose receipt the relay has is no longer listed; one whose receipt waits here is skipped.
      const open = listed.filter((r) => typeof r.id === 'string' && FIRMWARE_ID_PATTERN.test(r.id) && !this.state.receipts.some((s) => s.id === r.id));
      open.sort((a, b) => b.counter - a.counter);
      if (open.length === 0) this.o.logger.debug({ offered: listed.length }, 'firmware check: nothing new');
      else await this.take(open[0]!.id);
      this.lastProblem = undefined;
      return true;
    } catch (err) {
      if (this.signal.aborted) return false;
      if (err instanceof StateFileError) {
        this.o.logger.error({ file: err.file, reason: err.message }, 'firmware state cannot be saved: firmware updates stop until the agent restarts');
        return false;
      }
      const reason = err instanceof Error ? err.message : String(err);
      if (reason !== this.lastProblem) this.o.logger.warn({ reason, ...(err instanceof RelayError ? { code: err.code } : {}) }, 'firmware check failed; trying again at the next check');
      this.lastProblem = reason;
      return true;
    }
  }

  /** Checks, downloads, installs and reports package `id`. Relay trouble throws (retried at the next check). */
  private async take(id: string): Promise<void> {
    const installed = this.state.installed;
    if (id === installed.id) {
      // Published again (a relay restart lost the rollout): the device reports what it did.
      await this.report(id, 'installed', `already installed at ${installed.at}`);
      return;
    }
    const offer = await this.client.firmwareOffer(id);
    let m: FirmwareManifest | undefined;
    try {
      const checked = checkOffer(id, offer, this.root, { groups: [this.o.config.group], hardwareId: this.o.config.hardwareId, installedCounter: installed.counter, now: Date.now() });
      m = checked.manifest;
      if (checked.rotatedTo) {
        await this.state.recordRoot(signedRootToJson(checked.rotatedTo));
        this.o.logger.info({ from: this.root.version, to: checked.root.version, threshold: checked.root.threshold }, 'firmware root rotated');
        this.root = checked.root;
      }
      await this.proveLogged(checked.digest, offer.leafIndex);
      const key = this.unwrap(offer.keyWrap, offer.publisherPublicKey, checked.digest);
      let staged: StagedDownload;
      try {
        staged = await this.download(id, m, key);
      } finally {
        key.fill(0);
      }
      // Recorded before the relay hears of it: the relay offers a downloaded package no more.
      const { signatures, roots = [] } = offer as FirmwareOfferBody;
      const record = { id, manifest: Buffer.from(checked.manifestBytes).toString('base64'), signatures, roots };
      await this.state.recordStaged(record);
      await this.client.firmwareDownloaded(id).catch((err: unknown) => this.o.logger.warn({ packageId: id, reason: (err as Error).message }, 'cannot tell the relay the download is complete; installing anyway'));
      await this.install(id, m, staged, offerParts(record, m));
    } catch (err) {
      if (!(err instanceof FirmwareRefusal)) throw err;
      await this.refuse(id, err, m);
    }
  }

  private async proveLogged(digest: Uint8Array, leafIndex: unknown): Promise<void> {
    if (typeof leafIndex !== 'number' || !Number.isSafeInteger(leafIndex) || leafIndex < 0) throw new FirmwareRefusal('bad_offer', 'the offer names no log leaf for the manifest');
    this.trust ??= await LogTrust.open({ client: this.client, relayPublicKey: this.o.secrets.relayPublicKey, stateFile: path.join(this.dir, 'witness.json') });
    try {
      await this.trust.proveIncluded(leafHash(encodeLogEntry({ type: 'firmware', manifestHash: digest })), leafIndex);
    } catch (err) {
      // Two signed histories (or our own witness state broken): the relay's log cannot vouch for anything.
      if (err instanceof LogIntegrityError && err.kind !== 'unproven') throw new FirmwareRefusal('log_conflict', err.message);
      if (err instanceof LogIntegrityError || err instanceof NotYetLoggedError) throw new Error(`the manifest is not proven to be in the relay's log yet (leaf ${leafIndex}): ${err.message}`);
      throw err;
    }
  }

  private unwrap(wrap: unknown, publisher: unknown, digest: Uint8Array): Uint8Array {
    if (typeof wrap !== 'string' || wrap === '') throw new FirmwareRefusal('wrong_key', 'the relay served no key wrap for this device');
    if (typeof publisher !== 'string') throw new FirmwareRefusal('bad_offer', 'the offer names no publisher key');
    const { kem } = this.o.device;
    if (kem.alg !== 'X-Wing') throw new FirmwareRefusal('wrong_key', `firmware keys are wrapped to X-Wing keys; this device has ${kem.alg}`);
    try {
      return unwrapContentKey(new Uint8Array(Buffer.from(wrap, 'base64')), { kemId: KEM.XWING, seed: kem.seed, publicKey: kem.publicKey }, new Uint8Array(Buffer.from(publisher, 'base64')), digest);
    } catch (err) {
      if (err instanceof FirmwareError) throw new FirmwareRefusal(err.code, err.message);
      throw err;
    }
  }

  private async download(id: string, m: FirmwareManifest, key: Uint8Array): Promise<StagedDownload> {
    const staged = await StagedDownload.open(this.stagingDir, id, m);
    const fields = { packageId: id, package: m.name, version: m.version, chunks: staged.chunks, bytes: m.size };
    if (staged.chunksDone > 0) this.o.logger.info({ ...fields, fromChunk: staged.chunksDone }, 'firmware download resumed');
    else this.o.logger.info(fields, 'firmware download started');
    try {
      for (let i = staged.chunksDone; i < staged.chunks; i++) {
        await this.o.quiet();
        if (this.signal.aborted) throw new Error('stopped');
        const expected = encryptedChunkLength(m, i);
        let bytes: Uint8Array;
        try {
          ({ bytes } = await this.client.firmwareChunk(id, i, expected));
        } catch (err) {
          // The only bad_response of a binary answer: longer than the manifest says (endless data).
          if (err instanceof RelayError && err.code === 'bad_response') throw new FirmwareRefusal('bad_chunk', `chunk ${i}: the relay sent more than the ${expected} bytes the manifest declares`);
          throw err;
        }
        let plaintext: Uint8Array;
        try {
          checkChunk(m, i, bytes);
          plaintext = openChunk(m, key, i, bytes);
        } catch (err) {
          if (err instanceof FirmwareError) throw new FirmwareRefusal(err.code, err.message);
          throw err;
        }
        await staged.append(i, plaintext);
        releaseChunkMemory();
        this.o.logger.debug({ packageId: id, chunk: i + 1, of: staged.chunks }, 'firmware chunk staged');
      }
      const wrong = await staged.finish();
      if (wrong !== undefined) throw new FirmwareRefusal('bad_digest', wrong);
    } catch (err) {
      // A refused package leaves nothing behind; anything else keeps the staged chunks for the resume.
      if (err instanceof FirmwareRefusal) await staged.remove();
      throw err;
    }
    this.o.logger.info(fields, 'firmware download complete and verified');
    return staged;
  }

  private async install(id: string, m: FirmwareManifest, staged: StagedDownload, parts: OfferParts | undefined): Promise<void> {
    const { config, logger } = this.o;
    const pending: PendingInstall = { id, name: m.name, version: m.version, counter: m.counter, startedAt: new Date().toISOString(), installType: m.installType };
    await this.state.recordPending(pending);
    if (m.installType === RELEASE_INSTALL_TYPE) {
      await this.installRelease(pending, staged, parts);
      return;
    }
    const env = {
      GHOSTPIPE_FIRMWARE_FILE: staged.file, GHOSTPIPE_FIRMWARE_ID: id, GHOSTPIPE_FIRMWARE_NAME: m.name, GHOSTPIPE_FIRMWARE_VERSION: m.version,
      GHOSTPIPE_FIRMWARE_COUNTER: String(m.counter), GHOSTPIPE_FIRMWARE_INSTALL_TYPE: m.installType, GHOSTPIPE_FIRMWARE_INSTALL_HINT: m.installHint,
    };
    logger.info({ packageId: id, package: m.name, version: m.version, counter: m.counter, installType: m.installType }, 'firmware install started');
    const installed = config.install
      ? await runCommand('install', config.install, [staged.file], env, logger, this.signal)
      : { ok: false, outcome: `this gateway has no install command for install type ${m.installType} (firmware.install)` };
    const health = installed.ok && config.health ? await runCommand('health', config.health, [], env, logger, this.signal) : undefined;
    // Stopped in the middle: the next start decides with the health command (decideInterrupted).
    if (this.signal.aborted) return;
    const failure = !installed.ok ? `install command: ${installed.outcome}` : health && !health.ok ? `health command: ${health.outcome}` : undefined;
    const receipt = await this.settle(pending, failure, env);
    await staged.remove();
    await this.deliver(receipt);
  }

  /** A download verified before a restart whose install had not started: its file is checked again, then installed. */
  private async installStaged(record: StagedRelease): Promise<void> {
    const m = decodeManifest(new Uint8Array(Buffer.from(record.manifest, 'base64')));
    const staged = await StagedDownload.open(this.stagingDir, record.id, m);
    const wrong = staged.chunksDone < staged.chunks ? 'the staged file is gone' : await staged.finish();
    if (wrong === undefined) {
      this.o.logger.info({ packageId: record.id, package: m.name, version: m.version }, 'a verified firmware download outlived a restart; installing it');
      await this.install(record.id, m, staged, offerParts(record, m));
      return;
    }
    // The relay will not serve it again: the operator learns of it from a failure receipt.
    this.o.logger.error({ packageId: record.id, package: m.name, version: m.version, reason: wrong }, 'a verified firmware download was lost before its install');
    const receipt = await this.record(record.id, 'failed', `the verified download was lost before its install: ${wrong}`);
    await staged.remove();
    await this.deliver(receipt);
  }

  /** An install this agent started before a restart (maybe the install restarted it): the health command decides. */
  private async decideInterrupted(pending: PendingInstall): Promise<void> {
    const { config, logger } = this.o;
    if (pending.installType === RELEASE_INSTALL_TYPE) {
      await this.awaitRelease(pending, true);
      return;
    }
    const env = { GHOSTPIPE_FIRMWARE_ID: pending.id, GHOSTPIPE_FIRMWARE_NAME: pending.name, GHOSTPIPE_FIRMWARE_VERSION: pending.version, GHOSTPIPE_FIRMWARE_COUNTER: String(pending.counter) };
    logger.warn({ packageId: pending.id, package: pending.name, version: pending.version, startedAt: pending.startedAt }, 'a firmware install was interrupted by a restart; the health command decides it');
    let failure: string | undefined = 'interrupted by a restart, and no health command is configured to confirm it';
    if (config.health) {
      const health = await runCommand('health', config.health, [], env, logger, this.signal);
      if (this.signal.aborted) return;
      failure = health.ok ? undefined : `interrupted by a restart; health command: ${health.outcome}`;
    }
    const receipt = await this.settle(pending, failure, env);
    await StagedDownload.discard(this.stagingDir, pending.id);
    await this.deliver(receipt);
  }

  /**
   * A `ghostpipe-release` package: handed to the release service, which switches `current`,
   * restarts the units (this agent among them: the new agent finishes this in decideInterrupted)
   * and decides by health. What it decided becomes the receipt.
   */
  private async installRelease(pending: PendingInstall, staged: StagedDownload, parts: OfferParts | undefined): Promise<void> {
    const release = this.o.config.release;
    const problem = !release ? 'this gateway does not update Ghost Pipe itself (firmware.release is not configured)'
      : !parts ? 'the staged download predates self-update and lacks its signatures; publish it again' : undefined;
    if (problem !== undefined) {
      this.o.logger.error({ packageId: pending.id, package: pending.name, version: pending.version, reason: problem }, 'firmware install failed');
      const receipt = await this.record(pending.id, 'failed', problem);
      await staged.remove();
      await this.deliver(receipt);
      return;
    }
    const files = handoffFiles(this.o.stateDir);
    await fs.rm(files.result, { force: true });
    await writeHandoff(files.request, { id: pending.id, offer: parts!, requestedAt: new Date().toISOString() });
    this.o.logger.info({ packageId: pending.id, package: pending.name, version: pending.version, running: runningRelease().version }, 'release handed to the release service (switch, restart, health check)');
    await this.awaitRelease(pending, false);
  }

  /**
   * Waits for the release service's answer and settles the install with it. `afterRestart`: this
   * process may be the new release (or the old one again); a request never handed over is failed.
   */
  private async awaitRelease(pending: PendingInstall, afterRestart: boolean): Promise<void> {
    const { logger } = this.o;
    const release = this.o.config.release;
    const files = handoffFiles(this.o.stateDir);
    const fields = { packageId: pending.id, package: pending.name, version: pending.version };
    if (afterRestart) logger.info({ ...fields, running: runningRelease().version }, 'started during a release install; waiting for the release service to decide it');
    // The service's longest path: restart, health window, switch back, restart again; then a margin.
    const patience = release ? 2 * release.restart.timeout + release.healthTimeout + 5 * 60_000 : 0;
    const deadline = Date.now() + patience;
    let result: ReleaseResult | undefined;
    let handedOver = true;
    for (;;) {
      result = await readResult(files.result).catch((err: unknown) => {
        logger.error({ ...fields, reason: (err as Error).message }, 'the release service\'s answer is unreadable');
        return undefined;
      });
      if (result?.id === pending.id) break;
      result = undefined;
      handedOver = await fs.access(files.request).then(() => true, () => false);
      if (!handedOver || Date.now() >= deadline) break;
      await sleep(1_000, this.signal);
      if (this.signal.aborted) return;
    }
    const outcome = result?.outcome ?? 'failed';
    const reason = result ? result.reason : handedOver
      ? `the release service did not answer within ${formatDuration(patience)} (is ghostpipe-release.path enabled?)`
      : 'interrupted before the release service took the package';
    const installed = outcome === 'installed' ? { id: pending.id, name: pending.name, version: pending.version, counter: pending.counter } : undefined;
    const stored = await this.record(pending.id, outcome, installed ? '' : reason, installed);
    if (installed) logger.info({ ...fields, counter: pending.counter }, 'firmware installed');
    else logger.error({ ...fields, outcome, reason }, outcome === 'rolled_back' ? 'firmware install failed and was rolled back' : 'firmware install failed');
    await fs.rm(files.request, { force: true });
    await fs.rm(files.result, { force: true });
    await StagedDownload.discard(this.stagingDir, pending.id);
    await this.deliver(stored);
  }

  /**
   * The agent core calls this after an interval with accepted uploads (without waiting: it asks
   * the relay). With self-update on, the first one of this process with the relay answering
   * /healthz is written down for the release service: that is how a new release proves itself
   * healthy (the service has no network). Never throws.
   */
  async frameAccepted(): Promise<void> {
    if (this.markedRunning || !this.o.config.release) return;
    this.markedRunning = true;
    if (!(await this.client.health().then(() => true, () => false))) {
      this.markedRunning = false;
      return;
    }
    const mark = { version: runningRelease().version, pid: process.pid, acceptedAt: Date.now() };
    await writeHandoff(handoffFiles(this.o.stateDir).running, mark).catch((err: unknown) => {
      this.markedRunning = false;
      this.o.logger.warn({ reason: (err as Error).message }, 'cannot note the first accepted frame for the release service');
    });
  }

  /** Decides an install (rolling back on failure) and records it with its receipt; the caller delivers the receipt. */
  private async settle(pending: PendingInstall, failure: string | undefined, env: Record<string, string>): Promise<StoredReceipt> {
    const { config, logger } = this.o;
    const fields = { packageId: pending.id, package: pending.name, version: pending.version, counter: pending.counter };
    if (failure === undefined) {
      const release = { id: pending.id, name: pending.name, version: pending.version, counter: pending.counter };
      const receipt = await this.record(pending.id, 'installed', '', pending.counter > this.state.installed.counter ? release : undefined);
      logger.info(fields, 'firmware installed');
      return receipt;
    }
    if (!config.rollback) {
      const reason = `${failure}; no rollback command is configured`;
      logger.error({ ...fields, reason }, 'firmware install failed');
      return this.record(pending.id, 'failed', reason);
    }
    const rolledBack = await runCommand('rollback', config.rollback, [], env, logger, this.signal);
    const reason = rolledBack.ok ? `${failure}; rolled back` : `${failure}; rollback command: ${rolledBack.outcome}`;
    logger.error({ ...fields, reason }, rolledBack.ok ? 'firmware install failed and was rolled back' : 'firmware install failed and the rollback failed too');
    return this.record(pending.id, rolledBack.ok ? 'rolled_back' : 'failed', reason);
  }

  private async refuse(id: string, refusal: FirmwareRefusal, m: FirmwareManifest | undefined): Promise<void> {
    this.o.logger.error({ packageId: id, ...(m ? { package: m.name, version: m.version, counter: m.counter } : {}), code: refusal.code, reason: refusal.message }, 'firmware package refused');
    await StagedDownload.discard(this.stagingDir, id);
    await this.report(id, 'refused', `${refusal.code}: ${refusal.message}`);
  }

  /** Records a receipt and sends it. */
  private async report(id: string, outcome: Outcome, reason: string): Promise<void> {
    await this.deliver(await this.record(id, outcome, reason));
  }

  /**
   * Signs a receipt and records it with the outcome (one state write: `installed` raises the floor
   * and the receipt names it as running); it stays in the state until the relay logged it.
   */
  private async record(id: string, outcome: Outcome, reason: string, installed?: Omit<InstalledRelease, 'at'>): Promise<StoredReceipt> {
    const { device } = this.o;
    const running = installed ?? this.state.installed;
    const receipt = encodeReceipt({
      did: device.did, manifestDigest: new Uint8Array(Buffer.from(id, 'hex')), outcome, runningVersion: running.version, runningCounter: running.counter,
      time: Date.now(), reason: truncateUtf8(reason, MAX_REASON_BYTES),
    });
    const stored: StoredReceipt = { id, outcome, receipt: Buffer.from(receipt).toString('base64'), signature: Buffer.from(signReceipt(device.signing.seed, receipt)).toString('base64') };
    const dropped = await this.state.recordOutcome(stored, installed);
    if (dropped) this.o.logger.warn({ packageId: dropped.id, outcome: dropped.outcome }, 'too many unsent firmware receipts; the oldest is dropped');
    return stored;
  }

  /** Sends a stored receipt; it stays stored when the relay cannot take it now. */
  private async deliver(stored: StoredReceipt): Promise<void> {
    try {
      const logged = await this.client.firmwareReceipt(stored.id, new Uint8Array(Buffer.from(stored.receipt, 'base64')), new Uint8Array(Buffer.from(stored.signature, 'base64')));
      this.o.logger.info({ packageId: stored.id, outcome: stored.outcome, leafIndex: logged.leafIndex }, 'firmware receipt logged');
    } catch (err) {
      if (!(err instanceof RelayError) || (err.code !== 'duplicate' && err.code !== 'not_found')) {
        this.o.logger.warn({ packageId: stored.id, outcome: stored.outcome, reason: (err as Error).message }, 'firmware receipt not delivered; sending it again at the next check');
        return;
      }
      // duplicate: logged before (its answer was lost); not_found: the rollout is gone (burned, or a relay restart).
      if (err.code === 'not_found') this.o.logger.warn({ packageId: stored.id, outcome: stored.outcome }, 'the relay no longer holds this rollout; its receipt is dropped');
    }
    await this.state.removeReceipt(stored.id);
  }
}

/**
 * A minor GC after every chunk, where node exposes it (the agent unit runs `--expose-gc`): the
 * chunk's dead buffers are external memory that V8 otherwise lets pile up to tens of MB before it
 * collects them (docs/PERFORMANCE.md "Firmware": about +25 MB over a 50 MiB pull without it, at
 * ~1 ms a chunk with it). A no-op where `gc` is not exposed.
 */
function releaseChunkMemory(): void {
  (globalThis as { gc?: (options: { type: 'minor' }) => void }).gc?.({ type: 'minor' });
}

/** The signed parts of an offer as staged; undefined for a staging recorded before self-update. */
function offerParts(record: Pick<StagedRelease, 'manifest' | 'signatures' | 'roots'>, m: FirmwareManifest): OfferParts | undefined {
  if (record.signatures === undefined) return undefined;
  return { manifest: record.manifest, signatures: record.signatures, chunks: m.chunkHashes.length, roots: record.roots ?? [] };
}

/** At most `max` bytes of UTF-8, cut at a character boundary. */
function truncateUtf8(text: string, max: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return text;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}
