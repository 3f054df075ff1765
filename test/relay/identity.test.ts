/**
 * The RAM-only relay's identity directory (docs/RELAY.md "Air-gap mode"): keys, devices and the
 * relay key survive a SIGKILL; each boot is the next epoch of the same origin under the same key
 * and logs the provisioned registrations and revocations again; bad setups refuse to start.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { cleanupAll, makeDevice, makeReceiver, startRelay, tempDir, type RelayProcess } from '../helpers/relay.js';
import { RelayClient } from '../../common/relay-client.js';
import { decodeLogEntry } from '../../protocol/log-entries.js';
import { generatePrivateKey } from '../../protocol/keys.js';
import { Witness, mlDsaNoteVerifier } from '../../protocol/tlog/index.js';

after(cleanupAll);

/** The operator key sits next to the identity directory, never in it (docs/RELAY.md "Operator key"). */
async function operatorOf(relay: RelayProcess, identityDir: string): Promise<RelayClient> {
  return new RelayClient({ baseUrl: relay.url, apiKey: (await fs.readFile(path.join(path.dirname(identityDir), 'operator.key'), 'utf8')).trim() });
}

describe('RAM-only relay with identityDir', () => {
  test('SIGKILL and restart x3: same key and keys, origin <base>/epoch/<n>, registrations and revocations logged again', async () => {
    const dir = await tempDir();
    const identityDir = path.join(dir, 'identity');
    const config = { ramOnly: true, identityDir, stateDir: path.join(dir, 'must-not-exist') };
    let relay = await startRelay(config, { dir });
    let operator = await operatorOf(relay, identityDir);
    const kept = await makeDevice(relay, 'pro');
    const revoked = await makeDevice(relay, 'pro');
    await operator.revokeDevice(revoked.did);
    const receiver = await makeReceiver(relay);
    const firstKey = await relay.operator.logKey();
    assert.match(firstKey.origin, /\/epoch\/1$/);
    const base = firstKey.origin.replace(/\/epoch\/1$/, '');
    const keysBefore = (await operator.listKeys()).map((k) => [k.id, k.revoked]).sort();

    for (let boot = 2; boot <= 4; boot++) {
      await relay.stop('SIGKILL');
      relay = await startRelay(config, { dir });
      operator = await operatorOf(relay, identityDir);
      const announced = await operator.logKey();
      assert.equal(announced.origin, `${base}/epoch/${boot}`);
      assert.equal(announced.publicKey, firstKey.publicKey, 'same relay key');
      assert.deepEqual((await operator.listKeys()).map((k) => [k.id, k.revoked]).sort(), keysBefore, 'API keys and revocations kept');
      // The device key authenticates without re-provisioning; the receiver key too.
      await new RelayClient({ baseUrl: relay.url, apiKey: kept.apiKey }).challenge(kept.kem.publicKey);
      assert.deepEqual(await new RelayClient({ baseUrl: relay.url, apiKey: receiver.apiKey }).inbox(receiver.recipientKeyId), []);
      // This epoch's log starts with the provisioned registrations (oldest first), then the revocation.
      const witness = new Witness(announced.origin, [mlDsaNoteVerifier(announced.origin, Buffer.from(announced.publicKey, 'base64'))]);
      witness.update(await operator.checkpoint(), null);
      assert.equal(witness.checkpoint.size, 3, 'signed before the relay listened');
      const entries = (await operator.entries(0, 3)).map((e) => decodeLogEntry(e.data));
      assert.deepEqual(entries.map((e) => [e.type, 'did' in e ? e.did : '']), [['registration', kept.did], ['registration', revoked.did], ['revocation', revoked.did]]);
      // Logged again with the fleet approval each device registered with.
      assert.ok(entries[0]!.type === 'registration' && entries[0]!.approval !== undefined, 'the relogged leaf carries the fleet approval');
      const keptRecord = await operator.getDid(kept.did);
      const revokedRecord = await operator.getDid(revoked.did);
      assert.equal(keptRecord.leafIndex, 0);
      assert.equal(revokedRecord.leafIndex, 1);
      assert.equal(revokedRecord.revoked, true);
      assert.equal((revokedRecord as { revocationLeafIndex?: number }).revocationLeafIndex, 2);
      assert.match(relay.output(), new RegExp(`"epoch":${boot}[,}].*new log epoch: provisioned devices logged again`));
    }
    // A key issued at run time is written back (control plane only) and works after the next reboot.
    const late = await operator.createKey({ role: 'device', plan: 'pro', label: 'issued at run time' });
    await relay.stop('SIGKILL');
    relay = await startRelay(config, { dir });
    await new RelayClient({ baseUrl: relay.url, apiKey: late.key }).challenge(generatePrivateKey('X-Wing').publicKey);
    const files = (await fs.readdir(identityDir)).sort();
    assert.deepEqual(files, ['devices.json', 'epoch.json', 'keys.json', 'relay.sign.key', 'relay.sign.pub'], 'no operator key in the identity directory');
    assert.equal((await fs.stat(path.join(dir, 'operator.key'))).mode & 0o077, 0, 'operator.key (next to it) is 0600');
    for (const file of files.filter((f) => !f.endsWith('.pub'))) assert.equal((await fs.stat(path.join(identityDir, file))).mode & 0o077, 0, `${file} is 0600`);
    await assert.rejects(fs.access(config.stateDir), 'no state directory in RAM-only mode');
    assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  });

  test('without identityDir the relay warns that a reboot forgets everything', async () => {
    const dir = await tempDir();
    await fs.mkdir(path.join(dir, 'op'), { mode: 0o700 });
    const relay = await startRelay({ ramOnly: true, operatorKeyFile: path.join(dir, 'op', 'operator.key') }, { dir });
    const warn = relay.output().split('\n').find((l) => l.includes('RAM-only relay without identityDir'));
    assert.ok(warn, relay.output());
    assert.equal((JSON.parse(warn) as { level: number }).level, 40);
    assert.equal(await relay.stop(), 0, 'relay exit code after SIGTERM');
  });

  test('bad setups refuse to start with the file or setting named', async () => {
    const dir = await tempDir();
    await assert.rejects(startRelay({ identityDir: path.join(dir, 'identity') }, { dir }), /identityDir .* is only for ramOnly: true/);
    const identityDir = path.join(dir, 'identity2');
    await fs.mkdir(identityDir, { recursive: true, mode: 0o700 });
    await fs.writeFile(path.join(identityDir, 'epoch.json'), '{"epoch": "seven"}');
    await assert.rejects(startRelay({ ramOnly: true, identityDir }, { dir }), /epoch\.json: "epoch" must be a positive integer/);
    await fs.writeFile(path.join(identityDir, 'epoch.json'), '{"epo');
    await assert.rejects(startRelay({ ramOnly: true, identityDir }, { dir }), /epoch\.json/);
  });
});

describe('the operator key (issue 11): never in the state directory', () => {
  test('written next to the state directory; an old one inside is moved out; --reset-operator-key replaces a lost one, audited', async () => {
    const dir = await tempDir();
    let relay = await startRelay({}, { dir });
    const outside = path.join(dir, 'operator.key');
    assert.match(relay.output(), /created the operator key/);
    await assert.rejects(fs.access(path.join(relay.stateDir, 'operator.key')), 'not in the state directory');
    assert.equal((await fs.readFile(outside, 'utf8')).trim(), relay.operatorKey);
    assert.equal((await fs.stat(outside)).mode & 0o777, 0o600);
    const first = relay.operatorKey;
    assert.equal(await relay.stop(), 0);

    // A state directory from before: operator.key inside. The start moves it out.
    await fs.rename(outside, path.join(relay.stateDir, 'operator.key'));
    relay = await startRelay({}, { dir });
    assert.match(relay.output(), /moved the operator key out of the state directory/);
    await assert.rejects(fs.access(path.join(relay.stateDir, 'operator.key')));
    assert.equal((await fs.readFile(outside, 'utf8')).trim(), first);
    assert.equal((await relay.operator.listKeys()).length, 1, 'the same key works; none was added');
    assert.equal(await relay.stop(), 0);

    // Lost: reset with the relay stopped, locally, on the state directory.
    const { execFile } = await import('node:child_process');
    const { cliPath } = await import('../helpers/paths.js');
    const newKeyFile = path.join(dir, 'new-operator.key');
    const reset = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [cliPath, 'relay', '--config', path.join(dir, 'relay.json'), '--reset-operator-key', newKeyFile], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
    });
    assert.equal(reset.code, 0, reset.stderr);
    assert.match(reset.stdout, /wrote a new operator key \(id [0-9a-f]{12}\) to .*; revoked [0-9a-f]{12}/);
    assert.doesNotMatch(reset.stdout + reset.stderr, /plk_[0-9a-f]{12}[A-Za-z0-9_-]{43}/, 'the key is not printed');
    assert.equal((await fs.stat(newKeyFile)).mode & 0o777, 0o600);
    relay = await startRelay({}, { dir });
    await assert.rejects(relay.operator.listKeys(), (err: Error & { code?: string }) => err.code === 'key_revoked', 'the lost key is revoked');
    const operator = new RelayClient({ baseUrl: relay.url, apiKey: (await fs.readFile(newKeyFile, 'utf8')).trim() });
    const events = await operator.audit({});
    assert.equal(events.filter((e) => e.event === 'operator_key_reset').length, 1);
    assert.equal(await relay.stop(), 0);
  });

  test('an operatorKeyFile inside the state directory, or a fleetPublicKey that cannot be read, is refused at start', async () => {
    const dir = await tempDir();
    await assert.rejects(startRelay({ operatorKeyFile: path.join(dir, 'state', 'op.key') }, { dir }), /operatorKeyFile .* is inside the state directory/);
    await assert.rejects(startRelay({ fleetPublicKey: path.join(dir, 'nope.pub') }, { dir }), /exited \(1\)[\s\S]*fleetPublicKey: .*nope\.pub/);
  });
});
