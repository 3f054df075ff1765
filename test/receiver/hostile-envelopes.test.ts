/**
 * The receiver's own envelope checks, against a hostile relay (issue 11): a relay-in-the-middle
 * (test/helpers/relay-in-the-middle.ts) in front of a real relay serves tampered, misaddressed and
 * badly sealed envelopes to one real `ghostpipe receive`. Envelopes the real relay would refuse at
 * upload (bad signature, unenrolled signer) are swapped into the answer of a lease on an honest
 * carrier envelope; envelopes a compromised device could make (validly signed, badly sealed) are
 * uploaded and served as they are. Each refusal is asserted by code and count, nothing refused
 * reaches the sink, and each is acknowledged. Then the not-yet-logged retry and the late ack, and
 * DID answers that contradict the signed log (delivered from the logged registration).
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cleanupAll, heldFor, makeDevice, makeReceiver, startRelay, stillHeld, type Device, type Receiver as ReceiverKeys, type RelayProcess } from '../helpers/relay.js';
import { killAllChildren, readLines, receiverConfig, receiverSetup, refusals, seal, startReceiverProcess, waitFor, type Proc, type ReceiverSetup } from '../helpers/receiver.js';
import { isAck, isLease, json, startRelayInTheMiddle, withEnvelope, withJson, type Answer, type RelayInTheMiddle } from '../helpers/relay-in-the-middle.js';
import { AEAD, CONTENT_TYPE, envelopeId, FORMAT_VERSION, KDF, KEM, parseEnvelope, sealEnvelope, signatureMessage, SIGNATURE_CONTEXT } from '../../protocol/envelope/index.js';
import { encodeHeader } from '../../protocol/envelope/header.js';
import { hpkeInfo, signerKeyId } from '../../protocol/envelope/seal.js';
import { pad } from '../../protocol/envelope/padding.js';
import { sealBase } from '../../protocol/hpke/hpke.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { encodeFrames } from '../../protocol/frame.js';
import { generatePrivateKey, keyId } from '../../protocol/keys.js';
import { readings } from '../helpers/receiver.js';
import { until } from '../helpers/wait.js';

let relay: RelayProcess;
let proxy: RelayInTheMiddle;
let device: Device;
let setup: ReceiverSetup;
let other: ReceiverKeys;
let proc: Proc;
let sink: string;
let seq = 100n;

/** What the relay-in-the-middle does next; one dispatcher, so the checkpoint capture always runs. */
const lie: {
  /** Replace the next lease answer with these bytes (and leaf index). */
  swap?: { bytes: Uint8Array; leafIndex?: number };
  /** Rewrite the DID record of this DID. */
  did?: { did: string; answer: (a: Answer) => Answer };
  /** Serve the last checkpoint passed before the freeze, whatever the relay signs since. */
  frozen: boolean;
  lastCheckpoint?: Answer;
  /** Hold the next ack until this resolves. */
  holdAck?: () => Promise<void>;
} = { frozen: false };

before(async () => {
  relay = await startRelay({ leaseTimeout: '2s' });
  proxy = await startRelayInTheMiddle(relay.url);
  proxy.rewrite = (method, url, a) => {
    if (method === 'GET' && url === '/v2/log/checkpoint' && a.status === 200) {
      if (lie.frozen) return lie.lastCheckpoint;
      lie.lastCheckpoint = a;
      return undefined;
    }
    if (lie.swap && isLease(method, url) && a.status === 200) {
      const { bytes, leafIndex } = lie.swap;
      lie.swap = undefined;
      return withEnvelope(a, bytes, leafIndex);
    }
    if (lie.did && method === 'GET' && decodeURIComponent(url) === `/v2/did/${lie.did.did}` && a.status === 200) return lie.did.answer(a);
    return undefined;
  };
  proxy.hold = (method, url) => {
    if (!isAck(method, url) || !lie.holdAck) return undefined;
    const hold = lie.holdAck;
    lie.holdAck = undefined;
    return hold();
  };
  device = await makeDevice(relay, 'enterprise');
  setup = await receiverSetup(relay);
  other = await makeReceiver(relay);
  const base = receiverConfig(relay, setup, {}, 'hostile');
  // timeout 20s: the late-ack test holds one ack for a lease timeout (2 s) plus a sweep.
  const config = { ...base, relay: { ...(base['relay'] as object), url: proxy.url, timeout: '20s' } };
  sink = path.join(setup.dir, 'hostile.jsonl');
  proc = await startReceiverProcess(setup, config, 'hostile');
  await waitFor('receiver started', () => proc.logs().some((l) => l['msg'] === 'receiver started'), 30_000, proc.output);
});

after(async () => {
  await killAllChildren();
  await proxy?.close();
  await cleanupAll();
});

const held = () => heldFor(relay, setup.keys.recipientKeyId);
const expected: Record<string, number> = {};

/** Waits for one more refusal `code`, its envelope acknowledged, and asserts the sink is still empty. */
async function refusedOnce(code: string): Promise<Record<string, unknown>> {
  expected[code] = (expected[code] ?? 0) + 1;
  const lines = await waitFor(`refusal ${code} #${expected[code]}`, () => refusals(proc, code).length >= expected[code]! && refusals(proc, code), 30_000, proc.output);
  assert.equal(lines.length, expected[code], `exactly ${expected[code]} ${code}`);
  await waitFor('acknowledged (the relay burns it)', async () => (await held()) === 0, 30_000, proc.output);
  assert.equal(readLines(sink).length, 0, 'nothing refused reaches the sink');
  return lines.at(-1)!;
}

/** An honest carrier envelope whose lease answer carries `bytes` instead. */
async function serveInstead(bytes: Uint8Array, leafIndex?: number): Promise<void> {
  lie.swap = { bytes, ...(leafIndex === undefined ? {} : { leafIndex }) };
  await device.client.upload(seal(device, setup.keys, { seq: ++seq }));
}

/** The same signed bytes, signed again by `seed` (the header still names the original sender). */
function resign(bytes: Uint8Array, seed: Uint8Array): Uint8Array {
  const env = parseEnvelope(bytes);
  const signature = getProvider().mlDsa65.sign(seed, signatureMessage(env.signedBytes), SIGNATURE_CONTEXT);
  return new Uint8Array(Buffer.concat([env.signedBytes, signature]));
}

/** A ciphertext byte flipped (AEAD then fails). */
function flipCiphertext(bytes: Uint8Array): Uint8Array {
  const env = parseEnvelope(bytes);
  const out = Uint8Array.from(bytes);
  out[env.headerBytes.length + env.enc.length + 10]! ^= 0x01;
  return out;
}

/** sealEnvelope with the padded plaintext given as is (sealEnvelope pads correctly, always). */
function sealPadded(padded: Uint8Array, sequence: bigint): Uint8Array {
  const provider = getProvider();
  const header = {
    version: FORMAT_VERSION, kemId: KEM.XWING, kdfId: KDF.HKDF_SHA256, aeadId: AEAD.AES256GCM,
    senderKeyId: signerKeyId(device.signing.publicKey), recipientKeyId: keyId('X-Wing', setup.keys.kem.publicKey),
    streamId: 1, sequence, createdAt: Date.now(), bucket: padded.length, contentType: CONTENT_TYPE.READINGS,
  };
  const headerBytes = encodeHeader(header);
  const { enc, ciphertext } = sealBase({ kemId: header.kemId, kdfId: header.kdfId, aeadId: header.aeadId }, setup.keys.kem.publicKey, hpkeInfo(headerBytes), headerBytes, padded, provider);
  const signed = Buffer.concat([headerBytes, enc, ciphertext]);
  return new Uint8Array(Buffer.concat([signed, provider.mlDsa65.sign(device.signing.seed, signatureMessage(signed), SIGNATURE_CONTEXT)]));
}

const frame = (s: bigint) => encodeFrames([{ sequence: s, time: Date.now(), intervalMs: 15_000, readings: readings(String(s)) }]);

// One receiver serves every test: each starts once the last one's envelope is acknowledged (a
// held ack or a "nothing else held" check would otherwise meet the previous test's envelope).
beforeEach(async () => {
  await until('the relay holds nothing', async () => (await held()) === 0, 30_000);
});

test('bad_signature: a tampered ciphertext, served in place of an honest lease', async () => {
  await serveInstead(flipCiphertext(seal(device, setup.keys, { seq: ++seq })));
  const line = await refusedOnce('bad_signature');
  assert.match(String(line['msg']), /envelope signature does not verify/);
});

test('bad_signature (never wrong_signer): the same bytes re-signed with another key', async () => {
  // The header still names the device; the receiver looks the signer up by that key id, so the
  // signature fails. wrong_signer (header key id != the key checked) cannot come from a relay:
  // the DID is the hash of the key, and trust.ts refuses a DID document for another key first.
  await serveInstead(resign(seal(device, setup.keys, { seq: ++seq }), generatePrivateKey('ML-DSA-65').seed));
  await refusedOnce('bad_signature');
});

test('unenrolled_sender: signed by a device key the relay never enrolled', async () => {
  const stranger = await makeDevice(relay, 'enterprise', { enroll: false });
  await serveInstead(seal(stranger, setup.keys, { seq: 1n }));
  const line = await refusedOnce('unenrolled_sender');
  assert.match(String(line['msg']), /is not enrolled at the relay/);
});

test('bad_registration: a device whose fleet approval ran out (the verified log agrees, so the refusal stands)', async () => {
  const lapsed = await makeDevice(relay, 'enterprise', { approvalValidMs: 1_000 });
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await lapsed.client.upload(seal(lapsed, setup.keys, { seq: 1n }));
  const line = await refusedOnce('bad_registration');
  assert.match(String(line['msg']), /fleet approval refused: the approval of .* expired/);
});

test('wrong_recipient: a logged envelope sealed to another receiver key, served to this one', async () => {
  const misaddressed = seal(device, other, { seq: ++seq });
  const { leafIndex } = await device.client.upload(misaddressed); // logged: its inclusion proof holds
  await serveInstead(misaddressed, leafIndex);
  const line = await refusedOnce('wrong_recipient');
  assert.match(String(line['msg']), /addressed to another recipient key/);
  assert.equal(line['envelope'], envelopeId(misaddressed));
});

test('decrypt_failed: a ciphertext byte flipped and signed again by the device (the relay accepts it)', async () => {
  await device.client.upload(resign(flipCiphertext(seal(device, setup.keys, { seq: ++seq })), device.signing.seed));
  await refusedOnce('decrypt_failed');
});

test('bad_padding: a non-zero fill byte under a valid seal and signature', async () => {
  const padded = pad(frame(++seq), 4096);
  padded[padded.length - 1] = 0x5a;
  await device.client.upload(sealPadded(padded, seq));
  const line = await refusedOnce('bad_padding');
  assert.match(String(line['msg']), /padding fill bytes are not zero/);
});

test('bad_frame: a truncated frame under a valid seal and signature', async () => {
  const s = ++seq;
  const bytes = frame(s);
  await device.client.upload(sealEnvelope({
    plaintext: bytes.subarray(0, bytes.length - 3), recipient: { kemId: KEM.XWING, publicKey: setup.keys.kem.publicKey },
    sender: { seed: device.signing.seed, publicKey: device.signing.publicKey }, streamId: 1, sequence: s, contentType: CONTENT_TYPE.READINGS,
  }));
  const line = await refusedOnce('bad_frame');
  assert.match(String(line['msg']), /^envelope refused: frame /);
});

test('not yet logged: retried (released, not acknowledged) while the checkpoint lags, accepted once logged, delivered once', async () => {
  lie.frozen = true;
  const s = ++seq;
  const env = seal(device, setup.keys, { seq: s });
  await device.client.upload(env);
  const notLogged = () => proc.logs().filter((l) => l['reason'] === 'not_yet_logged' && l['envelope'] === envelopeId(env));
  await waitFor('two not_yet_logged retries', () => notLogged().length >= 2, 30_000, proc.output);
  assert.match(String(notLogged()[0]!['msg']), /^envelope not in a signed checkpoint yet, will retry/);
  assert.equal(readLines(sink).length, 0, 'not opened before its inclusion is proven');
  assert.ok(await stillHeld(device, envelopeId(env)), 'not acknowledged');
  lie.frozen = false;
  await waitFor('delivered', () => readLines(sink).length > 0, 30_000, proc.output);
  await waitFor('acknowledged', async () => (await held()) === 0, 30_000, proc.output);
  assert.deepEqual(readLines(sink).map((l) => l['seq']), [String(s), String(s)], 'its two readings, once');
});

test('late ack: the lease expires while the ack is held; the re-delivery is dropped as a duplicate, the readings arrive once', async () => {
  const before = readLines(sink).length;
  const s = ++seq;
  const env = seal(device, setup.keys, { seq: s });
  const id = envelopeId(env);
  // The ack goes on only once the relay put the envelope back in the queue (its lease expired).
  lie.holdAck = async () => {
    // The relay audits the expiry (a poll of the queue could miss the moment it is pending again).
    await until('the lease expired at the relay', async () => (await relay.operator.audit({ limit: 1000 })).some((e) => e.event === 'lease_expired' && e.envelopeHash === id), 30_000);
  };
  await device.client.upload(env);
  const late = await waitFor('the late-ack warning', () => proc.logs().find((l) => l['reason'] === 'lease_expired' && l['envelope'] === id), 30_000, proc.output);
  assert.match(String(late['msg']), /^lease expired before the acknowledgement/);
  await waitFor('the re-delivery dropped as a duplicate', () => proc.logs().some((l) => l['msg'] === 'duplicate envelope dropped (already delivered)' && l['envelope'] === id), 30_000, proc.output);
  await waitFor('acknowledged', async () => (await held()) === 0, 30_000, proc.output);
  const lines = readLines(sink).slice(before);
  assert.deepEqual(lines.map((l) => l['seq']), [String(s), String(s)], 'its two readings, once');
});

test('gone at the ack: the relay let go of the envelope while the ack was held (purged); handled once, not retried', async () => {
  const before = readLines(sink).length;
  const s = ++seq;
  const env = seal(device, setup.keys, { seq: s });
  const id = envelopeId(env);
  // While the receiver's ack is held, the operator purges what the device's key holds: the relay
  // answers the ack 404, as after a TTL expiry or a relay restart.
  let purged: unknown;
  lie.holdAck = async () => {
    purged = await relay.operator.purgeKey(device.apiKeyId).catch((err: Error) => err.message);
  };
  await device.client.upload(env);
  const gone = await waitFor('the gone-at-ack warning', () => proc.logs().find((l) => l['reason'] === 'gone_at_ack' && l['envelope'] === id), 30_000, () => `purge: ${JSON.stringify(purged)}\n${proc.output()}`);
  // It also burns what the device's key holds for the other receiver (the wrong_recipient case).
  assert.ok((purged as { envelopes: number }).envelopes >= 1, `the purge burned the leased envelope: ${JSON.stringify(purged)}`);
  assert.match(String(gone['msg']), /^the relay no longer held the envelope at the acknowledgement/);
  assert.equal(proc.logs().filter((l) => l['envelope'] === id && String(l['msg']).startsWith('envelope not delivered yet')).length, 0, 'not reported as a retry');
  assert.deepEqual(readLines(sink).slice(before).map((l) => l['seq']), [String(s), String(s)], 'its two readings, once');
});

test('DID answers that contradict the signed log (another device\'s document; a 404) burn nothing: the receiver takes the device from its logged registration, delivered once', async () => {
  const lines = readLines(sink).length;
  const lies = [
    (a: Answer, doc: unknown) => withJson(a, { ...json(a), document: doc }),
    (a: Answer) => ({ ...a, status: 404, body: Buffer.from(JSON.stringify({ error: 'not_found', message: 'no such DID' })) }),
  ];
  for (const [i, lieAbout] of lies.entries()) {
    const approved = await makeDevice(relay, 'enterprise');
    const otherDoc = (await setup.keys.client.getDid(device.did)).document;
    lie.did = { did: approved.did, answer: (a) => lieAbout(a, otherDoc) };
    await approved.client.upload(seal(approved, setup.keys, { seq: 1n }));
    const warned = await waitFor(`lie ${i}: the contradiction warned about`, () => proc.logs().find((l) => l['reason'] === 'did_answer_contradicts_log' && l['device'] === undefined && String(l['msg']).includes(approved.did)), 30_000, proc.output);
    assert.equal(warned['relayAnswer'], i === 0 ? 'bad_registration' : 'unenrolled_sender');
    await waitFor(`lie ${i}: delivered`, () => readLines(sink).length >= lines + 2 * (i + 1), 30_000, proc.output);
    lie.did = undefined;
    assert.deepEqual(readLines(sink).slice(lines + 2 * i).map((l) => [l['device'], l['seq']]), [[approved.did, '1'], [approved.did, '1']]);
  }
});

test('the counters at the end: each refusal once per case, nothing else refused, five delivered (two despite DID lies), one late ack, one gone at the ack', async () => {
  assert.equal(await proc.kill('SIGTERM'), 0);
  const stopped = proc.logs().find((l) => l['msg'] === 'receiver stopped')!;
  assert.deepEqual(stopped['refusals'], expected);
  assert.deepEqual(expected, { bad_signature: 2, unenrolled_sender: 1, bad_registration: 1, wrong_recipient: 1, decrypt_failed: 1, bad_padding: 1, bad_frame: 1 });
  assert.equal(stopped['refused'], 8);
  assert.equal(stopped['delivered'], 5);
  assert.equal(stopped['didFromLog'], 2);
  assert.equal(stopped['lateAcks'], 1);
  assert.equal(stopped['goneAtAck'], 1);
  assert.ok((stopped['duplicates'] as number) >= 1);
  assert.ok((stopped['notYetLogged'] as number) >= 2);
  assert.equal(readLines(sink).length, 10);
});
