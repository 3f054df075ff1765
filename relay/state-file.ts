/**
 * Control-plane files (never payloads): written atomically (temp file + fsync + rename + fsync of
 * the folder), so a crash leaves either the old or the new version, never half of one.
 */
import { readOptional, writeFileAtomic as writeAtomic } from '../common/atomic-file.js';
import { EXIT_STATE_IO, StateFileError, describeFileError, stateExitCode } from '../common/state-errors.js';

/** writeFileAtomic whose failure names the file (StateFileError, exit 74). */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode?: number): Promise<void> {
  try {
    await writeAtomic(file, data, mode);
  } catch (err) {
    throw new StateFileError(file, `write failed: ${describeFileError(err)}`, EXIT_STATE_IO);
  }
}

/**
 * Reads a JSON state file; undefined only when it does not exist (a first start). With `list`,
 * the file must be `{"version":1,"<list>":[…]}`: an empty, truncated or garbled file is refused
 * (StateFileError, exit 65) rather than read as "no keys" — which would invent a new operator key.
 */
export async function readJson(file: string, list?: string): Promise<unknown> {
  let text: string | undefined;
  try {
    text = await readOptional(file);
  } catch (err) {
    throw new StateFileError(file, `cannot read: ${describeFileError(err)}`, stateExitCode(err));
  }
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(file, text === '' ? 'empty file (truncated?)' : describeFileError(err));
  }
  if (list !== undefined) {
    const v = value as Record<string, unknown> | null;
    if (typeof v !== 'object' || v === null || v['version'] !== 1 || !Array.isArray(v[list])) {
      throw new StateFileError(file, `unknown layout (expected {"version":1,"${list}":[…]})`);
    }
  }
  return value;
}

/**
 * Coalesces saves: at most one write in flight, and one more queued with the newest state.
 * `flush()` resolves once everything requested so far is on disk, and rejects once a save failed.
 */
export class SaveQueue {
  private running: Promise<void> | undefined;
  private again = false;
  /** The first failed save: every later flush() rejects with it (what RAM holds is no longer on disk). */
  private failed: unknown;

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
    if (this.failed !== undefined) throw this.failed;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.save();
      } catch (err) {
        if (this.failed === undefined) {
          this.failed = err;
          this.onError(err);
        }
      }
    } while (this.again);
    this.running = undefined;
  }
}
