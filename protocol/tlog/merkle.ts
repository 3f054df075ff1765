// RFC 9162 §2.1 Merkle tree over SHA-256, append-only, with proof generation.
//
// Storage: level k holds the hashes of the complete (perfect) subtrees of 2^k leaves,
// in order, packed 32 bytes each in chunked Uint8Arrays (level 0 = leaf hashes). A tree
// of n leaves stores about 2n hashes (64 MB at 1,000,000 leaves) and no per-node objects.
// Appending one leaf completes on average one interior node, so an append costs about
// one SHA-256. Any subtree hash the RFC algorithms need for a size <= n is either stored
// or is the hash of a right edge, rebuilt from at most log2(n) stored nodes.

import { hash } from 'node:crypto';
import { rangeHasher, rootOf, inclusionPath, consistencyPath } from './subtrees.js';

export const HASH_SIZE = 32;

const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

/** RFC 9162 leaf hash: SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Uint8Array {
  const input = new Uint8Array(1 + data.length);
  input[0] = LEAF_PREFIX;
  input.set(data, 1);
  return sha256(input);
}

// Reused input buffer for the common 32+32 case: crypto.hash reads it synchronously.
const nodeInput = new Uint8Array(1 + 2 * HASH_SIZE);
nodeInput[0] = NODE_PREFIX;

/** RFC 9162 interior node hash: SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length === HASH_SIZE && right.length === HASH_SIZE) {
    nodeInput.set(left, 1);
    nodeInput.set(right, 1 + HASH_SIZE);
    return sha256(nodeInput);
  }
  const input = new Uint8Array(1 + left.length + right.length);
  input[0] = NODE_PREFIX;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return sha256(input);
}

/** The root of the empty tree: SHA-256 of the empty string. */
export function emptyRoot(): Uint8Array {
  return sha256(new Uint8Array(0));
}

function sha256(input: Uint8Array): Uint8Array {
  const digest = hash('sha256', input, 'buffer');
  return new Uint8Array(digest.buffer, digest.byteOffset, digest.length);
}

/** A tree size or index argument that is not a valid position in this tree. */
export class TreeRangeError extends RangeError {
  readonly code = 'out_of_range';
  constructor(message: string) {
    super(message);
    this.name = 'TreeRangeError';
  }
}

// 32768 hashes = 1 MiB per full chunk; the first chunk of a level grows by doubling so
// that small trees (and the sparse upper levels) stay small.
const CHUNK_HASHES = 1 << 15;
const FIRST_CHUNK_HASHES = 16;

/** An append-only list of 32-byte hashes packed into chunks. */
class HashList {
  private chunks: Uint8Array[] = [new Uint8Array(FIRST_CHUNK_HASHES * HASH_SIZE)];
  count = 0;

  push(hash32: Uint8Array): void {
    const chunkIndex = Math.floor(this.count / CHUNK_HASHES);
    const slot = this.count % CHUNK_HASHES;
    let chunk = this.chunks[chunkIndex];
    if (chunk === undefined) {
      chunk = new Uint8Array(CHUNK_HASHES * HASH_SIZE);
      this.chunks.push(chunk);
    } else if ((slot + 1) * HASH_SIZE > chunk.length) {
      const grown = new Uint8Array(Math.min(chunk.length * 2, CHUNK_HASHES * HASH_SIZE));
      grown.set(chunk);
      this.chunks[chunkIndex] = chunk = grown;
    }
    chunk.set(hash32, slot * HASH_SIZE);
    this.count++;
  }

  /** A view (not a copy) of hash number i; callers copy before handing it out. */
  view(i: number): Uint8Array {
    const chunk = this.chunks[Math.floor(i / CHUNK_HASHES)]!;
    const offset = (i % CHUNK_HASHES) * HASH_SIZE;
    return chunk.subarray(offset, offset + HASH_SIZE);
  }

  bytesAllocated(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }
}

/** Largest power of two strictly smaller than n (n >= 2), the RFC 9162 split point k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export class MerkleTree {
  private readonly levels: HashList[] = [new HashList()];
  private leafCount = 0;
  private cachedRoot: Uint8Array | undefined;
  /** Stored perfect subtrees, plus the right edge of the most recently used size (cached). */
  private readonly range = rangeHasher((height, index) => this.levels[height]!.view(index));

  get size(): number {
    return this.leafCount;
  }

  /** Appends a 32-byte leaf hash; returns the new leaf's index. */
  append(leafHash32: Uint8Array): number {
    if (!(leafHash32 instanceof Uint8Array) || leafHash32.length !== HASH_SIZE) {
      throw new TypeError(`leaf hash must be ${HASH_SIZE} bytes, got ${describe(leafHash32)}`);
    }
    const index = this.leafCount;
    this.levels[0]!.push(leafHash32);
    this.leafCount++;
    this.cachedRoot = undefined;
    // Each trailing 1 bit of the new size completes one perfect subtree one level up.
    let level = 0;
    let completed = this.leafCount;
    while (completed % 2 === 0) {
      const below = this.levels[level]!;
      if (this.levels[level + 1] === undefined) this.levels.push(new HashList());
      this.levels[level + 1]!.push(nodeHash(below.view(below.count - 2), below.view(below.count - 1)));
      level++;
      completed /= 2;
    }
    return index;
  }

  /** Appends leafHash(data); returns the new leaf's index. */
  appendData(data: Uint8Array): number {
    return this.append(leafHash(data));
  }

  /** The RFC 9162 tree head (MTH) of the first `size` leaves; default the whole tree. */
  root(size: number = this.leafCount): Uint8Array {
    this.checkSize(size, 'size');
    if (size === 0) return emptyRoot();
    if (size === this.leafCount) {
      this.cachedRoot ??= rootOf(size, this.range);
      return this.cachedRoot.slice();
    }
    return rootOf(size, this.range);
  }

  leafHashAt(index: number): Uint8Array {
    this.checkIndex(index, this.leafCount);
    return this.levels[0]!.view(index).slice();
  }

  /** RFC 9162 §2.1.3.1 PATH(index, D[0:size]), ordered from the leaf upwards. */
  inclusionProof(index: number, size: number = this.leafCount): Uint8Array[] {
    this.checkSize(size, 'size');
    this.checkIndex(index, size);
    return inclusionPath(index, size, this.range);
  }

  /**
   * RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]). Empty when size1 == size2 or size1 == 0
   * (as Go's transparency-dev/merkle does; verifiers reject size1 == 0 anyway).
   */
  consistencyProof(size1: number, size2: number = this.leafCount): Uint8Array[] {
    this.checkSize(size2, 'size2');
    if (!Number.isSafeInteger(size1) || size1 < 0 || size1 > size2) {
      throw new TreeRangeError(`size1 must be an integer in [0, ${size2}], got ${String(size1)}`);
    }
    return consistencyPath(size1, size2, this.range);
  }

  /** Approximate bytes held by hash storage (for benchmarks). */
  bytesAllocated(): number {
    return this.levels.reduce((sum, level) => sum + level.bytesAllocated(), 0);
  }

  static fromLeafHashes(hashes: Iterable<Uint8Array>): MerkleTree {
    const tree = new MerkleTree();
    for (const h of hashes) tree.append(h);
    return tree;
  }

  private checkSize(size: number, what: string): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.leafCount) {
      throw new TreeRangeError(`${what} must be an integer in [0, ${this.leafCount}], got ${String(size)}`);
    }
  }

  private checkIndex(index: number, size: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new TreeRangeError(`leaf index must be an integer in [0, ${size}), got ${String(index)}`);
    }
  }
}

function describe(value: unknown): string {
  return value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
}
