// Epochs of a RAM-only relay's log (protocol/tlog/witness.ts): "<base>/epoch/<n>" under one key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  MAX_PREVIOUS_EPOCHS, MerkleTree, Witness, WitnessError, epochOrigin, mlDsaNoteSigner, mlDsaNoteVerifier, parseEpochOrigin, signCheckpoint,
} from './index.js';
import { getProvider } from '../crypto/provider.js';

const BASE = 'ghostpipe-relay/0123456789abcdef';
const seed = new Uint8Array(randomBytes(32));
const publicKey = getProvider().mlDsa65.publicKeyFromSeed(seed);
const verifiers = (origin: string) => [mlDsaNoteVerifier(origin, publicKey)];

function signed(origin: string, leaves: number): string {
  const tree = new MerkleTree();
  for (let i = 0; i < leaves; i++) tree.appendData(new TextEncoder().encode(`${origin} ${i}`));
  return signCheckpoint({ origin, size: leaves, root: tree.root() }, [mlDsaNoteSigner(origin, seed)]);
}

test('epoch origins: "<base>/epoch/<n>", n >= 1; anything else is epoch 0 of itself', () => {
  assert.equal(epochOrigin(BASE, 7), `${BASE}/epoch/7`);
  assert.deepEqual(parseEpochOrigin(`${BASE}/epoch/7`), { base: BASE, epoch: 7 });
  assert.deepEqual(parseEpochOrigin(BASE), { base: BASE, epoch: 0 });
  for (const odd of [`${BASE}/epoch/0`, `${BASE}/epoch/07`, `${BASE}/epoch/x`, `${BASE}/epoch/`]) assert.deepEqual(parseEpochOrigin(odd), { base: odd, epoch: 0 });
  assert.throws(() => epochOrigin(BASE, 0), RangeError);
});

test('a witness moves to a newer epoch of its log, keeps the old one on record, and refuses older epochs and other logs', () => {
  const e1 = `${BASE}/epoch/1`;
  const witness = new Witness(e1, verifiers(e1));
  witness.update(signed(e1, 5), null);
  const e3 = `${BASE}/epoch/3`;
  const next = witness.nextEpoch(e3, verifiers(e3), new Date('2026-01-02T03:04:05Z'));
  assert.equal(next.origin, e3);
  assert.equal(next.checkpoint.size, 0, 'a new epoch starts from the empty tree');
  assert.deepEqual(next.previousEpochs.map((e) => [e.origin, e.size, e.endedAt]), [[e1, 5, '2026-01-02T03:04:05.000Z']]);
  assert.equal(next.update(signed(e3, 2), null).changed, true);
  // The record survives a save and restore.
  const restored = Witness.fromJSON(JSON.stringify(next.toJSON()), verifiers(e3));
  assert.deepEqual(restored.previousEpochs, next.previousEpochs);
  assert.equal(restored.checkpoint.size, 2);
  // Within one origin nothing changed: a smaller tree is still a rollback.
  assert.throws(() => restored.update(signed(e3, 1), null), (err: unknown) => err instanceof WitnessError && err.code === 'rollback');
  // Older or the same epoch: rollback; another base origin: wrong_origin.
  const e2 = `${BASE}/epoch/2`;
  assert.throws(() => restored.nextEpoch(e2, verifiers(e2), new Date()), (err: unknown) => err instanceof WitnessError && err.code === 'rollback');
  assert.throws(() => restored.nextEpoch(BASE, verifiers(BASE), new Date()), (err: unknown) => err instanceof WitnessError && err.code === 'rollback');
  assert.throws(() => restored.nextEpoch('other-relay/epoch/9', verifiers('other-relay/epoch/9'), new Date()), (err: unknown) => err instanceof WitnessError && err.code === 'wrong_origin');
  // An un-epoched log (a relay with a state directory) may continue as epoch 1 under the same base.
  assert.equal(new Witness(BASE, verifiers(BASE)).nextEpoch(e1, verifiers(e1), new Date()).origin, e1);
});

test('the epoch record is bounded and checked when restored', () => {
  let witness = new Witness(`${BASE}/epoch/1`, verifiers(`${BASE}/epoch/1`));
  for (let n = 2; n <= MAX_PREVIOUS_EPOCHS + 5; n++) witness = witness.nextEpoch(`${BASE}/epoch/${n}`, verifiers(`${BASE}/epoch/${n}`), new Date());
  assert.equal(witness.previousEpochs.length, MAX_PREVIOUS_EPOCHS);
  assert.equal(witness.previousEpochs.at(-1)!.origin, `${BASE}/epoch/${MAX_PREVIOUS_EPOCHS + 4}`);
  const state = witness.toJSON();
  const broken = { ...state, previousEpochs: [{ ...state.previousEpochs![0]!, root: 'AAAA' }] };
  assert.throws(() => Witness.fromJSON(broken, verifiers(state.origin)), (err: unknown) => err instanceof WitnessError && err.code === 'malformed' && /previousEpochs\[0\]/.test(err.message));
});
