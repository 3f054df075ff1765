/**
 * Firmware releases made in memory, as `ghostpipe firmware pack` and `sign` make them on disk
 * (common/firmware-package.ts), and published to a relay the way `firmware publish` does: the
 * signed manifest, every chunk, one key wrap per target. Tests that need many releases (every
 * attack of the firmware tests is a release of its own) build them here in milliseconds.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { RelayClient } from '../../common/relay-client.js';
import type { PublishRequest, RolloutBody } from '../../protocol/api/firmware.js';
import { AEAD, KEM } from '../../protocol/envelope/constants.js';
import {
  encodeManifest, encodeRoot, encryptChunk, manifestDigest, MANIFEST_CONTEXT, ROOT_CONTEXT, sha256, signaturesToJson, signWith, wrapContentKey,
  type FirmwareManifest, type SignedRootJson,
} from '../../protocol/firmware/index.js';
import type { PrivateKey } from '../../protocol/keys.js';

/** A signed firmware root (`firmware root` output): `keys`, `threshold`, signed by `signers` (default: all keys). */
export function rootJson(keys: PrivateKey[], threshold: number, version = 1, signers = keys): SignedRootJson {
  const bytes = encodeRoot({ version, threshold, keys: keys.map((k) => k.publicKey) });
  return { root: Buffer.from(bytes).toString('base64'), signatures: signaturesToJson(signers.map((k) => signWith(k.seed, bytes, ROOT_CONTEXT))) };
}

export interface ReleaseFields {
  counter: number;
  name?: string;
  version?: string;
  group?: string;
  hardware?: string[];
  /** ms since the epoch (default: in an hour). */
  expires?: number;
  /** Plaintext bytes (default 10,000: three chunks of 4 KiB). */
  size?: number;
  /** The package itself (default: `size` random bytes). */
  plaintext?: Uint8Array;
  /** Default `command`. */
  installType?: string;
  chunkSize?: number;
  /** Release keys that sign the manifest, in order. */
  signers: PrivateKey[];
}

export interface Release {
  id: string;
  manifest: FirmwareManifest;
  /** The canonical manifest bytes. */
  bytes: Uint8Array;
  plaintext: Uint8Array;
  chunks: Uint8Array[];
  /** The content key wrapped to a device's X-Wing key, signed by `publisher`. */
  wrapFor(kemPublicKey: Uint8Array, publisher: PrivateKey): Uint8Array;
  /** The publish request for `targets` (DIDs). */
  request(targets: string[], publisher: PrivateKey, options?: { first?: number; roots?: SignedRootJson[] }): PublishRequest;
}

export function makeRelease(f: ReleaseFields): Release {
  const plaintext = f.plaintext ?? new Uint8Array(randomBytes(f.size ?? 10_000));
  const size = plaintext.length;
  const chunkSize = f.chunkSize ?? 4096;
  const contentKey = new Uint8Array(randomBytes(32));
  const fields = {
    name: f.name ?? 'gw-fw', version: f.version ?? `1.${f.counter}.0`, counter: f.counter, group: f.group ?? 'line-a', hardware: f.hardware ?? ['hw1'],
    aeadId: AEAD.CHACHA20POLY1305, chunkSize, expires: f.expires ?? Date.now() + 3_600_000, installType: f.installType ?? 'command', installHint: '',
  };
  const chunks: Uint8Array[] = [];
  for (let at = 0, i = 0; at < size; at += chunkSize, i++) chunks.push(encryptChunk(fields.aeadId, contentKey, fields, i, plaintext.subarray(at, Math.min(size, at + chunkSize))));
  const manifest: FirmwareManifest = { ...fields, size, sha512: new Uint8Array(createHash('sha512').update(plaintext).digest()), chunkHashes: chunks.map(sha256) };
  const bytes = encodeManifest(manifest);
  const digest = manifestDigest(bytes);
  const signatures = signaturesToJson(f.signers.map((k) => signWith(k.seed, bytes, MANIFEST_CONTEXT)));
  return {
    id: Buffer.from(digest).toString('hex'), manifest, bytes, plaintext, chunks,
    wrapFor: (kemPublicKey, publisher) => wrapContentKey({
      manifestDigest: digest, contentKey, counter: f.counter, recipient: { kemId: KEM.XWING, publicKey: kemPublicKey }, sender: { seed: publisher.seed, publicKey: publisher.publicKey },
    }),
    request: (targets, publisher, options = {}) => ({
      manifest: Buffer.from(bytes).toString('base64'), signatures, publisherPublicKey: Buffer.from(publisher.publicKey).toString('base64'), targets,
      ...(options.first ? { first: options.first } : {}), ...(options.roots ? { roots: options.roots } : {}),
    }),
  };
}

/** Publishes `release` to `targets` through `operator`: manifest, chunks, a wrap per target. */
export async function publishRelease(operator: RelayClient, release: Release, targets: { did: string; kemPublicKey: Uint8Array }[], publisher: PrivateKey, options: { first?: number; roots?: SignedRootJson[] } = {}): Promise<RolloutBody> {
  const rollout = await operator.publishFirmware(release.request(targets.map((t) => t.did), publisher, options));
  for (const [i, chunk] of release.chunks.entries()) await operator.putFirmwareChunk(release.id, i, chunk);
  for (const t of targets) await operator.putFirmwareWrap(release.id, t.did, release.wrapFor(t.kemPublicKey, publisher));
  return rollout;
}
