/** protocol/firmware/receipt.ts: a device's signed install receipt. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { didFromSigningKey } from '../did.js';
import { generatePrivateKey } from '../keys.js';
import { FirmwareError } from './errors.js';
import { thrownCode } from '../../test/helpers/assert-code.js';
import { MAX_RECEIPT_BYTES, decodeReceipt, encodeReceipt, signReceipt, verifyReceipt, type InstallReceipt } from './receipt.js';

const device = generatePrivateKey('ML-DSA-65');
const other = generatePrivateKey('ML-DSA-65');
const receipt: InstallReceipt = {
  did: didFromSigningKey(device.publicKey), manifestDigest: new Uint8Array(32).fill(9), outcome: 'rolled_back',
  runningVersion: '1.3.2', runningCounter: 6, time: Date.UTC(2027, 0, 1), reason: 'health command exited 1',
};

const code = (fn: () => unknown): string => thrownCode(fn, FirmwareError);

test('a receipt round-trips and verifies with its device key only', () => {
  const bytes = encodeReceipt(receipt);
  assert.deepEqual(decodeReceipt(bytes), receipt);
  const signature = signReceipt(device.seed, bytes);
  assert.deepEqual(verifyReceipt(bytes, signature, device.publicKey), receipt);
  assert.equal(code(() => verifyReceipt(bytes, signature, other.publicKey)), 'bad_signature');
  const edited = encodeReceipt({ ...receipt, outcome: 'installed' });
  assert.equal(code(() => verifyReceipt(edited, signature, device.publicKey)), 'bad_signature');
  assert.equal(code(() => signReceipt(other.seed, bytes)), 'bad_field');
});

test('malformed receipts name the problem', () => {
  const bytes = encodeReceipt(receipt);
  for (let cut = 0; cut < bytes.length; cut++) assert.notEqual(code(() => decodeReceipt(bytes.subarray(0, cut))), 'no error');
  assert.equal(code(() => decodeReceipt(new Uint8Array([...bytes, 1]))), 'trailing_bytes');
  const badOutcome = bytes.slice(); badOutcome[5 + 1 + receipt.did.length + 32] = 9;
  assert.equal(code(() => decodeReceipt(badOutcome)), 'bad_field');
  assert.equal(code(() => encodeReceipt({ ...receipt, reason: 'x'.repeat(513) })), 'bad_field');
});

test('the example of docs/protocol/firmware.md, byte for byte', () => {
  const bytes = encodeReceipt({ did: 'did:ghostpipe:example', manifestDigest: new Uint8Array(32).fill(0x33), outcome: 'installed', runningVersion: '1.2.0', runningCounter: 3, time: Date.UTC(2027, 0, 1), reason: '' });
  const documented = '4750495201' + '15' + '6469643a67686f7374706970653a6578616d706c65' + '33'.repeat(32) + '01' + '05' + '312e322e30' + '0000000000000003' + '000001a2ce8bd400' + '0000';
  assert.equal(Buffer.from(bytes).toString('hex'), documented);
  assert.equal(bytes.length, 84);
});

test('MAX_RECEIPT_BYTES is the size of the largest receipt (the relay\'s body bound)', () => {
  const largest: InstallReceipt = { ...receipt, did: 'd'.repeat(128), runningVersion: '9'.repeat(64), runningCounter: Number.MAX_SAFE_INTEGER, reason: 'é'.repeat(256) };
  assert.equal(encodeReceipt(largest).length, MAX_RECEIPT_BYTES);
  assert.equal(MAX_RECEIPT_BYTES, 762);
});
