/** protocol/log-entries.ts: encode/decode round trips and malformed input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { LogEntryError, decodeLogEntry, encodeLogEntry, firmwareLeaf, transferLeaf, transferLeafFromHash } from './log-entries.js';
import { leafHash } from './tlog/merkle.js';

const h = () => new Uint8Array(randomBytes(32));

test('transfer leaf is 0x01 || SHA-256(envelope) and its RFC 9162 leaf hash', () => {
  const envelope = new Uint8Array(randomBytes(5000));
  const leaf = transferLeaf(envelope);
  assert.equal(leaf.data.length, 33);
  assert.equal(leaf.data[0], 0x01);
  assert.deepEqual(Buffer.from(leaf.data.subarray(1)), createHash('sha256').update(envelope).digest());
  assert.deepEqual(Buffer.from(leaf.hash), createHash('sha256').update(Buffer.concat([Buffer.of(0), leaf.data])).digest());
  assert.deepEqual(decodeLogEntry(leaf.data), { type: 'transfer', envelopeHash: leaf.envelopeHash });
  assert.deepEqual(firmwareLeaf(envelope).hash, leafHash(firmwareLeaf(envelope).data));
  assert.equal(firmwareLeaf(envelope).data[0], 0x04);
  // The relay hashes while the body streams in: the same leaf from the hash alone.
  assert.deepEqual(transferLeafFromHash(createHash('sha256').update(envelope).digest()), leaf);
});

test('the worked example of docs/protocol/log-entries.md', () => {
  const leaf = transferLeaf(new TextEncoder().encode('abc'));
  assert.equal(Buffer.from(leaf.data).toString('hex'), '01ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(Buffer.from(leaf.hash).toString('hex'), 'c92815fcf19255004da2eadb9811bff92bcc424c7150b01cd64281b71c872f94');
  const registration = encodeLogEntry({ type: 'registration', signingKeyId: new Uint8Array(32).fill(0x11), kemKeyId: new Uint8Array(32).fill(0x22), did: 'did:ghostpipe:example' });
  assert.equal(registration.length, 86);
  assert.equal(Buffer.from(leafHash(registration)).toString('hex'), '6852857de773929f7e4fd464c9af654a1e35cd6a8b6bb97c17a7ec65f45c3f75');
});

test('registration and revocation round trip', () => {
  const reg = { type: 'registration' as const, signingKeyId: h(), kemKeyId: h(), did: 'did:ghostpipe:' + 'a'.repeat(52) };
  assert.deepEqual(decodeLogEntry(encodeLogEntry(reg)), reg);
  const rev = { type: 'revocation' as const, signingKeyId: h(), did: reg.did };
  const data = encodeLogEntry(rev);
  assert.equal(data[0], 0x03);
  assert.deepEqual(decodeLogEntry(data), rev);
});

test('malformed entries are typed errors', () => {
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof LogEntryError);
      return err.code;
    }
    return 'no error';
  };
  assert.equal(code(() => decodeLogEntry(new Uint8Array(0))), 'empty');
  assert.equal(code(() => decodeLogEntry(Uint8Array.of(0x09, 1, 2))), 'unknown_type');
  assert.equal(code(() => decodeLogEntry(new Uint8Array(32).fill(1))), 'bad_length');
  assert.equal(code(() => decodeLogEntry(Uint8Array.of(0x02, ...h()))), 'bad_length');
  assert.equal(code(() => decodeLogEntry(Uint8Array.of(0x03, ...h(), 0xff, 0xfe))), 'bad_did');
  assert.equal(code(() => decodeLogEntry(Uint8Array.of(0x03, ...h(), 0x20))), 'bad_did');
  assert.equal(code(() => encodeLogEntry({ type: 'transfer', envelopeHash: new Uint8Array(31) })), 'bad_length');
  assert.equal(code(() => encodeLogEntry({ type: 'revocation', signingKeyId: h(), did: 'x'.repeat(200) })), 'bad_did');
});
