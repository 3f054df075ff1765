/**
 * Firmware rollouts (docs/API.md "Firmware"): the relay holds a package's encrypted chunks and
 * the per-device key wraps in RAM, offers them only to the devices it targets, and burns them once
 * every target reported (a signed receipt, logged as a 0x06 leaf) or at the TTL. It checks what it
 * can without trusting itself: chunk hashes against the manifest, wraps against the devices' keys.
 * It cannot read a package (no content key) nor forge one (no release key); devices check both.
 *
 * A rollout is published in steps (the operator CLI does them in order): POST the signed manifest
 * and the first targets, PUT every chunk, PUT one key wrap per target; a device sees it once all
 * chunks and its own wrap are in. POST …/targets adds devices (a staged rollout widening), refused
 * once any target reported a failure.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../common/log.js';
import type {
  DeviceRolloutState, DeviceRolloutStatus, DeviceRolloutsBody, FirmwareOfferBody, ReceiptBody, RolloutBody, RolloutListBody, RolloutStatusBody,
} from '../protocol/api/index.js';
import { CONTENT_TYPE } from '../protocol/envelope/constants.js';
import { parseEnvelope } from '../protocol/envelope/parse.js';
import {
  checkChunk, decodeManifest, encryptedChunkLength, FirmwareError, manifestDigest, signaturesFromJson, signaturesToJson, signedRootFromJson, signedRootToJson, verifyReceipt,
  type FirmwareManifest, type KeySignature, type SignedRootJson,
} from '../protocol/firmware/index.js';
import { MAX_ROOT_CHAIN } from '../protocol/api/firmware.js';
import { encodeLogEntry } from '../protocol/log-entries.js';
import { keyId } from '../protocol/keys.js';
import type { KeyRecord } from './api-keys.js';
import type { RelayConfig } from './config.js';
import type { Groups } from './groups.js';
import { Refusal, badRequest, notFound, type Outcome } from './refusal.js';
import type { RelayState } from './state.js';

/** One targeted device: its wrap and what it did so far. */
interface Target {
  wrap?: Uint8Array;
  state: DeviceRolloutState;
  chunksDone: Set<number>;
  reason?: string;
  receiptLeafIndex?: number;
  at?: number;
}

interface Rollout {
  id: string;
  manifest: FirmwareManifest;
  manifestBytes: Uint8Array;
  signatures: KeySignature[];
  publisherPublicKey: Uint8Array;
  /** Root rotations for devices pinned to an older root (opaque here: devices verify the chain). */
  roots: SignedRootJson[];
  leafIndex: number;
  chunks: (Uint8Array | undefined)[];
  chunksHeld: number;
  targets: Map<string, Target>;
  /** Bytes taken from the memory cap: every chunk (reserved at publish) and the wraps received. */
  heldBytes: number;
  createdAt: number;
  expiresAt: number;
}

const FINAL: ReadonlySet<DeviceRolloutState> = new Set(['installed', 'failed', 'rolled_back', 'refused', 'expired']);
const FAILED: ReadonlySet<DeviceRolloutState> = new Set(['failed', 'rolled_back']);
/** A wrap is an envelope of the smallest bucket: far below this. */
export const MAX_WRAP_BYTES = 16 * 1024;
export const MAX_TARGETS = 10_000;

export interface PublishInput { manifest: Uint8Array; signatures: unknown; publisherPublicKey: Uint8Array; targets: string[]; first?: number; roots?: unknown }

export class FirmwareRollouts {
  private readonly rollouts = new Map<string, Rollout>();
  /** Status of burned rollouts, oldest first (config firmware.statusMemory). */
  private readonly burned = new Map<string, RolloutStatusBody>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly config: RelayConfig['firmware'], private readonly state: RelayState, private readonly groups: Groups, private readonly logger: Logger) {
    this.sweeper = setInterval(() => this.sweep(), 5_000).unref();
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  // ---- operator ----

  async publish(operator: KeyRecord, input: PublishInput, now = Date.now()): Promise<Outcome<{ created: boolean; body: RolloutBody }>> {
    let manifest: FirmwareManifest;
    let signatures: KeySignature[];
    let roots: SignedRootJson[];
    try {
      manifest = decodeManifest(input.manifest);
      signatures = signaturesFromJson(input.signatures, 'firmware manifest');
      roots = rootChain(input.roots);
    } catch (err) {
      if (err instanceof FirmwareError) return badRequest(err.message);
      throw err;
    }
    if (manifest.expires <= now) return badRequest(`${manifest.name}@${manifest.version} expired at ${new Date(manifest.expires).toISOString()}`);
    const digest = manifestDigest(input.manifest);
    const id = Buffer.from(digest).toString('hex');
    const existing = this.rollouts.get(id);
    // Publishing again (a lost answer, a restarted CLI) adds the targets it names that are new, and
    // releases nobody: a staged rollout widens only by POST …/targets.
    if (existing) {
      const added = this.checkTargets(manifest, input.targets, existing.targets);
      if (added instanceof Refusal) return added;
      const staged = input.first !== undefined || [...existing.targets.values()].some((t) => t.state === 'held_back');
      for (const did of added) existing.targets.set(did, { state: staged ? 'held_back' : 'pending', chunksDone: new Set() });
      return { created: false, body: this.summary(existing) };
    }
    const size = manifest.chunkHashes.reduce((n, _, i) => n + encryptedChunkLength(manifest, i), 0);
    if (size > this.config.maxPackageSize) return new Refusal('too_large', `package of ${size} bytes exceeds firmware.maxPackageSize (${this.config.maxPackageSize})`);
    const targets = this.checkTargets(manifest, input.targets, new Map());
    if (targets instanceof Refusal) return targets;
    if (!this.state.store.holdFirmware(size)) return new Refusal('memory_full', `no room for a ${size}-byte package within memoryCap; nothing undelivered is evicted for it`, this.state.retryAfterMs());
    const leafIndex = this.state.log.append(encodeLogEntry({ type: 'firmware', manifestHash: digest }));
    const rollout: Rollout = {
      id, manifest, manifestBytes: input.manifest, signatures, publisherPublicKey: input.publisherPublicKey, roots, leafIndex,
      chunks: manifest.chunkHashes.map(() => undefined), chunksHeld: 0,
      targets: new Map(targets.map((did, i) => [did, { state: i < (input.first ?? targets.length) ? 'pending' : 'held_back', chunksDone: new Set() }])),
      heldBytes: size, createdAt: now, expiresAt: Math.min(manifest.expires, now + this.config.ttl),
    };
    // In the map before the first await: a concurrent publish of the same manifest finds it.
    this.rollouts.set(id, rollout);
    await this.state.log.flush();
    this.state.audit.record({ event: 'firmware_published', keyId: operator.id, keyLabel: operator.label, packageId: id, size, count: targets.length, outcome: 'ok' });
    this.logger.info({ packageId: id, name: manifest.name, version: manifest.version, leafIndex, targets: targets.length, bytes: size }, 'firmware package published');
    return { created: true, body: this.summary(rollout) };
  }

  /**
   * Offers the rollout to `dids` (new targets, or held-back ones); an empty list releases every
   * held-back target. Refused once a target reported a failure: a failure halts the rollout.
   */
  private addTargets(rollout: Rollout, dids: string[]): Outcome<RolloutBody> {
    const release = dids.length === 0 ? [...rollout.targets.keys()] : dids;
    const widening = release.some((did) => { const t = rollout.targets.get(did); return t === undefined || t.state === 'held_back'; });
    const failed = [...rollout.targets.entries()].find(([, t]) => FAILED.has(t.state));
    if (failed && widening) {
      return new Refusal('rollout_halted', `the rollout is halted: ${failed[0]} reported ${failed[1].state}${failed[1].reason ? ` (${failed[1].reason})` : ''}`);
    }
    const added = this.checkTargets(rollout.manifest, dids, rollout.targets);
    if (added instanceof Refusal) return added;
    let offered = added.length;
    for (const did of added) rollout.targets.set(did, { state: 'pending', chunksDone: new Set() });
    for (const did of release) {
      const target = rollout.targets.get(did);
      if (target?.state === 'held_back') { target.state = 'pending'; offered++; }
    }
    if (offered > 0) this.logger.info({ packageId: rollout.id, offered, targets: rollout.targets.size }, 'firmware rollout widened');
    return this.summary(rollout);
  }

  async widen(operator: KeyRecord, id: string, dids: string[]): Promise<Outcome<RolloutBody>> {
    const rollout = this.rollouts.get(id);
    if (!rollout) return notFound();
    const body = this.addTargets(rollout, dids);
    if (!(body instanceof Refusal)) this.state.audit.record({ event: 'firmware_widened', keyId: operator.id, keyLabel: operator.label, packageId: id, count: body.targets, outcome: 'ok' });
    return body;
  }

  putChunk(id: string, index: number, bytes: Uint8Array): Outcome<void> {
    const rollout = this.rollouts.get(id);
    if (!rollout) return notFound();
    try {
      checkChunk(rollout.manifest, index, bytes);
    } catch (err) {
      if (err instanceof FirmwareError) return badRequest(err.message);
      throw err;
    }
    if (rollout.chunks[index] === undefined) rollout.chunksHeld++;
    rollout.chunks[index] = bytes;
    return undefined;
  }

  putWrap(id: string, did: string, bytes: Uint8Array): Outcome<void> {
    const rollout = this.rollouts.get(id);
    const target = rollout?.targets.get(did);
    if (!rollout || !target) return notFound();
    const device = this.state.devices.get(did);
    if (!device) return notFound();
    let recipient: Uint8Array;
    try {
      const env = parseEnvelope(bytes, { maxSize: MAX_WRAP_BYTES });
      if (env.header.contentType !== CONTENT_TYPE.FIRMWARE_KEY) return badRequest(`a key wrap is an envelope of content type ${CONTENT_TYPE.FIRMWARE_KEY} (firmware key), not ${env.header.contentType}`);
      recipient = env.header.recipientKeyId;
    } catch (err) {
      return badRequest(`the key wrap for ${did} is not an envelope: ${(err as Error).message}`);
    }
    // Relay devices hold X-Wing keys (registration takes no other), as their 0x02/0x05 leaves record.
    if (!timingSafeEqual(recipient, keyId('X-Wing', Buffer.from(device.kemPublicKey, 'base64')))) return badRequest(`the key wrap for ${did} is not sealed to that device's key`);
    const grow = bytes.length - (target.wrap?.length ?? 0);
    if (grow > 0 && !this.state.store.holdFirmware(grow)) return new Refusal('memory_full', 'no room for the key wrap within memoryCap', this.state.retryAfterMs());
    if (grow < 0) this.state.store.releaseFirmware(-grow);
    rollout.heldBytes += grow;
    target.wrap = bytes;
    return undefined;
  }

  status(id: string): Outcome<RolloutStatusBody> {
    const rollout = this.rollouts.get(id);
    if (rollout) return this.fullStatus(rollout);
    return this.burned.get(id) ?? notFound();
  }

  list(): RolloutListBody {
    return { rollouts: [...[...this.burned.values()], ...[...this.rollouts.values()].map((r) => this.fullStatus(r))] };
  }

  // ---- devices ----

  forDevice(key: KeyRecord): Outcome<DeviceRolloutsBody> {
    const device = this.state.devices.boundTo(key);
    if (device instanceof Refusal) return device;
    const rollouts = [];
    for (const r of this.rollouts.values()) {
      const target = r.targets.get(device.did);
      if (target && this.offered(r, target) && target.state !== 'downloaded' && !FINAL.has(target.state)) {
        rollouts.push({ id: r.id, name: r.manifest.name, version: r.manifest.version, counter: r.manifest.counter });
      }
    }
    return { rollouts };
  }

  offer(key: KeyRecord, id: string): Outcome<FirmwareOfferBody> {
    const found = this.deviceTarget(key, id);
    if (found instanceof Refusal) return found;
    const { rollout, target } = found;
    return {
      id, manifest: Buffer.from(rollout.manifestBytes).toString('base64'), signatures: signaturesToJson(rollout.signatures), leafIndex: rollout.leafIndex,
      publisherPublicKey: Buffer.from(rollout.publisherPublicKey).toString('base64'), keyWrap: Buffer.from(target.wrap!).toString('base64'), chunks: rollout.chunks.length,
      roots: rollout.roots,
    };
  }

  chunk(key: KeyRecord, id: string, index: number): Outcome<Uint8Array> {
    const found = this.deviceTarget(key, id);
    if (found instanceof Refusal) return found;
    const { rollout, target } = found;
    const bytes = Number.isInteger(index) && index >= 0 ? rollout.chunks[index] : undefined;
    if (!bytes) return notFound();
    target.chunksDone.add(index);
    if (target.state === 'pending') target.state = 'downloading';
    target.at = Date.now();
    return bytes;
  }

  downloaded(key: KeyRecord, id: string): Outcome<void> {
    const found = this.deviceTarget(key, id);
    if (found instanceof Refusal) return found;
    found.target.state = 'downloaded';
    found.target.at = Date.now();
    return undefined;
  }

  async receipt(key: KeyRecord, id: string, receipt: Uint8Array, signature: Uint8Array): Promise<Outcome<ReceiptBody>> {
    const device = this.state.devices.boundTo(key);
    if (device instanceof Refusal) return device;
    const rollout = this.rollouts.get(id);
    const target = rollout?.targets.get(device.did);
    if (!rollout || !target) return notFound();
    let outcome: string;
    try {
      const r = verifyReceipt(receipt, signature, this.state.devices.signingKey(device));
      if (Buffer.from(r.manifestDigest).toString('hex') !== id) return badRequest('the receipt names another package');
      outcome = r.outcome;
      if (FINAL.has(target.state)) return new Refusal('duplicate', `${device.did} already reported ${target.state} for this package`);
      target.state = r.outcome;
      target.reason = r.reason || undefined;
    } catch (err) {
      if (err instanceof FirmwareError) return new Refusal('bad_signature', err.message);
      throw err;
    }
    target.receiptLeafIndex = this.state.log.append(encodeLogEntry({ type: 'receipt', receipt, signature }));
    await this.state.log.flush();
    target.at = Date.now();
    this.state.audit.record({ event: 'firmware_receipt', keyId: key.id, keyLabel: key.label, did: device.did, packageId: id, outcome });
    this.logger.info({ packageId: id, did: device.did, outcome, leafIndex: target.receiptLeafIndex }, 'firmware receipt logged');
    if ([...rollout.targets.values()].every((t) => FINAL.has(t.state))) this.burn(rollout, 'receipts');
    return { id, did: device.did, outcome, leafIndex: target.receiptLeafIndex };
  }

  // ---- burning ----

  /** Burns every rollout past its expiry. */
  sweep(now = Date.now()): void {
    for (const rollout of this.rollouts.values()) if (rollout.expiresAt <= now) this.burn(rollout, 'expired');
  }

  private burn(rollout: Rollout, reason: 'receipts' | 'expired'): void {
    if (!this.rollouts.delete(rollout.id)) return; // two last receipts at once: burned by the first
    this.state.store.releaseFirmware(rollout.heldBytes);
    for (const target of rollout.targets.values()) if (!FINAL.has(target.state)) target.state = 'expired';
    const status = this.fullStatus(rollout);
    status.held = false;
    status.burned = { at: new Date().toISOString(), reason };
    this.burned.set(rollout.id, status);
    while (this.burned.size > this.config.statusMemory) this.burned.delete(this.burned.keys().next().value!);
    rollout.chunks.fill(undefined);
    this.state.audit.record({ event: 'firmware_burned', packageId: rollout.id, size: rollout.heldBytes, count: rollout.targets.size, outcome: reason });
    this.logger.info({ packageId: rollout.id, reason, bytes: rollout.heldBytes }, 'firmware package burned');
  }

  // ---- helpers ----

  private checkTargets(manifest: FirmwareManifest, dids: readonly string[], known: ReadonlyMap<string, Target>): Outcome<string[]> {
    if (dids.length > MAX_TARGETS || !dids.every((d) => d.length <= 128)) return badRequest(`targets must be a list of at most ${MAX_TARGETS} DIDs`);
    const members = new Set(this.groups.members(manifest.group));
    const added: string[] = [];
    for (const did of new Set(dids)) {
      if (known.has(did)) continue;
      if (!members.has(did)) return new Refusal('not_in_group', `${did} is not an enrolled, active member of group ${manifest.group}`);
      added.push(did);
    }
    if (known.size + added.length === 0) return badRequest('a rollout needs at least one target device');
    return added;
  }

  private offered(rollout: Rollout, target: Target): boolean {
    return target.state !== 'held_back' && rollout.chunksHeld === rollout.chunks.length && target.wrap !== undefined;
  }

  private deviceTarget(key: KeyRecord, id: string): Outcome<{ rollout: Rollout; target: Target }> {
    const device = this.state.devices.boundTo(key);
    if (device instanceof Refusal) return device;
    const rollout = this.rollouts.get(id);
    const target = rollout?.targets.get(device.did);
    // Not targeted and not held look the same: a device learns nothing of other groups' rollouts.
    if (!rollout || !target || target.state === 'held_back') return notFound();
    if (target.state === 'downloaded' || FINAL.has(target.state)) return new Refusal('download_complete', `this device already ${target.state === 'downloaded' ? 'downloaded' : 'reported on'} this package`);
    if (!this.offered(rollout, target)) return new Refusal('incomplete_package', 'the package is still being uploaded');
    return { rollout, target };
  }


  private summary(r: Rollout): RolloutBody {
    const m = r.manifest;
    return {
      id: r.id, name: m.name, version: m.version, counter: m.counter, group: m.group, leafIndex: r.leafIndex,
      chunks: r.chunks.length, chunksHeld: r.chunksHeld, targets: r.targets.size, ready: r.chunksHeld === r.chunks.length, expiresAt: new Date(r.expiresAt).toISOString(),
    };
  }

  private fullStatus(r: Rollout): RolloutStatusBody {
    const devices: DeviceRolloutStatus[] = [...r.targets.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([did, t]) => ({
      did, state: t.state, chunksDone: t.chunksDone.size, chunks: r.chunks.length,
      ...(t.reason ? { reason: t.reason } : {}), ...(t.receiptLeafIndex !== undefined ? { receiptLeafIndex: t.receiptLeafIndex } : {}),
      ...(t.at !== undefined ? { at: new Date(t.at).toISOString() } : {}),
    }));
    return { ...this.summary(r), createdAt: new Date(r.createdAt).toISOString(), held: true, devices };
  }
}

/** The publish's root rotations, in the canonical form (each must parse as a signed root). */
function rootChain(json: unknown): SignedRootJson[] {
  if (json === undefined) return [];
  if (!Array.isArray(json) || json.length > MAX_ROOT_CHAIN) throw new FirmwareError('bad_field', `roots must be a list of at most ${MAX_ROOT_CHAIN} signed firmware roots`);
  return json.map((r, i) => {
    try {
      return signedRootToJson(signedRootFromJson(r));
    } catch (err) {
      throw new FirmwareError('bad_field', `roots[${i}]: ${(err as Error).message}`);
    }
  });
}
