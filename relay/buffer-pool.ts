/**
 * Envelope buffers. Every envelope of one bucket and KEM has the same length, so small ones
 * (<= 256 KiB: the 4 KiB and 64 KiB buckets) are cut from 1 MiB slabs and reused: one
 * allocation per ~100 envelopes instead of one each (saves ~300 bytes of malloc and object
 * overhead per held envelope). Larger envelopes get their own buffer, freed when burned.
 * A released buffer is always zeroed first. Slabs are kept for reuse; how much of them is in
 * use is still bounded by the store's memory cap.
 */
const SLAB_BYTES = 1024 * 1024;
const MAX_POOLED = SLAB_BYTES / 4;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();

  allocate(size: number): Buffer {
    if (size > MAX_POOLED) return Buffer.allocUnsafeSlow(size);
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    if (list.length === 0) {
      const count = Math.floor(SLAB_BYTES / size);
      const slab = Buffer.alloc(count * size);
      for (let i = count - 1; i >= 0; i--) list.push(slab.subarray(i * size, (i + 1) * size));
    }
    return list.pop()!;
  }

  release(bytes: Buffer): void {
    bytes.fill(0);
    if (bytes.length <= MAX_POOLED) this.free.get(bytes.length)?.push(bytes);
  }
}
