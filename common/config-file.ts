/**
 * Loads a YAML 1.2 config file and validates it with a schema from common/schema.ts. Every
 * problem, from YAML syntax to a misspelt key, becomes one `file:line:column: path: message`
 * line of a single ConfigError, sorted by position.
 *
 * Hostile input is bounded: at most 1 MiB, at most 100 alias expansions, at most 64 levels of
 * nesting, no custom tags (`!foo`, `!!binary`), no duplicate or non-scalar keys, no merge keys.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { LineCounter, isAlias, type Alias, isMap, isNode, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { ConfigError, check, formatPath, type ConfigIssue, type Path, type PathSegment, type RawIssue, type Schema } from './schema.js';

export const MAX_CONFIG_BYTES = 1024 * 1024;
export const MAX_ALIAS_COUNT = 100;
export const MAX_NESTING = 64;
const MAX_SYNTAX_ISSUES = 20;

const CORE = 'tag:yaml.org,2002:';
const ALLOWED_TAGS = new Set(['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => CORE + t));

/**
 * Where the values of a parsed config file sit, so that problems found after the schema ran
 * (a key file the config names is missing) are placed at file:line:column like every other.
 */
export interface ConfigSource {
  readonly file: string;
  /** Line and column of the value at `path`; undefined for a config built in code. */
  positionOf(path: Path): { line: number; column: number } | undefined;
}

/** The source of a config built in code (no file to point into); `file` names it in messages. */
export function codeSource(file: string): ConfigSource {
  return { file, positionOf: () => undefined };
}

/** One ConfigError for problems found after parsing, each at its position in `source`. */
export function configErrorAt(source: ConfigSource, issues: readonly { path: Path; message: string }[]): ConfigError {
  return new ConfigError(issues.map((issue) => ({ file: source.file, ...source.positionOf(issue.path), path: formatPath(issue.path), message: issue.message })));
}

/** Parses and validates config text; `file` is only used in messages. Throws ConfigError. */
export function parseConfigText<T>(text: string, file: string, schema: Schema<T>): T {
  return parseConfigWithSource(text, file, schema).value;
}

/** parseConfigText, also returning where each value sits (for problems found later). */
export function parseConfigWithSource<T>(text: string, file: string, schema: Schema<T>): { value: T; source: ConfigSource } {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CONFIG_BYTES) throw new ConfigError([{ file, path: '', message: `file is too large: ${bytes} bytes; the limit is ${MAX_CONFIG_BYTES} (1MiB)` }]);

  const lineCounter = new LineCounter();
  const issues: ConfigIssue[] = [];
  const positionAt = (offset: number | undefined) => {
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const add = (offset: number | undefined, path: Path, message: string) => {
    issues.push({ file, ...positionAt(offset), path: formatPath(path), message });
  };

  const tooDeep = findDeepNesting(text);
  if (tooDeep !== undefined) {
    const before = text.slice(0, tooDeep);
    const line = before.split('\n').length;
    const column = tooDeep - before.lastIndexOf('\n');
    throw new ConfigError([{ file, line, column, path: '', message: `nested more than ${MAX_NESTING} levels deep` }]);
  }

  // uniqueKeys off: duplicates are reported below with their path and the first definition's line.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false, version: '1.2', schema: 'core', merge: false });
  // Unknown tags are reported by checkStructure, with every other tag that is not allowed.
  const syntaxProblems = [...doc.errors, ...doc.warnings.filter((w) => w.code !== 'TAG_RESOLVE_FAILED')];
  for (const problem of syntaxProblems.slice(0, MAX_SYNTAX_ISSUES)) add(problem.pos[0], [], `invalid YAML: ${problem.message}`);
  if (syntaxProblems.length > MAX_SYNTAX_ISSUES) add(undefined, [], `invalid YAML: ${syntaxProblems.length - MAX_SYNTAX_ISSUES} more problems not shown`);
  if (doc.directives.yaml.version !== '1.2') add(0, [], `only YAML 1.2 is supported; remove the %YAML ${doc.directives.yaml.version} directive`);
  const tagStart = (offset: number) => {
    let i = text.lastIndexOf('!', offset);
    while (i > 0 && text[i - 1] === '!') i--;
    return i < 0 ? offset : i;
  };
  checkStructure(doc.contents, [], 0, { add, tagStart, lineOf: (offset) => lineCounter.linePos(offset).line, resolve: (alias) => alias.resolve(doc) });
  if (issues.length > 0) throw new ConfigError(sortIssues(issues));

  if (doc.contents === null) throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `the file has no content; expected ${schema.describe()}` }]);

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = /excessive alias count/i.test((err as Error).message)
      ? `too many alias expansions; the limit is ${MAX_ALIAS_COUNT}`
      : `invalid YAML: ${(err as Error).message}`;
    throw new ConfigError([{ file, path: '', message }]);
  }

  const result = check(schema, value);
  for (const issue of result.issues) add(locate(doc, issue), issue.path, issue.message);
  if (issues.length > 0) throw new ConfigError(sortIssues(issues));
  return { value: result.value, source: { file, positionOf: (path) => positionAt(locate(doc, { path, message: '', target: 'value' })) } };
}

/** Reads `file` (a regular file of at most 1 MiB, UTF-8) and validates it. Throws ConfigError. */
export function loadConfigFile<T>(file: string, schema: Schema<T>): T {
  return loadConfigWithSource(file, schema).value;
}

/** loadConfigFile, also returning where each value sits (for problems found later). */
export function loadConfigWithSource<T>(file: string, schema: Schema<T>): { value: T; source: ConfigSource } {
  let text: string;
  try {
    // O_NONBLOCK: opening a FIFO by mistake must fail the regular-file check, not hang the process.
    const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const stat = fstatSync(fd);
      if (stat.isDirectory()) throw new ConfigError([{ file, path: '', message: 'is a directory, not a config file' }]);
      if (!stat.isFile()) throw new ConfigError([{ file, path: '', message: 'is not a regular file' }]);
      if (stat.size > MAX_CONFIG_BYTES) throw new ConfigError([{ file, path: '', message: `file is too large: ${stat.size} bytes; the limit is ${MAX_CONFIG_BYTES} (1MiB)` }]);
      text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(fd));
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([{ file, path: '', message: readFailure(err) }]);
  }
  return parseConfigWithSource(text, file, schema);
}

function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'config file not found';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied reading the config file';
  if (code === 'EISDIR') return 'is a directory, not a config file';
  if (err instanceof TypeError) return 'file is not valid UTF-8 text';
  return `cannot read the config file: ${(err as Error).message}`;
}

/**
 * The YAML composer recurses once per nesting level and slows down badly on pathological input
 * ('[' repeated 1M times takes ~20 s), so count flow brackets and compact "- - -" sequences first.
 * Quoted text and comments are skipped; returns the offset where the limit is passed.
 */
function findDeepNesting(text: string): number | undefined {
  let depth = 0;
  let lineStart = true;
  let dashes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const prev = i === 0 ? '\n' : text[i - 1]!;
    if (c === '\n') {
      lineStart = true;
      dashes = 0;
      continue;
    }
    if (lineStart && c === '-' && (text[i + 1] === ' ' || text[i + 1] === '\t')) {
      if (++dashes > MAX_NESTING) return i;
      continue;
    }
    if (c !== ' ' && c !== '\t') lineStart = false;
    if ((c === '"' || c === "'") && /[\s[{,:]/.test(prev)) {
      // Skip a quoted scalar; in "..." a backslash escapes the next character.
      for (i++; i < text.length && text[i] !== c; i++) if (c === '"' && text[i] === '\\') i++;
    } else if (c === '#' && /\s/.test(prev)) {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return i;
    } else if ((c === ']' || c === '}') && depth > 0) {
      depth--;
    }
  }
  return undefined;
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  const rank = (issue: ConfigIssue) => (issue.line === undefined ? [Infinity, 0] : [issue.line, issue.column ?? 0]);
  return issues
    .map((issue, index) => ({ issue, index, rank: rank(issue) }))
    .sort((a, b) => a.rank[0]! - b.rank[0]! || a.rank[1]! - b.rank[1]! || a.index - b.index)
    .map(({ issue }) => issue);
}

function shortTag(tag: string): string {
  return tag.startsWith(CORE) ? '!!' + tag.slice(CORE.length) : tag;
}

/** Rejects what the schema layer cannot see: custom tags, duplicate or complex keys, deep nesting. */
interface StructureTools {
  add(offset: number | undefined, path: Path, message: string): void;
  /** Where the tag in front of the node at `offset` starts. */
  tagStart(offset: number): number;
  lineOf(offset: number): number;
  resolve(alias: Alias): unknown;
}

function checkStructure(node: unknown, path: PathSegment[], depth: number, tools: StructureTools): void {
  const { add, tagStart, lineOf } = tools;
  if (!isNode(node)) return;
  if (isAlias(node)) {
    // The node it points at is checked where its anchor is; here only check that it exists.
    if (tools.resolve(node) === undefined) add(node.range?.[0], path, `the alias *${node.source} has no anchor &${node.source} before it`);
    return;
  }
  if (node.tag !== undefined && !ALLOWED_TAGS.has(node.tag)) {
    add(node.range ? tagStart(node.range[0]) : undefined, path, `the tag ${shortTag(node.tag)} is not allowed; use plain YAML values`);
    return;
  }
  if (depth >= MAX_NESTING && (isMap(node) || isSeq(node))) {
    add(node.range?.[0], path, `nested more than ${MAX_NESTING} levels deep`);
    return;
  }
  if (isMap(node)) {
    const firstLine = new Map<string, number | undefined>();
    for (const pair of node.items) {
      const key = pair.key;
      if (key !== null && (!isScalar(key) || (key.tag !== undefined && !ALLOWED_TAGS.has(key.tag)))) {
        add(isNode(key) ? key.range?.[0] : undefined, path, 'keys must be plain text, not lists, mappings, aliases or tagged values');
        continue;
      }
      const name = key === null ? '' : String(key.value);
      const keyOffset = key?.range?.[0];
      if (firstLine.has(name)) {
        const line = firstLine.get(name);
        add(keyOffset, [...path, name], `duplicate key${line === undefined ? '' : `; first defined on line ${line}`}`);
        continue;
      }
      firstLine.set(name, keyOffset === undefined ? undefined : lineOf(keyOffset));
      checkStructure(pair.value, [...path, name], depth + 1, tools);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => checkStructure(item, [...path, index], depth + 1, tools));
  }
}

function startOf(node: unknown): number | undefined {
  return isNode(node) ? node.range?.[0] : undefined;
}

/** An empty value (`url:`) has a zero-width range after the colon; point at the key instead. */
function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && (node.source === '' || node.source === undefined) && node.range?.[0] === node.range?.[1];
}

/** The source offset an issue points at: its value, its key, or the mapping that lacks it; else the nearest ancestor. */
function locate(doc: Document, issue: RawIssue): number | undefined {
  const steps = issue.target === 'parent' ? issue.path.slice(0, -1) : issue.path;
  let node: unknown = doc.contents;
  let offset = startOf(node) ?? 0;
  for (let i = 0; i < steps.length; i++) {
    const segment = steps[i]!;
    const container = isAlias(node) ? node.resolve(doc) : node;
    if (isMap(container)) {
      const pair = container.items.find((p) => (p.key === null ? '' : isScalar(p.key) ? String(p.key.value) : undefined) === String(segment));
      if (pair === undefined) return offset;
      const keyOffset = startOf(pair.key) ?? offset;
      if (i === steps.length - 1 && issue.target === 'key') return keyOffset;
      offset = isEmptyScalar(pair.value) || pair.value === null ? keyOffset : (startOf(pair.value) ?? keyOffset);
      node = pair.value;
    } else if (isSeq(container) && typeof segment === 'number') {
      const item = container.items[segment];
      if (item === undefined) return offset;
      offset = startOf(item) ?? offset;
      node = item;
    } else {
      return offset;
    }
  }
  return offset;
}
