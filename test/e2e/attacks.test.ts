/**
 * The conduit under attack, every role a separate process on loopback (relay, agent, receiver;
 * the agent polls a Modbus server in this process): tampered, foreign-signed, replayed, stale and
 * unauthenticated uploads are refused and nothing of them reaches the sink; a revoked device's
 * next frames are refused; a relay whose state directory is swapped for an older copy (history
 * rewritten) is caught by the receiver and by `ghostpipe audit`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadDeviceKeys, loadPublicKey } from '../../common/keyfile.js';
import { CONTENT_TYPE, KEM, sealEnvelope, type Sender } from '../../protocol/envelope/index.js';
import { encodeFrames } from '../../protocol/frame.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { RelayClient, RelayError } from '../../common/relay-client.js';
import { initialState } from '../../plant/model.js';
import { PlantRegisters, startModbus, type PlantModbus } from '../../plant/modbus.js';
import type { Conduit } from '../../plant/conduit.js';
import { lastFrame, makeConduit, stopConduit, readSink, until } from '../helpers/conduit.js';
import { untilCheckpointCovers } from '../helpers/relay.js';

const ATTACK_STREAM = 77;

async function refusal(upload: Promise<unknown>): Promise<{ status: number; code: string }> {
  try {
    await upload;
  } catch (err) {
    if (err instanceof RelayError) return { status: err.status, code: err.code };
    throw err;
  }
  return { status: 201, code: 'accepted' };
}

describe('end to end: attacks, revocation and a rewritten relay history', () => {
  let conduit: Conduit;
  let dir: string;
  let sinkFile: string;
  let modbus: PlantModbus | undefined;
  let sender: Sender;
  let recipient: { kemId: number; publicKey: Uint8Array };
  let device: RelayClient;
  let oldRelayState: string;

  const seal = (marker: string, sequence: bigint, options: { sender?: Sender; createdAt?: number } = {}) => {
    const now = options.createdAt ?? Date.now();
    const plaintext = encodeFrames([{ sequence, time: now, intervalMs: 1000, readings: [{ tap: 'attack', point: marker, value: 1, quality: 'good', readTime: now }] }]);
    return sealEnvelope({ plaintext, recipient, sender: options.sender ?? sender, streamId: ATTACK_STREAM, sequence, contentType: CONTENT_TYPE.READINGS, createdAt: now });
  };
  const attackPoints = async () => (await readSink(sinkFile)).filter((r) => r.tap === 'attack').map((r) => r.point);
  const refusedAtReceiver = (reason: string) => conduit.receiver!.lines.some((l) => l.json?.['msg'] !== undefined && String(l.json['msg']).startsWith('envelope refused') && l.json['reason'] === reason);

  before(async () => {
    ({ conduit, dir, sinkFile } = await makeConduit('attacks', { receiverCheckpointInterval: '500ms' }));
    const registers = new PlantRegisters();
    registers.update(initialState(Date.now()));
    modbus = await startModbus(registers);
    await conduit.prepareKeys();
    await conduit.startRelay();
    await conduit.ensureApiKeys();
    await conduit.writeAgentConfigWithTaps([{
      name: 'plc1', type: 'modbus', transport: 'tcp', host: '127.0.0.1', port: modbus.port, addressBase: 0, timeout: '300ms',
      points: [{ name: 'level', table: 'input', address: 0, type: 'uint16', scale: 0.001, unit: 'm' }, { name: 'pump-running', table: 'coil', address: 0, type: 'bool' }],
    }]);
    await conduit.enroll();
    // The relay's control-plane state as it is now: restored later to rewrite history.
    await untilCheckpointCovers(new RelayClient({ baseUrl: conduit.relayUrl }), 1); // the registration (leaf 0) is in a signed checkpoint
    oldRelayState = path.join(dir, 'relay-old');
    await fs.cp(conduit.paths.relayState, oldRelayState, { recursive: true });
    await conduit.writeReceiverConfig();
    await conduit.startReceiver();
    await conduit.startAgent();

    const keys = await loadDeviceKeys({ dir: conduit.paths.keys, name: 'device' });
    sender = { seed: keys.signing.seed, publicKey: keys.signing.publicKey };
    recipient = { kemId: KEM.XWING, publicKey: (await loadPublicKey(path.join(conduit.paths.keys, 'receiver.kem.pub'))).publicKey };
    device = new RelayClient({ baseUrl: conduit.relayUrl, apiKey: (await fs.readFile(conduit.paths.deviceApiKey, 'utf8')).trim() });
    await until('agent frames at the sink', async () => (await lastFrame(sinkFile)) >= 2n, 30_000);
  });

  after(async () => {
    try {
      if (conduit) await stopConduit(conduit);
    } finally {
      await modbus?.close();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('tampered, foreign-signed, replayed, stale and unauthenticated envelopes are refused; none reaches the sink', async () => {
    // Control: a genuine envelope from the device on the attack stream does arrive.
    const genuine = seal('genuine', 1n);
    assert.equal((await device.upload(genuine)).size, genuine.length);
    await until('the genuine envelope at the sink', async () => (await attackPoints()).includes('genuine'));

    // Tampered ciphertext and tampered header: the device signature no longer verifies.
    const body = seal('tampered-body', 2n);
    body[body.length - 4000]! ^= 0x01;
    assert.deepEqual(await refusal(device.upload(body)), { status: 403, code: 'bad_signature' });
    const header = seal('tampered-header', 3n);
    header[40]! ^= 0x80;
    const headerRefusal = await refusal(device.upload(header));
    assert.ok(headerRefusal.status === 403 || headerRefusal.status === 400, `tampered header refused, got ${JSON.stringify(headerRefusal)}`);

    // Signed by a key that was never enrolled, uploaded with the device's valid API key.
    const stranger = generatePrivateKey('ML-DSA-65');
    const foreign = seal('foreign', 4n, { sender: { seed: stranger.seed, publicKey: stranger.publicKey } });
    assert.deepEqual(await refusal(device.upload(foreign)), { status: 403, code: 'wrong_signer' });
    // A valid device API key that was never bound to a device.
    const operator = await conduit.operator();
    const unbound = await operator.createKey({ role: 'device', plan: 'pro', label: 'never enrolled' });
    assert.deepEqual(await refusal(device.withKey(unbound.key).upload(seal('unbound', 5n))), { status: 403, code: 'device_not_enrolled' });

    // Unauthenticated and wrong keys.
    assert.deepEqual(await refusal(new RelayClient({ baseUrl: conduit.relayUrl }).upload(seal('no-key', 6n))), { status: 401, code: 'missing_key' });
    assert.equal((await refusal(device.withKey('pgp_000000000000' + 'A'.repeat(43)).upload(seal('bad-key', 7n)))).status, 401);

    // Replays: the same bytes again (the relay has seen them), and the same sequence number in
    // fresh bytes (the relay cannot tell; the receiver's replay state refuses it).
    assert.deepEqual(await refusal(device.upload(genuine)), { status: 409, code: 'duplicate' });
    const replayed = await refusal(device.upload(seal('replayed-seq', 1n)));
    assert.equal(replayed.status, 201, 'fresh bytes with an old sequence are accepted by the relay');
    await until('the receiver refusing the replay', async () => refusedAtReceiver('replay'), 15_000);

    // A stale envelope: created two days ago (beyond the receiver's maxAge of 24 h).
    const stale = await refusal(device.upload(seal('stale', 100n, { createdAt: Date.now() - 2 * 86_400_000 })));
    assert.equal(stale.status, 201, 'the relay does not judge age: it accepts a stale envelope, the receiver refuses it');
    await until('the receiver refusing the stale envelope', async () => refusedAtReceiver('too_old'), 15_000);

    // A later genuine envelope proves the receiver went past all of them.
    await device.upload(seal('genuine-after', 200n));
    await until('the later genuine envelope at the sink', async () => (await attackPoints()).includes('genuine-after'));
    assert.deepEqual((await attackPoints()).sort(), ['genuine', 'genuine-after']);
  });

  test('a revoked device: its next frames are refused and never reach the sink', async () => {
    const operator = await conduit.operator();
    const before = await lastFrame(sinkFile);
    await until('more agent frames', async () => (await lastFrame(sinkFile)) >= before + 2n);
    await operator.revokeDevice(conduit.keys!.did);
    const revokedAt = Date.now();
    assert.deepEqual(await refusal(device.upload(seal('after-revocation', 300n))), { status: 403, code: 'device_revoked' });
    await conduit.agent!.waitFor((l) => l.json?.['level'] === 50 && /relay refused the device/.test(String(l.json['msg'])) && /revoked/.test(String(l.json['msg'])), 15_000, 'the agent logging the refusal');
    // The agent's later uploads (frames read after the revocation) are refused too: the relay's
    // audit shows two more device_revoked refusals for its key after the one above. Then nothing
    // is pending or leased, so whatever the relay ever accepted has reached the sink.
    const keyId = (await fs.readFile(conduit.paths.deviceApiKey, 'utf8')).trim().slice(4, 16);
    await until('two refused uploads by the agent after the revocation', async () => (await operator.audit({ key: keyId })).filter((e) => e.outcome === 'device_revoked').length >= 3, 30_000);
    await until('the relay drained', async () => {
      const { pending, leased } = (await operator.stats()).envelopes;
      return pending === 0 && leased === 0;
    }, 20_000);
    const late = (await readSink(sinkFile)).filter((r) => r.stream === 1 && Date.parse(r.readTime) > revokedAt);
    assert.deepEqual(late.map((r) => r.frame), []);
    assert.ok(!(await attackPoints()).includes('after-revocation'));
  });

  test('relay state directory swapped for an older copy: the receiver and `ghostpipe audit` both detect it', async () => {
    const audit = async (name: string) => {
      const p = conduit.spawn(name, ['audit', '--relay', conduit.relayUrl, '--relay-key', conduit.paths.relayPub, '--state', path.join(dir, 'audit-state')]);
      const { code } = await p.exited;
      return { code, output: p.lines.map((l) => l.text).join('\n') };
    };
    const good = await audit('audit-before');
    assert.equal(good.code, 0, good.output);

    assert.equal(await conduit.relay!.stop(), 0);
    await fs.rm(conduit.paths.relayState, { recursive: true, force: true });
    await fs.cp(oldRelayState, conduit.paths.relayState, { recursive: true });
    await conduit.startRelay();

    const { code } = await conduit.receiver!.exited;
    assert.equal(code, 3, 'the receiver stops with exit code 3 (transparency log check failed)');
    assert.ok(conduit.receiver!.lines.some((l) => l.json?.['level'] === 60 && /transparency log check failed \((rollback|fork)\)/.test(String(l.json['msg']))), conduit.receiver!.tail());

    const bad = await audit('audit-after');
    assert.equal(bad.code, 1, bad.output);
    assert.match(bad.output, /ROLLBACK|FORK/);
  });
});
