/**
 * Reading the relay's log entries in order into a compact Merkle range: O(log n) hashes instead of
 * the whole tree, enough to compare the entries with a signed root (receiver revocation scan,
 * `ghostpipe audit --full`).
 */
import type { RelayClient } from '../relay/client.js';
import { emptyRoot, leafHash, nodeHash } from '../protocol/tlog/merkle.js';
import { LogIntegrityError } from './log-trust.js';

/** The relay serves at most 1000 entries per request. */
const PAGE = 1000;

/** RFC 9162 tree head from perfect-subtree roots, left to right (largest first). */
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

/**
 * Fetches entries [range.size, toSize), appends each leaf hash to `range` and hands each entry to
 * `onEntry`. Throws LogIntegrityError when the relay serves a wrong count or index.
 */
export async function readEntries(client: RelayClient, range: CompactRange, toSize: number, onEntry: (index: number, data: Uint8Array) => void): Promise<void> {
  for (let start = range.size; start < toSize; start += PAGE) {
    const end = Math.min(toSize, start + PAGE);
    const entries = await client.entries(start, end);
    if (entries.length !== end - start) throw new LogIntegrityError('bad_proof', `relay returned ${entries.length} log entries for [${start}, ${end})`);
    entries.forEach((e, i) => {
      if (e.index !== start + i) throw new LogIntegrityError('bad_proof', `relay returned log entry ${e.index} where ${start + i} was expected`);
      range.append(leafHash(e.data));
      onEntry(e.index, e.data);
    });
  }
}
