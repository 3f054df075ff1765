/** protocol/firmware/chunks.ts: every chunk checked against the manifest, then opened with its identity. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { checkChunk, encryptChunk, openChunk } from './chunks.js';
import { sha256 } from '../bytes.js';
import { FirmwareError } from './errors.js';
import { thrownCode } from '../../test/helpers/assert-code.js';
import { plainChunkLength, type FirmwareManifest } from './manifest.js';

function pack(plaintext: Uint8Array, version: string, counter: number, aeadId = 0x0002) {
  const key = new Uint8Array(randomBytes(32));
  const base = { name: 'fw', version, counter, group: 'g', hardware: ['hw'], size: plaintext.length, sha512: new Uint8Array(64), aeadId, chunkSize: 4096, expires: 1, installType: 'command', installHint: '' };
  const chunks: Uint8Array[] = [];
  for (let i = 0; i * 4096 < plaintext.length; i++) chunks.push(encryptChunk(aeadId, key, base, i, plaintext.subarray(i * 4096, i * 4096 + plainChunkLength(base, i))));
  const manifest: FirmwareManifest = { ...base, chunkHashes: chunks.map(sha256) };
  return { key, manifest, chunks };
}

const code = (fn: () => unknown): string => thrownCode(fn, FirmwareError);

test('chunks open in order to the plaintext, with either AEAD', () => {
  for (const aead of [0x0002, 0x0003]) {
    const plaintext = new Uint8Array(randomBytes(10_000));
    const p = pack(plaintext, '1.0.0', 1, aead);
    assert.equal(p.chunks.length, 3);
    const opened = Buffer.concat(p.chunks.map((c, i) => openChunk(p.manifest, p.key, i, c)));
    assert.deepEqual(new Uint8Array(opened), plaintext);
  }
});

test('corrupted, swapped, truncated, extended or out-of-range chunks are bad_chunk', () => {
  const p = pack(new Uint8Array(randomBytes(10_000)), '1.0.0', 1);
  const flipped = p.chunks[1]!.slice(); flipped[7]! ^= 1;
  assert.equal(code(() => openChunk(p.manifest, p.key, 1, flipped)), 'bad_chunk');
  assert.equal(code(() => openChunk(p.manifest, p.key, 0, p.chunks[1]!)), 'bad_chunk');
  assert.equal(code(() => checkChunk(p.manifest, 2, p.chunks[2]!.subarray(1))), 'bad_chunk');
  assert.equal(code(() => checkChunk(p.manifest, 2, new Uint8Array([...p.chunks[2]!, 0]))), 'bad_chunk');
  assert.equal(code(() => checkChunk(p.manifest, 3, p.chunks[2]!)), 'bad_chunk');
  assert.equal(code(() => checkChunk(p.manifest, -1, p.chunks[0]!)), 'bad_chunk');
});

test('mix-and-match: a chunk of another release does not open even under a manifest that lists it', () => {
  const plaintext = new Uint8Array(randomBytes(8192));
  const v1 = pack(plaintext, '1.0.0', 1);
  // The same key and position, another release: the AAD differs, so the tag fails.
  const v2chunk = encryptChunk(0x0002, v1.key, { name: 'fw', version: '1.0.1', counter: 2 }, 0, plaintext.subarray(0, 4096));
  const forged = { ...v1.manifest, chunkHashes: [sha256(v2chunk), v1.manifest.chunkHashes[1]!] };
  assert.equal(code(() => openChunk(forged, v1.key, 0, v2chunk)), 'wrong_key');
  assert.equal(code(() => openChunk(v1.manifest, new Uint8Array(32), 0, v1.chunks[0]!)), 'wrong_key');
});

test('the nonce and associated data of docs/protocol/firmware.md', async () => {
  const { chunkAad, chunkNonce } = await import('./chunks.js');
  assert.equal(Buffer.from(chunkNonce(1)).toString('hex'), '000000000000000000000001');
  assert.equal(Buffer.from(chunkAad({ name: 'gw-fw', version: '1.2.0', counter: 3 }, 1)).toString('hex'),
    '67686f7374706970652f6669726d776172652d6368756e6b2f7631' + '05' + '67772d6677' + '05' + '312e322e30' + '0000000000000003' + '00000001');
});
