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
  constructor(readonly sink: string, message: string) {
    super(`${sink}: ${message}`);
    this.name = 'SinkError';
  }
}
