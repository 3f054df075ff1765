/** Every endpoint's success path and its refusals, against one real relay process. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { enrollmentMessage, ENROLL_CONTEXT, kemProof } from '../../protocol/api/index.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { xwingDecapsulate } from '../../protocol/crypto/xwing.js';
import { generatePrivateKey, type PrivateKey } from '../../protocol/keys.js';
import { leafHash, verifyInclusion, verifyConsistency } from '../../protocol/tlog/index.js';
import { openCheckpoint } from '../../protocol/tlog/checkpoint.js';
import { parseVerifierKey } from '../../protocol/tlog/note.js';
import { decodeLogEntry, transferLeaf } from '../../protocol/log-entries.js';
import { approve, cleanupAll, fleetKey, makeDevice, makeReceiver, prover, markedPlaintext, rawRequest, startRelay, untilCheckpointCovers, type RelayProcess, type Device, type Receiver } from '../helpers/relay.js';

const MEDIA = 'application/vnd.ghostpipe.envelope';
let relay: RelayProcess;
let device: Device;
let receiver: Receiver;

async function refused(promise: Promise<unknown>, status: number, code: string): Promise<RelayError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RelayError, `expected RelayError, got ${String(err)}`);
    assert.equal(err.status, status, `status (code ${err.code}: ${err.message})`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected ${status} ${code}, but the request succeeded`);
}

before(async () => {
  relay = await startRelay({
    plans: {
      pro: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB' },
      tiny: { quota: 2, ratePerMinute: 60000, burst: 1000, maxBlob: '5MiB' },
      slow: { quota: 0, ratePerMinute: 1, burst: 1, maxBlob: '5MiB' },
      small: { quota: 0, ratePerMinute: 60000, burst: 1000, maxBlob: '4KiB' },
    },
  });
  device = await makeDevice(relay);
  receiver = await makeReceiver(relay);
});
after(cleanupAll);

test('healthz is public and holds no secrets; stats need an operator key', async () => {
  const health = await new RelayClient({ baseUrl: relay.url }).health();
  assert.equal(health.status, 'ok');
  assert.deepEqual(Object.keys(health).sort(), ['status', 'uptimeSeconds', 'version']);
  const stats = await relay.operator.stats();
  assert.equal(stats.memory.capBytes, 512 * 1024 * 1024);
  assert.ok(stats.memory.rssBytes > 0);
  await refused(device.client.stats(), 403, 'forbidden');
  await refused(new RelayClient({ baseUrl: relay.url }).stats(), 401, 'missing_key');
});

test('enrollment: challenge, register, DID document, refusals', async () => {
  const record = await new RelayClient({ baseUrl: relay.url }).getDid(device.did);
  assert.equal(record.did, device.did);
  assert.equal(record.revoked, false);
  assert.equal(record.leafIndex, device.leafIndex);
  const entries = await relay.operator.entries(device.leafIndex, device.leafIndex + 1);
  const entry = decodeLogEntry(entries[0]!.data);
  assert.equal(entry.type, 'registration');
  assert.equal(entries[0]!.data[0], 0x05, 'the leaf carries the fleet approval');
  assert.equal(entry.type === 'registration' && Buffer.from(entry.approval!.statement).toString('base64'), record.fleetStatement);
  assert.equal(entry.type === 'registration' && Buffer.from(entry.approval!.signature).toString('base64'), record.fleetSignature);

  // A second device on the same key: 409.
  const other = generatePrivateKey('ML-DSA-65');
  const otherKem = generatePrivateKey('X-Wing');
  await refused(device.client.enroll(prover(other, otherKem)), 409, 'already_bound');

  // The device's side of a challenge: decapsulate the KEM challenge, sign the message with `signer`.
  const answer = async (client: RelayClient, signing: PrivateKey, kem: PrivateKey, signer = signing, decapsulateWith = kem) => {
    const { challenge, kemCiphertext } = await client.challenge(kem.publicKey);
    const ct = new Uint8Array(Buffer.from(kemCiphertext, 'base64'));
    const proof = kemProof(challenge, ct, xwingDecapsulate(decapsulateWith.seed, ct, getProvider()));
    const signature = getProvider().mlDsa65.sign(signer.seed, enrollmentMessage(challenge, signing.publicKey, kem.publicKey, proof), ENROLL_CONTEXT);
    return { signingPublicKey: signing.publicKey, kemPublicKey: kem.publicKey, challenge, kemProof: proof, signature };
  };
  // Fresh key: bad proof of possession (signed by another key) and a replayed challenge.
  const fresh = await makeDevice(relay, 'pro', { enroll: false });
  const forged = await answer(fresh.client, fresh.signing, fresh.kem, other);
  await refused(fresh.client.register(forged), 403, 'bad_signature');
  const good = await answer(fresh.client, fresh.signing, fresh.kem);
  await refused(fresh.client.register({ ...good, challenge: forged.challenge }), 410, 'challenge_expired');
  // X-Wing proof of possession: a key whose private half the device lacks (it decapsulates with
  // its own), or a made-up proof, is refused even with a valid ML-DSA signature.
  const misbound = await answer(fresh.client, fresh.signing, otherKem, fresh.signing, fresh.kem);
  await refused(fresh.client.register(misbound), 403, 'bad_signature');
  const c5 = await fresh.client.challenge(fresh.kem.publicKey);
  const made = new Uint8Array(32);
  const sig5 = getProvider().mlDsa65.sign(fresh.signing.seed, enrollmentMessage(c5.challenge, fresh.signing.publicKey, fresh.kem.publicKey, made), ENROLL_CONTEXT);
  await refused(fresh.client.register({ signingPublicKey: fresh.signing.publicKey, kemPublicKey: fresh.kem.publicKey, challenge: c5.challenge, kemProof: made, signature: sig5 }), 403, 'bad_signature');
  // A challenge issued to another key is not usable.
  const theirs = await answer(device.client, fresh.signing, fresh.kem);
  await refused(fresh.client.register(theirs), 410, 'challenge_expired');
  // Malformed body fields.
  const c3 = await answer(fresh.client, fresh.signing, fresh.kem);
  await refused(fresh.client.register({ ...c3, signingPublicKey: new Uint8Array(10) }), 400, 'bad_request');
  const bad = await rawRequest(`${relay.url}/v2/did/register`, { method: 'POST', headers: { authorization: `Bearer ${relay.operatorKey}`, 'content-type': 'application/json' }, body: new TextEncoder().encode('{') });
  assert.equal(bad.status, 403); // operator keys may not register devices
  // A client of the earlier contract (a challenge without the X-Wing key): refused, 415.
  const old = await rawRequest(`${relay.url}/v2/did/challenge`, { method: 'POST', headers: { authorization: `Bearer ${fresh.apiKey}` } });
  assert.deepEqual([old.status, JSON.parse(old.body).error], [415, 'unsupported_media_type']);
  // A receiver key cannot ask for challenges.
  await refused(receiver.client.challenge(fresh.kem.publicKey), 403, 'forbidden');
  // The device of another key cannot be registered with this one.
  const c4 = await answer(fresh.client, device.signing, device.kem);
  await refused(fresh.client.register(c4), 409, 'already_bound');
  // Without a fleet key configured, an approval is optional but still checked as far as it can be.
  const wrongKey = await answer(fresh.client, fresh.signing, fresh.kem);
  await refused(fresh.client.register({ ...wrongKey, approval: approve(fresh, device.apiKeyId) }), 403, 'bad_approval');
  const registered = await fresh.client.register({ ...(await answer(fresh.client, fresh.signing, fresh.kem)), approval: approve(fresh, fresh.apiKeyId) });
  assert.equal(typeof registered.fleetStatement, 'string');
  // Unknown DIDs and DIDs with path characters: 404 alike.
  await refused(new RelayClient({ baseUrl: relay.url }).getDid('did:ghostpipe:' + 'a'.repeat(52)), 404, 'not_found');
  for (const pathy of ['..%2F..%2Fetc%2Fpasswd', 'did:ghostpipe:..', '%00', 'did%3Aghostpipe%3A%2F']) {
    const res = await rawRequest(`${relay.url}/v2/did/${pathy}`, {});
    assert.equal(res.status, 404, pathy);
    assert.equal(JSON.parse(res.body).error, 'not_found');
  }
});

test('upload, status, inbox, lease, ack: the round trip, with log inclusion', async () => {
  const bytes = device.seal(markedPlaintext('hello'), receiver);
  const up = await device.client.upload(bytes);
  const leaf = transferLeaf(bytes);
  assert.equal(up.id, Buffer.from(leaf.envelopeHash).toString('hex'));
  assert.equal(up.size, bytes.length);
  assert.deepEqual(await device.client.status([up.id]), { [up.id]: 'pending' });
  const listed = await receiver.client.inbox(receiver.recipientKeyId);
  assert.ok(listed.some((e) => e.id === up.id && e.leafIndex === up.leafIndex && e.size === bytes.length));
  const lease = await receiver.client.lease(receiver.recipientKeyId);
  assert.ok(lease);
  assert.equal(lease.envelopeId, up.id);
  assert.deepEqual(Buffer.from(lease.bytes), Buffer.from(bytes));
  assert.deepEqual(await device.client.status([up.id]), { [up.id]: 'leased' });
  await receiver.client.ack(lease.leaseId);
  assert.deepEqual(await device.client.status([up.id]), { [up.id]: 'delivered' });
  await refused(receiver.client.ack(lease.leaseId), 404, 'not_found');
  // Nothing left: 204 -> null.
  assert.equal(await receiver.client.lease(receiver.recipientKeyId), null);

  // Inclusion proof against a verified checkpoint.
  const key = await relay.operator.logKey();
  const verifier = parseVerifierKey(key.verifierKey);
  await untilCheckpointCovers(receiver.client, up.leafIndex + 1);
  const checkpoint = openCheckpoint(await receiver.client.checkpoint(), [verifier], key.origin).checkpoint;
  assert.ok(checkpoint.size > up.leafIndex);
  const proof = await receiver.client.inclusionProof({ index: up.leafIndex }, checkpoint.size);
  verifyInclusion(leaf.hash, up.leafIndex, checkpoint.size, proof.proof, checkpoint.root);
  const byHash = await receiver.client.inclusionProof({ hash: leaf.hash }, checkpoint.size);
  assert.equal(byHash.leafIndex, up.leafIndex);
  const entries = await receiver.client.entries(up.leafIndex, up.leafIndex + 1);
  assert.deepEqual(leafHash(entries[0]!.data), leaf.hash);
  const cons = await receiver.client.consistencyProof(1, checkpoint.size);
  const old = await receiver.client.entries(0, 1);
  verifyConsistency(1, checkpoint.size, cons.proof, leafHash(old[0]!.data), checkpoint.root);
  await refused(receiver.client.consistencyProof(3, 2), 400, 'bad_request');
  await refused(receiver.client.entries(0, 5000), 400, 'bad_request');
  await refused(receiver.client.inclusionProof({ hash: new Uint8Array(32) }), 404, 'not_found');
  await refused(receiver.client.inclusionProof({ index: 0 }, checkpoint.size + 1000), 400, 'bad_request');
});

test('release puts an envelope back; other tenants ids answer like unknown ones', async () => {
  const bytes = device.seal(markedPlaintext('release'), receiver);
  const up = await device.client.upload(bytes);
  const lease = await receiver.client.lease(receiver.recipientKeyId);
  assert.equal(lease?.envelopeId, up.id);
  const stranger = await makeReceiver(relay);
  await refused(stranger.client.ack(lease!.leaseId), 404, 'not_found');
  await refused(stranger.client.inbox(receiver.recipientKeyId), 404, 'not_found');
  await refused(stranger.client.lease(receiver.recipientKeyId), 404, 'not_found');
  await refused(stranger.client.inbox('f'.repeat(64)), 404, 'not_found');
  await receiver.client.release(lease!.leaseId);
  const again = await receiver.client.lease(receiver.recipientKeyId);
  assert.equal(again?.envelopeId, up.id);
  await receiver.client.ack(again!.leaseId);
  // Status: ids of another device key are "unknown", like ids that never existed.
  const otherDevice = await makeDevice(relay);
  assert.deepEqual(await otherDevice.client.status([up.id, 'a'.repeat(64), '../../x']), { [up.id]: 'unknown', ['a'.repeat(64)]: 'unknown', '../../x': 'unknown' });
  await refused(device.client.status([]), 400, 'bad_request');
  await refused(device.client.status(Array.from({ length: 1001 }, (_, i) => String(i))), 400, 'bad_request');
  for (const pathy of ['..%2F..', '%2e%2e', 'x'.repeat(300), 'abc%00']) {
    const res = await rawRequest(`${relay.url}/v2/leases/${pathy}/ack`, { method: 'POST', headers: { authorization: `Bearer ${receiver.apiKey}` } });
    assert.equal(res.status, 404, pathy);
    const inbox = await rawRequest(`${relay.url}/v2/inbox/${pathy}`, { headers: { authorization: `Bearer ${receiver.apiKey}` } });
    assert.equal(inbox.status, 404, pathy);
  }
});

test('upload refusals: auth, role, media type, malformed, truncated, forged, wrong signer, duplicate', async () => {
  const bytes = device.seal(markedPlaintext('refusals'), receiver);
  await refused(new RelayClient({ baseUrl: relay.url }).upload(bytes), 401, 'missing_key');
  await refused(new RelayClient({ baseUrl: relay.url, apiKey: 'pgp_0123456789ab' + 'A'.repeat(43) }).upload(bytes), 401, 'invalid_key');
  await refused(new RelayClient({ baseUrl: relay.url, apiKey: 'nonsense' }).upload(bytes), 401, 'invalid_key');
  await refused(receiver.client.upload(bytes), 403, 'forbidden');
  await refused(relay.operator.upload(bytes), 403, 'forbidden');
  const apiKey = device.apiKey;
  const wrongType = await rawRequest(`${relay.url}/v2/envelopes`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/octet-stream' }, body: bytes });
  assert.equal(wrongType.status, 415);
  assert.equal(JSON.parse(wrongType.body).error, 'unsupported_media_type');
  // Garbage and truncated bodies.
  await refused(device.client.upload(new TextEncoder().encode('not an envelope at all')), 400, 'malformed_envelope');
  await refused(device.client.upload(bytes.subarray(0, 50)), 400, 'malformed_envelope');
  await refused(device.client.upload(bytes.subarray(0, bytes.length - 1)), 400, 'malformed_envelope');
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  await refused(device.client.upload(longer), 400, 'malformed_envelope');
  // A flipped ciphertext bit: the signature no longer verifies.
  const forged = Uint8Array.from(bytes);
  forged[2000] = forged[2000]! ^ 1;
  await refused(device.client.upload(forged), 403, 'bad_signature');
  // Signed by a device bound to another key.
  const other = await makeDevice(relay);
  await refused(device.client.upload(other.seal(markedPlaintext('x'), receiver)), 403, 'wrong_signer');
  // Not enrolled.
  const unenrolled = await makeDevice(relay, 'pro', { enroll: false });
  await refused(unenrolled.client.upload(bytes), 403, 'device_not_enrolled');
  // Duplicate while held, and after delivery.
  const up = await device.client.upload(bytes);
  await refused(device.client.upload(bytes), 409, 'duplicate');
  const lease = await receiver.client.lease(receiver.recipientKeyId);
  assert.equal(lease?.envelopeId, up.id);
  await receiver.client.ack(lease!.leaseId);
  await refused(device.client.upload(bytes), 409, 'duplicate');
  // Refused uploads are in the audit trail with their outcome.
  const events = await relay.operator.audit({ key: device.apiKeyId });
  for (const outcome of ['ok', 'duplicate', 'bad_signature', 'malformed_envelope', 'wrong_signer']) {
    assert.ok(events.some((e) => e.event === 'upload' && e.outcome === outcome), outcome);
  }
});

test('plans: quota (402), rate (429 + Retry-After), size (413), oversized body cut off while streaming', async () => {
  const tiny = await makeDevice(relay, 'tiny');
  await tiny.client.upload(tiny.seal(markedPlaintext('q1'), receiver));
  await tiny.client.upload(tiny.seal(markedPlaintext('q2'), receiver));
  const overQuota = await refused(tiny.client.upload(tiny.seal(markedPlaintext('q3'), receiver)), 402, 'quota_exceeded');
  // Retry-After = until the key's period (30 days by default, started when the key was issued) rolls over.
  const period = 30 * 86_400_000;
  assert.ok(overQuota.retryAfterMs !== undefined && overQuota.retryAfterMs > period - 120_000 && overQuota.retryAfterMs <= period, `402 Retry-After ${String(overQuota.retryAfterMs)} ms`);

  const slow = await makeDevice(relay, 'slow');
  await slow.client.upload(slow.seal(markedPlaintext('r1'), receiver));
  const limited = await refused(slow.client.upload(slow.seal(markedPlaintext('r2'), receiver)), 429, 'rate_limited');
  assert.ok(limited.retryAfterMs !== undefined && limited.retryAfterMs >= 1000);

  const small = await makeDevice(relay, 'small');
  await small.client.upload(small.seal(markedPlaintext('fits', 100), receiver));
  await refused(small.client.upload(small.seal(markedPlaintext('big', 5000), receiver)), 413, 'too_large');

  // Content-Length over the limit: refused before any body byte is read.
  const apiKey = device.apiKey;
  const declared = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = net.connect(relay.port, '127.0.0.1', () => {
      socket.write(`POST /v2/envelopes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${apiKey}\r\ncontent-type: ${MEDIA}\r\ncontent-length: 104857600\r\n\r\n`);
    });
    let text = '';
    socket.on('data', (c) => (text += c.toString()));
    socket.on('close', () => resolve({ status: Number(text.split(' ')[1]), body: text }));
    socket.on('error', (err) => (text ? undefined : reject(err)));
  });
  assert.equal(declared.status, 413);

  // Chunked body whose header declares a 5 MiB envelope for a 4 KiB plan: answered after the
  // header arrived, while the client is still sending.
  const big = small.seal(markedPlaintext('huge', 2_000_000), receiver);
  const smallKey = small.apiKey;
  // The relay answers 413 and closes; a client still writing may see the reset before it reads
  // the answer, so either counts, as long as it came long before the body was sent.
  const result = await new Promise<{ status: number | 'reset'; sentWhenAnswered: number }>((resolve) => {
    let sent = 0;
    let done = false;
    const finish = (status: number | 'reset') => {
      if (done) return;
      done = true;
      resolve({ status, sentWhenAnswered: sent });
      socket.destroy();
    };
    const socket = net.connect(relay.port, '127.0.0.1', () => {
      socket.write(`POST /v2/envelopes HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${smallKey}\r\ncontent-type: ${MEDIA}\r\ntransfer-encoding: chunked\r\n\r\n`);
      const pump = () => {
        if (done || sent >= big.length || socket.destroyed) return;
        const chunk = big.subarray(sent, sent + 16384);
        sent += chunk.length;
        socket.write(chunk.length.toString(16) + '\r\n');
        socket.write(chunk);
        socket.write('\r\n');
        setTimeout(pump, 5);
      };
      pump();
    });
    socket.on('data', (c) => finish(Number(c.toString().split(' ')[1])));
    socket.on('error', () => finish('reset'));
    socket.on('close', () => finish('reset'));
  });
  assert.ok(result.status === 413 || result.status === 'reset', `status ${result.status}`);
  assert.ok(result.sentWhenAnswered < big.length / 4, `answered after ${result.sentWhenAnswered} of ${big.length} bytes`);
  // The relay is still fine.
  await device.client.upload(device.seal(markedPlaintext('after'), receiver));
});

test('huge headers get 431 and the relay keeps serving', async () => {
  const answer = await new Promise<string>((resolve, reject) => {
    let text = '';
    const socket = net.connect(relay.port, '127.0.0.1', () => socket.write(`GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ${'a'.repeat(64 * 1024)}\r\n\r\n`));
    socket.on('data', (c) => (text += c.toString()));
    socket.on('close', () => resolve(text));
    socket.on('error', (err) => (text ? resolve(text) : reject(err)));
  });
  assert.match(answer, /^HTTP\/1.1 431 /);
  assert.equal((await new RelayClient({ baseUrl: relay.url }).health()).status, 'ok');
});

test('keys: issue, list masked, revoke applies at once; CLI', async () => {
  const d = await makeDevice(relay);
  const bytes = d.seal(markedPlaintext('revoked'), receiver);
  const list = await relay.operator.listKeys();
  const mine = list.find((k) => k.id === d.apiKeyId);
  assert.ok(mine);
  assert.equal(mine.masked, `pgp_${d.apiKeyId}…`);
  assert.equal(mine.did, d.did);
  assert.ok(!JSON.stringify(list).includes(d.apiKey));
  await relay.operator.revokeKey(d.apiKeyId);
  await refused(d.client.upload(bytes), 401, 'key_revoked');
  await refused(relay.operator.revokeKey('zz'), 404, 'not_found');
  await refused(relay.operator.createKey({ role: 'device', plan: 'gold', label: 'x' }), 400, 'bad_request');
  await refused(relay.operator.createKey({ role: 'receiver', plan: 'pro', label: 'x' }), 400, 'bad_request');
  await refused(device.client.createKey({ role: 'device', plan: 'pro', label: 'x' }), 403, 'forbidden');
  const operatorId = list.find((k) => k.role === 'operator')!.id;
  await refused(relay.operator.revokeKey(operatorId), 409, 'last_operator_key');

  // The CLI against the running relay.
  const { execFile } = await import('node:child_process');
  const { cliPath } = await import('../helpers/paths.js');
  const run = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [cliPath, 'keys', ...args, '--relay', relay.url], { env: { ...process.env, GHOSTPIPE_OPERATOR_KEY: relay.operatorKey } }, (err, stdout, stderr) => {
      resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr });
    });
  });
  const issued = await run(['issue', '--role', 'device', '--plan', 'pro', '--label', 'cli gateway', '--json']);
  assert.equal(issued.code, 0, issued.stderr);
  const key = JSON.parse(issued.stdout) as { id: string; key: string };
  assert.match(key.key, /^pgp_[0-9a-f]{12}[A-Za-z0-9_-]{43}$/);
  const listed = await run(['list']);
  assert.equal(listed.code, 0);
  assert.ok(listed.stdout.includes(`pgp_${key.id}…`));
  assert.ok(!listed.stdout.includes(key.key));
  const revoked = await run(['revoke', key.id]);
  assert.equal(revoked.code, 0, revoked.stderr);
  const badPlan = await run(['issue', '--role', 'device', '--plan', 'gold', '--label', 'x']);
  assert.notEqual(badPlan.code, 0);
  assert.match(badPlan.stderr, /plan must be one of/);
});

test('device revocation: log entry, uploads refused at once, DID shows revoked', async () => {
  const d = await makeDevice(relay);
  await d.client.upload(d.seal(markedPlaintext('before revoke'), receiver));
  await refused(device.client.revokeDevice(d.did), 403, 'forbidden');
  const result = await relay.operator.revokeDevice(d.did);
  assert.equal(result.revoked, true);
  await refused(d.client.upload(d.seal(markedPlaintext('after revoke'), receiver)), 403, 'device_revoked');
  const record = await new RelayClient({ baseUrl: relay.url }).getDid(d.did);
  assert.equal(record.revoked, true);
  assert.equal(record.revocationLeafIndex, result.leafIndex);
  await untilCheckpointCovers(relay.operator, result.leafIndex + 1);
  const [entry] = await relay.operator.entries(result.leafIndex, result.leafIndex + 1);
  const decoded = decodeLogEntry(entry!.data);
  assert.equal(decoded.type, 'revocation');
  assert.equal(decoded.type === 'revocation' && decoded.did, d.did);
  await refused(relay.operator.revokeDevice('did:ghostpipe:' + 'b'.repeat(52)), 404, 'not_found');
});

test('audit export: JSON and CSV safe against formula injection, filtered by key and time', async () => {
  const evil = await relay.operator.createKey({ role: 'device', plan: 'pro', label: '=HYPERLINK("http://evil","x")' });
  const csv = await relay.operator.auditCsv({ key: evil.id });
  const lines = csv.trim().split('\r\n');
  assert.equal(lines[0], 'time,event,keyId,keyLabel,did,envelopeHash,size,outcome,ip,count,group,packageId');
  assert.equal(lines.length, 2);
  assert.ok(lines[1]!.includes(`"'=HYPERLINK(""http://evil"",""x"")"`), lines[1]);
  assert.ok(!/(^|,)"?=/.test(lines[1]!));
  const future = await relay.operator.audit({ from: new Date(Date.now() + 3_600_000) });
  assert.equal(future.length, 0);
  const all = await relay.operator.audit({ key: device.apiKeyId });
  assert.ok(all.length > 0 && all.every((e) => e.keyId === device.apiKeyId));
  await refused(relay.operator.audit({ key: '../x' }), 400, 'bad_request');
  await refused(device.client.audit(), 403, 'forbidden');
});

test('malformed request targets and unknown paths: 400/404/405, never a 500', async () => {
  const send = (line: string) => new Promise<number>((resolve, reject) => {
    let text = '';
    const socket = net.connect(relay.port, '127.0.0.1', () => socket.write(`${line} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`));
    socket.on('data', (c) => (text += c.toString()));
    socket.on('close', () => resolve(Number(text.split(' ')[1])));
    socket.on('error', reject);
  });
  assert.equal(await send('GET http://['), 400);
  assert.equal(await send('GET /v2/did/%ZZ'), 404);
  assert.equal(await send('GET /v2/nothing/here'), 404);
  assert.equal(await send('GET /v2/../../etc/passwd'), 404);
  assert.equal(await send('DELETE /v2/envelopes'), 405);
  assert.equal(await send('PUT /healthz'), 405);
  assert.doesNotMatch(relay.output(), /"level":50/);
});

test('a relay with fleetPublicKey registers only devices its fleet key approved, for the key they register with', async () => {
  const { writeFile } = await import('node:fs/promises');
  const path = await import('node:path');
  const { encodePublicKeyPem } = await import('../../protocol/keys.js');
  const { tempDir } = await import('../helpers/relay.js');
  const dir = await tempDir();
  const fleetPub = path.join(dir, 'fleet.sign.pub');
  await writeFile(fleetPub, encodePublicKeyPem('ML-DSA-65', fleetKey().publicKey));
  const pinned = await startRelay({ fleetPublicKey: fleetPub }, { dir });
  assert.match(pinned.output(), /fleet key pinned/);
  const unapproved = await makeDevice(pinned, 'pro', { enroll: false });
  const register = (d: Device, approval?: { statement: Uint8Array; signature: Uint8Array }) => d.client.enroll(prover(d.signing, d.kem), approval);
  const none = await refused(register(unapproved), 403, 'bad_approval');
  assert.match(none.message, /only devices approved by the fleet key/);
  const otherFleet = generatePrivateKey('ML-DSA-65');
  const forged = await refused(register(unapproved, approve(unapproved, unapproved.apiKeyId, otherFleet)), 403, 'bad_approval');
  assert.match(forged.message, /fleet signature does not verify/);
  await refused(register(unapproved, approve(unapproved, unapproved.apiKeyId, fleetKey(), -30_000)), 403, 'bad_approval');
  const another = await makeDevice(pinned, 'pro', { enroll: false });
  await refused(register(unapproved, approve(another, unapproved.apiKeyId)), 403, 'bad_approval');
  await refused(register(unapproved, approve(unapproved, another.apiKeyId)), 403, 'bad_approval');
  const ok = await register(unapproved, approve(unapproved, unapproved.apiKeyId));
  const record = await new RelayClient({ baseUrl: pinned.url }).getDid(ok.did);
  assert.equal(record.fleetStatement, ok.fleetStatement);
  const audit = await pinned.operator.audit({});
  assert.equal(audit.filter((e) => e.event === 'register' && e.outcome === 'bad_approval').length, 5);
  assert.equal(audit.filter((e) => e.event === 'register' && e.outcome === 'ok').length, 1);
  assert.equal(await pinned.stop(), 0);
});
