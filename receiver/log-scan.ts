/**
 * Reading the relay's log entries in order into a compact Merkle range: O(log n) hashes instead of
 * the whole tree, enough to compare the entries with a signed root (receiver revocation scan,
 * `ghostpipe audit --full`).
 */
import type { RelayClient } from '../common/relay-client.js';
import { leafHash } from '../protocol/tlog/merkle.js';
import { CompactRange } from '../protocol/tlog/subtrees.js';
import { LogIntegrityError } from '../common/log-trust.js';

/** The relay serves at most 1000 entries per request. */
const PAGE = 1000;

/**
 * Fetches entries [range.size, toSize), appends each leaf hash to `range` and hands each entry to
 * `onEntry`. Throws LogIntegrityError (unproven: entries are unsigned) when the relay serves a wrong count or index.
 */
export async function readEntries(client: RelayClient, range: CompactRange, toSize: number, onEntry: (index: number, data: Uint8Array) => void): Promise<void> {
  for (let start = range.size; start < toSize; start += PAGE) {
    const end = Math.min(toSize, start + PAGE);
    const entries = await client.entries(start, end);
    if (entries.length !== end - start) throw new LogIntegrityError('bad_proof', `relay returned ${entries.length} log entries for [${start}, ${end})`, 'unproven');
    entries.forEach((e, i) => {
      if (e.index !== start + i) throw new LogIntegrityError('bad_proof', `relay returned log entry ${e.index} where ${start + i} was expected`, 'unproven');
      range.append(leafHash(e.data));
      onEntry(e.index, e.data);
    });
  }
}
