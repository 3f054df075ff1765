/**
 * The node flags a systemd unit of this repository starts node with: the options on its
 * `ExecStart=/usr/bin/node …` line before the script, plus `Environment=NODE_OPTIONS=…`.
 * Tests and benches run the daemons with exactly these, so the unit stays the single source.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './paths.js';

export function unitFile(name: string): string {
  return readFileSync(path.join(repoRoot, 'systemd', name), 'utf8');
}

/** Directive values of a unit, in order (`Key=value` lines outside comments). */
export function unitDirectives(text: string, key: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${key}=`)).map((line) => line.slice(key.length + 1).trim());
}

export function unitNodeFlags(name: string): string[] {
  const text = unitFile(name);
  const [execStart] = unitDirectives(text, 'ExecStart');
  if (execStart === undefined) throw new Error(`${name}: no ExecStart`);
  const words = execStart.split(/\s+/);
  if (words[0] !== '/usr/bin/node') throw new Error(`${name}: ExecStart does not start node: ${execStart}`);
  const script = words.findIndex((w) => w.endsWith('.js'));
  const flags = words.slice(1, script);
  for (const env of unitDirectives(text, 'Environment')) {
    const m = /^"?NODE_OPTIONS=([^"]*)"?$/.exec(env);
    if (m) flags.unshift(...m[1]!.split(/\s+/).filter(Boolean));
  }
  return flags;
}
