import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  CheckpointError, MAX_CHECKPOINT_BYTES, MerkleTree, NoteError, formatCheckpoint, mlDsaNoteSigner, mlDsaNoteVerifier,
  openCheckpoint, parseCheckpoint, signCheckpoint, signNote,
} from './index.js';
import { getProvider } from '../crypto/provider.js';

const root32 = new Uint8Array(32).map((_, i) => i);
const rootB64 = Buffer.from(root32).toString('base64');

test('format and parse round trip, with and without extension lines', () => {
  const text = formatCheckpoint({ origin: 'example.com/behind-the-sofa', size: 20852163, root: root32 });
  assert.equal(text, `example.com/behind-the-sofa\n20852163\n${rootB64}\n`);
  assert.deepEqual(parseCheckpoint(text), { origin: 'example.com/behind-the-sofa', size: 20852163, root: root32, extensions: [] });
  const withExt = formatCheckpoint({ origin: 'o', size: 0, root: root32, extensions: ['— ext one', 'two'] });
  assert.deepEqual(parseCheckpoint(withExt).extensions, ['— ext one', 'two']);
  assert.equal(parseCheckpoint(withExt).size, 0);
  assert.equal(parseCheckpoint(`o\n${Number.MAX_SAFE_INTEGER}\n${rootB64}\n`).size, Number.MAX_SAFE_INTEGER);
  assert.equal(parseCheckpoint(`origin with spaces + plus\n1\n${rootB64}\n`).origin, 'origin with spaces + plus', 'origin format is only a recommendation');
});

test('malformed checkpoint text gives typed errors naming the line', () => {
  const good = `example.com/log\n17\n${rootB64}\n`;
  const rejects = (text: unknown, code: string, why: string): void => {
    assert.throws(() => parseCheckpoint(text as string), (err: unknown) => err instanceof CheckpointError && err.code === code, why);
  };
  for (let cut = 0; cut < good.length; cut++) assert.throws(() => parseCheckpoint(good.slice(0, cut)), CheckpointError, `truncated at ${cut}`);
  rejects(good.slice(0, -1), 'malformed', 'missing final newline');
  rejects(`\n17\n${rootB64}\n`, 'bad_origin', 'empty origin');
  rejects(`o\n017\n${rootB64}\n`, 'bad_size', 'leading zero');
  rejects(`o\n00\n${rootB64}\n`, 'bad_size', 'double zero');
  rejects(`o\n-1\n${rootB64}\n`, 'bad_size', 'negative');
  rejects(`o\n+1\n${rootB64}\n`, 'bad_size', 'plus sign');
  rejects(`o\n1e3\n${rootB64}\n`, 'bad_size', 'exponent');
  rejects(`o\n 17\n${rootB64}\n`, 'bad_size', 'leading space');
  rejects(`o\n0x11\n${rootB64}\n`, 'bad_size', 'hex');
  rejects(`o\n\n${rootB64}\n`, 'bad_size', 'empty size');
  rejects(`o\n9007199254740992\n${rootB64}\n`, 'bad_size', '2^53 is beyond safe integers');
  rejects(`o\n123456789012345678901\n${rootB64}\n`, 'bad_size', 'beyond uint64');
  rejects(`o\n1\n${rootB64.slice(0, -1)}\n`, 'bad_root', 'missing padding');
  rejects(`o\n1\n${rootB64.replace('A', '*')}\n`, 'bad_root', 'bad base64 character');
  rejects(`o\n1\n${Buffer.alloc(31).toString('base64')}\n`, 'bad_root', '31-byte root');
  rejects(`o\n1\n${Buffer.alloc(33).toString('base64')}\n`, 'bad_root', '33-byte root');
  rejects(`o\n1\n\n`, 'bad_root', 'empty root');
  rejects(`o\n1\n${rootB64}\n\n`, 'bad_extension', 'empty extension line');
  rejects(`o\n1\n${rootB64}\next\n\nmore\n`, 'bad_extension', 'empty line between extensions');
  rejects(`o\r\n1\n${rootB64}\n`, 'malformed', 'CRLF line ending');
  rejects(`o\n1\n${rootB64}\nbad\u0000ext\n`, 'malformed', 'NUL byte');
  rejects(`o\ud800\n1\n${rootB64}\n`, 'malformed', 'lone surrogate (not UTF-8 encodable)');
  rejects(`o\n1\n${rootB64}\n${'x'.repeat(MAX_CHECKPOINT_BYTES)}\n`, 'oversized', 'oversized');
  rejects(42, 'malformed', 'not a string');

  assert.throws(() => formatCheckpoint({ origin: '', size: 1, root: root32 }), { code: 'bad_origin' });
  assert.throws(() => formatCheckpoint({ origin: 'a\nb', size: 1, root: root32 }), { code: 'bad_origin' });
  assert.throws(() => formatCheckpoint({ origin: 'o', size: -1, root: root32 }), { code: 'bad_size' });
  assert.throws(() => formatCheckpoint({ origin: 'o', size: 1.5, root: root32 }), { code: 'bad_size' });
  assert.throws(() => formatCheckpoint({ origin: 'o', size: 1, root: new Uint8Array(31) }), { code: 'bad_root' });
  assert.throws(() => formatCheckpoint({ origin: 'o', size: 1, root: root32, extensions: [''] }), { code: 'bad_extension' });
  assert.throws(() => formatCheckpoint({ origin: 'o', size: 1, root: root32, extensions: ['a\nb'] }), { code: 'bad_extension' });
  assert.throws(() => formatCheckpoint({ origin: 'o\t', size: 1, root: root32 }), { code: 'malformed' });
});

test('signed checkpoints of a real tree: ML-DSA-65 sign, open, origin check', () => {
  const provider = getProvider();
  const seed = new Uint8Array(randomBytes(32));
  const signer = mlDsaNoteSigner('relay.test/log', seed, provider);
  const verifier = mlDsaNoteVerifier('relay.test/log', provider.mlDsa65.publicKeyFromSeed(seed), provider);
  const tree = new MerkleTree();
  for (let i = 0; i < 10; i++) tree.appendData(Uint8Array.of(i));
  const note = signCheckpoint({ origin: 'relay.test/log', size: tree.size, root: tree.root() }, [signer]);
  const opened = openCheckpoint(note, [verifier], 'relay.test/log');
  assert.equal(opened.checkpoint.size, 10);
  assert.deepEqual(opened.checkpoint.root, tree.root());
  assert.equal(opened.note, note);
  assert.throws(() => openCheckpoint(note, [verifier], 'relay.test/other'), { name: 'CheckpointError', code: 'bad_origin' });
  // A signed note whose text is not a checkpoint is refused after signature verification.
  const notCheckpoint = signCheckpoint({ origin: 'relay.test/log', size: 1, root: root32 }, [signer]).replace(/^relay.test\/log\n1\n/, '');
  assert.throws(() => openCheckpoint(notCheckpoint, [verifier]), NoteError, 'changed text no longer matches the signature');
  assert.throws(() => openCheckpoint(signNote('just a note\n', [signer]), [verifier]), { name: 'CheckpointError', code: 'malformed' });
});
