// RFC 9162 §2.1 tree heads and proofs computed from any store of perfect-subtree hashes, so
// that the in-RAM MerkleTree and the relay's tile store share one implementation.
//
// A perfect subtree of height h and number i covers leaves [i·2^h, (i+1)·2^h). Every range the
// RFC 9162 recursions ask for is either such a subtree or a right edge, which is hashed from at
// most log2(n) of them. The recursion only depends on sizes, never on hash values, so
// `subtreesNeeded` can list what a proof will read before any of it is fetched.

import { HASH_SIZE, nodeHash, emptyRoot, splitPoint } from './merkle.js';

/** Requires a subtree inside the tree being read. Returns a view or a copy; callers copy. */
export type SubtreeReader = (height: number, index: number) => Uint8Array;

/** MTH(D[start:start+n]) for a range the RFC recursion produces (start a multiple of the split). */
export type RangeHasher = (start: number, n: number) => Uint8Array;

/** log2(n) when [start, start+n) is a perfect subtree (n a power of two, start aligned to it). */
function perfectHeight(start: number, n: number): number | undefined {
  const height = Math.log2(n);
  return n >= 1 && Number.isInteger(height) && 2 ** height === n && start % n === 0 ? height : undefined;
}

/**
 * A RangeHasher over `read`; right-edge hashes are cached for the most recently used range end
 * (every proof for one tree size reuses them).
 */
export function rangeHasher(read: SubtreeReader): RangeHasher {
  let edgeEnd = -1;
  let edge = new Map<number, Uint8Array>();
  const range: RangeHasher = (start, n) => {
    const height = perfectHeight(start, n);
    if (height !== undefined) return read(height, start / n);
    const end = start + n;
    if (end !== edgeEnd) {
      edgeEnd = end;
      edge = new Map();
    }
    const cached = edge.get(start);
    if (cached !== undefined) return cached;
    const k = splitPoint(n);
    const hashed = nodeHash(range(start, k), range(start + k, n - k));
    edge.set(start, hashed);
    return hashed;
  };
  return range;
}

/** The RFC 9162 tree head of the first `size` leaves. */
export function rootOf(size: number, range: RangeHasher): Uint8Array {
  return size === 0 ? emptyRoot() : range(0, size).slice();
}

/** RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf upwards. Requires 0 <= index < size. */
export function inclusionPath(index: number, size: number, range: RangeHasher): Uint8Array[] {
  const topDown: Uint8Array[] = [];
  let start = 0;
  let n = size;
  let m = index;
  while (n > 1) {
    const k = splitPoint(n);
    if (m < k) {
      topDown.push(range(start + k, n - k).slice());
      n = k;
    } else {
      topDown.push(range(start, k).slice());
      start += k;
      m -= k;
      n -= k;
    }
  }
  return topDown.reverse();
}

/**
 * RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]). Requires 0 <= size1 <= size2. Empty when size1 is
 * 0 or size2 (as Go's transparency-dev/merkle does; verifiers reject size1 = 0 anyway).
 */
export function consistencyPath(size1: number, size2: number, range: RangeHasher): Uint8Array[] {
  if (size1 === 0 || size1 === size2) return [];
  const topDown: Uint8Array[] = [];
  let start = 0;
  let n = size2;
  let m = size1;
  let wholeOldTree = true; // SUBPROOF's b: the old tree is a complete subtree here
  while (m !== n) {
    const k = splitPoint(n);
    if (m <= k) {
      topDown.push(range(start + k, n - k).slice());
      n = k;
    } else {
      topDown.push(range(start, k).slice());
      start += k;
      m -= k;
      n -= k;
      wholeOldTree = false;
    }
  }
  if (!wholeOldTree) topDown.push(range(start, n).slice());
  return topDown.reverse();
}

/** The perfect subtrees `compute` reads (it is run once against placeholder hashes). */
export function subtreesNeeded(compute: (range: RangeHasher) => unknown): { height: number; index: number }[] {
  const seen = new Map<string, { height: number; index: number }>();
  const placeholder = new Uint8Array(HASH_SIZE);
  compute(rangeHasher((height, index) => {
    seen.set(`${height}/${index}`, { height, index });
    return placeholder;
  }));
  return [...seen.values()];
}

/**
 * RFC 9162 tree head of a growing list of leaf hashes in O(log n) memory: the roots of the
 * perfect subtrees, left to right (largest first). Used to compare entries read in order with a
 * signed root (receiver revocation scan, `ghostpipe audit --full`, the relay's leaves.bin migration).
 */
export class CompactRange {
  constructor(public size = 0, public subtrees: { height: number; hash: Uint8Array }[] = []) {}

  append(leaf: Uint8Array): void {
    let node = { height: 0, hash: leaf };
    while (this.subtrees.length > 0 && this.subtrees[this.subtrees.length - 1]!.height === node.height) {
      const left = this.subtrees.pop()!;
      node = { height: node.height + 1, hash: nodeHash(left.hash, node.hash) };
    }
    this.subtrees.push(node);
    this.size++;
  }

  root(): Uint8Array {
    if (this.subtrees.length === 0) return emptyRoot();
    let acc = this.subtrees[this.subtrees.length - 1]!.hash;
    for (let i = this.subtrees.length - 2; i >= 0; i--) acc = nodeHash(this.subtrees[i]!.hash, acc);
    return acc;
  }

  clone(): CompactRange {
    return new CompactRange(this.size, [...this.subtrees]);
  }
}
