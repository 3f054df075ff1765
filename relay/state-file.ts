/**
 * Control-plane files (never payloads): written atomically (temp file + fsync + rename + fsync of
 * the folder), so a crash leaves either the old or the new version, never half of one.
 */
import { readOptional } from '../common/atomic-file.js';

export { writeFileAtomic } from '../common/atomic-file.js';

/** Reads a JSON file; undefined when it does not exist. */
export async function readJson(file: string): Promise<unknown> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Coalesces saves: at most one write in flight, and one more queued with the newest state.
 * `flush()` resolves once everything requested so far is on disk.
 */
export class SaveQueue {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly save: () => Promise<void>, private readonly onError: (err: unknown) => void) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop();
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.save();
      } catch (err) {
        this.onError(err);
      }
    } while (this.again);
    this.running = undefined;
  }
}
