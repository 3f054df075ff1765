import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { ml_dsa65 } from '@noble/post-quantum/ml-dsa.js';
import { vectorsDir } from '../../test/helpers/paths.js';
import { availableProviders } from '../crypto/provider.js';
import {
  MAX_NOTE_BYTES, MAX_SIGNATURES, ML_DSA_65_TYPE, NoteError, ed25519NoteSigner, ed25519NoteVerifier, ed25519VerifierKey,
  leafHash, mlDsaNoteSigner, mlDsaNoteVerifier, mlDsaSignerKey, mlDsaVerifierKey, openCheckpoint, openNote, parseCheckpoint,
  parseNote, parseSignerKey, parseVerifierKey, signNote, type NoteSigner,
} from './index.js';

interface NoteCase {
  id: string; skey?: string; vkey?: string; vkeys?: string[]; key_id?: string; text?: string; signature_line?: string;
  signed_note?: string; origin?: string; tree_size?: number; root_hash_b64?: string; bad_bodies?: string[];
}
const cases = (JSON.parse(readFileSync(path.join(vectorsDir, 'signed-note', 'signed-note-examples.json'), 'utf8')) as { cases: NoteCase[] }).cases;
const byId = (id: string): NoteCase => {
  const found = cases.find((c) => c.id === id);
  assert.ok(found, `vector ${id} exists`);
  return found;
};
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const peter = byId('sumdb-note-PeterNeumann');
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

test('signed-note vectors: every case checked (Go sumdb/note and C2SP examples)', () => {
  const checked = new Set<string>();
  const check = (id: string, fn: (c: NoteCase) => void): void => {
    fn(byId(id));
    checked.add(id);
  };

  check('sumdb-note-PeterNeumann', (c) => {
    const signer = parseSignerKey(c.skey!);
    assert.equal(hex(signer.keyId), c.key_id);
    assert.equal(signNote(c.text!, [signer]), c.signed_note, 'Ed25519 signing reproduces the note byte for byte');
    assert.equal(c.signed_note, `${c.text}\n${c.signature_line}`);
    const opened = openNote(c.signed_note!, [parseVerifierKey(c.vkey!)]);
    assert.equal(opened.text, c.text);
    assert.deepEqual(opened.signatures.map((s) => [s.name, hex(s.keyId), s.verified]), [['PeterNeumann', 'c74f20a3', true]]);
    assert.equal(openNote(utf8(c.signed_note!), [parseVerifierKey(c.vkey!)]).text, c.text, 'bytes input');
  });

  check('sumdb-note-PeterNeumann+EnochRoot', (c) => {
    const [peterKey, enochKey] = c.vkeys!.map((k) => parseVerifierKey(k));
    const both = openNote(c.signed_note!, [peterKey!, enochKey!]);
    assert.deepEqual(both.signatures.map((s) => [s.name, s.verified]), [['PeterNeumann', true], ['EnochRoot', true]]);
    const one = openNote(c.signed_note!, [peterKey!]);
    assert.deepEqual(one.signatures.map((s) => [s.name, s.verified]), [['PeterNeumann', true], ['EnochRoot', false]]);
    // EnochRoot's seed is 32 zero bytes: reproduce its vkey and the two-signature note.
    const enoch = ed25519NoteSigner('EnochRoot', new Uint8Array(32));
    assert.equal(signNote(c.text!, [parseSignerKey(peter.skey!), enoch]), c.signed_note);
    assert.equal(hex(enoch.keyId), 'af0cfe78');
  });

  check('sumdb-note-PeterNeumann-tampered-signature', (c) => {
    assert.throws(() => openNote(c.signed_note!, [parseVerifierKey(c.vkey!)]), { name: 'NoteError', code: 'bad_signature' });
  });
  for (const id of ['sumdb-note-malformed-no-signature', 'sumdb-note-malformed-missing-final-newline', 'sumdb-note-malformed-trailing-line']) {
    check(id, (c) => assert.throws(() => openNote(c.signed_note!, [parseVerifierKey(c.vkey!)]), { name: 'NoteError', code: 'malformed' }, id));
  }

  check('c2sp-signed-note-example.com/foo', (c) => {
    const verifier = parseVerifierKey(c.vkey!);
    assert.equal(hex(verifier.keyId), c.key_id);
    assert.equal(openNote(c.signed_note!, [verifier]).text, c.text);
  });

  check('c2sp-signed-note-intro-quasimodo', (c) => {
    const parsed = parseNote(c.signed_note!);
    assert.equal(parsed.text, 'Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n');
    assert.deepEqual(parsed.signatures.map((s) => [s.name, s.signature.length]), [['quasimodo.example/salvatore', 64]]);
    assert.throws(() => openNote(c.signed_note!, [parseVerifierKey(peter.vkey!)]), { code: 'unverified' });
  });

  check('c2sp-tlog-checkpoint-example', (c) => {
    const checkpoint = parseCheckpoint(parseNote(c.signed_note!).text);
    assert.equal(checkpoint.origin, c.origin);
    assert.equal(checkpoint.size, c.tree_size);
    assert.equal(Buffer.from(checkpoint.root).toString('base64'), c.root_hash_b64);
    assert.deepEqual(checkpoint.extensions, []);
  });

  check('c2sp-tlog-cosignature-example', (c) => {
    const parsed = parseNote(c.signed_note!);
    assert.deepEqual(parsed.signatures.map((s) => [s.name, s.signature.length]), [['example.com/behind-the-sofa', 64], ['witness.example.com/w1', 72]]);
    const cosig = parsed.signatures[1]!.signature;
    assert.equal(Number(new DataView(cosig.buffer, cosig.byteOffset).getBigUint64(0)), 1679315147);
  });

  check('sumdb-test-keypair-localhost.localdev/sumdb', (c) => {
    const signer = parseSignerKey(c.skey!);
    const verifier = parseVerifierKey(c.vkey!);
    assert.equal(hex(signer.keyId), c.key_id);
    assert.equal(hex(verifier.keyId), c.key_id);
    const body = 'localhost.localdev/sumdb\n5\n' + Buffer.alloc(32, 7).toString('base64') + '\n';
    const note = signNote(body, [signer]);
    assert.equal(openCheckpoint(note, [verifier], 'localhost.localdev/sumdb').checkpoint.size, 5);
  });

  check('sumdb-tlog-tree-note-body', (c) => {
    const checkpoint = parseCheckpoint(c.text!);
    assert.equal(checkpoint.origin, 'go.sum database tree');
    assert.equal(checkpoint.size, 123456789012);
    assert.deepEqual(checkpoint.root, leafHash(utf8('hello world')));
    const [wrongOrigin, hexSize, badHash] = c.bad_bodies!;
    assert.notEqual(parseCheckpoint(wrongOrigin!).origin, c.origin, 'wrong origin is caught by the caller\'s origin check');
    assert.throws(() => parseCheckpoint(hexSize!), { name: 'CheckpointError', code: 'bad_size' });
    assert.throws(() => parseCheckpoint(badHash!), { name: 'CheckpointError', code: 'bad_root' });
  });

  assert.deepEqual([...checked].sort(), cases.map((c) => c.id).sort(), 'every vector case is covered');
  assert.equal(checked.size, 12);
});

test('ML-DSA-65 0xff note keys: key ID, vkey text, empty context, every provider', () => {
  const seed = new Uint8Array(randomBytes(32));
  const providers = availableProviders();
  const signers = providers.map((p) => mlDsaNoteSigner('relay.example/log', seed, p));
  const publicKey = providers[0]!.mlDsa65.publicKeyFromSeed(seed);
  const expectedId = createHash('sha256').update('relay.example/log\n').update(Uint8Array.of(0xff, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12)).update(publicKey).digest().subarray(0, 4);
  for (const signer of signers) assert.equal(hex(signer.keyId), hex(expectedId));
  assert.equal(hex(ML_DSA_65_TYPE), 'ff06096086480165030403' + '12');

  const vkey = mlDsaVerifierKey('relay.example/log', publicKey);
  assert.match(vkey, /^relay\.example\/log\+[0-9a-f]{8}\+/);
  assert.equal(vkey, `relay.example/log+${hex(expectedId)}+${Buffer.concat([ML_DSA_65_TYPE, publicKey]).toString('base64')}`);
  const text = 'relay.example/log\n1\n' + Buffer.alloc(32, 1).toString('base64') + '\n';
  for (const signer of signers) {
    const note = signNote(text, [signer]);
    for (const provider of providers) {
      const opened = openNote(note, [parseVerifierKey(vkey, provider)]);
      assert.equal(opened.signatures[0]!.verified, true, 'each provider verifies what the other signed');
    }
    // Interop: the signature is plain FIPS 204 ML-DSA-65 over the note text, empty context.
    const signature = parseNote(note).signatures[0]!.signature;
    assert.equal(signature.length, 3309);
    assert.equal(ml_dsa65.verify(signature, utf8(text), publicKey), true);
    assert.equal(ml_dsa65.verify(signature, utf8(text), publicKey, { context: utf8('ghostpipe/checkpoint/v1') }), false);
  }

  // Signer key text round trip.
  const skey = mlDsaSignerKey('relay.example/log', seed);
  assert.equal(hex(parseSignerKey(skey).keyId), hex(expectedId));
  // A flipped signature bit from a known key rejects the whole note.
  const note = signNote(text, [signers[0]!]);
  const parsed = parseNote(note);
  const sig = Buffer.concat([parsed.signatures[0]!.keyId, parsed.signatures[0]!.signature]);
  sig[100]! ^= 0x01;
  const tampered = `${text}\n\u2014 relay.example/log ${sig.toString('base64')}\n`;
  assert.throws(() => openNote(tampered, [mlDsaNoteVerifier('relay.example/log', publicKey)]), { code: 'bad_signature' });
  // The same key under a different name is a different key (ID), so it is ignored.
  assert.throws(() => openNote(note, [mlDsaNoteVerifier('other.example/log', publicKey)]), { code: 'unverified' });
});

test('a note with 20 ML-DSA-65 signatures verifies; unknown keys are ignored', () => {
  const signers: NoteSigner[] = [];
  const verifiers = [];
  for (let i = 0; i < 20; i++) {
    const seed = new Uint8Array(randomBytes(32));
    signers.push(mlDsaNoteSigner(`witness${i}.example`, seed));
    verifiers.push(mlDsaNoteVerifier(`witness${i}.example`, availableProviders()[0]!.mlDsa65.publicKeyFromSeed(seed)));
  }
  const text = 'relay.example/log\n42\n' + Buffer.alloc(32, 9).toString('base64') + '\n';
  const note = signNote(text, signers);
  assert.ok(note.length > 20 * 4400, 'the note carries 20 large signatures');
  const all = openNote(note, verifiers);
  assert.equal(all.signatures.filter((s) => s.verified).length, 20);
  const some = openNote(note, verifiers.slice(5, 7));
  assert.deepEqual(some.signatures.map((s) => s.verified).filter(Boolean).length, 2);
  assert.equal(some.signatures.length, 20);
});

test('malformed notes are rejected with typed errors', () => {
  const verifier = parseVerifierKey(peter.vkey!);
  const good = peter.signed_note!;
  const sigLine = peter.signature_line!;
  const malformed = (note: string | Uint8Array, why: string): void => {
    assert.throws(() => openNote(note, [verifier]), (err: unknown) => err instanceof NoteError && err.code === 'malformed', why);
  };
  // Every truncation fails (the final newline is required).
  for (let cut = 0; cut < good.length; cut++) {
    assert.throws(() => openNote(good.slice(0, cut), [verifier]), NoteError, `truncated at ${cut}`);
  }
  malformed(good.slice(0, -1), 'missing final newline');
  malformed(good.replace('\n\n', '\n'), 'no blank line');
  malformed(good + sigLine, 'duplicated signature line');
  malformed(good.replace('x08go', 'x08g!'), 'bad base64 character');
  malformed(good.replace('AM=\n', 'AM\n'), 'missing base64 padding');
  malformed(good.replace('AM=\n', 'AN=\n'), 'non-canonical base64 (padding bits set)');
  malformed(good.replace('\u2014 ', '- '), 'hyphen instead of em dash');
  malformed(good.replace('\u2014 PeterNeumann ', '\u2014 PeterNeumann'), 'no space before the signature');
  malformed(good.replace('PeterNeumann x', 'Peter+Neumann x'), 'plus in key name');
  malformed(good.replace('\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=', '\u2014 PeterNeumann AAAA'), 'signature shorter than key ID + 1 byte');
  malformed(good.replace('cryptography', 'crypto\rgraphy'), 'control character in text');
  malformed(good.replace('cryptography', 'crypto\ud800graphy'), 'lone surrogate');
  malformed(good + '\n', 'trailing blank line');
  // Non-UTF-8 bytes.
  const bytes = Buffer.from(good, 'utf8');
  bytes[3] = 0xff;
  malformed(new Uint8Array(bytes), 'invalid UTF-8 byte');
  malformed(new Uint8Array([...Buffer.from(good.slice(0, 10)), 0xc3, ...Buffer.from(good.slice(10))]), 'truncated UTF-8 sequence');

  // Oversized: too many bytes, too many signature lines.
  const huge = 'x'.repeat(MAX_NOTE_BYTES) + '\n\n' + sigLine;
  assert.throws(() => openNote(huge, [verifier]), { code: 'oversized' });
  assert.throws(() => openNote(new Uint8Array(MAX_NOTE_BYTES + 1), [verifier]), { code: 'oversized' });
  const manySigners = Array.from({ length: MAX_SIGNATURES + 1 }, (_, i) => `\u2014 k${i} ${Buffer.alloc(68, i).toString('base64')}\n`).join('');
  assert.throws(() => openNote(peter.text + '\n' + manySigners, [verifier]), { code: 'oversized' });
  const maxSigners = Array.from({ length: MAX_SIGNATURES - 1 }, (_, i) => `\u2014 k${i} ${Buffer.alloc(68, i).toString('base64')}\n`).join('');
  assert.equal(openNote(good + maxSigners, [verifier]).signatures.length, MAX_SIGNATURES, 'exactly the limit is accepted');

  // Unknown keys: same name other ID, or same ID other name, are ignored, never verified.
  const otherId = good.replace('x08go', 'AAAAo');
  assert.throws(() => openNote(otherId, [verifier]), { code: 'unverified' });
  assert.throws(() => openNote(good.replace('PeterNeumann x', 'PeterNeuman x'), [verifier]), { code: 'unverified' });
  assert.throws(() => openNote(good, []), { code: 'unverified' });
  // An unverified note stays unverified even when signed by many unknown keys.
  assert.throws(() => openNote(byId('c2sp-signed-note-example.com/foo').signed_note!, [verifier]), { code: 'unverified' });
});

test('signing and key text inputs are validated', () => {
  const signer = parseSignerKey(peter.skey!);
  assert.throws(() => signNote('no newline', [signer]), { code: 'malformed' });
  assert.throws(() => signNote('tab\there\n', [signer]), { code: 'malformed' });
  assert.throws(() => signNote('text\n', []), { code: 'malformed' });
  assert.throws(() => signNote('text\n', [{ ...signer, name: 'bad name' }]), { code: 'malformed' });
  assert.throws(() => signNote('text\n', [{ ...signer, keyId: new Uint8Array(3) }]), { code: 'malformed' });
  // Text with inner blank lines round-trips (the last blank line separates).
  const text = 'a\n\nb\n\n';
  assert.equal(openNote(signNote(text, [signer]), [parseVerifierKey(peter.vkey!)]).text, text);

  const vkey = peter.vkey!;
  const bad = (k: string, why: string): void => assert.throws(() => parseVerifierKey(k), { name: 'NoteError', code: 'malformed' }, why);
  bad('PeterNeumann', 'no plus');
  bad('PeterNeumann+c74f20a3', 'one plus');
  bad(vkey.replace('c74f20a3', 'c74f20a4'), 'key ID does not match key');
  bad(vkey.replace('c74f20a3', 'c74f20'), 'short key ID');
  bad(vkey.replace('c74f20a3', 'c74f20ag'), 'non-hex key ID');
  bad(vkey.replace('+ARpc', '+ARp!'), 'bad base64');
  bad(vkey.replace('+ARpc', '+AxpC'), 'unknown type byte');
  bad('PeterNeumann+c74f20a3+' + Buffer.concat([Buffer.of(1), Buffer.alloc(31)]).toString('base64'), 'short Ed25519 key');
  bad('x+00000000+' + Buffer.concat([ML_DSA_65_TYPE, Buffer.alloc(100)]).toString('base64'), 'short ML-DSA key');
  bad('+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', 'empty name');
  assert.throws(() => parseSignerKey(vkey), { code: 'malformed' }, 'vkey is not an skey');
  assert.throws(() => parseSignerKey(peter.skey!.replace('c74f20a3', '00000000')), { code: 'malformed' });
  // Error messages never echo key material.
  try {
    parseSignerKey(peter.skey!.replace('c74f20a3', '00000000'));
  } catch (err) {
    assert.ok(!(err as Error).message.includes('AYEKFALV'), 'secret key text is not in the message');
  }
  // Ed25519 helpers agree with the vector key.
  const verifier = parseVerifierKey(vkey);
  const pk = Buffer.from(vkey.split('+')[2]!, 'base64').subarray(1);
  assert.equal(ed25519VerifierKey('PeterNeumann', pk), vkey);
  assert.equal(hex(ed25519NoteVerifier('PeterNeumann', pk).keyId), hex(verifier.keyId));
  assert.throws(() => openNote(peter.signed_note!, [verifier, parseVerifierKey(vkey)]), TypeError, 'ambiguous verifiers are a caller error');
});
