/**
 * The relay's firmware endpoints as data (docs/API.md "Groups" and "Firmware"): what the operator
 * publishes, what a device fetches and reports, what `firmware status` reads. Binary fields base64,
 * times ISO 8601. The package id is the manifest digest (64 hex digits).
 */
import type { KeySignatureJson } from '../firmware/signatures.js';
import type { SignedRootJson } from '../firmware/root.js';
import { NAME_PATTERN } from '../firmware/manifest.js';

export const FIRMWARE_ID_PATTERN = /^[0-9a-f]{64}$/;
/** Group names follow package names (protocol/firmware/manifest.ts). */
export const GROUP_PATTERN = NAME_PATTERN;
export const CHUNK_MEDIA_TYPE = 'application/octet-stream';
/** Firmware root rotations a publish may carry to the devices (v2 … vN of one chain). */
export const MAX_ROOT_CHAIN = 16;

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
  /**
   * Root rotations, oldest first (`ghostpipe firmware root --rotate` output): a device pinned to an
   * older root walks them before it checks the manifest. The relay only checks their format.
   */
  roots?: SignedRootJson[];
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
  /** The publish's root rotations, oldest first (may be empty). */
  roots: SignedRootJson[];
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
