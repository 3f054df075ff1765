/** protocol/firmware/manifest.ts: canonical encoding, threshold signatures, and what a device checks. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey } from '../keys.js';
import { FirmwareError } from './errors.js';
import { thrownCode } from '../../test/helpers/assert-code.js';
import {
  checkManifestFor, decodeManifest, encodeManifest, encryptedChunkLength, MANIFEST_CONTEXT, signedManifestFromJson, signedManifestToJson, verifyManifest,
  type FirmwareManifest,
} from './manifest.js';
import { ROOT_CONTEXT } from './root.js';
import { signWith } from './signatures.js';

const release = generatePrivateKey('ML-DSA-65');
const other = generatePrivateKey('ML-DSA-65');
const root = { version: 1, threshold: 1, keys: [release.publicKey] };
const NOW = Date.UTC(2027, 0, 1);
const manifest: FirmwareManifest = {
  name: 'gateway-fw', version: '1.4.0-rc.1+build.7', counter: 7, group: 'line-a', hardware: ['rpi3b-plus', 'rpi4b'],
  size: 5000, sha512: new Uint8Array(64).fill(1), aeadId: 0x0002, chunkSize: 4096,
  chunkHashes: [new Uint8Array(32).fill(2), new Uint8Array(32).fill(3)], expires: NOW + 86_400_000, installType: 'command', installHint: 'reboot after',
};
const device = { groups: ['line-a'], hardwareId: 'rpi3b-plus', installedCounter: 6, now: NOW };

const code = (fn: () => unknown): string => thrownCode(fn, FirmwareError);

test('a manifest round-trips; its header and chunk lengths are as documented', () => {
  const bytes = encodeManifest(manifest);
  assert.deepEqual(decodeManifest(bytes), manifest);
  assert.equal(Buffer.from(bytes.subarray(0, 5)).toString('hex'), '4750464d01');
  assert.equal(encryptedChunkLength(manifest, 0), 4096 + 16);
  assert.equal(encryptedChunkLength(manifest, 1), 5000 - 4096 + 16);
});

test('one value, one encoding: unsorted hardware ids, wrong chunk counts, bad semver are refused', () => {
  assert.equal(code(() => encodeManifest({ ...manifest, hardware: ['rpi4b', 'rpi3b+'] })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, hardware: ['rpi4b', 'rpi4b'] })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, chunkHashes: [new Uint8Array(32)] })), 'bad_field');
  for (const version of ['1.4', '01.4.0', 'v1.4.0', '1.4.0-', '1.4.0+']) assert.equal(code(() => encodeManifest({ ...manifest, version })), 'bad_field', version);
  assert.equal(code(() => encodeManifest({ ...manifest, name: 'Gateway' })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, aeadId: 1 })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, chunkSize: 1000 })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, counter: 0 })), 'bad_field');
  assert.equal(code(() => encodeManifest({ ...manifest, installHint: 'x'.repeat(1025) })), 'bad_field');
});

test('truncated, trailing and lying bytes are refused with a reason', () => {
  const bytes = encodeManifest(manifest);
  for (let cut = 0; cut < bytes.length; cut += 7) assert.equal(code(() => decodeManifest(bytes.subarray(0, cut))), 'truncated', `cut at ${cut}`);
  assert.equal(code(() => decodeManifest(new Uint8Array([...bytes, 0]))), 'trailing_bytes');
  const at = bytes.indexOf(0x10, 100); // the u32 chunk size 0x00001000
  const lying = bytes.slice(); lying[at] = 0x20; // chunk size 8192: one chunk expected, two listed
  assert.equal(code(() => decodeManifest(lying)), 'bad_field');
  const huge = bytes.slice(); new DataView(huge.buffer).setUint32(at + 3, 0xffffffff); // the chunk count
  assert.equal(code(() => decodeManifest(huge)), 'truncated');
});

test('threshold signatures by the root: unknown key and tampered bytes refused; JSON round-trips', () => {
  const bytes = encodeManifest(manifest);
  const good = { bytes, manifest, signatures: [signWith(release.seed, bytes, MANIFEST_CONTEXT)] };
  assert.equal(verifyManifest(signedManifestFromJson(JSON.parse(JSON.stringify(signedManifestToJson(good)))), root).counter, 7);
  assert.equal(code(() => verifyManifest({ ...good, signatures: [signWith(other.seed, bytes, MANIFEST_CONTEXT)] }, root)), 'below_threshold');
  assert.equal(code(() => verifyManifest({ ...good, signatures: [] }, root)), 'below_threshold');
  const tampered = encodeManifest({ ...manifest, group: 'line-b' });
  assert.equal(code(() => verifyManifest({ bytes: tampered, manifest: decodeManifest(tampered), signatures: good.signatures }, root)), 'bad_signature');
  // a root signature over the same bytes is not a manifest signature
  assert.equal(code(() => verifyManifest({ ...good, signatures: [signWith(release.seed, bytes, ROOT_CONTEXT)] }, root)), 'bad_signature');
});

test('a genuine manifest is still refused for the wrong group, hardware, counter or time', () => {
  assert.equal(code(() => checkManifestFor(manifest, device)), 'no error');
  assert.equal(code(() => checkManifestFor(manifest, { ...device, groups: ['line-b'] })), 'wrong_group');
  assert.equal(code(() => checkManifestFor(manifest, { ...device, hardwareId: 'x86' })), 'wrong_hardware');
  assert.equal(code(() => checkManifestFor(manifest, { ...device, installedCounter: 7 })), 'rollback');
  assert.equal(code(() => checkManifestFor(manifest, { ...device, installedCounter: 9 })), 'rollback');
  assert.equal(code(() => checkManifestFor(manifest, { ...device, now: manifest.expires })), 'expired');
});

test('the example of docs/protocol/firmware.md, byte for byte', () => {
  const example: FirmwareManifest = {
    name: 'gw-fw', version: '1.2.0', counter: 3, group: 'line-a', hardware: ['rpi3b'], size: 5000, sha512: new Uint8Array(64).fill(0xaa), aeadId: 0x0002,
    chunkSize: 4096, chunkHashes: [new Uint8Array(32).fill(0x11), new Uint8Array(32).fill(0x22)], expires: Date.UTC(2027, 0, 1), installType: 'command', installHint: 'reboot',
  };
  const documented = '4750464d01' + '05' + '67772d6677' + '05' + '312e322e30' + '0000000000000003' + '06' + '6c696e652d61' + '01' + '05' + '7270693362'
    + '0000000000001388' + 'aa'.repeat(64) + '0002' + '00001000' + '00000002' + '11'.repeat(32) + '22'.repeat(32) + '000001a2ce8bd400' + '07' + '636f6d6d616e64' + '0006' + '7265626f6f74';
  assert.equal(Buffer.from(encodeManifest(example)).toString('hex'), documented);
  assert.equal(documented.length / 2, 209);
});
