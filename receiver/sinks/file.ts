/**
 * JSON lines appended to a file, fsync'ed before write() resolves, rotated by size:
 * FILE -> FILE.1 -> FILE.2 ... -> FILE.<keep> (the oldest is deleted).
 *
 * Crash recovery: on open the tail of the file (last 1 MiB) is read; a torn last line is cut off,
 * and the complete lines are remembered. A reading line already there is not written again, so an
 * envelope re-delivered after a crash between this fsync and the replay-state fsync does not
 * appear twice (a line holds the envelope id, seq and point, so equal text means the same reading).
 */
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import type { ReadingRecord } from '../records.js';
import { SinkError, type Sink } from './sink.js';
import { syncDir } from '../../common/atomic-file.js';
import { EXIT_STATE_IO, describeFileError, stateExitCode } from '../../common/state-errors.js';

const TAIL_BYTES = 1024 * 1024;

export interface FileSinkOptions {
  path: string;
  /** Rotate before a write would make the file larger than this (bytes). */
  maxSize: number;
  /** Rotated files kept besides the current one. */
  keep: number;
  mode?: number;
}

export class FileSink implements Sink {
  readonly name: string;
  private handle: fs.FileHandle | undefined;
  private size = 0;
  private recent = new Set<string>();

  constructor(private readonly o: FileSinkOptions) {
    this.name = `file ${o.path}`;
  }

  async open(): Promise<void> {
    try {
      await fs.mkdir(path.dirname(this.o.path), { recursive: true, mode: 0o700 });
      this.handle = await fs.open(this.o.path, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND, this.o.mode ?? 0o600);
      this.size = (await this.handle.stat()).size;
      await this.recoverTail();
    } catch (err) {
      throw new SinkError(this.name, `cannot open: ${describeFileError(err)}`, { exitCode: stateExitCode(err) });
    }
  }

  private async recoverTail(): Promise<void> {
    if (this.size === 0 || !this.handle) return;
    const length = Math.min(this.size, TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await this.handle.read(buf, 0, length, this.size - length);
    const lastNewline = buf.lastIndexOf(0x0a);
    const complete = lastNewline + 1;
    if (complete < length) {
      // A torn append (crash mid-write): drop the partial line; its envelope was never acknowledged.
      this.size -= length - complete;
      await this.handle.truncate(this.size);
      await this.handle.sync();
    }
    const lines = buf.subarray(0, complete).toString('utf8').split('\n');
    if (length === TAIL_BYTES) lines.shift(); // may start mid-line
    for (const line of lines) if (line !== '') this.recent.add(line);
  }

  async write(records: ReadingRecord[]): Promise<void> {
    if (!this.handle) throw new SinkError(this.name, 'not open');
    const lines = records.map((r) => JSON.stringify(r)).filter((line) => !this.recent.has(line));
    if (lines.length === 0) return;
    const data = Buffer.from(lines.join('\n') + '\n');
    try {
      if (this.size > 0 && this.size + data.length > this.o.maxSize) await this.rotate();
      await this.handle.appendFile(data);
      await this.handle.datasync();
      this.size += data.length;
    } catch (err) {
      // A short write (full disk) leaves part of a line: cut back to the last complete one, so
      // readers of the file never see a torn line (truncating needs no space).
      await this.handle?.truncate(this.size).catch(() => undefined);
      // Nothing of this envelope is acknowledged: the relay keeps it, so stopping loses nothing.
      throw new SinkError(this.name, `write failed: ${describeFileError(err)}`, { exitCode: EXIT_STATE_IO });
    }
  }

  private async rotate(): Promise<void> {
    await this.handle!.close();
    this.handle = undefined;
    const file = this.o.path;
    for (let i = this.o.keep - 1; i >= 1; i--) {
      await fs.rename(`${file}.${i}`, `${file}.${i + 1}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    await fs.rename(file, `${file}.1`);
    this.handle = await fs.open(file, constants.O_RDWR | constants.O_CREAT | constants.O_APPEND, this.o.mode ?? 0o600);
    this.size = 0;
    await syncDir(path.dirname(file));
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}
