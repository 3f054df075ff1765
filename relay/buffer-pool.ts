/**
 * Envelope buffers. Every envelope of one bucket and KEM has the same length, so small ones
 * (<= 256 KiB: the 4 KiB and 64 KiB buckets) are cut from 1 MiB slabs of that exact length:
 * one allocation per ~100 envelopes instead of one each (saves ~300 bytes of malloc and object
 * overhead per held envelope). A released slot is always zeroed first. A slab whose slots are
 * all free is released, except one spare per length. Larger envelopes get their own buffer.
 */
const SLAB_BYTES = 1024 * 1024;
const MAX_POOLED = SLAB_BYTES / 4;

interface Slab {
  memory: Buffer;
  /** Byte offsets of free slots (small integers, not Buffer objects: ~100 bytes saved per slot). */
  free: number[];
  used: number;
}

interface SizeClass {
  /** Slabs with at least one free slot. */
  available: Slab[];
}

export class BufferPool {
  private readonly classes = new Map<number, SizeClass>();
  private readonly slabs = new Map<ArrayBufferLike, Slab>();

  allocate(size: number): Buffer {
    if (size > MAX_POOLED) return Buffer.allocUnsafeSlow(size);
    let sizeClass = this.classes.get(size);
    if (!sizeClass) this.classes.set(size, (sizeClass = { available: [] }));
    let slab = sizeClass.available[sizeClass.available.length - 1];
    if (!slab) {
      const count = Math.floor(SLAB_BYTES / size);
      const memory = Buffer.alloc(count * size);
      slab = { memory, free: [], used: 0 };
      for (let i = count - 1; i >= 0; i--) slab.free.push(i * size);
      this.slabs.set(memory.buffer, slab);
      sizeClass.available.push(slab);
    }
    const offset = slab.free.pop()!;
    const view = slab.memory.subarray(offset, offset + size);
    slab.used++;
    if (slab.free.length === 0) sizeClass.available.pop();
    return view;
  }

  release(bytes: Buffer): void {
    bytes.fill(0);
    const slab = bytes.length <= MAX_POOLED ? this.slabs.get(bytes.buffer) : undefined;
    if (!slab) return; // its own allocation: the GC frees it
    const sizeClass = this.classes.get(bytes.length)!;
    if (slab.free.length === 0) sizeClass.available.push(slab);
    slab.free.push(bytes.byteOffset - slab.memory.byteOffset);
    slab.used--;
    if (slab.used === 0 && sizeClass.available.length > 1) {
      sizeClass.available.splice(sizeClass.available.indexOf(slab), 1);
      this.slabs.delete(bytes.buffer);
    }
  }

  /** Bytes held in slabs (used and free), for stats. */
  get slabBytes(): number {
    let total = 0;
    for (const [memory] of this.slabs) total += memory.byteLength;
    return total;
  }
}
