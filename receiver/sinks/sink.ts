/** A destination for readings. write() resolves only once the destination has accepted them. */
import type { ReadingRecord } from '../records.js';

export interface Sink {
  /** For logs: "file /var/lib/...", "mqtt mqtt://broker:1883", ... (never credentials). */
  readonly name: string;
  open(): Promise<void>;
  /** All readings of one envelope. Throws SinkError when they were not (all) accepted. */
  write(records: ReadingRecord[]): Promise<void>;
  close(): Promise<void>;
}

export class SinkError extends Error {
  /**
   * `localFailure`: the local disk failed the sink (ENOSPC, EIO…): the receiver stops with this
   * exit code (common/state-errors.ts) instead of retrying; unset for a remote destination that
   * may come back (broker, webhook), which is retried.
   */
  constructor(readonly sink: string, message: string, readonly localFailure?: { exitCode: number }) {
    super(`${sink}: ${message}`);
    this.name = 'SinkError';
  }
}
