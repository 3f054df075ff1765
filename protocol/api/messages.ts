/**
 * The relay's HTTP API as data (docs/API.md): media types, headers, and the JSON bodies of
 * requests and responses exactly as they travel (binary fields base64, times ISO 8601 strings).
 * The relay's handlers produce these types and the client parses them; neither side owns them.
 */

/** Content-Type of an envelope: upload bodies and lease responses (never base64). */
export const ENVELOPE_MEDIA_TYPE = 'application/vnd.ghostpipe.envelope';

/** Response headers of a lease (POST /v2/inbox/{recipient}/lease, 200). */
export const LEASE_HEADERS = {
  envelopeId: 'ghostpipe-envelope-id',
  leaseId: 'ghostpipe-lease-id',
  leafIndex: 'ghostpipe-leaf-index',
  expiresAt: 'ghostpipe-lease-expires',
  receivedAt: 'ghostpipe-received-at',
} as const;

/** Hex ids in paths: recipient key ids and envelope ids are SHA-256 sized. */
export const RECIPIENT_ID_PATTERN = /^[0-9a-f]{64}$/;
export const ENVELOPE_ID_PATTERN = /^[0-9a-f]{64}$/;
export const LEASE_ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
/** The public part of an API key: 12 hex digits (pgp_<id>… / plk_<id>…). */
export const KEY_ID_PATTERN = /^[0-9a-f]{12}$/;

export type Role = 'device' | 'receiver' | 'operator';
export type EnvelopeStatus = 'pending' | 'leased' | 'delivered' | 'expired' | 'unknown';

// ---- health and stats ----
export interface HealthBody { status: string; version: string; uptimeSeconds: number }
export interface StatsBody {
  uptimeSeconds: number;
  /**
   * heapUsedBytes: the JS heap in use; recipientQueues: per-recipient queues in RAM (only ones
   * holding, leasing or awaited); firmwareBytes: firmware packages held (counted against capBytes).
   */
  memory: { heldBytes: number; inFlightBytes: number; capBytes: number; rssBytes: number; heapUsedBytes: number; recipientQueues: number; firmwareBytes: number };
  /** waiting: long-polls (inbox or lease) waiting for an arrival now. */
  envelopes: { pending: number; leased: number; delivered: number; expired: number; purged: number; waiting: number };
  queues: Record<string, { pending: number; leased: number }>;
  log: { size: number; origin: string; checkpointLatencyMs: { last: number; max: number } };
  keys: { active: number; revoked: number };
  devices: { active: number; revoked: number };
  /**
   * What each key holds now, only keys holding something: heldBytes counts envelopes it uploaded
   * (bytes + per-envelope bookkeeping, as memory.heldBytes), inFlightBytes its reservations for
   * bodies still arriving, uploads its uploads in progress. Bounded by its plan (docs/RELAY.md "Fair shares").
   */
  byKey: Record<string, KeyUsageBody>;
  /**
   * open: connections now; sources: distinct source addresses among them; refused: connections
   * closed at accept since start because their source was at limits.maxConnectionsPerSource;
   * slowUploads: uploads cut off by the minimum transfer rate since start.
   */
  connections: { open: number; sources: number; refused: number; slowUploads: number };
}
export interface KeyUsageBody { heldBytes: number; inFlightBytes: number; uploads: number }

// ---- enrollment and DIDs ----
/** kemPublicKey: the X-Wing key to be enrolled; the relay encapsulates a proof-of-possession challenge to it. */
export interface ChallengeRequest { kemPublicKey: string }
export interface ChallengeBody { challenge: string; expiresAt: string; kemCiphertext: string }
export interface RegisterRequest {
  signingPublicKey: string;
  kemPublicKey: string;
  challenge: string;
  /** protocol/api/enrollment.ts kemProof(): possession of the X-Wing key. */
  kemProof: string;
  signature: string;
  /** The fleet approval (`ghostpipe device approve`): statement and the fleet key's signature. */
  fleetStatement?: string;
  fleetSignature?: string;
}
export interface RegistrationBody { did: string; document: Record<string, unknown>; leafIndex: number; fleetStatement?: string; fleetSignature?: string }
export interface DidRecordBody extends RegistrationBody {
  revoked: boolean;
  registeredAt: string;
  revokedAt?: string;
  revocationLeafIndex?: number;
}
export interface DeviceRevokedBody { did: string; revoked: true; leafIndex: number }

// ---- inbound ----
export interface UploadBody { id: string; leafIndex: number; size: number }
export interface StatusRequest { ids: string[] }
export interface StatusBody { statuses: Record<string, EnvelopeStatus> }

// ---- outbound ----
export interface InboxItemBody { id: string; size: number; leafIndex: number; receivedAt: string; state: EnvelopeStatus }
export interface InboxBody { envelopes: InboxItemBody[] }

// ---- log (public) ----
export interface LogKeyBody { origin: string; verifierKey: string; publicKey: string; publicKeyPem: string }
export interface InclusionProofBody { leafIndex: number; treeSize: number; proof: string[] }
export interface ConsistencyProofBody { from: number; to: number; proof: string[] }
export interface EntriesBody { entries: { index: number; data: string }[] }

// ---- keys and audit (operator) ----
export interface IssueKeyRequest { role: 'device' | 'receiver'; plan: string; label: string; recipients?: string[] }
export interface IssuedKeyBody { id: string; key: string; role: Role; plan: string; label: string; createdAt: string; recipients?: string[] }
export interface KeyInfoBody {
  id: string;
  masked: string;
  role: Role;
  plan: string;
  label: string;
  createdAt: string;
  revoked: boolean;
  revokedAt?: string;
  did?: string;
  recipients?: string[];
  usage?: { periodStart: string; transfers: number; quota: number };
}
export interface KeyListBody { keys: KeyInfoBody[] }
export interface KeyRevokedBody { id: string; revoked: true }
/** POST /v2/keys/{id}/purge: what was burned (envelopes the key uploaded that were still held). */
export interface KeyPurgedBody { id: string; envelopes: number; bytes: number }

/** One audit event as the relay records and exports it (JSON rows; CSV has the same columns). */
export interface AuditEvent {
  time: string;
  event: string;
  keyId?: string;
  keyLabel?: string;
  did?: string;
  envelopeHash?: string;
  size?: number;
  outcome: string;
  /** auth_failed only: the source address ("other" for the overflow counter). */
  ip?: string;
  /** auth_failed: failures counted in the minute that starts at `time`; key_purged: envelopes burned (`size`: their bytes). */
  count?: number;
  /** group_added / group_removed: the device group. */
  group?: string;
  /** firmware_*: the package id (manifest digest, hex). */
  packageId?: string;
}
export interface AuditBody { events: AuditEvent[] }
