import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  KeyFileError, bundlePaths, loadDeviceKeys, loadPublicKey, loadReceiverKey, loadSigningKey, readPrivateKeyFile,
  writeKeyBundle, writePrivateKeyFile, writePublicKeyFile,
} from './keyfile.js';
import { encodePrivateKeyPem, generatePrivateKey } from '../protocol/keys.js';
import { didFromSigningKey } from '../protocol/did.js';

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ghostpipe-keyfile-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const mode = async (file: string): Promise<number> => (await stat(file)).mode & 0o777;

async function rejectsWith(promise: Promise<unknown>, code: KeyFileError['code'], pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof KeyFileError, `expected KeyFileError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

test('private keys are written 0600 and public keys 0644, whatever the umask, and never overwritten by default', async () => {
  await withTempDir(async (dir) => {
    const oldMask = process.umask(0o000);
    try {
      const key = generatePrivateKey('ML-DSA-65');
      const priv = path.join(dir, 'a.key');
      const pub = path.join(dir, 'a.pub');
      await writePrivateKeyFile(priv, encodePrivateKeyPem(key));
      await writePublicKeyFile(pub, 'public');
      assert.equal(await mode(priv), 0o600);
      assert.equal(await mode(pub), 0o644);
      await rejectsWith(writePrivateKeyFile(priv, 'other'), 'exists', /refusing to overwrite/);
      assert.equal(await readFile(priv, 'utf8'), encodePrivateKeyPem(key));
      // Overwrite replaces content and fixes a loose mode.
      await chmod(priv, 0o644);
      await writePrivateKeyFile(priv, 'replaced', { overwrite: true });
      assert.equal(await readFile(priv, 'utf8'), 'replaced');
      assert.equal(await mode(priv), 0o600);
    } finally {
      process.umask(oldMask);
    }
  });
});

test('reading warns about group/world-readable private keys and names missing or bad files', async () => {
  await withTempDir(async (dir) => {
    const key = generatePrivateKey('X-Wing');
    const file = path.join(dir, 'r.kem.key');
    await writePrivateKeyFile(file, encodePrivateKeyPem(key));
    const warnings: string[] = [];
    await readPrivateKeyFile(file, (w) => warnings.push(w));
    assert.equal(warnings.length, 0);
    await chmod(file, 0o640);
    assert.deepEqual((await loadReceiverKey(file, (w) => warnings.push(w))).seed, key.seed);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /readable by group or others \(mode 0640\); run: chmod 600/);
    assert.ok(!warnings[0]!.includes(encodePrivateKeyPem(key).split('\n')[1]!), 'warning must not contain key material');

    await rejectsWith(loadSigningKey(path.join(dir, 'missing.key')), 'not_found', /missing\.key: read key file: no such file/);
    await rejectsWith(loadSigningKey(dir), 'not_a_file');
    await rejectsWith(loadSigningKey(file), 'bad_key', /expected a ML-DSA-65 private key, found X-Wing/);
    const garbage = path.join(dir, 'garbage.key');
    await writeFile(garbage, 'not a key', { mode: 0o600 });
    await rejectsWith(loadSigningKey(garbage), 'bad_key', /garbage\.key: not a single PEM block/);
    const huge = path.join(dir, 'huge.key');
    await writeFile(huge, 'A'.repeat(100_000), { mode: 0o600 });
    await rejectsWith(loadSigningKey(huge), 'too_large');
    await rejectsWith(loadPublicKey(file), 'bad_key', /PEM label is "PRIVATE KEY", expected "PUBLIC KEY"/);
    if (process.getuid?.() !== 0) {
      await chmod(file, 0o000);
      await rejectsWith(loadReceiverKey(file), 'unreadable', /permission denied/);
    }
  });
});

test('key bundles: the layout per type, DIDs, loaders, and refusal to half-overwrite', async () => {
  await withTempDir(async (dir) => {
    const out = path.join(dir, 'keys');
    const device = await writeKeyBundle('device', out, 'gw1');
    const p = bundlePaths(out, 'gw1');
    assert.deepEqual(device.files.map((f) => [path.basename(f.path), f.alg, f.mode]), [
      ['gw1.sign.key', 'ML-DSA-65', 0o600], ['gw1.kem.key', 'X-Wing', 0o600],
      ['gw1.sign.pub', 'ML-DSA-65', 0o644], ['gw1.kem.pub', 'X-Wing', 0o644],
    ]);
    for (const f of device.files) assert.equal(await mode(f.path), f.mode);
    assert.equal(await mode(out), 0o700);
    const loaded = await loadDeviceKeys({ dir: out, name: 'gw1' });
    assert.equal(loaded.did, device.did);
    assert.equal(loaded.did, didFromSigningKey((await loadPublicKey(p.signPub, ['ML-DSA-65'])).publicKey));
    assert.deepEqual(loaded.kem.publicKey, (await loadPublicKey(p.kemPub)).publicKey);
    assert.deepEqual((await loadDeviceKeys({ signKey: p.signKey, kemKey: p.kemKey })).signing, loaded.signing);

    const receiver = await writeKeyBundle('receiver', out, 'it1', { kem: 'ML-KEM-768' });
    assert.deepEqual(receiver.files.map((f) => path.basename(f.path)), ['it1.kem.key', 'it1.kem.pub']);
    assert.equal(receiver.did, undefined);
    assert.equal((await loadReceiverKey(path.join(out, 'it1.kem.key'))).alg, 'ML-KEM-768');
    for (const type of ['relay', 'firmware'] as const) {
      const b = await writeKeyBundle(type, out, type);
      assert.deepEqual(b.files.map((f) => path.basename(f.path)), [`${type}.sign.key`, `${type}.sign.pub`]);
      assert.match(b.did!, /^did:ghostpipe:/);
    }

    // A leftover public file blocks the whole bundle: nothing is written.
    await mkdir(path.join(dir, 'partial'));
    await writeFile(path.join(dir, 'partial', 'x.kem.pub'), 'old');
    await rejectsWith(writeKeyBundle('device', path.join(dir, 'partial'), 'x'), 'exists', /x\.kem\.pub/);
    await assert.rejects(stat(path.join(dir, 'partial', 'x.sign.key')), { code: 'ENOENT' });
    const again = await writeKeyBundle('device', out, 'gw1', { overwrite: true });
    assert.notEqual(again.did, device.did);
    await rejectsWith(writeKeyBundle('device', out, '../escape'), 'bad_name');
    await rejectsWith(writeKeyBundle('device', out, ''), 'bad_name');
  });
});
