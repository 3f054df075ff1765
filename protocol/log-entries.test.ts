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

test('an approved registration (0x05) carries the fleet statement and signature; a mismatched one is refused', async () => {
  const { generatePrivateKey, keyId } = await import('./keys.js');
  const { didFromSigningKey } = await import('./did.js');
  const { encodeEnrollmentStatement } = await import('./enrollment.js');
  const signing = generatePrivateKey('ML-DSA-65');
  const kem = generatePrivateKey('X-Wing');
  const did = didFromSigningKey(signing.publicKey);
  const statement = encodeEnrollmentStatement({ did, signingPublicKey: signing.publicKey, kemAlg: 'X-Wing', kemPublicKey: kem.publicKey, apiKeyId: 'a1b2c3d4e5f6', notBefore: 0, notAfter: 1 });
  const signature = new Uint8Array(randomBytes(3309));
  const reg = { type: 'registration' as const, signingKeyId: keyId('ML-DSA-65', signing.publicKey), kemKeyId: keyId('X-Wing', kem.publicKey), did, approval: { statement, signature } };
  const data = encodeLogEntry(reg);
  assert.equal(data[0], 0x05);
  assert.deepEqual(decodeLogEntry(data), reg);
  // The same device without approval is the old 0x02 leaf, still readable.
  const { approval: _, ...plain } = reg;
  assert.equal(encodeLogEntry(plain)[0], 0x02);
  assert.deepEqual(decodeLogEntry(encodeLogEntry(plain)), plain);
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof LogEntryError);
      return err.code;
    }
    return 'no error';
  };
  assert.equal(code(() => encodeLogEntry({ ...reg, kemKeyId: h() })), 'bad_approval');
  assert.equal(code(() => encodeLogEntry({ ...reg, approval: { statement, signature: signature.subarray(1) } })), 'bad_approval');
  assert.equal(code(() => encodeLogEntry({ ...reg, approval: { statement: statement.subarray(1), signature } })), 'bad_approval');
  assert.equal(code(() => decodeLogEntry(data.subarray(0, 70))), 'bad_length');
  assert.equal(code(() => decodeLogEntry(data.subarray(0, data.length - did.length))), 'bad_length');
  const tampered = data.slice();
  tampered[1]! ^= 1; // the leaf's signing key id no longer matches the statement
  assert.equal(code(() => decodeLogEntry(tampered)), 'bad_approval');
});

test('an install receipt (0x06) carries the receipt and the device signature; malformed ones are refused', async () => {
  const { encodeReceipt } = await import('./firmware/receipt.js');
  const receipt = encodeReceipt({ did: 'did:ghostpipe:example', manifestDigest: h(), outcome: 'installed', runningVersion: '2.0.0', runningCounter: 9, time: 1, reason: '' });
  const signature = new Uint8Array(3309).fill(7);
  const data = encodeLogEntry({ type: 'receipt', receipt, signature });
  assert.equal(data[0], 0x06);
  assert.equal(data.length, 1 + 2 + receipt.length + 2 + 3309);
  assert.deepEqual(decodeLogEntry(data), { type: 'receipt', receipt, signature });
  const codeOf = (bytes: Uint8Array) => { try { decodeLogEntry(bytes); return 'no error'; } catch (err) { assert.ok(err instanceof LogEntryError); return err.code; } };
  assert.equal(codeOf(data.subarray(0, data.length - 1)), 'bad_length');
  assert.equal(codeOf(new Uint8Array([...data, 0])), 'bad_length');
  const badReceipt = data.slice(); badReceipt[3] = 0; // receipt magic
  assert.equal(codeOf(badReceipt), 'bad_receipt');
  assert.throws(() => encodeLogEntry({ type: 'receipt', receipt, signature: signature.subarray(1) }), /3309 bytes/);
});
