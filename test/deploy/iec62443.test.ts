/**
 * docs/IEC62443.md maps each system requirement of the IEC 62443-3-3 compliance matrix to code and
 * to the tests that show it (issue 13, section 7). This keeps the page true: every SR of the matrix
 * has its section with at least one test, every test it names exists under that exact title, and
 * every code path it names exists. A made-up page must fail the same checks, so they are shown to bite.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../helpers/paths.js';

const DOC = 'docs/IEC62443.md';
const MATRIX = ['1.1', '1.2', '2.1', '2.8', '3.1', '4.1', '4.2', '5.2'];
/** `path/to/file.test.ts` › "exact title" */
const REFERENCE = /`([\w./-]+\.test\.ts)` › "([^"\n]+)"/g;
/** A backticked span that names a file or folder of the repository. */
const CODE_PATH = /^(agent|relay|receiver|common|protocol|cli|systemd|config|deploy|scripts|pi-image|plant|test)\/[\w./-]+$/;

interface Reference { file: string; title: string }

function references(text: string): Reference[] {
  return [...text.matchAll(REFERENCE)].map((m) => ({ file: m[1]!, title: m[2]! }));
}

/** The SRs of the matrix that have no `## SR x.y` heading, or no test reference under it (up to the next `## `). */
function srProblems(text: string): string[] {
  const sections = new Map<string, string>();
  for (const part of text.split(/^(?=## )/m)) {
    const heading = /^## SR (\d+\.\d+) /.exec(part);
    if (heading) sections.set(heading[1]!, part);
  }
  return MATRIX.flatMap((sr) => {
    const section = sections.get(sr);
    if (section === undefined) return [`SR ${sr}: no "## SR ${sr} …" heading`];
    return references(section).length === 0 ? [`SR ${sr}: its section names no test`] : [];
  });
}

/**
 * References whose file cannot be read, or whose file has no test(, it( or describe( line carrying
 * the title as a whole string literal ('…', "…" or `…`; an escaped \' in the source reads as ').
 */
function referenceProblems(text: string, readSource: (file: string) => string | undefined): string[] {
  const problems: string[] = [];
  for (const { file, title } of references(text)) {
    const source = readSource(file);
    if (source === undefined) {
      problems.push(`${file}: no such file (named for "${title}")`);
      continue;
    }
    const literals = [`'${title}'`, `"${title}"`, `\`${title}\``];
    const declared = source.replace(/\\'/g, "'").split('\n').some((line) => /\b(?:test|it|describe)\(/.test(line) && literals.some((l) => line.includes(l)));
    if (!declared) problems.push(`${file}: no test or describe titled "${title}"`);
  }
  return problems;
}

/** Backticked repository paths of `text` that `exists` does not find. */
function missingPaths(text: string, exists: (relative: string) => boolean): string[] {
  const spans = new Set([...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!));
  return [...spans].filter((span) => CODE_PATH.test(span) && !exists(span)).map((span) => `${span}: no such file or folder`);
}

const inRepo = (relative: string): string => path.join(repoRoot, relative);
const readRepoFile = (relative: string): string | undefined => (existsSync(inRepo(relative)) ? readFileSync(inRepo(relative), 'utf8') : undefined);
const doc = (): string => readFileSync(inRepo(DOC), 'utf8');

test('every SR of the matrix has its section in docs/IEC62443.md, naming at least one test', () => {
  assert.deepEqual(srProblems(doc()), []);
});

test('every test docs/IEC62443.md names exists under its exact title', () => {
  const text = doc();
  assert.ok(references(text).length >= 3 * MATRIX.length, `only ${references(text).length} test references`);
  assert.deepEqual(referenceProblems(text, readRepoFile), []);
});

test('every code path docs/IEC62443.md names exists', () => {
  assert.deepEqual(missingPaths(doc(), (relative) => existsSync(inRepo(relative))), []);
});

test('the checks bite: a missing heading, a test title that does not exist, a missing file and a missing path are reported', () => {
  const fake = [
    '## SR 1.1 Human user identification and authentication',
    '- `test/relay/api.test.ts` › "a real title"',
    '- `test/relay/api.test.ts` › "a real"',
    '- `test/relay/api.test.ts` › "no such test title here"',
    '## SR 1.2 Software process and device identification and authentication',
    'Nothing named. Code: `relay/no-such-file.ts`, `relay/api-keys.ts`.',
    '- `test/relay/no-such.test.ts` › "whatever"',
  ].join('\n');
  const sources: Record<string, string> = { 'test/relay/api.test.ts': "test('a real title', async () => {});\n" };
  assert.deepEqual(referenceProblems(fake, (file) => sources[file]), [
    'test/relay/api.test.ts: no test or describe titled "a real"',
    'test/relay/api.test.ts: no test or describe titled "no such test title here"',
    'test/relay/no-such.test.ts: no such file (named for "whatever")',
  ]);
  assert.deepEqual(missingPaths(fake, (relative) => existsSync(inRepo(relative))), [
    'relay/no-such-file.ts: no such file or folder',
    'test/relay/no-such.test.ts: no such file or folder',
  ]);
  const srs = srProblems(fake.replace('- `test/relay/no-such.test.ts` › "whatever"', ''));
  assert.deepEqual(srs.slice(0, 2), ['SR 1.2: its section names no test', 'SR 2.1: no "## SR 2.1 …" heading']);
  assert.equal(srs.length, MATRIX.length - 1);
});
