import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, appendFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileSink } from './file.js';
import type { ReadingRecord } from '../records.js';

test('file sink: a torn last line is cut, lines already written are not written twice', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gp-file-'));
  try {
    const file = path.join(dir, 'out.jsonl');
    const rec = (point: string) => ({ device: 'd', tap: 't', point, envelope: 'e1' }) as unknown as ReadingRecord;
    let sink = new FileSink({ path: file, maxSize: 1 << 20, keep: 2 });
    await sink.open();
    await sink.write([rec('a'), rec('b')]);
    await sink.close();
    await appendFile(file, '{"device":"d","tap":"t","po'); // crash mid-append
    sink = new FileSink({ path: file, maxSize: 1 << 20, keep: 2 });
    await sink.open();
    await sink.write([rec('a'), rec('b'), rec('c')]); // the same envelope again after the crash
    await sink.close();
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l).point);
    assert.deepEqual(lines, ['a', 'b', 'c']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
