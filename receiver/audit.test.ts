/** receiver/audit.ts ReceiptAudit: install receipts checked with the keys the log's approved registrations carry. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatePrivateKey } from '../protocol/keys.js';
import { didFromSigningKey } from '../protocol/did.js';
import { decodeLogEntry, encodeLogEntry, type LogEntry } from '../protocol/log-entries.js';
import { keyId } from '../protocol/keys.js';
import { encodeReceipt, signReceipt } from '../protocol/firmware/index.js';
import { getProvider } from '../protocol/crypto/provider.js';
import { RECEIPT_CONTEXT } from '../protocol/firmware/receipt.js';
import { approve } from '../test/helpers/relay.js';
import { ReceiptAudit } from './audit.js';

const approved = { signing: generatePrivateKey('ML-DSA-65'), kem: generatePrivateKey('X-Wing') };
const unapproved = generatePrivateKey('ML-DSA-65');
const did = (k: { publicKey: Uint8Array }) => didFromSigningKey(k.publicKey);

function receiptLeaf(signer: Uint8Array, forDid: string, forge = false): Extract<LogEntry, { type: 'receipt' }> {
  const receipt = encodeReceipt({ did: forDid, manifestDigest: new Uint8Array(32).fill(1), outcome: 'installed', runningVersion: '1.0.0', runningCounter: 1, time: 1, reason: '' });
  // A forgery: signed by another key than the device's (signReceipt refuses to, so sign raw).
  const signature = forge ? getProvider().mlDsa65.sign(signer, receipt, RECEIPT_CONTEXT) : signReceipt(signer, receipt);
  return decodeLogEntry(encodeLogEntry({ type: 'receipt', receipt, signature })) as Extract<LogEntry, { type: 'receipt' }>;
}

test('verified with the key of an approved registration, forged when another key signed, unverifiable without a key in the log', () => {
  const audit = new ReceiptAudit();
  // A receipt before its device's registration cannot be checked yet.
  audit.receipt(0, receiptLeaf(approved.signing.seed, did(approved.signing)));
  const registration = { type: 'registration' as const, signingKeyId: keyId('ML-DSA-65', approved.signing.publicKey), kemKeyId: keyId('X-Wing', approved.kem.publicKey), did: did(approved.signing), approval: approve(approved, '0123456789ab') };
  audit.registration(decodeLogEntry(encodeLogEntry(registration)) as Extract<LogEntry, { type: 'registration' }>);
  audit.registration({ type: 'registration', signingKeyId: keyId('ML-DSA-65', unapproved.publicKey), kemKeyId: new Uint8Array(32), did: did(unapproved) });
  audit.receipt(2, receiptLeaf(approved.signing.seed, did(approved.signing)));
  audit.receipt(3, receiptLeaf(unapproved.seed, did(approved.signing), true));
  audit.receipt(4, receiptLeaf(unapproved.seed, did(unapproved)));
  assert.deepEqual(audit.report(), { verified: 1, unverifiable: 2, forged: [{ leafIndex: 3, did: did(approved.signing) }] });
});
