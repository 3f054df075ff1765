/**
 * A gateway's side of a firmware rollout as protocol code, for relay and CLI tests (the agent's own
 * client is tested with the agent): the offer verified against the root, the key unwrapped, every
 * chunk checked against the manifest and opened, and a signed receipt.
 */
import assert from 'node:assert/strict';
import type { Device } from './relay.js';
import { KEM } from '../../protocol/envelope/constants.js';
import {
  encodeReceipt, manifestDigest, openChunk, signedManifestFromJson, signReceipt, unwrapContentKey, verifyManifest, type FirmwareRoot, type Outcome,
} from '../../protocol/firmware/index.js';

/** The plaintext of package `id`, as this device may see it; each chunk's ETag must name the package and index. */
export async function downloadAsDevice(device: Device, id: string, root: FirmwareRoot): Promise<Uint8Array> {
  const offer = await device.client.firmwareOffer(id);
  const signed = signedManifestFromJson({ manifest: offer.manifest, signatures: offer.signatures });
  const manifest = verifyManifest(signed, root);
  const key = unwrapContentKey(new Uint8Array(Buffer.from(offer.keyWrap, 'base64')), { kemId: KEM.XWING, seed: device.kem.seed, publicKey: device.kem.publicKey },
    new Uint8Array(Buffer.from(offer.publisherPublicKey, 'base64')), manifestDigest(signed.bytes));
  const parts = [];
  for (let i = 0; i < offer.chunks; i++) {
    const { bytes, etag } = await device.client.firmwareChunk(id, i);
    assert.equal(etag, `"${id}.${i}"`);
    parts.push(openChunk(manifest, key, i, bytes));
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Sends this device's signed receipt for package `id`. */
export function sendReceipt(device: Device, id: string, outcome: Outcome, reason = '') {
  const bytes = encodeReceipt({ did: device.did, manifestDigest: new Uint8Array(Buffer.from(id, 'hex')), outcome, runningVersion: '1.0.0', runningCounter: 1, time: Date.now(), reason });
  return device.client.firmwareReceipt(id, bytes, signReceipt(device.signing.seed, bytes));
}
