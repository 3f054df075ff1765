/**
 * relay/upload.ts and relay/enroll.ts in process, on a RAM-only RelayState (no HTTP): the upload
 * checks run in the order of docs/API.md "Checks, in this order", a refused envelope's buffer is
 * given back, and the audit trail names every refusal by its code.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { silentLogger } from '../common/log.js';
import { ENVELOPE_MEDIA_TYPE, enrollmentMessage, ENROLL_CONTEXT, kemProof } from '../protocol/api/index.js';
import { xwingDecapsulate } from '../protocol/crypto/xwing.js';
import { getProvider } from '../protocol/crypto/provider.js';
import { CONTENT_TYPE, DEFAULT_BUCKETS, KEM, envelopeLength, sealEnvelope } from '../protocol/envelope/index.js';
import { generatePrivateKey, keyIdHex, type PrivateKey } from '../protocol/keys.js';
import type { KeyRecord } from './api-keys.js';
import { defaultRelayConfig } from './config.js';
import { Enrollment } from './enroll.js';
import { decodeHeaderPrefix } from './envelope-check.js';
import { ENTRY_OVERHEAD } from './store.js';
import { Refusal } from './refusal.js';
import { RelayState } from './state.js';
import { Uploads, type Admitted } from './upload.js';

const MiB = 1024 * 1024;
/** Length of every envelope seal() makes here (100 bytes of plaintext: the smallest bucket). */
const SEALED = envelopeLength(DEFAULT_BUCKETS[0]!, KEM.XWING);
const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-upload-test-'));
const state = await RelayState.open({
  ...defaultRelayConfig(), ramOnly: true, operatorKeyFile: path.join(dir, 'operator.key'), memoryCap: MiB,
  plans: {
    small: { quota: 0, period: 86_400_000, ratePerMinute: 60, burst: 1000, maxBlob: 5 * MiB, maxHeldBytes: 64 * MiB, maxInFlightBytes: 16 * MiB, maxConcurrentUploads: 4 },
    burst2: { quota: 0, period: 86_400_000, ratePerMinute: 1, burst: 2, maxBlob: 5 * MiB, maxHeldBytes: 64 * MiB, maxInFlightBytes: 16 * MiB, maxConcurrentUploads: 4 },
    quota1: { quota: 1, period: 86_400_000, ratePerMinute: 60, burst: 1000, maxBlob: 5 * MiB, maxHeldBytes: 64 * MiB, maxInFlightBytes: 16 * MiB, maxConcurrentUploads: 4 },
    // Room for two held envelopes and one and a half in flight; two uploads at once.
    share: {
      quota: 0, period: 86_400_000, ratePerMinute: 60, burst: 1000, maxBlob: 5 * MiB,
      maxHeldBytes: 2 * (SEALED + ENTRY_OVERHEAD) + SEALED / 2, maxInFlightBytes: SEALED + SEALED / 2, maxConcurrentUploads: 2,
    },
  },
}, silentLogger());
after(async () => {
  await state.close();
  await rm(dir, { recursive: true, force: true });
});
const uploads = new Uploads(state);
const enrollment = new Enrollment(state, silentLogger());
const recipient = generatePrivateKey('X-Wing');

const issue = (plan: string): KeyRecord => state.keys.issue('device', plan, `device on ${plan}`).record;
const envelopeRequest = (contentLength: number | undefined) => ({ mediaType: ENVELOPE_MEDIA_TYPE, contentLength });

function code(outcome: unknown): string {
  assert.ok(outcome instanceof Refusal, `expected a refusal, got ${JSON.stringify(outcome)}`);
  return outcome.code;
}

async function auditOutcomes(key: KeyRecord): Promise<string[]> {
  const exported = await state.audit.export({ key: key.id }, 1000);
  const outcomes: string[] = [];
  for await (const event of exported.rows()) if (event.event === 'upload') outcomes.push(event.outcome);
  await exported.close();
  return outcomes;
}

function seal(signer: PrivateKey, plaintext = new Uint8Array(100)): Uint8Array {
  return sealEnvelope({
    plaintext, recipient: { kemId: KEM.XWING, publicKey: recipient.publicKey }, sender: { seed: signer.seed, publicKey: signer.publicKey },
    streamId: 1, sequence: 1n, contentType: CONTENT_TYPE.READINGS,
  });
}

/** As the HTTP layer hands it over: in a buffer reserved in the store. */
function received(bytes: Uint8Array): { bytes: Buffer; sha256: Uint8Array } {
  const buffer = state.store.allocate(bytes.length)!;
  buffer.set(bytes);
  return { bytes: buffer, sha256: createHash('sha256').update(bytes).digest() };
}

async function enroll(key: KeyRecord, signing: PrivateKey): Promise<void> {
  const kem = generatePrivateKey('X-Wing');
  const issued = enrollment.challenge(key, kem.publicKey);
  assert.ok(!(issued instanceof Refusal));
  const ct = new Uint8Array(Buffer.from(issued.kemCiphertext, 'base64'));
  const proof = kemProof(issued.challenge, ct, xwingDecapsulate(kem.seed, ct, getProvider()));
  const signature = getProvider().mlDsa65.sign(signing.seed, enrollmentMessage(issued.challenge, signing.publicKey, kem.publicKey, proof), ENROLL_CONTEXT);
  const registered = await enrollment.register(key, { signingPublicKey: signing.publicKey, kemPublicKey: kem.publicKey, challenge: issued.challenge, kemProof: proof, signature });
  assert.ok(!(registered instanceof Refusal) && registered.created);
}

test('before the body: rate, then quota, then media type, then enrolled, then declared size, then memory', async () => {
  const rated = issue('burst2');
  assert.equal(code(uploads.admit(rated, { mediaType: 'text/plain', contentLength: 10 * MiB })), 'unsupported_media_type');
  assert.equal(code(uploads.admit(rated, envelopeRequest(10 * MiB))), 'device_not_enrolled', 'an unenrolled key is refused before its size is looked at');
  const limited = uploads.admit(rated, { mediaType: 'text/plain', contentLength: 10 * MiB });
  assert.equal(code(limited), 'rate_limited', 'the rate comes before every other check');
  assert.ok((limited as Refusal).retryAfterMs! > 0);

  const spent = issue('quota1');
  state.keys.countTransfer(spent);
  const quota = uploads.admit(spent, { mediaType: 'text/plain', contentLength: 10 * MiB });
  assert.equal(code(quota), 'quota_exceeded', 'the quota comes before the media type and the size');
  assert.equal((quota as Refusal).status, 402);

  const key = issue('small');
  await enroll(key, generatePrivateKey('ML-DSA-65'));
  assert.equal(code(uploads.admit(key, envelopeRequest(10 * MiB))), 'too_large');
  const full = uploads.admit(key, envelopeRequest(2 * MiB)); // within the plan, beyond the 1 MiB memory cap
  assert.equal(code(full), 'memory_full');
  assert.equal((full as Refusal).retryAfterMs, state.retryAfterMs());
  const admitted = uploads.admit(key, envelopeRequest(4096));
  assert.ok(!(admitted instanceof Refusal) && admitted.limit > 5 * MiB, 'the largest envelope of the 5 MiB bucket');
  const admittedUnsized = uploads.admit(key, envelopeRequest(undefined));
  assert.ok(!(admittedUnsized instanceof Refusal));

  assert.deepEqual(await auditOutcomes(rated), ['unsupported_media_type', 'device_not_enrolled', 'rate_limited']);
  assert.deepEqual(await auditOutcomes(spent), ['quota_exceeded']);
  assert.deepEqual(await auditOutcomes(key), ['too_large', 'memory_full']);
});

test('after the body: well-formed, enrolled, signer, signature, not a duplicate; refused buffers are given back', async () => {
  const device = generatePrivateKey('ML-DSA-65');
  const key = issue('small');
  // Built by hand: admit() itself refuses an unenrolled key; accept() checks again on the whole envelope.
  const admitted: Admitted = { limit: state.plan(key).envelopeLimit, plan: state.plan(key).plan };
  const envelope = seal(device);
  const before = state.store.inFlightBytes;

  assert.equal(code(await uploads.accept(key, admitted, received(new Uint8Array(200).fill(7)))), 'malformed_envelope');
  assert.equal(code(await uploads.accept(key, admitted, received(envelope))), 'device_not_enrolled', 'well-formed comes first, then enrollment');
  await enroll(key, device);
  assert.equal(code(await uploads.accept(key, admitted, received(seal(generatePrivateKey('ML-DSA-65'))))), 'wrong_signer');
  const forged = Uint8Array.from(envelope);
  forged[forged.length - 1]! ^= 1; // in the signature
  assert.equal(code(await uploads.accept(key, admitted, received(forged))), 'bad_signature');
  assert.equal(state.store.inFlightBytes, before, 'every refused buffer was discarded');

  const stored = await uploads.accept(key, admitted, received(envelope));
  assert.ok(!(stored instanceof Refusal));
  assert.deepEqual(stored, { id: createHash('sha256').update(envelope).digest('hex'), leafIndex: stored.leafIndex, size: envelope.length });
  assert.ok(stored.leafIndex >= 1, 'after the registration leaf');
  assert.equal(state.store.status(stored.id, key.id), 'pending');
  assert.equal(key.usage.transfers, 1);
  assert.equal(code(await uploads.accept(key, admitted, received(envelope))), 'duplicate');
  assert.equal(key.usage.transfers, 1, 'a refused upload does not count');

  state.devices.get(key.did!)!.revokedAt = Date.now();
  assert.equal(code(await uploads.accept(key, admitted, received(seal(generatePrivateKey('ML-DSA-65'))))), 'device_revoked', 'revocation comes before the signer check');

  assert.deepEqual(await auditOutcomes(key), ['malformed_envelope', 'device_not_enrolled', 'wrong_signer', 'bad_signature', 'ok', 'duplicate', 'device_revoked']);
});

test('the header checks run before anything is reserved: signer, a listed recipient, the key\'s share; uploads in progress per key', async () => {
  const device = generatePrivateKey('ML-DSA-65');
  const key = issue('share');
  await enroll(key, device);
  const admitted = uploads.admit(key, envelopeRequest(undefined));
  assert.ok(!(admitted instanceof Refusal));
  const header = (bytes: Uint8Array) => decodeHeaderPrefix(bytes.subarray(0, 109))!;
  const before = state.store.inFlightBytes;

  assert.equal(code(uploads.reserve(key, admitted, header(seal(device)))), 'unknown_recipient', 'no receiver key lists it yet');
  state.keys.issue('receiver', 'small', 'reader', [keyIdHex('X-Wing', recipient.publicKey)]);
  assert.equal(code(uploads.reserve(key, admitted, header(seal(generatePrivateKey('ML-DSA-65'))))), 'wrong_signer');
  assert.equal(state.store.inFlightBytes, before, 'nothing reserved for a refused header');
  assert.deepEqual(state.store.usage(key.id), { heldBytes: 0, inFlightBytes: 0 });

  const stored: Uint8Array[] = [];
  for (let i = 0; i < 2; i++) {
    const envelope = seal(device, new Uint8Array(100).fill(i));
    const buffer = uploads.reserve(key, admitted, header(envelope));
    assert.ok(buffer instanceof Buffer);
    assert.deepEqual(state.store.usage(key.id), { heldBytes: i * (SEALED + ENTRY_OVERHEAD), inFlightBytes: SEALED });
    if (i === 0) assert.equal(code(uploads.reserve(key, admitted, header(envelope))), 'too_many_uploads', 'a second body in flight passes maxInFlightBytes');
    buffer.set(envelope);
    const accepted = await uploads.accept(key, admitted, { bytes: buffer, sha256: createHash('sha256').update(envelope).digest() });
    assert.ok(!(accepted instanceof Refusal), JSON.stringify(accepted));
    stored.push(envelope);
  }
  assert.deepEqual(state.store.usage(key.id), { heldBytes: 2 * (SEALED + ENTRY_OVERHEAD), inFlightBytes: 0 });
  const full = uploads.reserve(key, admitted, header(seal(device)));
  assert.equal(code(full), 'key_memory_full', 'a third held envelope passes maxHeldBytes');
  assert.equal((full as Refusal).status, 507);

  state.keys.reserveTransfer(key);
  state.keys.reserveTransfer(key);
  assert.equal(code(uploads.admit(key, envelopeRequest(undefined))), 'too_many_uploads', 'two uploads in progress are this plan\'s limit');
  state.keys.releaseTransfer(key);
  state.keys.releaseTransfer(key);

  assert.deepEqual(state.store.purge(key.id), { envelopes: 2, bytes: 2 * (SEALED + ENTRY_OVERHEAD) });
  assert.deepEqual(state.store.usage(key.id), { heldBytes: 0, inFlightBytes: 0 });
  assert.equal(state.store.inFlightBytes, before);
});
