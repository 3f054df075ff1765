/**
 * Everything the relay knows, and where it lives on disk (state directory, all 0600/0700):
 *
 *   relay.sign.key / relay.sign.pub   the relay's ML-DSA-65 key (checkpoint signer)
 *   operator.key                      the first operator key (plk_…), written once, 0600
 *   keys.json                         API key hashes, roles, plans, labels, usage counters
 *   devices.json                      enrolled devices (public keys, DIDs, revocations)
 *   log/leaves.bin                    transparency log leaf data (append-only)
 *   audit.jsonl                       audit trail (append-only)
 *
 * Payloads are never written anywhere. In RAM-only mode only operator.key is written (to
 * operatorKeyFile or a fresh temp folder) and every boot is a new log under a new origin.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import { generatePrivateKey, keyIdHex, encodePrivateKeyPem, encodePublicKeyPem, type PrivateKey } from '../protocol/keys.js';
import { loadSigningKey, writePrivateKeyFile, writePublicKeyFile } from '../common/keyfile.js';
import { mlDsaNoteSigner } from '../protocol/tlog/note.js';
import { ApiKeys, type KeyRecord } from './api-keys.js';
import { Devices, type DeviceRecord } from './devices.js';
import { EnvelopeStore } from './store.js';
import { RelayLog } from './log.js';
import { AuditTrail } from './audit.js';
import { SaveQueue, readJson, writeFileAtomic } from './state-file.js';
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
    public operatorKeyFile: string | undefined,
    private readonly logger: Logger,
  ) {
    this.saver = new SaveQueue(() => this.write(), (err) => logger.error({ err: (err as Error).message }, 'saving relay state failed'));
    for (const [name, plan] of Object.entries(config.plans)) this.limits.set(name, envelopeLimit(plan.maxBlob));
  }

  static async open(config: RelayConfig, logger: Logger): Promise<RelayState> {
    const dir = config.ramOnly ? undefined : path.resolve(config.stateDir);
    if (dir !== undefined) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await fs.chmod(dir, 0o700);
    }
    const relayKey = await loadOrCreateRelayKey(dir, logger);
    const origin = config.origin ?? `ghostpipe-relay/${keyIdHex('ML-DSA-65', relayKey.publicKey).slice(0, 16)}`;
    const keys = new ApiKeys(dir ? (((await readJson(path.join(dir, 'keys.json'))) as { keys?: KeyRecord[] } | undefined)?.keys ?? []) : []);
    const devices = new Devices(dir ? (((await readJson(path.join(dir, 'devices.json'))) as { devices?: DeviceRecord[] } | undefined)?.devices ?? []) : []);
    const audit = await AuditTrail.open(dir ? path.join(dir, 'audit.jsonl') : undefined, logger);
    const log = await RelayLog.open({
      origin,
      signer: mlDsaNoteSigner(origin, relayKey.seed),
      dir: dir ? path.join(dir, 'log') : undefined,
      onError: (err) => {
        logger.fatal({ err: (err as Error).message }, 'transparency log write failed; stopping');
        process.kill(process.pid, 'SIGTERM');
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
    const state = new RelayState(config, dir, keys, devices, store, log, audit, origin, relayKey.publicKey, undefined, logger);
    if (keys.activeOperators() === 0) {
      operatorKeyFile = await state.createOperatorKey();
    } else if (dir) {
      operatorKeyFile = path.join(dir, 'operator.key');
    }
    state.operatorKeyFile = operatorKeyFile;
    logger.info({ origin, logSize: log.size, stateDir: dir ?? null, ramOnly: dir === undefined, keys: keys.all().length, devices: devices.all().length }, 'relay state loaded');
    return state;
  }

  plan(key: KeyRecord): { plan: Plan; envelopeLimit: number } {
    const plan = this.config.plans[key.plan];
    if (!plan) return { plan: { quota: 1, period: 1, ratePerMinute: 1, burst: 1, maxBlob: 0 }, envelopeLimit: 0 };
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

  /** Usage counters change on every upload: persist them at most once a second. */
  usageChanged(): void {
    if (!this.dir || this.usageTimer) return;
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
    await this.saver.flush();
    await this.log.close();
    await this.audit.flush();
  }

  private async write(): Promise<void> {
    if (!this.dir) return;
    await writeFileAtomic(path.join(this.dir, 'keys.json'), JSON.stringify({ version: 1, keys: this.keys.all() }, null, 1));
    await writeFileAtomic(path.join(this.dir, 'devices.json'), JSON.stringify({ version: 1, devices: this.devices.all() }, null, 1));
  }

  /** First start: one operator key, written 0600; only its hash stays in keys.json. */
  private async createOperatorKey(): Promise<string> {
    const { key } = this.keys.issue('operator', 'enterprise', 'initial operator key');
    let file = this.config.operatorKeyFile;
    if (file === undefined) {
      file = this.dir ? path.join(this.dir, 'operator.key') : path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'ghostpipe-relay-')), 'operator.key');
    }
    await writeFileAtomic(path.resolve(file), key + '\n', 0o600);
    await this.save();
    this.logger.info({ file: path.resolve(file) }, 'created the operator key (plk_…); read it from this file');
    return path.resolve(file);
  }
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
