import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../test/helpers/assert-code.js';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { vectorsDir } from '../../test/helpers/paths.js';
import {
  MerkleTree, ProofError, TreeRangeError, emptyRoot, leafHash, nodeHash,
  consistencyProvesFork, rootFromInclusionProof, verifyConsistency, verifyInclusion,
} from './index.js';

const merkleDir = path.join(vectorsDir, 'merkle');
const b64 = (s: string | null | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? '', 'base64'));
const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function jsonFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return jsonFiles(full);
    return name.endsWith('.json') ? [full] : [];
  });
}

// A straight transcription of RFC 9162 §2.1.1 MTH, used as an independent reference.
function referenceRoot(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return new Uint8Array(createHash('sha256').digest());
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(referenceRoot(leaves.slice(0, k)), referenceRoot(leaves.slice(k)));
}

function randomLeaves(count: number, random: () => number): Uint8Array[] {
  return Array.from({ length: count }, () => leafHash(Uint8Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 256))));
}

function flipBit(proof: Uint8Array[], entry: number, bitIndex: number): Uint8Array[] {
  return proof.map((h, i) => {
    if (i !== entry) return h;
    const copy = h.slice();
    copy[bitIndex >> 3]! ^= 1 << (bitIndex & 7);
    return copy;
  });
}

/** Runs every JSON case below testdata/<kind>: valid ones must verify, wantErr ones must throw ProofError. */
function checkVectorDir<V extends { wantErr: boolean }>(kind: string, verify: (v: V) => void): { files: number; valid: number; invalid: number } {
  const files = jsonFiles(path.join(merkleDir, 'testdata', kind));
  let valid = 0;
  let invalid = 0;
  for (const file of files) {
    const v = JSON.parse(readFileSync(file, 'utf8')) as V;
    if (v.wantErr) {
      assert.throws(() => verify(v), ProofError, path.relative(merkleDir, file));
      invalid++;
    } else {
      assert.doesNotThrow(() => verify(v), path.relative(merkleDir, file));
      valid++;
    }
  }
  return { files: files.length, valid, invalid };
}
const proofOf = (proof: string[] | null) => (proof === null ? null : proof.map(b64));

test('RFC 9162 inclusion vectors (transparency-dev/merkle testdata/inclusion)', () => {
  type V = { leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; wantErr: boolean };
  const counts = checkVectorDir<V>('inclusion', (v) => verifyInclusion(b64(v.leafHash), v.leafIdx, v.treeSize, proofOf(v.proof), b64(v.root)));
  assert.deepEqual(counts, { files: 98, valid: 6, invalid: 92 }, 'all inclusion vector files were found');
});

test('RFC 9162 consistency vectors (transparency-dev/merkle testdata/consistency)', () => {
  type V = { size1: number; size2: number; root1: string; root2: string; proof: string[] | null; wantErr: boolean };
  const counts = checkVectorDir<V>('consistency', (v) => verifyConsistency(v.size1, v.size2, proofOf(v.proof), b64(v.root1), b64(v.root2)));
  assert.deepEqual(counts, { files: 98, valid: 6, invalid: 92 }, 'all consistency vector files were found');
});

test('the happy-path vectors are reproduced by proof generation over the 8 reference leaves', () => {
  const ref = JSON.parse(readFileSync(path.join(merkleDir, 'rfc6962-reference-8-leaves.json'), 'utf8')) as { leaf_inputs: string[] };
  const tree = new MerkleTree();
  for (const input of ref.leaf_inputs) tree.appendData(hex(input));
  for (const kind of ['inclusion', 'consistency'] as const) {
    for (const sub of ['0', '1', '2', '3', '4']) {
      const v = JSON.parse(readFileSync(path.join(merkleDir, 'testdata', kind, sub, 'happy-path.json'), 'utf8')) as Record<string, unknown>;
      const proof = kind === 'inclusion'
        ? tree.inclusionProof(v['leafIdx'] as number, v['treeSize'] as number)
        : tree.consistencyProof(v['size1'] as number, v['size2'] as number);
      assert.deepEqual(proof.map(toHex), ((v['proof'] as string[] | null) ?? []).map((s) => toHex(b64(s))), `${kind}/${sub}`);
    }
  }
});

test('8-leaf reference tree: node hashes, roots for every size, reference proofs', () => {
  const ref = JSON.parse(readFileSync(path.join(merkleDir, 'rfc6962-reference-8-leaves.json'), 'utf8')) as {
    leaf_inputs: string[]; node_hashes: string[][]; root_hashes: string[];
    inclusion_proofs: { index: number; size: number; proof: string[] }[];
    consistency_proofs: { size1: number; size2: number; proof: string[] }[];
  };
  const tree = new MerkleTree();
  assert.equal(toHex(tree.root()), ref.root_hashes[0]);
  ref.leaf_inputs.forEach((input, i) => {
    assert.equal(tree.appendData(hex(input)), i);
    assert.equal(toHex(tree.root()), ref.root_hashes[i + 1], `root after ${i + 1} appends`);
  });
  ref.node_hashes[0]!.forEach((h, i) => assert.equal(toHex(tree.leafHashAt(i)), h));
  ref.root_hashes.forEach((h, size) => assert.equal(toHex(tree.root(size)), h, `root(${size}) of the full tree`));
  for (const p of ref.inclusion_proofs) {
    assert.deepEqual(tree.inclusionProof(p.index, p.size).map(toHex), p.proof, `inclusion ${p.index}@${p.size}`);
    verifyInclusion(tree.leafHashAt(p.index), p.index, p.size, p.proof.map(hex), hex(ref.root_hashes[p.size]!));
  }
  for (const p of ref.consistency_proofs) {
    assert.deepEqual(tree.consistencyProof(p.size1, p.size2).map(toHex), p.proof, `consistency ${p.size1}->${p.size2}`);
    if (p.size1 > 0) verifyConsistency(p.size1, p.size2, p.proof.map(hex), hex(ref.root_hashes[p.size1]!), hex(ref.root_hashes[p.size2]!));
  }
  assert.ok(ref.inclusion_proofs.length >= 7 && ref.consistency_proofs.length >= 4);
});

test('property: every inclusion and consistency proof in small random trees verifies, bit flips fail', () => {
  const random = prng(0x6a05);
  for (const size of [1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33]) {
    const leaves = randomLeaves(size, random);
    const tree = MerkleTree.fromLeafHashes(leaves);
    const roots = Array.from({ length: size + 1 }, (_, n) => tree.root(n));
    for (let n = 0; n <= size; n++) assert.deepEqual(roots[n], referenceRoot(leaves.slice(0, n)), `root(${n})`);
    for (let n = 1; n <= size; n++) {
      for (let i = 0; i < n; i++) {
        const proof = tree.inclusionProof(i, n);
        verifyInclusion(leaves[i]!, i, n, proof, roots[n]!);
        assert.deepEqual(rootFromInclusionProof(leaves[i]!, i, n, proof), roots[n]);
        if (proof.length > 0) {
          const entry = Math.floor(random() * proof.length);
          assert.throws(() => verifyInclusion(leaves[i]!, i, n, flipBit(proof, entry, Math.floor(random() * 256)), roots[n]!), { code: 'root_mismatch' });
        }
        if (n > 1) assert.throws(() => verifyInclusion(leaves[(i + 1) % n]!, i, n, proof, roots[n]!), ProofError);
      }
      for (let m = 1; m <= n; m++) {
        const proof = tree.consistencyProof(m, n);
        verifyConsistency(m, n, proof, roots[m]!, roots[n]!);
        if (proof.length > 0) {
          const flipped = flipBit(proof, Math.floor(random() * proof.length), Math.floor(random() * 256));
          assert.throws(() => verifyConsistency(m, n, flipped, roots[m]!, roots[n]!), { code: 'root_mismatch' });
          assert.throws(() => verifyConsistency(m, n, proof.slice(1), roots[m]!, roots[n]!), ProofError);
          assert.throws(() => verifyConsistency(m, n, [...proof, proof[0]!], roots[m]!, roots[n]!), { code: 'wrong_proof_size' });
        }
        if (m < n) assert.throws(() => verifyConsistency(m, n, proof, roots[m]!, roots[n - 1]!), ProofError);
      }
    }
  }
});

test('property: random samples in trees up to 300 leaves, proofs against older sizes', () => {
  const random = prng(20250601);
  for (let round = 0; round < 6; round++) {
    const size = 100 + Math.floor(random() * 201);
    const leaves = randomLeaves(size, random);
    const tree = new MerkleTree();
    const rootsWhileGrowing: Uint8Array[] = [tree.root()];
    for (const leaf of leaves) {
      tree.append(leaf);
      rootsWhileGrowing.push(tree.root());
    }
    for (let sample = 0; sample < 300; sample++) {
      const n = 1 + Math.floor(random() * size);
      const i = Math.floor(random() * n);
      assert.deepEqual(tree.root(n), rootsWhileGrowing[n], `root(${n}) equals the root the tree had at that size`);
      const proof = tree.inclusionProof(i, n);
      verifyInclusion(leaves[i]!, i, n, proof, rootsWhileGrowing[n]!);
      const flipped = flipBit(proof, Math.floor(random() * proof.length), Math.floor(random() * 256));
      if (proof.length > 0) assert.throws(() => verifyInclusion(leaves[i]!, i, n, flipped, rootsWhileGrowing[n]!), ProofError);
      const m = 1 + Math.floor(random() * n);
      const cproof = tree.consistencyProof(m, n);
      verifyConsistency(m, n, cproof, rootsWhileGrowing[m]!, rootsWhileGrowing[n]!);
      if (cproof.length > 0) {
        const bad = flipBit(cproof, Math.floor(random() * cproof.length), Math.floor(random() * 256));
        assert.throws(() => verifyConsistency(m, n, bad, rootsWhileGrowing[m]!, rootsWhileGrowing[n]!), ProofError);
      }
    }
    assert.deepEqual(tree.root(), referenceRoot(leaves));
  }
});

test('verification arithmetic holds beyond 32-bit tree sizes', () => {
  // A virtual tree of identical leaves: perfect subtree hashes depend only on height, so
  // proofs for sizes near 2^40 can be built with the RFC recursion without storing leaves.
  const leaf = leafHash(new TextEncoder().encode('same'));
  const perfect: Uint8Array[] = [leaf];
  for (let h = 1; h <= 52; h++) perfect.push(nodeHash(perfect[h - 1]!, perfect[h - 1]!));
  const mth = (n: number): Uint8Array => {
    if (Number.isInteger(Math.log2(n))) return perfect[Math.log2(n)]!;
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(mth(k), mth(n - k));
  };
  const path = (m: number, n: number): Uint8Array[] => {
    if (n === 1) return [];
    let k = 1;
    while (k * 2 < n) k *= 2;
    return m < k ? [...path(m, k), mth(n - k)] : [...path(m - k, n - k), mth(k)];
  };
  const subproof = (m: number, n: number, whole: boolean): Uint8Array[] => {
    if (m === n) return whole ? [] : [mth(n)];
    let k = 1;
    while (k * 2 < n) k *= 2;
    return m <= k ? [...subproof(m, k, whole), mth(n - k)] : [...subproof(m - k, n - k, false), mth(k)];
  };
  const cases: [number, number][] = [[2 ** 40 + 12345, 2 ** 40 + 99999], [2 ** 33 - 1, 2 ** 35 + 7], [123456789012 - 5, 123456789012]];
  for (const [index, size] of cases) {
    verifyInclusion(leaf, index, size, path(index, size), mth(size));
    assert.throws(() => verifyInclusion(leaf, index, size, path(index, size), mth(size - 1)), { code: 'root_mismatch' });
    assert.throws(() => verifyInclusion(leaf, index, size, path(index, size).slice(1), mth(size)), { code: 'wrong_proof_size' });
    verifyConsistency(index, size, subproof(index, size, true), mth(index), mth(size));
    assert.throws(() => verifyConsistency(index, size, subproof(index, size, true), mth(index + 1), mth(size)), ProofError);
  }
});

test('bad arguments: typed errors, tree keeps working', () => {
  const tree = new MerkleTree();
  assert.deepEqual(tree.root(), emptyRoot());
  assert.throws(() => tree.append(new Uint8Array(31)), TypeError);
  assert.throws(() => tree.append(new Uint8Array(33)), TypeError);
  for (let i = 0; i < 5; i++) tree.appendData(Uint8Array.of(i));
  assert.throws(() => tree.root(6), TreeRangeError);
  assert.throws(() => tree.root(-1), TreeRangeError);
  assert.throws(() => tree.root(2.5), TreeRangeError);
  assert.throws(() => tree.inclusionProof(5), TreeRangeError);
  assert.throws(() => tree.inclusionProof(2, 2), TreeRangeError);
  assert.throws(() => tree.inclusionProof(0, 0), TreeRangeError);
  assert.throws(() => tree.consistencyProof(4, 3), TreeRangeError);
  assert.throws(() => tree.consistencyProof(1, 6), TreeRangeError);
  assert.throws(() => tree.leafHashAt(5), TreeRangeError);
  assert.deepEqual(tree.consistencyProof(0, 5), []);
  assert.deepEqual(tree.consistencyProof(5, 5), []);
  // Returned hashes are copies: mutating them does not corrupt the tree.
  const root = tree.root();
  tree.root().fill(0);
  tree.leafHashAt(0).fill(0);
  tree.inclusionProof(0).forEach((h) => h.fill(0));
  assert.deepEqual(tree.root(), root);
  verifyInclusion(leafHash(Uint8Array.of(0)), 0, 5, tree.inclusionProof(0), root);
  // Verifier input checks.
  assert.throws(() => verifyInclusion(new Uint8Array(32), -1, 5, [], root), { code: 'bad_size' });
  assert.throws(() => verifyInclusion(new Uint8Array(32), 0, Number.MAX_SAFE_INTEGER + 1, [], root), { code: 'bad_size' });
  assert.throws(() => verifyInclusion(new Uint8Array(32), 0, 5, [new Uint8Array(31), new Uint8Array(32), new Uint8Array(32)], root), { code: 'bad_proof_hash' });
  assert.throws(() => verifyConsistency(1, 2, [new Uint8Array(64)], root, root), { code: 'bad_proof_hash' });
});

test('storage grows in chunks across the 32768-hash chunk boundary', () => {
  const tree = new MerkleTree();
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < 70_000; i++) {
    const h = new Uint8Array(32);
    new DataView(h.buffer).setUint32(0, i);
    leaves.push(h);
    tree.append(h);
  }
  for (const i of [0, 32767, 32768, 65535, 65536, 69_999]) assert.deepEqual(tree.leafHashAt(i), leaves[i]);
  for (const [i, n] of [[32767, 32769], [40000, 70_000], [69_999, 70_000], [5, 65537]] as const) {
    verifyInclusion(leaves[i]!, i, n, tree.inclusionProof(i, n), tree.root(n));
  }
  verifyConsistency(32769, 70_000, tree.consistencyProof(32769, 70_000), tree.root(32769), tree.root());
  assert.ok(tree.bytesAllocated() < 70_000 * 32 * 2 + 12 * 1024 * 1024, 'about two hashes per leaf');
});

test('consistencyProvesFork: a proof that leads to the new root but another old root shows a fork; garbage, honest proofs and perfect old sizes show none', () => {
  const data = (tag: string, i: number) => new TextEncoder().encode(`${tag}-${i}`);
  for (const [m, n] of [[3, 7], [5, 6], [6, 13], [7, 8], [4, 9], [1, 2], [8, 12]] as const) {
    const honest = new MerkleTree();
    const forked = new MerkleTree(); // another history: leaf 0 differs
    for (let i = 0; i < n; i++) {
      honest.appendData(data('a', i));
      forked.appendData(data(i === 0 ? 'b' : 'a', i));
    }
    const trusted = honest.root(m);
    const perfect = (m & (m - 1)) === 0;
    // The forked tree's own proof leads to its signed root but not to our root for m.
    assert.equal(consistencyProvesFork(m, n, forked.consistencyProof(m, n), trusted, forked.root(n)), !perfect, `fork ${m}->${n}`);
    // An honest proof, garbage, and a proof for another root show nothing.
    assert.equal(consistencyProvesFork(m, n, honest.consistencyProof(m, n), trusted, honest.root(n)), false, `honest ${m}->${n}`);
    const garbage = forked.consistencyProof(m, n).map(() => new Uint8Array(32).fill(0xab));
    assert.equal(consistencyProvesFork(m, n, garbage, trusted, forked.root(n)), false, `garbage ${m}->${n}`);
    assert.equal(consistencyProvesFork(m, n, forked.consistencyProof(m, n), trusted, honest.root(n)), false, `proof of another tree ${m}->${n}`);
    assert.equal(consistencyProvesFork(m, n, [], trusted, forked.root(n)), false);
  }
});
