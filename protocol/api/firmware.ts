/**
 * The relay's firmware endpoints as data (docs/API.md "Groups" and "Firmware"): what the operator
 * publishes, what a device fetches and reports, what `firmware status` reads. Binary fields base64,
 * times ISO 8601. The package id is the manifest digest (64 hex digits).
 */
import type { KeySignatureJson } from '../firmware/signatures.js';

export const FIRMWARE_ID_PATTERN = /^[0-9a-f]{64}$/;
/** Group names follow package names (protocol/firmware/manifest.ts). */
export const GROUP_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const CHUNK_MEDIA_TYPE = 'application/octet-stream';

// ---- groups (operator) ----
export interface GroupsBody { groups: Record<string, string[]> }
export interface GroupMembershipBody { group: string; did: string; member: boolean }

// ---- publish (operator) ----
/** POST /v2/firmware: the signed manifest, the publisher's key (it signs the key wraps), the targets. */
export interface PublishRequest {
  manifest: string;
  signatures: KeySignatureJson[];
  publisherPublicKey: string;
  /** Every device of the rollout (members of the manifest's group). */
  targets: string[];
  /** Staged rollout: only the first N targets are offered until POST …/targets widens it (default: all). */
  first?: number;
}
export interface RolloutBody {
  id: string; name: string; version: string; counter: number; group: string; leafIndex: number;
  chunks: number; chunksHeld: number; targets: number; ready: boolean; expiresAt: string;
}

// ---- devices ----
export interface DeviceRolloutsBody { rollouts: { id: string; name: string; version: string; counter: number }[] }
/** GET /v2/firmware/{id} for a target device: everything it needs before the chunks. */
export interface FirmwareOfferBody {
  id: string; manifest: string; signatures: KeySignatureJson[]; leafIndex: number; publisherPublicKey: string; keyWrap: string; chunks: number;
}
export interface ReceiptRequest { receipt: string; signature: string }
export interface ReceiptBody { id: string; did: string; outcome: string; leafIndex: number }

// ---- status (operator) ----
/** held_back: a target of a staged rollout not offered yet. */
export type DeviceRolloutState = 'held_back' | 'pending' | 'downloading' | 'downloaded' | 'installed' | 'failed' | 'rolled_back' | 'refused' | 'expired';
export interface DeviceRolloutStatus {
  did: string; state: DeviceRolloutState; chunksDone: number; chunks: number; reason?: string; receiptLeafIndex?: number; at?: string;
}
export interface RolloutStatusBody extends RolloutBody {
  createdAt: string; held: boolean; burned?: { at: string; reason: 'receipts' | 'expired' | 'withdrawn' }; devices: DeviceRolloutStatus[];
}
export interface RolloutListBody { rollouts: RolloutStatusBody[] }
