/**
 * Enrolled devices and enrollment challenges. A device is identified by its DID (derived from
 * its ML-DSA-65 public key) and bound to exactly one device API key.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { KeyRecord } from './api-keys.js';
import { Refusal, keyRevoked, type Outcome } from './refusal.js';

const sha256 = (bytes: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(bytes).digest());

export interface DeviceRecord {
  did: string;
  /** base64 ML-DSA-65 public key. */
  signingPublicKey: string;
  /** base64 X-Wing public key. */
  kemPublicKey: string;
  /** hex keyId(ML-DSA-65 pk): what envelope headers carry as sender key id. */
  signingKeyId: string;
  /** The device API key id it is bound to. */
  apiKeyId: string;
  /**
   * Keys it was bound to before (newest last, at most FORMER_KEYS_KEPT): envelopes uploaded with
   * them still answer its status requests after a key rotation (docs/AGENT.md).
   */
  formerApiKeyIds?: string[];
  registeredAt: number;
  leafIndex: number;
  /** base64 fleet statement and fleet signature (protocol/enrollment.ts), when the device was approved. */
  fleetStatement?: string;
  fleetSignature?: string;
  revokedAt?: number;
  revocationLeafIndex?: number;
  /** Device groups it belongs to (firmware rollouts target a group), sorted. */
  groups?: string[];
}

/**
 * A challenge, the API key it was issued to, and the KEM key (its SHA-256: up to 100 000 challenges
 * stay about 100 B each, not 1.3 KB) and proof of possession it expects.
 */
export interface Challenge { apiKeyId: string; expiresAt: number; kemKeyHash: Uint8Array; kemProof: Uint8Array }

export const CHALLENGE_TTL_MS = 5 * 60_000;
/** A rotation retires one key; a few kept cover undelivered envelopes of quick successive rotations. */
export const FORMER_KEYS_KEPT = 4;
const MAX_CHALLENGES_PER_KEY = 16;
const MAX_CHALLENGES = 100_000;

export class Devices {
  private readonly byDid = new Map<string, DeviceRecord>();
  private readonly publicKeys = new Map<string, Uint8Array>();
  private readonly challenges = new Map<string, Challenge>();

  constructor(records: DeviceRecord[] = []) {
    for (const record of records) this.byDid.set(record.did, record);
  }

  all(): DeviceRecord[] {
    return [...this.byDid.values()];
  }

  get(did: string): DeviceRecord | undefined {
    return this.byDid.get(did);
  }

  add(record: DeviceRecord): void {
    this.byDid.set(record.did, record);
  }

  /** The device bound to this (device) key, enrolled and not revoked, or why not. */
  boundTo(key: KeyRecord): Outcome<DeviceRecord> {
    if (key.revokedAt !== undefined) return keyRevoked();
    const device = key.did === undefined ? undefined : this.byDid.get(key.did);
    if (!device) return new Refusal('device_not_enrolled', 'this key is not bound to an enrolled device; register first');
    if (device.revokedAt !== undefined) return new Refusal('device_revoked', 'the device bound to this key was revoked');
    return device;
  }

  /** Decoded ML-DSA-65 public key, cached. */
  signingKey(record: DeviceRecord): Uint8Array {
    let key = this.publicKeys.get(record.did);
    if (!key) {
      key = new Uint8Array(Buffer.from(record.signingPublicKey, 'base64'));
      this.publicKeys.set(record.did, key);
    }
    return key;
  }

  /** A fresh single-use challenge for this API key; undefined when too many are outstanding. */
  /**
   * A fresh single-use challenge for this API key; undefined when too many are outstanding.
   * `encapsulate(challenge)` makes the KEM proof-of-possession challenge for it.
   */
  newChallenge(
    apiKeyId: string, kemPublicKey: Uint8Array, encapsulate: (challenge: string) => { kemCiphertext: Uint8Array; kemProof: Uint8Array }, now = Date.now(),
  ): { challenge: string; expiresAt: number; kemCiphertext: Uint8Array } | undefined {
    this.pruneChallenges(now);
    let mine = 0;
    for (const c of this.challenges.values()) if (c.apiKeyId === apiKeyId) mine++;
    if (mine >= MAX_CHALLENGES_PER_KEY || this.challenges.size >= MAX_CHALLENGES) return undefined;
    const challenge = randomBytes(32).toString('base64url');
    const expiresAt = now + CHALLENGE_TTL_MS;
    const { kemCiphertext, kemProof } = encapsulate(challenge);
    this.challenges.set(challenge, { apiKeyId, expiresAt, kemKeyHash: sha256(kemPublicKey), kemProof });
    return { challenge, expiresAt, kemCiphertext };
  }

  /** Consumes a challenge (single use): the entry when it was issued to this key and is still fresh. */
  takeChallenge(challenge: string, apiKeyId: string, now = Date.now()): Challenge | undefined {
    const entry = this.challenges.get(challenge);
    if (!entry || entry.apiKeyId !== apiKeyId) return undefined;
    this.challenges.delete(challenge);
    return entry.expiresAt > now ? entry : undefined;
  }

  private pruneChallenges(now: number): void {
    for (const [challenge, entry] of this.challenges) if (entry.expiresAt <= now) this.challenges.delete(challenge);
  }
}
