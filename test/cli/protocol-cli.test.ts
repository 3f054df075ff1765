/** The real compiled `ghostpipe` CLI as a process: keygen, seal, open, inspect, device approve. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertOneLineFailure, runCli, type CliResult } from '../helpers/cli.js';
import { decodePrivateKeyPem, decodePublicKeyPem, keyIdHex } from '../../protocol/keys.js';
import { envelopeLength, KEM } from '../../protocol/envelope/index.js';
import { openBase } from '../../protocol/hpke/hpke.js';
import { hpkeSuiteId } from '../../protocol/hpke/keyschedule.js';
import { getProvider } from '../../protocol/crypto/provider.js';
import { verifyEnrollmentApproval } from '../../protocol/enrollment.js';

type Result = CliResult;
const run = (args: string[], input?: Uint8Array): Promise<Result> => runCli(args, { cwd: dir, ...(input ? { input } : {}) });

let dir = '';
const k = (name: string): string => path.join(dir, 'keys', name);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ghostpipe-cli-'));
  const results = await Promise.all([
    run(['keygen', '--type', 'device', '--out', 'keys', '--name', 'gw']),
    run(['keygen', '--type', 'receiver', '--out', 'keys', '--name', 'it']),
    run(['keygen', '--type', 'receiver', '--out', 'keys', '--name', 'pq', '--kem', 'ml-kem-768']),
    run(['keygen', '--type', 'device', '--out', 'keys', '--name', 'other']),
  ]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('--help on every command the top-level list names, and unknown commands/options fail in one line', async () => {
  const top = await run(['--help']);
  assert.equal(top.code, 0);
  const names = [...top.stdout.toString().matchAll(/^  ([a-z][a-z0-9-]*)  /gm)].map((m) => m[1]!);
  for (const name of ['keygen', 'seal', 'open', 'inspect']) assert.ok(names.includes(name), `top-level help lists ${name}`);
  // Every listed command, issue 2's and the later ones alike: in parallel, since each is a process start.
  const helps = await Promise.all(names.map((name) => run([name, '--help'])));
  names.forEach((name, i) => {
    assert.equal(helps[i]!.code, 0, `${name} --help: ${helps[i]!.stderr}`);
    assert.match(helps[i]!.stdout.toString(), new RegExp(`^Usage: ghostpipe ${name}\\b`), `${name} --help prints its usage`);
  });
  const [unknownCommand, unknownOption] = await Promise.all([run(['frobnicate']), run(['seal', '--no-such-option'])]);
  assertOneLineFailure(unknownCommand, /unknown command "frobnicate"/, 2);
  assert.equal(unknownOption.code, 2);
  assert.doesNotMatch(unknownOption.stderr, /\n\s+at /, 'no stack trace without --debug');
  assert.match(unknownOption.stderr, /^ghostpipe: seal: .*no-such-option/);
});

test('keygen writes 0600 private and 0644 public PEM files, prints key ids and the DID, never the key', async () => {
  const r = await run(['keygen', '--type', 'firmware', '--out', 'keys', '--name', 'fw', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.toString());
  assert.deepEqual(report.files.map((f: { path: string; mode: string }) => [path.basename(f.path), f.mode]), [['fw.sign.key', '0600'], ['fw.sign.pub', '0644']]);
  const pub = decodePublicKeyPem(await readFile(k('fw.sign.pub'), 'utf8'), 'ML-DSA-65');
  assert.equal(report.keys.sign.keyId, keyIdHex('ML-DSA-65', pub.publicKey));
  assert.match(report.did, /^did:ghostpipe:[a-z2-7]{52}$/);
  const privPem = await readFile(k('fw.sign.key'), 'utf8');
  assert.ok(!r.stdout.toString().includes(privPem.split('\n')[1]!), 'private key material must not be printed');

  for (const [file, mode] of [['gw.sign.key', 0o600], ['gw.kem.key', 0o600], ['gw.sign.pub', 0o644], ['gw.kem.pub', 0o644], ['it.kem.key', 0o600], ['it.kem.pub', 0o644]] as const) {
    assert.equal((await stat(k(file))).mode & 0o777, mode, file);
  }
  assert.equal(decodePrivateKeyPem(await readFile(k('gw.kem.key'), 'utf8')).alg, 'X-Wing');
  assert.equal(decodePrivateKeyPem(await readFile(k('pq.kem.key'), 'utf8')).alg, 'ML-KEM-768');

  const before = await readFile(k('gw.sign.key'), 'utf8');
  assertOneLineFailure(await run(['keygen', '--type', 'device', '--out', 'keys', '--name', 'gw']), /gw\.sign\.key: file exists/, 1);
  assert.equal(await readFile(k('gw.sign.key'), 'utf8'), before, 'existing key untouched');
  assertOneLineFailure(await run(['keygen', '--type', 'laptop', '--out', 'keys']), /--type must be one of device, receiver, relay, firmware, fleet/, 2);
  assertOneLineFailure(await run(['keygen', '--type', 'device']), /--out is required/, 2);
});

test('seal | open round trip, default and ChaCha20-Poly1305 / 64k / ML-KEM-768 suites', async () => {
  const plain = Buffer.from('line 1: 21.5 degC\nbinary \u0000\u00ff end');
  const sealed = await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key')], plain);
  assert.equal(sealed.code, 0, sealed.stderr);
  assert.equal(sealed.stderr, '');
  assert.equal(sealed.stdout.length, envelopeLength(4096, KEM.XWING));
  const opened = await run(['open', '--key', k('it.kem.key'), '--from', k('gw.sign.pub')], sealed.stdout);
  assert.equal(opened.code, 0, opened.stderr);
  assert.deepEqual(opened.stdout, plain);

  const big = Buffer.alloc(10_000, 7);
  const pq = await run(['seal', '--to', k('pq.kem.pub'), '--from', k('gw.sign.key'), '--aead', 'chacha20poly1305', '--bucket', '64k', '--stream', '7', '--seq', '42', '--content-type', 'readings'], big);
  assert.equal(pq.code, 0, pq.stderr);
  assert.equal(pq.stdout.length, envelopeLength(65536, KEM.MLKEM768));
  const pqOpen = await run(['open', '--key', k('pq.kem.key'), '--from', k('gw.sign.pub')], pq.stdout);
  assert.equal(pqOpen.code, 0, pqOpen.stderr);
  assert.deepEqual(pqOpen.stdout, big);

  // Same bucket, same size: the length of the plaintext does not show.
  const empty = await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key')]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout.length, sealed.stdout.length);
});

test('open fails with one line and a non-zero exit on wrong key, wrong signer, tampering and truncation', async () => {
  const sealed = await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key')], Buffer.from('secret reading'));
  assert.equal(sealed.code, 0, sealed.stderr);
  const env = sealed.stdout;
  const tampered = Buffer.from(env);
  tampered[tampered.length - 5000]! ^= 1; // inside the ciphertext
  const cases: [string, string[], Uint8Array, RegExp][] = [
    ['wrong receiver key', ['--key', k('pq.kem.key'), '--from', k('gw.sign.pub')], env, /another recipient|recipient/],
    ['wrong signer', ['--key', k('it.kem.key'), '--from', k('other.sign.pub')], env, /signer/],
    ['tampered ciphertext', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], tampered, /signature/],
    ['truncated', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], env.subarray(0, env.length - 1), /truncated/],
    ['header only', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], env.subarray(0, 50), /truncated/],
    ['empty input', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], new Uint8Array(0), /truncated/],
    ['trailing bytes', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], Buffer.concat([env, Buffer.from('x')]), /after the end/],
    ['garbage', ['--key', k('it.kem.key'), '--from', k('gw.sign.pub')], Buffer.alloc(200, 0x41), /magic|envelope/],
    ['public key as --key', ['--key', k('it.kem.pub'), '--from', k('gw.sign.pub')], env, /PEM label is "PUBLIC KEY"/],
    ['missing key file', ['--key', k('nope.key'), '--from', k('gw.sign.pub')], env, /nope\.key: read key file: no such file/],
    ['KEM key as signer', ['--key', k('it.kem.key'), '--from', k('it.kem.pub')], env, /expected a ML-DSA-65 public key, found X-Wing/],
  ];
  const results = await Promise.all(cases.map(([, args, input]) => run(['open', ...args], input)));
  cases.forEach(([name, , , pattern], i) => {
    assert.doesNotThrow(() => assertOneLineFailure(results[i]!, pattern), `${name}: ${results[i]!.stderr}`);
  });
  const debug = await run(['open', '--key', k('it.kem.key'), '--from', k('other.sign.pub'), '--debug'], env);
  assert.notEqual(debug.code, 0);
  assert.match(debug.stderr, /\n\s+at /, '--debug shows the stack');
});

test('seal refuses bad options and wrong key types with one line', async () => {
  const plain = Buffer.from('x');
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--seq=-1'], plain), /--seq must be an integer/, 2);
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--seq', '18446744073709551616'], plain), /--seq must be an integer/, 2);
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--bucket', '2k'], plain), /--bucket must be one of auto, 4k/, 2);
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--aead', 'aes128gcm'], plain), /--aead must be one of/, 2);
  assertOneLineFailure(await run(['seal', '--to', k('gw.sign.pub'), '--from', k('gw.sign.key')], plain), /expected a X-Wing or ML-KEM-768 public key, found ML-DSA-65/);
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('it.kem.key')], plain), /expected a ML-DSA-65 private key, found X-Wing/);
  assertOneLineFailure(await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--bucket', '4k'], Buffer.alloc(5000)), /does not fit|exceeds/);
  // Option-parser errors (cli/command.ts) print the one-line reason first, then the usage.
  const bogus = await run(['seal', '--bogus'], plain);
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr.split('\n')[0]!, /^ghostpipe: seal: Unknown option '--bogus'/);
  assert.doesNotMatch(bogus.stderr, /\n\s+at /);
});

test('inspect --json shows the header, signer key id and HPKE parameters that open the envelope with plain HPKE', async () => {
  const plain = Buffer.from('inspect me');
  const sealed = await run(['seal', '--to', k('it.kem.pub'), '--from', k('gw.sign.key'), '--stream', '3', '--seq', '1000001', '--aead', 'chacha20poly1305'], plain);
  assert.equal(sealed.code, 0, sealed.stderr);
  const r = await run(['inspect', '--json'], sealed.stdout);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.toString());
  const signPub = decodePublicKeyPem(await readFile(k('gw.sign.pub'), 'utf8')).publicKey;
  const receiver = decodePrivateKeyPem(await readFile(k('it.kem.key'), 'utf8'));
  assert.equal(report.size, sealed.stdout.length);
  assert.equal(report.header.version, 1);
  assert.equal(report.header.kemId, 0x647a);
  assert.equal(report.header.kdfId, 1);
  assert.equal(report.header.aeadId, 3);
  assert.equal(report.header.streamId, 3);
  assert.equal(report.header.sequence, '1000001');
  assert.equal(report.header.bucket, 4096);
  assert.ok(Math.abs(report.header.createdAt - Date.now()) < 120_000);
  assert.equal(report.header.senderKeyId, keyIdHex('ML-DSA-65', signPub));
  assert.equal(report.signature.signerKeyId, keyIdHex('ML-DSA-65', signPub));
  assert.equal(report.header.recipientKeyId, keyIdHex('X-Wing', receiver.publicKey));
  const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
  assert.deepEqual(b(report.hpke.suiteId), hpkeSuiteId(0x647a, 1, 3));
  assert.deepEqual(Buffer.from(b(report.hpke.aad)), sealed.stdout.subarray(0, 109));
  // Any RFC 9180 implementation: base mode, single shot, with the receiver's seed.
  const padded = openBase({ kemId: report.hpke.kemId, kdfId: report.hpke.kdfId, aeadId: report.hpke.aeadId },
    b(report.hpke.enc), receiver.seed, b(report.hpke.info), b(report.hpke.aad), b(report.hpke.ciphertext), getProvider());
  const length = new DataView(padded.buffer, padded.byteOffset).getUint32(0);
  assert.deepEqual(Buffer.from(padded.subarray(4, 4 + length)), plain);

  const text = await run(['inspect'], sealed.stdout);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout.toString(), /^sequence +1000001$/m);
  assert.match(text.stdout.toString(), new RegExp(`^hpke\\.enc +${report.hpke.enc.replace(/[+/]/g, '\\$&')}$`, 'm'));
  assertOneLineFailure(await run(['inspect'], sealed.stdout.subarray(0, 200)), /truncated/);
});

test('a group-readable key still works but warns on stderr without key material', async () => {
  const copy = k('loose.sign.key');
  const pem = await readFile(k('gw.sign.key'), 'utf8');
  await writeFile(copy, pem, { mode: 0o644 });
  const r = await run(['seal', '--to', k('it.kem.pub'), '--from', copy], Buffer.from('x'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^ghostpipe: warning: private key file .*loose\.sign\.key is readable by group or others \(mode 0644\)/);
  assert.ok(!r.stderr.includes(pem.split('\n')[1]!));
});

test('keygen --type fleet and device approve: a fleet approval of exactly the device keys; bad input fails in one line', async () => {
  const keygen = await run(['keygen', '--type', 'fleet', '--out', 'keys', '--name', 'fleet']);
  assert.equal(keygen.code, 0, keygen.stderr);
  assert.equal((await stat(k('fleet.sign.key'))).mode & 0o777, 0o600);
  const approve = (extra: string[]) => run(['device', 'approve', '--fleet-key', k('fleet.sign.key'), '--sign-pub', k('gw.sign.pub'), '--kem-pub', k('gw.kem.pub'), ...extra]);
  const r = await approve(['--api-key-id', '0123456789AB', '--valid', '30d', '--out', 'gw.approval']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /^approved did:ghostpipe:[a-z2-7]{52} for API key 0123456789ab until \S+; wrote gw\.approval\n$/);
  const file = JSON.parse(await readFile(path.join(dir, 'gw.approval'), 'utf8'));
  assert.equal(file.type, 'ghostpipe-fleet-approval');
  const fleetPub = decodePublicKeyPem(await readFile(k('fleet.sign.pub'), 'utf8'), 'ML-DSA-65').publicKey;
  const gw = { sign: decodePublicKeyPem(await readFile(k('gw.sign.pub'), 'utf8'), 'ML-DSA-65').publicKey, kem: decodePublicKeyPem(await readFile(k('gw.kem.pub'), 'utf8'), 'X-Wing').publicKey };
  const statement = verifyEnrollmentApproval(Buffer.from(file.statement, 'base64'), Buffer.from(file.signature, 'base64'), { fleetPublicKey: fleetPub, signingPublicKey: gw.sign, kemPublicKey: gw.kem, now: Date.now() });
  assert.equal(statement.apiKeyId, '0123456789ab');
  assert.equal(statement.did, file.did);
  assert.equal(statement.notAfter - statement.notBefore, 30 * 86_400_000);
  assert.equal(file.fleetKeyId, keyIdHex('ML-DSA-65', fleetPub));
  assert.ok(!r.stdout.toString().includes((await readFile(k('fleet.sign.key'), 'utf8')).split('\n')[1]!), 'no fleet key material printed');

  assertOneLineFailure(await approve(['--api-key-id', '0123456789ab', '--out', 'gw.approval']), /gw\.approval exists/, 1);
  assertOneLineFailure(await approve(['--api-key-id', 'pgp_0123', '--out', 'x.approval']), /--api-key-id must be the 12 hex digits/, 2);
  assertOneLineFailure(await approve(['--api-key-id', '0123456789ab', '--valid', 'forever', '--out', 'x.approval']), /--valid/, 2);
  assertOneLineFailure(await run(['device', 'approve', '--fleet-key', k('fleet.sign.key'), '--sign-pub', k('gw.kem.pub'), '--kem-pub', k('gw.kem.pub'), '--api-key-id', '0123456789ab', '--out', 'x.approval']), /gw\.kem\.pub/, 2);
  assertOneLineFailure(await run(['device', 'sign']), /unknown action "sign"; use approve/, 2);
});
