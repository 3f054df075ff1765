/**
 * The layers of docs/ARCHITECTURE.md, enforced: every relative import of every source file is
 * checked against what its folder may import. Tests (`*.test.ts`, `test/`) and benchmarks
 * (`bench/`, `agent/<driver>/bench.ts`) may import what they exercise; product code never imports them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './helpers/paths.js';

/** Top folder -> the top folders its product code may import (itself always). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  protocol: [],
  common: ['protocol'],
  agent: ['common', 'protocol'],
  relay: ['common', 'protocol'],
  receiver: ['common', 'protocol'],
  plant: ['common', 'protocol'],
  cli: ['agent', 'relay', 'receiver', 'plant', 'common', 'protocol'],
  bench: ['agent', 'relay', 'receiver', 'plant', 'common', 'protocol', 'test'],
};
const PRODUCT = Object.keys(MAY_IMPORT);

interface Import { file: string; target: string }

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === 'node_modules' ? [] : sources(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

function relativeImports(): Import[] {
  const found: Import[] = [];
  for (const top of PRODUCT) {
    for (const full of sources(path.join(repoRoot, top))) {
      const text = readFileSync(full, 'utf8');
      for (const m of text.matchAll(/\bfrom\s+'(\.[^']+)'|\bimport\s*\(\s*'(\.[^']+)'\s*\)/g)) {
        const spec = (m[1] ?? m[2])!;
        found.push({ file: path.relative(repoRoot, full), target: path.relative(repoRoot, path.resolve(path.dirname(full), spec)) });
      }
    }
  }
  return found;
}

/** Tests, and a driver's benchmark beside it (agent/<driver>/bench.ts), may start the real peers of test/helpers/. */
const isTest = (file: string): boolean => file.endsWith('.test.ts') || path.basename(file) === 'bench.ts';
const topOf = (file: string): string => file.split(path.sep)[0]!;
const imports = relativeImports();

test('each layer imports only the layers below it (docs/ARCHITECTURE.md)', () => {
  assert.ok(imports.length > 300, `found only ${imports.length} imports`);
  const broken = imports
    .filter(({ file }) => !isTest(file))
    .filter(({ file, target }) => topOf(file) !== topOf(target) && !MAY_IMPORT[topOf(file)]!.includes(topOf(target)))
    .map(({ file, target }) => `${file} imports ${target}`);
  assert.deepEqual(broken, []);
});

test('protocol/ imports nothing outside itself; relay/ imports neither agent/ nor receiver/; agent/ and receiver/ import nothing of relay/', () => {
  const product = imports.filter(({ file }) => !isTest(file));
  const offending = (from: string, to: string[]): string[] =>
    product.filter(({ file, target }) => topOf(file) === from && to.includes(topOf(target))).map(({ file, target }) => `${file} imports ${target}`);
  assert.deepEqual(offending('protocol', PRODUCT.filter((t) => t !== 'protocol').concat('test')), []);
  assert.deepEqual(offending('relay', ['agent', 'receiver']), []);
  assert.deepEqual(offending('agent', ['relay', 'receiver']), []);
  assert.deepEqual(offending('receiver', ['relay', 'agent']), []);
});

test('a protocol driver imports no other driver, and product code imports no test or bench file', () => {
  const drivers = readdirSync(path.join(repoRoot, 'agent')).filter((name) => statSync(path.join(repoRoot, 'agent', name)).isDirectory());
  assert.ok(drivers.length >= 3, `drivers: ${drivers.join(', ')}`);
  const driverOf = (file: string): string | undefined => {
    const [top, second, third] = file.split(path.sep);
    return top === 'agent' && third !== undefined && drivers.includes(second!) ? second : undefined;
  };
  const crossDriver = imports
    .filter(({ file, target }) => driverOf(file) !== undefined && driverOf(target) !== undefined && driverOf(file) !== driverOf(target))
    .map(({ file, target }) => `${file} imports ${target}`);
  assert.deepEqual(crossDriver, []);
  const intoTests = imports
    .filter(({ file }) => !isTest(file) && topOf(file) !== 'bench')
    .filter(({ target }) => topOf(target) === 'test' || topOf(target) === 'bench' || isTest(target.replace(/\.js$/, '.ts')))
    .map(({ file, target }) => `${file} imports ${target}`);
  assert.deepEqual(intoTests, []);
});
