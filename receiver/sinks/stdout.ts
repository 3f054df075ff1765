/** JSON lines on stdout (the default sink). The receiver's own logs then go to stderr. */
import type { ReadingRecord } from '../records.js';
import { SinkError, type Sink } from './sink.js';

export class StdoutSink implements Sink {
  readonly name = 'stdout';
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}
  async open(): Promise<void> {}
  write(records: ReadingRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const text = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
    return new Promise((resolve, reject) => {
      this.out.write(text, (err) => (err ? reject(new SinkError(this.name, err.message)) : resolve()));
    });
  }
  async close(): Promise<void> {}
}
