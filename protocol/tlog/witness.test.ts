import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  MerkleTree, Witness, WitnessError, ed25519NoteSigner, ed25519NoteVerifier, emptyRoot, mlDsaNoteSigner, mlDsaNoteVerifier,
  parseNote, signCheckpoint, type NoteSigner, type NoteVerifier, type WitnessErrorCode,
} from './index.js';
import { getProvider } from '../crypto/provider.js';

const ORIGIN = 'relay.test/log';

function mlDsaKey(name: string): { signer: NoteSigner; verifier: NoteVerifier } {
  const provider = getProvider();
  const seed = new Uint8Array(randomBytes(32));
  return { signer: mlDsaNoteSigner(name, seed, provider), verifier: mlDsaNoteVerifier(name, provider.mlDsa65.publicKeyFromSeed(seed), provider) };
}

function treeOf(leaves: string[]): MerkleTree {
  const tree = new MerkleTree();
  for (const leaf of leaves) tree.appendData(new TextEncoder().encode(leaf));
  return tree;
}

const leaves = Array.from({ length: 40 }, (_, i) => `entry ${i}`);

function rejects(fn: () => unknown, code: WitnessErrorCode, why: string): WitnessError {
  let caught: unknown;
  assert.throws(fn, (err: unknown) => {
    caught = err;
    return err instanceof WitnessError && err.code === code;
  }, why);
  return caught as WitnessError;
}

test('witness follows a growing log and rejects rollback, fork, bad proof, bad signature, wrong origin', () => {
  const relay = mlDsaKey(ORIGIN);
  const honest = treeOf(leaves);
  const sign = (tree: MerkleTree, size: number, signer = relay.signer, origin = ORIGIN): string =>
    signCheckpoint({ origin, size, root: tree.root(size) }, [signer]);

  const witness = new Witness(ORIGIN, [relay.verifier]);
  assert.equal(witness.checkpoint.size, 0);
  assert.deepEqual(witness.checkpoint.root, emptyRoot());

  const note5 = sign(honest, 5);
  assert.deepEqual(witness.update(note5, null).changed, true, 'anything extends the empty tree');
  assert.equal(witness.update(note5, []).changed, false, 'same checkpoint again');
  const note9 = sign(honest, 9);
  assert.equal(witness.update(note9, honest.consistencyProof(5, 9)).changed, true);
  assert.equal(witness.checkpoint.size, 9);
  assert.equal(witness.checkpoint.note, note9);

  rejects(() => witness.update(note5, []), 'rollback', 'older checkpoint');

  // A forked log: entry 7 rewritten.
  const forked = treeOf(leaves.map((l, i) => (i === 7 ? 'rewritten' : l)));
  const forkErr = rejects(() => witness.update(sign(forked, 9), []), 'fork', 'same size, other root');
  assert.equal(forkErr.evidence?.trusted, note9, 'the fork error carries both signed notes');
  assert.ok(forkErr.evidence?.offered.startsWith(`${ORIGIN}\n9\n`));
  rejects(() => witness.update(sign(forked, 20), forked.consistencyProof(9, 20)), 'bad_proof', 'forked history cannot prove consistency');
  rejects(() => witness.update(sign(honest, 20), honest.consistencyProof(8, 20)), 'bad_proof', 'proof from the wrong size');
  rejects(() => witness.update(sign(honest, 20), []), 'bad_proof', 'missing proof');
  rejects(() => witness.update(sign(honest, 20), null), 'bad_proof', 'null proof');
  const flipped = honest.consistencyProof(9, 20).map((h, i) => (i === 0 ? h.map((b, j) => (j === 0 ? b ^ 1 : b)) : h));
  rejects(() => witness.update(sign(honest, 20), flipped), 'bad_proof', 'bit flip in the proof');

  const stranger = mlDsaKey(ORIGIN);
  rejects(() => witness.update(sign(honest, 20, stranger.signer), honest.consistencyProof(9, 20)), 'bad_signature', 'unknown key (same name)');
  const note20 = sign(honest, 20);
  const parsed = parseNote(note20);
  const sig = Buffer.concat([parsed.signatures[0]!.keyId, parsed.signatures[0]!.signature]);
  sig[40]! ^= 0x80;
  rejects(() => witness.update(`${parsed.text}\n\u2014 ${ORIGIN} ${sig.toString('base64')}\n`, honest.consistencyProof(9, 20)), 'bad_signature', 'tampered signature');
  rejects(() => witness.update(sign(honest, 20, relay.signer, 'relay.test/other'), honest.consistencyProof(9, 20)), 'wrong_origin', 'same key, other log');
  rejects(() => witness.update('not a note', []), 'malformed', 'garbage');
  rejects(() => witness.update(new Uint8Array([0xff, 0xfe]), []), 'malformed', 'non-UTF-8 bytes');

  assert.equal(witness.checkpoint.size, 9, 'failed updates leave the trusted state alone');
  assert.equal(witness.update(note20, honest.consistencyProof(9, 20)).changed, true, 'the honest log still advances');
  assert.deepEqual(witness.checkpoint.root, honest.root(20));
});

test('witness state persists as JSON and resumes', () => {
  const relay = mlDsaKey(ORIGIN);
  const tree = treeOf(leaves);
  const witness = new Witness(ORIGIN, [relay.verifier]);
  witness.update(signCheckpoint({ origin: ORIGIN, size: 13, root: tree.root(13) }, [relay.signer]), null);
  const saved = JSON.stringify(witness);
  const state = JSON.parse(saved) as Record<string, unknown>;
  assert.equal(state['version'], 1);
  assert.equal(state['size'], 13);
  assert.equal(state['root'], Buffer.from(tree.root(13)).toString('base64'));

  const resumed = Witness.fromJSON(saved, [relay.verifier]);
  assert.equal(resumed.checkpoint.size, 13);
  rejects(() => resumed.update(signCheckpoint({ origin: ORIGIN, size: 12, root: tree.root(12) }, [relay.signer]), []), 'rollback', 'resumed witness remembers');
  assert.equal(resumed.update(signCheckpoint({ origin: ORIGIN, size: 40, root: tree.root(40) }, [relay.signer]), tree.consistencyProof(13, 40)).changed, true);
  assert.deepEqual(Witness.fromJSON(resumed.toJSON(), [relay.verifier]).checkpoint.root, tree.root(40));
  assert.deepEqual(new Witness(ORIGIN, [relay.verifier]).toJSON(), { version: 1, origin: ORIGIN, size: 0, root: Buffer.from(emptyRoot()).toString('base64') });

  const base = resumed.toJSON();
  rejects(() => Witness.fromJSON('{not json', []), 'malformed', 'bad JSON');
  rejects(() => Witness.fromJSON(null, []), 'malformed', 'null');
  rejects(() => Witness.fromJSON({ ...base, version: 2 }, []), 'malformed', 'version');
  rejects(() => Witness.fromJSON({ ...base, size: -1 }, []), 'malformed', 'negative size');
  rejects(() => Witness.fromJSON({ ...base, size: '40' }, []), 'malformed', 'string size');
  rejects(() => Witness.fromJSON({ ...base, root: 'AAAA' }, []), 'malformed', 'short root');
  rejects(() => Witness.fromJSON({ ...base, size: 0 }, []), 'malformed', 'size 0 with a non-empty root');
  rejects(() => Witness.fromJSON({ ...base, origin: undefined }, []), 'malformed', 'missing origin');
  rejects(() => Witness.fromJSON({ ...base, note: 5 }, []), 'malformed', 'note not a string');
  rejects(() => new Witness('other/log', [], base), 'wrong_origin', 'state of another log');
});

test('witness accepts Ed25519-signed checkpoints and any one of several trusted keys', () => {
  const { signer: ed, verifier: edVerifier } = ed25519Key(ORIGIN);
  const relay = mlDsaKey(ORIGIN);
  const tree = treeOf(leaves);
  const witness = new Witness(ORIGIN, [edVerifier, relay.verifier]);
  assert.equal(witness.update(signCheckpoint({ origin: ORIGIN, size: 3, root: tree.root(3) }, [ed]), null).changed, true);
  // Two signatures, both checked; a key rotation keeps working.
  const both = signCheckpoint({ origin: ORIGIN, size: 30, root: tree.root(30) }, [relay.signer, ed]);
  assert.equal(witness.update(both, tree.consistencyProof(3, 30)).changed, true);
  const onlyOld = new Witness(ORIGIN, [edVerifier], witness.toJSON());
  assert.equal(onlyOld.update(both, []).changed, false);
});

function ed25519Key(name: string): { signer: NoteSigner; verifier: NoteVerifier } {
  const jwk = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  return {
    signer: ed25519NoteSigner(name, new Uint8Array(Buffer.from(jwk.d!, 'base64url'))),
    verifier: ed25519NoteVerifier(name, new Uint8Array(Buffer.from(jwk.x!, 'base64url'))),
  };
}
