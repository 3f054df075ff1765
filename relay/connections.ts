/**
 * Connections per source address (docs/RELAY.md "Connections"): so no single peer can take the
 * listener (issue 11: 1,100 idle sockets from one address made /healthz fail for 12 s). Counts
 * what is open now per address; over the cap, the caller closes or refuses.
 */
export class SourceLimit {
  private readonly open = new Map<string, number>();
  /** Turned away since start. */
  refused = 0;

  constructor(readonly perSource: number) {}

  /** True when one more from `source` fits (it is then counted until release()); false counts a refusal. */
  take(source: string): boolean {
    const now = this.open.get(source) ?? 0;
    if (now >= this.perSource) {
      this.refused++;
      return false;
    }
    this.open.set(source, now + 1);
    return true;
  }

  release(source: string): void {
    const left = (this.open.get(source) ?? 0) - 1;
    if (left > 0) this.open.set(source, left);
    else this.open.delete(source);
  }

  /** Distinct sources with something open. */
  get sources(): number {
    return this.open.size;
  }

  /** What `source` has open now. */
  count(source: string): number {
    return this.open.get(source) ?? 0;
  }
}

/** One spelling per address: an IPv4 peer on a dual-stack socket ("::ffff:10.0.0.1") is the IPv4 address. */
export function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
