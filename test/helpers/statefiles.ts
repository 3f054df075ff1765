/** Shared by the broken-state-file tests: what a path holds, to prove a refusing role changed nothing. */
import { lstat, readFile, readlink, readdir } from 'node:fs/promises';

export type Snapshot = { kind: 'missing' } | { kind: 'file'; bytes: Buffer; mode: number } | { kind: 'dir'; entries: string[] } | { kind: 'link'; target: string };

export async function snapshot(file: string): Promise<Snapshot> {
  let info;
  try {
    info = await lstat(file);
  } catch {
    return { kind: 'missing' };
  }
  if (info.isSymbolicLink()) return { kind: 'link', target: await readlink(file) };
  if (info.isDirectory()) return { kind: 'dir', entries: (await readdir(file)).sort() };
  return { kind: 'file', bytes: await readFile(file), mode: info.mode & 0o777 };
}

/** Escapes a path for use inside a RegExp. */
export function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** The CLI's one-line errors ("ghostpipe: …") among a process's output. */
export function errorLines(output: string): string[] {
  return output.split('\n').filter((l) => l.startsWith('ghostpipe:'));
}
