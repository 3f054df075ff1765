// RFC 9162 §2.1.3.2 / §2.1.4.2 proof verification, with the exact accept/reject rules of
// Go's transparency-dev/merkle proof package (the test vectors follow them):
// size1 == 0 is always an error, size1 == size2 needs an empty proof and equal roots,
// the leaf hash must be 32 bytes, the proof must have exactly the expected length.
// Sizes are JS safe integers (< 2^53); bit arithmetic below is written for that range.

import { timingSafeEqual } from 'node:crypto';
import { HASH_SIZE, nodeHash } from './merkle.js';
import { ProtocolError } from '../errors.js';

export type ProofErrorCode =
  | 'bad_size' // a size or index that is negative, not an integer, or inconsistent
  | 'bad_leaf_hash' // leaf hash is not 32 bytes
  | 'bad_proof_hash' // a proof entry is not 32 bytes
  | 'wrong_proof_size' // proof has the wrong number of entries for (index, size)
  | 'root_mismatch'; // the proof does not lead to the given root

export class ProofError extends ProtocolError<ProofErrorCode> {}

/** The root hash an inclusion proof leads to; throws ProofError if it is malformed. */
export function rootFromInclusionProof(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[] | null,
): Uint8Array {
  checkCount(size, 'tree size');
  checkCount(index, 'leaf index');
  if (index >= size) throw new ProofError('bad_size', `leaf index ${index} is beyond tree size ${size}`);
  if (leafHash.length !== HASH_SIZE) {
    throw new ProofError('bad_leaf_hash', `leaf hash must be ${HASH_SIZE} bytes, got ${leafHash.length}`);
  }
  const hashes = checkProofHashes(proof);
  const { inner, border } = decomposeInclusionProof(index, size);
  if (hashes.length !== inner + border) {
    throw new ProofError('wrong_proof_size', `inclusion proof has ${hashes.length} hashes, expected ${inner + border}`);
  }
  const seed = chainInner(leafHash, hashes.slice(0, inner), index);
  return chainBorderRight(seed, hashes.slice(inner));
}

/** Throws ProofError unless `proof` shows leafHash at `index` in the tree of `size` with `root`. */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[] | null,
  root: Uint8Array,
): void {
  const computed = rootFromInclusionProof(leafHash, index, size, proof);
  if (!sameHash(computed, root)) throw new ProofError('root_mismatch', 'inclusion proof does not lead to the expected root');
}

/** Throws ProofError unless `proof` shows the tree (size1, root1) is a prefix of (size2, root2). */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[] | null,
  root1: Uint8Array,
  root2: Uint8Array,
): void {
  checkCount(size1, 'size1');
  checkCount(size2, 'size2');
  const hashes = checkProofHashes(proof);
  if (size2 < size1) throw new ProofError('bad_size', `size2 (${size2}) is smaller than size1 (${size1})`);
  if (size1 === 0) throw new ProofError('bad_size', 'a consistency proof from the empty tree (size1 = 0) proves nothing');
  if (size1 === size2) {
    if (hashes.length > 0) throw new ProofError('wrong_proof_size', 'size1 == size2 but the proof is not empty');
    if (!sameHash(root1, root2)) throw new ProofError('root_mismatch', 'size1 == size2 but the roots differ');
    return;
  }
  if (hashes.length === 0) throw new ProofError('wrong_proof_size', 'consistency proof is empty');
  const { hash1, hash2 } = consistencyRoots(size1, size2, hashes, root1);
  if (!sameHash(hash1, root1)) throw new ProofError('root_mismatch', 'consistency proof does not lead to root1');
  if (!sameHash(hash2, root2)) throw new ProofError('root_mismatch', 'consistency proof does not lead to root2');
}

/**
 * True when a consistency proof shows that root1 (size1) and root2 (size2) cannot belong to one
 * append-only log: the proof leads to root2, so (SHA-256 being collision resistant) its hashes
 * are nodes of that tree, and the root they give for its first size1 leaves is not root1. A proof
 * that does not lead to root2 shows nothing (false). Requires 0 < size1 < size2. When size1 is a
 * power of two the proof omits that subtree (the verifier holds it), so no fork can be shown: false.
 */
export function consistencyProvesFork(size1: number, size2: number, proof: readonly Uint8Array[] | null, root1: Uint8Array, root2: Uint8Array): boolean {
  checkCount(size1, 'size1');
  checkCount(size2, 'size2');
  let hashes: Uint8Array[];
  try {
    hashes = checkProofHashes(proof);
  } catch {
    return false;
  }
  if (!(size1 > 0 && size1 < size2) || hashes.length === 0 || size1 === 2 ** trailingZeros(size1)) return false;
  let roots;
  try {
    roots = consistencyRoots(size1, size2, hashes, root1);
  } catch {
    return false;
  }
  return sameHash(roots.hash2, root2) && !sameHash(roots.hash1, root1);
}

/** The roots of the first size1 and of all size2 leaves that a non-empty consistency proof leads to (RFC 9162 2.1.4.2). */
function consistencyRoots(size1: number, size2: number, hashes: Uint8Array[], root1: Uint8Array): { hash1: Uint8Array; hash2: Uint8Array } {
  // The proof is a suffix of the inclusion proof of leaf size1-1 in the tree of size2,
  // starting at level `shift` (the largest perfect subtree ending at size1).
  const decomposed = decomposeInclusionProof(size1 - 1, size2);
  const shift = trailingZeros(size1);
  const inner = decomposed.inner - shift;
  const size1IsPerfect = size1 === 2 ** shift;
  const seed = size1IsPerfect ? root1 : hashes[0]!;
  const rest = size1IsPerfect ? hashes : hashes.slice(1);
  if (rest.length !== inner + decomposed.border) {
    const expected = inner + decomposed.border + (size1IsPerfect ? 0 : 1);
    throw new ProofError('wrong_proof_size', `consistency proof has ${hashes.length} hashes, expected ${expected}`);
  }
  const mask = shiftRight(size1 - 1, shift);
  const innerHashes = rest.slice(0, inner);
  const borderHashes = rest.slice(inner);
  // hash1 uses a subset of the nodes hash2 uses: if hash2 is the signed root, hash1 is that tree's own prefix root.
  const hash1 = chainBorderRight(chainInnerRight(seed, innerHashes, mask), borderHashes);
  const hash2 = chainBorderRight(chainInner(seed, innerHashes, mask), borderHashes);
  return { hash1, hash2 };
}

/** Constant-time equality of two hashes; different lengths are simply unequal. */
export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

// inner: proof entries below the level where the paths to leaf `index` and leaf size-1
// diverge; border: entries above it, one per 1 bit of index at those levels.
function decomposeInclusionProof(index: number, size: number): { inner: number; border: number } {
  const inner = bitLength(xor(index, size - 1));
  const border = onesCount(shiftRight(index, inner));
  return { inner, border };
}

function chainInner(seed: Uint8Array, proof: Uint8Array[], index: number): Uint8Array {
  let acc = seed;
  proof.forEach((h, i) => {
    acc = bit(index, i) === 0 ? nodeHash(acc, h) : nodeHash(h, acc);
  });
  return acc;
}

function chainInnerRight(seed: Uint8Array, proof: Uint8Array[], index: number): Uint8Array {
  let acc = seed;
  proof.forEach((h, i) => {
    if (bit(index, i) === 1) acc = nodeHash(h, acc);
  });
  return acc;
}

function chainBorderRight(seed: Uint8Array, proof: Uint8Array[]): Uint8Array {
  let acc = seed;
  for (const h of proof) acc = nodeHash(h, acc);
  return acc;
}

function checkCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ProofError('bad_size', `${what} must be a non-negative safe integer, got ${String(value)}`);
  }
}

function checkProofHashes(proof: readonly Uint8Array[] | null): Uint8Array[] {
  const hashes = proof === null ? [] : [...proof];
  hashes.forEach((h, i) => {
    if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) {
      throw new ProofError('bad_proof_hash', `proof entry ${i} must be ${HASH_SIZE} bytes`);
    }
  });
  return hashes;
}

// Bit helpers valid for all safe integers (JS bitwise operators stop at 32 bits).
const TWO_32 = 2 ** 32;

function xor(a: number, b: number): number {
  const high = (Math.floor(a / TWO_32) ^ Math.floor(b / TWO_32)) >>> 0;
  const low = ((a % TWO_32) ^ (b % TWO_32)) >>> 0;
  return high * TWO_32 + low;
}

function shiftRight(value: number, bits: number): number {
  return Math.floor(value / 2 ** bits);
}

function bit(value: number, i: number): number {
  return shiftRight(value, i) % 2;
}

function bitLength(value: number): number {
  let length = 0;
  for (let v = value; v > 0; v = Math.floor(v / 2)) length++;
  return length;
}

function onesCount(value: number): number {
  let count = 0;
  for (let v = value; v > 0; v = Math.floor(v / 2)) count += v % 2;
  return count;
}

function trailingZeros(value: number): number {
  let zeros = 0;
  for (let v = value; v > 0 && v % 2 === 0; v /= 2) zeros++;
  return zeros;
}
