/** Relay processes for the broken-state-file tests: run to exit, stop safely, read what was loaded. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { cliPath } from './paths.js';
import type { RelayProcess } from './relay.js';
import { snapshot, type Snapshot } from './statefiles.js';

/** Runs `ghostpipe relay` on the config the harness wrote in `dir`, expecting it to exit by itself. */
export async function relayExit(dir: string, timeoutMs = 20_000): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [cliPath, 'relay', '--config', path.join(dir, 'relay.json')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => { output += c.toString('utf8'); });
  child.stderr.on('data', (c: Buffer) => { output += c.toString('utf8'); });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, output };
}

/** Every file under `dir` (recursively) with what it holds. */
export async function tree(dir: string): Promise<Record<string, Snapshot>> {
  const out: Record<string, Snapshot> = {};
  const walk = async (rel: string) => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const name = path.join(rel, entry.name);
      out[name] = await snapshot(path.join(dir, name));
      if (entry.isDirectory()) await walk(name);
    }
  };
  await walk('');
  return out;
}

/** SIGTERM; resolves with the exit code (the CLI handles signals from its first log line on). */
export async function stopRelay(relay: RelayProcess): Promise<number | null> {
  return relay.stop();
}

export function loaded(relay: RelayProcess): { origin: string; logSize: number; keys: number; devices: number } {
  const line = relay.output().split('\n').map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } }).find((l) => l['msg'] === 'relay state loaded');
  assert.ok(line, relay.output());
  return { origin: line['origin'] as string, logSize: line['logSize'] as number, keys: line['keys'] as number, devices: line['devices'] as number };
}
