/**
 * Everything the relay knows, and where it lives on disk (state directory, all 0600/0700):
 *
 *   relay.sign.key / relay.sign.pub   the relay's ML-DSA-65 key (checkpoint signer)
 *   keys.json                         API key hashes, roles, plans, labels, usage counters
 *   devices.json                      enrolled devices (public keys, DIDs, revocations)
 *   log/checkpoint, log/tile/…        transparency log as C2SP tlog-tiles (relay/log.ts, log-store.ts)
 *   audit.jsonl, audit.jsonl.1 …      audit trail (append-only, rotated by size; relay/audit.ts)
 *
 * The first operator key (plk_…) is written once, 0600, to operatorKeyFile — by default operator.key
 * next to the state (or identity) directory, never inside it: a copy of the state directory must
 * not carry an operator credential (issue 11). Only its hash stays, in keys.json. An operator.key
 * left inside by an older version is moved out at start. Lost: `ghostpipe relay --reset-operator-key`.
 *
 * Payloads are never written anywhere. In RAM-only mode the log and the audit trail stay in RAM.
 * With an identity directory (config identityDir) relay.sign.key, keys.json and
 * devices.json live there as above (no log, no audit), plus epoch.json, the boot counter: each
 * boot is log epoch n+1 under "<origin>/epoch/<n+1>", signed by the same key, and starts by logging
 * the registrations (and revocations) of the provisioned devices again. Without one, every boot is
 * a new relay: new key, new origin, no keys, no devices (operator.key to operatorKeyFile or a temp folder).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { generatePrivateKey, keyId, keyIdHex, encodePrivateKeyPem, encodePublicKeyPem, type PrivateKey } from '../protocol/keys.js';
import { loadPublicKey, loadSigningKey, writePrivateKeyFile, writePublicKeyFile } from '../common/keyfile.js';
import { mlDsaNoteSigner, mlDsaNoteVerifier } from '../protocol/tlog/note.js';
import { epochOrigin } from '../protocol/tlog/witness.js';
import { encodeLogEntry } from '../protocol/log-entries.js';
import { ApiKeys, type KeyRecord } from './api-keys.js';
import { Devices, type DeviceRecord } from './devices.js';
import { EnvelopeStore } from './store.js';
import { RelayLog } from './log.js';
import { AuditTrail } from './audit.js';
import { SaveQueue, readJson, writeFileAtomic } from './state-file.js';
import { readOptional } from '../common/atomic-file.js';
import { EXIT_STATE_IO, StateFileError, stopForStateFailure } from '../common/state-errors.js';
import { envelopeLimit } from './envelope-check.js';
import type { Plan, RelayConfig } from './config.js';

export class RelayState {
  private readonly saver: SaveQueue;
  private usageTimer: NodeJS.Timeout | undefined;
  private readonly limits = new Map<string, number>();

  private constructor(
    private readonly config: RelayConfig,
    private readonly dir: string | undefined,
    readonly keys: ApiKeys,
    readonly devices: Devices,
    readonly store: EnvelopeStore,
    readonly log: RelayLog,
    readonly audit: AuditTrail,
    readonly origin: string,
    readonly relayPublicKey: Uint8Array,
    /** The fleet public key (config fleetPublicKey): new devices need its approval. */
    readonly fleetPublicKey: Uint8Array | undefined,
    public operatorKeyFile: string | undefined,
    private readonly logger: Logger,
  ) {
    // keys.json/devices.json could not be written: RAM is now ahead of the disk (an issued key would
    // vanish at the next start), so stop with exit 74 rather than carry on (docs/RELIABILITY.md).
    this.saver = new SaveQueue(() => this.write(), (err) => {
      logger.fatal({ exitCode: EXIT_STATE_IO }, `${(err as Error).message}; stopping`);
      stopForStateFailure(EXIT_STATE_IO, (err as Error).message);
    });
    for (const [name, plan] of Object.entries(config.plans)) this.limits.set(name, envelopeLimit(plan.maxBlob));
  }

  static async open(config: RelayConfig, logger: Logger): Promise<RelayState> {
    const dir = config.ramOnly ? undefined : path.resolve(config.stateDir);
    if (dir !== undefined) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.chmod(dir, 0o700);
    }
    const identityDir = await openIdentityDir(config, logger);
    /** Where keys and devices are read from and written back to: the state or the identity directory. */
    const controlDir = dir ?? identityDir;
    // Settings that name files are checked before anything is opened: a wrong one is a setup
    // error, not a damaged state directory.
    const keyFile = operatorKeyPath(config, controlDir);
    let fleetPublicKey: Uint8Array | undefined;
    if (config.fleetPublicKey !== undefined) {
      try {
        fleetPublicKey = (await loadPublicKey(config.fleetPublicKey, ['ML-DSA-65'])).publicKey;
      } catch (err) {
        throw new Error(`fleetPublicKey: ${(err as Error).message}`);
      }
    }
    const relayKey = await loadOrCreateRelayKey(controlDir, logger);
    const baseOrigin = config.origin ?? `ghostpipe-relay/${keyIdHex('ML-DSA-65', relayKey.publicKey).slice(0, 16)}`;
    const epoch = identityDir === undefined ? undefined : await nextEpoch(identityDir);
    const origin = epoch === undefined ? baseOrigin : epochOrigin(baseOrigin, epoch);
    const keys = new ApiKeys(controlDir ? (((await readJson(path.join(controlDir, 'keys.json'), 'keys')) as { keys?: KeyRecord[] } | undefined)?.keys ?? []) : []);
    const devices = new Devices(controlDir ? (((await readJson(path.join(controlDir, 'devices.json'), 'devices')) as { devices?: DeviceRecord[] } | undefined)?.devices ?? []) : []);
    const audit = await AuditTrail.open({ file: dir ? path.join(dir, 'audit.jsonl') : undefined, ...config.audit }, logger);
    const log = await RelayLog.open({
      origin,
      signer: mlDsaNoteSigner(origin, relayKey.seed),
      verifier: mlDsaNoteVerifier(origin, relayKey.publicKey),
      dir: dir ? path.join(dir, 'log') : undefined,
      ramBytes: config.ramOnlyLogBytes,
      onRecovered: (info) => logger.warn(info, 'transparency log: recovered after an unclean stop (data beyond the last checkpoint integrated or dropped; nothing signed changed)'),
      onMigrated: (info) => logger.info(info, 'transparency log: converted leaves.bin to tlog-tiles (root verified); the old file is kept as leaves.bin.migrated'),
      onError: (err) => {
        logger.fatal({ err: (err as Error).message }, 'transparency log write failed; stopping');
        stopForStateFailure(EXIT_STATE_IO, `transparency log write failed: ${(err as Error).message}`);
      },
      onCheckpoint: (size, ms) => {
        if (ms > 250) logger.warn({ size, ms: Math.round(ms) }, 'checkpoint signed later than 250 ms after append');
      },
    });
    relayKey.seed.fill(0);
    const store = new EnvelopeStore(config.memoryCap, config.limits.maxInFlightBytes, config.ttl, config.leaseTimeout, config.statusMemory, {
      onExpired: (held) => audit.record({ event: 'expired', keyId: held.uploaderKeyId, envelopeHash: held.id, size: 0, outcome: 'ok' }),
      onLeaseExpired: (lease) => audit.record({ event: 'lease_expired', keyId: lease.receiverKeyId, envelopeHash: lease.held.id, outcome: 'ok' }),
    });
    let operatorKeyFile: string | undefined;
    const state = new RelayState(config, controlDir, keys, devices, store, log, audit, origin, relayKey.publicKey, fleetPublicKey, undefined, logger);
    if (epoch !== undefined) await state.relogDevices(epoch);
    if (controlDir) await moveLegacyOperatorKey(controlDir, keyFile, logger);
    if (keys.activeOperators() === 0) {
      operatorKeyFile = await state.createOperatorKey(keyFile);
    } else if (keyFile !== undefined) {
      operatorKeyFile = keyFile;
    }
    state.operatorKeyFile = operatorKeyFile;
    if (fleetPublicKey) logger.info({ fleetKeyId: keyIdHex('ML-DSA-65', fleetPublicKey) }, 'fleet key pinned: new devices need its approval');
    logger.info({
      origin, logSize: log.size, stateDir: dir ?? null, ramOnly: dir === undefined, keys: keys.all().length, devices: devices.all().length,
      ...(identityDir !== undefined ? { identityDir, epoch } : {}),
    }, 'relay state loaded');
    return state;
  }

  plan(key: KeyRecord): { plan: Plan; envelopeLimit: number } {
    const plan = this.config.plans[key.plan];
    if (!plan) return { plan: { quota: 1, period: 1, ratePerMinute: 1, burst: 1, maxBlob: 0, maxHeldBytes: 0, maxInFlightBytes: 0, maxConcurrentUploads: 1 }, envelopeLimit: 0 };
    return { plan, envelopeLimit: this.limits.get(key.plan) ?? 0 };
  }

  /** When a full relay is worth retrying: roughly when the oldest leases could be acknowledged. */
  retryAfterMs(): number {
    return Math.min(30_000, Math.max(1_000, this.config.leaseTimeout));
  }

  /** Persists keys and devices now (atomically); resolves when on disk. */
  async save(): Promise<void> {
    if (!this.dir) return;
    this.saver.request();
    await this.saver.flush();
  }

  /**
   * Usage counters change on every upload: persist them at most once a second. Not in RAM-only
   * mode: its identity directory is written only on key and device changes (and once per boot).
   */
  usageChanged(): void {
    if (!this.dir || this.config.ramOnly || this.usageTimer) return;
    this.usageTimer = setTimeout(() => {
      this.usageTimer = undefined;
      this.saver.request();
    }, 1000);
    this.usageTimer.unref();
  }

  async close(): Promise<void> {
    if (this.usageTimer) {
      clearTimeout(this.usageTimer);
      this.usageTimer = undefined;
      this.saver.request();
    }
    // A failed keys/devices save (already reported, the relay is stopping) must not keep the log and audit from closing.
    const saveFailed = await this.saver.flush().then(() => undefined, (err: unknown) => err);
    await this.log.close();
    await this.audit.close();
    if (saveFailed !== undefined) throw saveFailed;
  }

  private async write(): Promise<void> {
    if (!this.dir) return;
    await writeFileAtomic(path.join(this.dir, 'keys.json'), JSON.stringify({ version: 1, keys: this.keys.all() }, null, 1));
    await writeFileAtomic(path.join(this.dir, 'devices.json'), JSON.stringify({ version: 1, devices: this.devices.all() }, null, 1));
  }

  /**
   * Start of a log epoch (RAM-only with identityDir): the log is empty, so the provisioned
   * devices' registrations, and the revocations of revoked ones, are logged again (oldest
   * registration first) and their leaf indexes updated. Receivers in trust.enrolled mode prove a
   * device's registration at that index; their revocation scan finds the revocations.
   */
  private async relogDevices(epoch: number): Promise<void> {
    const list = this.devices.all().sort((a, b) => a.registeredAt - b.registeredAt || a.leafIndex - b.leafIndex);
    for (const device of list) {
      const signingKeyId = Buffer.from(device.signingKeyId, 'hex');
      const approval = device.fleetStatement !== undefined && device.fleetSignature !== undefined
        ? { statement: new Uint8Array(Buffer.from(device.fleetStatement, 'base64')), signature: new Uint8Array(Buffer.from(device.fleetSignature, 'base64')) }
        : undefined;
      device.leafIndex = this.log.append(encodeLogEntry({
        type: 'registration', signingKeyId, kemKeyId: keyId('X-Wing', Buffer.from(device.kemPublicKey, 'base64')), did: device.did, ...(approval ? { approval } : {}),
      }));
      if (device.revokedAt !== undefined) device.revocationLeafIndex = this.log.append(encodeLogEntry({ type: 'revocation', signingKeyId, did: device.did }));
    }
    await this.log.flush(); // signed before the first request: a receiver can prove them at once
    if (list.length > 0) await this.save();
    this.logger.info({ epoch, origin: this.origin, devices: list.length, revoked: list.filter((d) => d.revokedAt !== undefined).length }, 'new log epoch: provisioned devices logged again');
  }

  /** First start: one operator key, written 0600 outside the state directory; only its hash stays in keys.json. */
  private async createOperatorKey(target: string | undefined): Promise<string> {
    const { key } = this.keys.issue('operator', 'enterprise', 'initial operator key');
    const file = target ?? path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'ghostpipe-relay-')), 'operator.key');
    await writeFileAtomic(file, key + '\n', 0o600);
    await this.save();
    this.logger.info({ file }, 'created the operator key (plk_…); read it from this file, keep it off the relay host');
    return file;
  }

  /**
   * Recovery of a lost operator key (`ghostpipe relay --reset-operator-key`, relay stopped):
   * revokes every active operator key, issues one new one to `file` (0600), audited.
   */
  async resetOperatorKey(file: string): Promise<{ revoked: string[]; id: string }> {
    const revoked: string[] = [];
    for (const k of this.keys.all()) {
      if (k.role === 'operator' && k.revokedAt === undefined) {
        this.keys.revoke(k.id);
        revoked.push(k.id);
      }
    }
    const issued = this.keys.issue('operator', 'enterprise', 'operator key (reset)');
    await writeFileAtomic(path.resolve(file), issued.key + '\n', 0o600);
    await this.save();
    this.audit.record({ event: 'operator_key_reset', keyId: issued.record.id, keyLabel: issued.record.label, outcome: `ok (revoked ${revoked.length ? revoked.join(', ') : 'none'})` });
    return { revoked, id: issued.record.id };
  }
}

/**
 * Where the first operator key goes: config operatorKeyFile, else operator.key next to the
 * control directory; undefined (a temp folder) for a RAM-only relay without identity. Never inside
 * the control directory: that is the file a copy of the state directory must not contain.
 */
function operatorKeyPath(config: RelayConfig, controlDir: string | undefined): string | undefined {
  const file = config.operatorKeyFile !== undefined ? path.resolve(config.operatorKeyFile) : controlDir ? path.join(path.dirname(controlDir), 'operator.key') : undefined;
  if (file !== undefined && controlDir !== undefined && !path.relative(controlDir, file).startsWith('..')) {
    throw new Error(`operatorKeyFile (${file}) is inside the state directory ${controlDir}: put it outside, where a copy of the state directory does not reach (docs/RELAY.md "Operator key")`);
  }
  return file;
}

/** An operator.key an older version left in the control directory is moved to `target` (or removed if already there). */
async function moveLegacyOperatorKey(controlDir: string, target: string | undefined, logger: Logger): Promise<void> {
  const legacy = path.join(controlDir, 'operator.key');
  const key = await readOptional(legacy);
  if (key === undefined) return;
  if (target === undefined) throw new Error(`${legacy}: an operator key inside the state directory, and no operatorKeyFile to move it to`);
  const existing = await readOptional(target);
  if (existing !== undefined && existing.trim() !== key.trim()) {
    throw new Error(`${legacy} and ${target} hold different operator keys: keep the one you use at ${target} and delete ${legacy} (docs/RELAY.md "Operator key")`);
  }
  if (existing === undefined) await writeFileAtomic(target, key, 0o600);
  await fs.rm(legacy);
  logger.warn({ from: legacy, file: target }, 'moved the operator key out of the state directory (a copy of the state directory must not carry it)');
}

/**
 * The identity directory of a RAM-only relay (undefined: none, or not RAM-only). Created 0700 when
 * missing: the first boot provisions it. Without one, the relay says loudly what a reboot loses.
 */
async function openIdentityDir(config: RelayConfig, logger: Logger): Promise<string | undefined> {
  if (!config.ramOnly) {
    if (config.identityDir !== undefined) throw new Error(`identityDir (${config.identityDir}) is only for ramOnly: true; with a state directory the identity lives in stateDir`);
    return undefined;
  }
  if (config.identityDir === undefined) {
    logger.warn('RAM-only relay without identityDir: this boot has a new relay key and origin and knows no API key and no device; after a restart every receiver, agent and operator must be provisioned again (set identityDir, docs/RELAY.md)');
    return undefined;
  }
  const dir = path.resolve(config.identityDir);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.chmod(dir, 0o700);
  return dir;
}

/**
 * Counts boots in `<identityDir>/epoch.json` and returns this boot's epoch (1 on the first). Written
 * (fsync + rename) before the log starts, so two boots never sign the same origin; a clock is not
 * used because a Pi without RTC may boot with the same time twice.
 */
async function nextEpoch(identityDir: string): Promise<number> {
  const file = path.join(identityDir, 'epoch.json');
  const saved = (await readJson(file)) as { epoch?: unknown } | undefined;
  let previous = 0;
  if (saved !== undefined) {
    const value = typeof saved === 'object' && saved !== null ? saved.epoch : undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value >= 1e15) {
      throw new StateFileError(file, '"epoch" must be a positive integer (the boot counter of this RAM-only relay); refusing to start rather than reuse a log origin');
    }
    previous = value;
  }
  const epoch = previous + 1;
  await writeFileAtomic(file, JSON.stringify({ version: 1, epoch, startedAt: new Date().toISOString() }) + '\n', 0o600);
  return epoch;
}

async function loadOrCreateRelayKey(dir: string | undefined, logger: Logger): Promise<PrivateKey> {
  if (dir === undefined) return generatePrivateKey('ML-DSA-65');
  const file = path.join(dir, 'relay.sign.key');
  try {
    return await loadSigningKey(file, (warning) => logger.warn({ file }, warning));
  } catch (err) {
    if ((err as { code?: string }).code !== 'not_found') throw err;
  }
  const key = generatePrivateKey('ML-DSA-65');
  await writePrivateKeyFile(file, encodePrivateKeyPem(key));
  await writePublicKeyFile(path.join(dir, 'relay.sign.pub'), encodePublicKeyPem('ML-DSA-65', key.publicKey), { overwrite: true });
  logger.info({ file }, 'created the relay signing key (ML-DSA-65)');
  return key;
}
