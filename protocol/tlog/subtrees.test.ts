import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompactRange } from './subtrees.js';
import { MerkleTree, leafHash } from './merkle.js';

test('compact Merkle range (revocation scan) gives the RFC 9162 root for every size', () => {
  const tree = new MerkleTree();
  const range = new CompactRange();
  assert.deepEqual(range.root(), tree.root());
  for (let i = 0; i < 70; i++) {
    const leaf = leafHash(new Uint8Array([i, i >> 8, 7]));
    tree.append(leaf);
    range.append(leaf);
    assert.deepEqual(range.root(), tree.root(), `size ${i + 1}`);
  }
  assert.equal(range.size, 70);
  assert.deepEqual(range.subtrees.map((s) => s.height), [6, 2, 1], '70 = 64 + 4 + 2');
});
