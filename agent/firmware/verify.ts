/**
 * What a gateway checks in a relay's offer before it downloads a byte, in the order of TUF's
 * client workflow: the root rotations from the root it trusts, the manifest's threshold of
 * signatures under the newest root, that the manifest is for this device and newer than what
 * runs (group, hardware, release counter, expiry), and that the relay served the manifest the
 * package id names. The log inclusion (async, over the network) and the key unwrap follow in
 * updater.ts. Pure: every refusal is a FirmwareRefusal whose code goes into the receipt.
 */
import { MAX_ROOT_CHAIN, type FirmwareOfferBody } from '../../protocol/api/firmware.js';
import {
  FirmwareError, chainRoots, checkManifestFor, manifestDigest, signedManifestFromJson, signedRootFromJson, verifyManifest,
  type DeviceView, type FirmwareErrorCode, type FirmwareManifest, type FirmwareRoot, type SignedManifest, type SignedRoot,
} from '../../protocol/firmware/index.js';

/** Why a gateway refuses a package: the protocol's codes, and what only an offer can get wrong. */
export type RefusalCode = FirmwareErrorCode | 'wrong_package' | 'bad_offer' | 'log_conflict' | 'bad_digest';

export class FirmwareRefusal extends Error {
  constructor(readonly code: RefusalCode, message: string) {
    super(message);
    this.name = 'FirmwareRefusal';
  }
}

export interface CheckedOffer {
  signed: SignedManifest;
  manifest: FirmwareManifest;
  /** The manifest's bytes as served (their digest is the id). */
  manifestBytes: Uint8Array;
  digest: Uint8Array;
  /** The root the manifest was checked with (the trusted one, or the newest rotation). */
  root: FirmwareRoot;
  /** The newest rotation when the offer carried ones past the trusted root: the caller persists it. */
  rotatedTo?: SignedRoot;
}

/** Checks an offer (the relay's JSON, unchecked) for package `id`; throws FirmwareRefusal. */
export function checkOffer(id: string, offer: unknown, trusted: FirmwareRoot, device: DeviceView): CheckedOffer {
  const o = checkShape(offer);
  // The id first: it is the digest of the bytes, so a changed byte is caught before any parsing.
  const manifestBytes = new Uint8Array(Buffer.from(o.manifest, 'base64'));
  const digest = manifestDigest(manifestBytes);
  if (Buffer.from(digest).toString('hex') !== id) throw new FirmwareRefusal('wrong_package', `the relay served another manifest under package id ${id} (its digest is ${Buffer.from(digest).toString('hex')})`);
  try {
    const signed = signedManifestFromJson({ manifest: o.manifest, signatures: o.signatures });
    if (o.chunks !== signed.manifest.chunkHashes.length) throw new FirmwareRefusal('bad_offer', `the offer counts ${o.chunks} chunks; the manifest lists ${signed.manifest.chunkHashes.length}`);
    const rotations = o.roots.map((r, i) => {
      try {
        return signedRootFromJson(r);
      } catch (err) {
        throw new FirmwareRefusal('bad_offer', `roots[${i}]: ${(err as Error).message}`);
      }
    });
    // Rotations the device already walked are skipped; the rest must continue from its root.
    const newer = rotations.filter((r) => r.root.version > trusted.version);
    const root = chainRoots(trusted, newer);
    const manifest = verifyManifest(signed, root);
    checkManifestFor(manifest, device);
    return { signed, manifest, manifestBytes, digest, root, ...(newer.length > 0 ? { rotatedTo: newer.at(-1)! } : {}) };
  } catch (err) {
    if (err instanceof FirmwareError) throw new FirmwareRefusal(err.code, err.message);
    throw err;
  }
}

function checkShape(offer: unknown): Pick<FirmwareOfferBody, 'manifest' | 'signatures' | 'chunks' | 'roots'> {
  const o = offer as Partial<FirmwareOfferBody> | null;
  const problem = typeof o !== 'object' || o === null ? 'not a JSON object'
    : typeof o.manifest !== 'string' ? 'no manifest'
    : !Number.isSafeInteger(o.chunks) ? 'no chunk count'
    : o.roots !== undefined && (!Array.isArray(o.roots) || o.roots.length > MAX_ROOT_CHAIN) ? `roots is not a list of at most ${MAX_ROOT_CHAIN}`
    : undefined;
  if (problem !== undefined) throw new FirmwareRefusal('bad_offer', `the relay's offer is malformed: ${problem}`);
  return { manifest: o!.manifest!, signatures: o!.signatures!, chunks: o!.chunks!, roots: o!.roots ?? [] };
}
