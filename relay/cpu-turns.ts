/**
 * Hands out turns one per event-loop iteration. A burst of uploads would otherwise verify
 * back to back in one poll phase (about 7 ms each with @noble/post-quantum), delaying the
 * checkpoint timer past its 250 ms budget; between turns, timers and I/O run.
 */
export class CpuTurns {
  private readonly waiting: (() => void)[] = [];
  private head = 0;
  private scheduled = false;

  next(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.head === this.waiting.length) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const resolve = this.waiting[this.head++]!;
      if (this.head === this.waiting.length) this.waiting.length = this.head = 0;
      resolve();
      this.schedule();
    });
  }
}
