/**
 * Small bounded cache for derived key material (key import/expansion costs milliseconds).
 * Entries are keyed by SHA-256 of the key bytes, so no seed is kept as a string key.
 */
import { createHash } from 'node:crypto';

export class KeyCache<V> {
  private readonly entries = new Map<string, V>();
  constructor(private readonly limit = 16) {}

  get(keyBytes: Uint8Array, make: () => V): V {
    const id = createHash('sha256').update(keyBytes).digest('base64');
    const hit = this.entries.get(id);
    if (hit !== undefined) {
      // Refresh recency: Map iteration order is insertion order, so the first entry is the oldest.
      this.entries.delete(id);
      this.entries.set(id, hit);
      return hit;
    }
    const value = make();
    this.entries.set(id, value);
    if (this.entries.size > this.limit) this.entries.delete(this.entries.keys().next().value as string);
    return value;
  }
}
