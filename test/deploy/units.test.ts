/**
 * The systemd units as systemd itself judges them: `systemd-analyze verify` finds nothing, and
 * `systemd-analyze security --offline=true` rates every service at an exposure of at most 2.0
 * (issue 13; docs/DEPLOY.md "Units"). A unit stripped of its hardening must fail the same check,
 * so the check is shown to bite.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers/paths.js';
import { unitFile } from '../helpers/systemd-unit.js';

const run = promisify(execFile);
const MAX_EXPOSURE = 2.0;
const unitsDir = path.join(repoRoot, 'systemd');

async function exposure(file: string): Promise<number> {
  const { stdout } = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', file]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(stdout);
  assert.ok(m, `no exposure level in systemd-analyze's output for ${file}:\n${stdout}`);
  return Number(m[1]);
}

test('every unit passes systemd-analyze verify without a warning', async () => {
  const units = (await readdir(unitsDir)).filter((f) => /\.(service|timer)$/.test(f)).map((f) => path.join(unitsDir, f));
  assert.ok(units.length >= 5, units.join(', '));
  const { stderr } = await run('systemd-analyze', ['verify', ...units]);
  assert.equal(stderr.trim(), '', 'systemd-analyze verify warned');
});

test(`every service's exposure (systemd-analyze security --offline) is at most ${MAX_EXPOSURE}`, async () => {
  const services = (await readdir(unitsDir)).filter((f) => f.endsWith('.service'));
  const levels: Record<string, number> = {};
  for (const s of services) levels[s] = await exposure(path.join(unitsDir, s));
  for (const [s, level] of Object.entries(levels)) assert.ok(level <= MAX_EXPOSURE, `${s}: exposure ${level} > ${MAX_EXPOSURE} (${JSON.stringify(levels)})`);
});

test('the check bites: the audit unit without its hardening is rated EXPOSED', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ghostpipe-units-'));
  try {
    const text = unitFile('ghostpipe-audit.service');
    const stripped = text.slice(0, text.indexOf('# Hardening'));
    assert.ok(stripped.length < text.length);
    const file = path.join(dir, 'ghostpipe-audit.service');
    await writeFile(file, stripped);
    assert.ok(await exposure(file) > 5, 'an unhardened unit scores above 5');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
