/**
 * A small schema DSL for config files. A schema checks a plain JS value (as parsed from YAML),
 * collects every problem instead of stopping at the first, and returns a typed value.
 * Positions (file:line:column) are added by common/config-file.ts, which maps issue paths back
 * to YAML nodes; this file knows nothing about YAML.
 *
 *   const tapSchema = s.object({ name: s.string({ minLength: 1 }), interval: s.withDefault(s.duration(), 15_000) });
 *   type TapConfig = Infer<typeof tapSchema>;   // { name: string; interval: number }
 */
import { isIPv4, isIPv6 } from 'node:net';
import { DurationError, SizeError, formatDuration, formatSize, parseDuration, parseSize } from './duration.js';

export type PathSegment = string | number;
/** Where a value sits in the document: ['taps', 2, 'points', 0, 'type'] is taps[2].points[0].type. */
export type Path = readonly PathSegment[];

/** What an issue points at: the value at `path`, its key (unknown keys), or the mapping that lacks it (missing keys). */
export type IssueTarget = 'value' | 'key' | 'parent';

export interface RawIssue {
  path: Path;
  message: string;
  target: IssueTarget;
}

export interface ParseContext {
  readonly issues: RawIssue[];
}

export interface Schema<T> {
  readonly kind: string;
  /** What the schema accepts, phrased to follow "must be": "an integer from 1 to 65535". */
  describe(): string;
  /** Internal: checks `value`, pushes problems to ctx.issues, returns the typed value (meaningless if issues were added). */
  parse(value: unknown, at: Path, ctx: ParseContext): T;
  /** Internal: an object may omit this key (set by optional and withDefault). */
  readonly keyOptional?: boolean;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
/** Keys whose schema may yield undefined (s.optional) become optional properties. */
export type ObjectOutput<S extends Record<string, Schema<any>>> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

/** A problem found by a refine check; `path` is relative to the refined value. */
export interface RefineIssue {
  path: Path;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// Reporting helpers

export function formatPath(path: Path): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

const MAX_SHOWN = 60;

/** How a found value is shown in a message. Secrets show only their type. */
export function describeFound(value: unknown, secret = false): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (secret) return `a hidden ${typeof value}`;
  if (typeof value === 'string') return value.length > MAX_SHOWN ? JSON.stringify(value.slice(0, MAX_SHOWN)) + '…' : JSON.stringify(value);
  return String(value);
}

/** Optimal string alignment distance: edits, with a swap of neighbours counting as one. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate if it is close enough to be a likely typo. */
export function suggest(input: string, candidates: readonly string[]): string | undefined {
  if (input.length > 100) return undefined;
  const limit = Math.min(3, Math.max(1, Math.floor(input.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(input.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= limit && best !== input ? best : undefined;
}

function didYouMean(input: unknown, candidates: readonly string[]): string {
  const match = typeof input === 'string' ? suggest(input, candidates) : undefined;
  return match === undefined ? '' : `; did you mean ${JSON.stringify(match)}?`;
}

function report(ctx: ParseContext, path: Path, message: string, target: IssueTarget = 'value'): undefined {
  ctx.issues.push({ path, message, target });
  return undefined;
}

/** The standard message: `must be <what the schema accepts>; found <what was there>[ (detail)]`. */
function mismatch(ctx: ParseContext, at: Path, self: Schema<unknown>, value: unknown, detail?: string, secret = false): never {
  report(ctx, at, `must be ${self.describe()}; found ${describeFound(value, secret)}${detail ? ` (${detail})` : ''}`);
  return undefined as never;
}

function isMapping(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function range(min: number | undefined, max: number | undefined, show: (n: number) => string): string {
  if (min !== undefined && max !== undefined) return ` from ${show(min)} to ${show(max)}`;
  if (min !== undefined) return ` of at least ${show(min)}`;
  if (max !== undefined) return ` of at most ${show(max)}`;
  return '';
}

function inRange(value: number, o: { min?: number; max?: number }): boolean {
  return (o.min === undefined || value >= o.min) && (o.max === undefined || value <= o.max);
}

function make<T>(kind: string, describe: () => string, parse: Schema<T>['parse'], keyOptional = false): Schema<T> {
  return keyOptional ? { kind, describe, parse, keyOptional } : { kind, describe, parse };
}

// ---------------------------------------------------------------------------------------------
// Scalars

export interface StringOptions {
  minLength?: number;
  maxLength?: number;
  pattern?: RegExp;
  /** Replaces the generated description, e.g. 'a Modbus register like "40001"'. */
  hint?: string;
  /** Never echo the value in messages (passwords, API keys). */
  secret?: boolean;
}

function string(o: StringOptions = {}): Schema<string> {
  const describe = (): string => {
    if (o.hint !== undefined) return o.hint;
    const { minLength: min, maxLength: max } = o;
    let text = 'a string';
    if (min === 1 && max === undefined) text = 'a non-empty string';
    else if (min !== undefined && max !== undefined) text = `a string of ${min} to ${max} characters`;
    else if (min !== undefined) text = `a string of at least ${min} characters`;
    else if (max !== undefined) text = `a string of at most ${max} characters`;
    return o.pattern === undefined ? text : `${text} matching ${o.pattern}`;
  };
  const self: Schema<string> = make('string', describe, (value, at, ctx) => {
    if (typeof value !== 'string') {
      const quote = typeof value === 'number' || typeof value === 'boolean' ? 'quote it to make it a string' : undefined;
      return mismatch(ctx, at, self, value, quote, o.secret);
    }
    if (o.minLength !== undefined && value.length < o.minLength) return mismatch(ctx, at, self, value, `${value.length} characters`, o.secret);
    if (o.maxLength !== undefined && value.length > o.maxLength) return mismatch(ctx, at, self, value, `${value.length} characters`, o.secret);
    if (o.pattern !== undefined) {
      o.pattern.lastIndex = 0; // a /g or /y pattern keeps state between test() calls
      if (!o.pattern.test(value)) return mismatch(ctx, at, self, value, undefined, o.secret);
    }
    return value;
  });
  return self;
}

function number(o: { min?: number; max?: number } = {}): Schema<number> {
  const self: Schema<number> = make('number', () => 'a number' + range(o.min, o.max, String), (value, at, ctx) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || !inRange(value, o)) return mismatch(ctx, at, self, value);
    return value;
  });
  return self;
}

function integer(o: { min?: number; max?: number } = {}): Schema<number> {
  const self: Schema<number> = make('integer', () => 'an integer' + range(o.min, o.max, String), (value, at, ctx) => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || !inRange(value, o)) return mismatch(ctx, at, self, value);
    return value;
  });
  return self;
}

function boolean(): Schema<boolean> {
  const self: Schema<boolean> = make('boolean', () => 'true or false', (value, at, ctx) => {
    if (typeof value !== 'boolean') return mismatch(ctx, at, self, value);
    return value;
  });
  return self;
}

function enumOf<const V extends readonly string[]>(values: V): Schema<V[number]> {
  const self: Schema<V[number]> = make('enum', () => `one of ${values.join(', ')}`, (value, at, ctx) => {
    if (typeof value !== 'string' || !values.includes(value)) {
      report(ctx, at, `must be ${self.describe()}; found ${describeFound(value)}${didYouMean(value, values)}`);
      return undefined as never;
    }
    return value as V[number];
  });
  return self;
}

function literal<const V extends string | number | boolean>(expected: V): Schema<V> {
  const self: Schema<V> = make('literal', () => JSON.stringify(expected), (value, at, ctx) => {
    if (value !== expected) return mismatch(ctx, at, self, value);
    return expected;
  });
  return self;
}

function duration(o: { min?: number; max?: number } = {}): Schema<number> {
  const describe = () => (o.min === undefined && o.max === undefined ? 'a duration like "15s" or "500ms"' : 'a duration' + range(o.min, o.max, formatDuration));
  const self: Schema<number> = make('duration', describe, (value, at, ctx) => {
    if (typeof value !== 'string') return mismatch(ctx, at, self, value);
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch (err) {
      if (err instanceof DurationError) return mismatch(ctx, at, self, value, err.reason);
      throw err;
    }
    if (!inRange(ms, o)) return mismatch(ctx, at, self, value);
    return ms;
  });
  return self;
}

function size(o: { min?: number; max?: number } = {}): Schema<number> {
  const describe = () => (o.min === undefined && o.max === undefined ? 'a size like "32MiB" or "4KiB"' : 'a size' + range(o.min, o.max, formatSize));
  const self: Schema<number> = make('size', describe, (value, at, ctx) => {
    if (typeof value !== 'string' && typeof value !== 'number') return mismatch(ctx, at, self, value);
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch (err) {
      if (err instanceof SizeError) return mismatch(ctx, at, self, value, err.reason);
      throw err;
    }
    if (!inRange(bytes, o)) return mismatch(ctx, at, self, value);
    return bytes;
  });
  return self;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Splits "host:port" / "[v6]:port"; returns a reason string when it cannot. */
function splitHostPort(text: string, allowPortZero: boolean): { host: string; port: number } | string {
  const bracketed = /^\[([^\]]*)\]:(\d{1,5})$/.exec(text);
  const plain = /^([^:[\]]+):(\d{1,5})$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) {
    if (!text.startsWith('[') && text.split(':').length > 2) return 'write IPv6 addresses in brackets, like "[::1]:4840"';
    if (!text.includes(':') || text.endsWith(']')) return 'missing ":port"';
    if (!/:\d{1,5}$/.test(text)) return `port must be a number from ${allowPortZero ? 0 : 1} to 65535`;
    return 'not a host:port pair';
  }
  const host = match[1]!;
  const port = Number(match[2]);
  if (bracketed && !isIPv6(host)) return `${JSON.stringify(host)} is not an IPv6 address`;
  if (plain && !isIPv4(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host))) return `${JSON.stringify(host)} is not an IPv4 address or host name`;
  if (port > 65535 || (port === 0 && !allowPortZero)) return `port must be from ${allowPortZero ? 0 : 1} to 65535`;
  return { host, port };
}

function hostPort(o: { allowPortZero?: boolean } = {}): Schema<{ host: string; port: number }> {
  const self: Schema<{ host: string; port: number }> = make('hostPort', () => 'host:port like "127.0.0.1:502" or "[::1]:4840"', (value, at, ctx) => {
    if (typeof value !== 'string') return mismatch(ctx, at, self, value);
    const result = splitHostPort(value, o.allowPortZero ?? false);
    if (typeof result === 'string') return mismatch(ctx, at, self, value, result);
    return result;
  });
  return self;
}

/** Hides user:password@ so a broken URL never puts a credential in a log line. */
function redactUserinfo(text: string): string {
  return text.replace(/\/\/[^/@]*@/, '//***@');
}

function url(o: { protocols?: string[] } = {}): Schema<string> {
  const protocols = o.protocols?.map((p) => p.replace(/:(\/\/)?$/, '').toLowerCase());
  const describe = () => (protocols ? `a URL starting with ${protocols.map((p) => p + '://').join(' or ')}` : 'a URL');
  const self: Schema<string> = make('url', describe, (value, at, ctx) => {
    if (typeof value !== 'string') return mismatch(ctx, at, self, value);
    const fail = (detail?: string) => {
      report(ctx, at, `must be ${describe()}; found ${describeFound(redactUserinfo(value))}${detail ? ` (${detail})` : ''}`);
      return undefined as never;
    };
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      return fail('not a valid URL');
    }
    if (protocols && !protocols.includes(parsed.protocol.slice(0, -1))) return fail();
    return value;
  });
  return self;
}

// ---------------------------------------------------------------------------------------------
// Structure

function array<T>(item: Schema<T>, o: { minItems?: number; maxItems?: number } = {}): Schema<T[]> {
  const self: Schema<T[]> = make('array', () => 'a list', (value, at, ctx) => {
    if (!Array.isArray(value)) return mismatch(ctx, at, self, value);
    const items = (n: number) => `${n} item${n === 1 ? '' : 's'}`;
    if (o.minItems !== undefined && value.length < o.minItems) report(ctx, at, `must have at least ${items(o.minItems)}; found ${value.length}`);
    if (o.maxItems !== undefined && value.length > o.maxItems) {
      report(ctx, at, `must have at most ${items(o.maxItems)}; found ${value.length}`);
      return undefined as never; // don't check (and report on) thousands of surplus items
    }
    return value.map((element, index) => item.parse(element, [...at, index], ctx));
  });
  return self;
}

function object<S extends Record<string, Schema<any>>>(shape: S): Schema<ObjectOutput<S>> {
  const keys = Object.keys(shape);
  const self: Schema<ObjectOutput<S>> = make('object', () => 'a mapping', (value, at, ctx) => {
    if (!isMapping(value)) return mismatch(ctx, at, self, value);
    const out: Record<string, unknown> = {};
    for (const [key, element] of Object.entries(value)) {
      const field = Object.hasOwn(shape, key) ? shape[key] : undefined;
      if (field === undefined) {
        report(ctx, [...at, key], `unknown key; allowed keys: ${keys.join(', ')}${didYouMean(key, keys)}`, 'key');
        continue;
      }
      const parsed = field.parse(element, [...at, key], ctx);
      if (parsed !== undefined) out[key] = parsed;
    }
    for (const key of keys) {
      if (Object.hasOwn(value, key)) continue;
      const field = shape[key]!;
      if (!field.keyOptional) {
        report(ctx, [...at, key], 'required', 'parent');
        continue;
      }
      const parsed = field.parse(undefined, [...at, key], ctx);
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as ObjectOutput<S>;
  });
  return self;
}

function optional<T>(schema: Schema<T>): Schema<T | undefined> {
  // An empty YAML value (`password:`) counts as absent.
  return make(schema.kind, () => schema.describe(), (value, at, ctx) => (value === undefined || value === null ? undefined : schema.parse(value, at, ctx)), true);
}

function withDefault<T>(schema: Schema<T>, fallback: T): Schema<T> {
  return make(
    schema.kind,
    () => schema.describe(),
    (value, at, ctx) => (value === undefined || value === null ? structuredClone(fallback) : schema.parse(value, at, ctx)),
    true,
  );
}

function oneOf<K extends string, M extends Record<string, Schema<any>>>(discriminator: K, variants: M): Schema<Infer<M[keyof M]>> {
  const names = Object.keys(variants);
  const self: Schema<Infer<M[keyof M]>> = make('oneOf', () => `a mapping with ${discriminator}: ${names.join(', ')}`, (value, at, ctx) => {
    if (!isMapping(value)) return mismatch(ctx, at, self, value);
    const tag = value[discriminator];
    if (tag === undefined) return report(ctx, [...at, discriminator], `required; must be one of ${names.join(', ')}`, 'parent') as never;
    if (typeof tag !== 'string' || !Object.hasOwn(variants, tag)) {
      return report(ctx, [...at, discriminator], `must be one of ${names.join(', ')}; found ${describeFound(tag)}${didYouMean(tag, names)}`) as never;
    }
    return variants[tag]!.parse(value, at, ctx);
  });
  return self;
}

function record<T>(item: Schema<T>): Schema<Record<string, T>> {
  const self: Schema<Record<string, T>> = make('record', () => 'a mapping', (value, at, ctx) => {
    if (!isMapping(value)) return mismatch(ctx, at, self, value);
    const out: Record<string, T> = {};
    for (const [key, element] of Object.entries(value)) {
      if (key === '__proto__') {
        report(ctx, [...at, key], 'this name is reserved; choose another', 'key');
        continue;
      }
      out[key] = item.parse(element, [...at, key], ctx);
    }
    return out;
  });
  return self;
}

/**
 * Adds a check that runs only when `schema` accepted the value. The check returns a message
 * naming the problem ("points[3] has the same name as points[1]"), or issues at sub-paths.
 */
function refine<T>(schema: Schema<T>, check: (value: T) => string | RefineIssue[] | undefined): Schema<T> {
  return processed(schema, (value) => {
    const problem = check(value);
    const issues = typeof problem === 'string' ? [{ path: [], message: problem }] : (problem ?? []);
    return issues.length > 0 ? { ok: false, issues } : { ok: true, value };
  });
}

/** What a process step returns: the processed value, or the problems that stop it (paths relative to the value). */
export type Processed<U> = { ok: true; value: U } | { ok: false; issues: RefineIssue[] };

/**
 * Check, then process: runs `fn` only when `schema` accepted the value, and turns the checked
 * value (defaults applied) into the shape its component runs on (resolved, planned). The
 * cross-field rules that the processing itself finds go into `issues`, so they are reported at
 * their paths like any other problem, and the component never checks them again.
 */
function processed<T, U>(schema: Schema<T>, fn: (value: T) => Processed<U>): Schema<U> {
  return make(
    schema.kind,
    () => schema.describe(),
    (value, at, ctx) => {
      const before = ctx.issues.length;
      const parsed = schema.parse(value, at, ctx);
      if (ctx.issues.length > before) return undefined as never;
      const result = fn(parsed);
      if (result.ok) return result.value;
      for (const issue of result.issues) report(ctx, [...at, ...issue.path], issue.message);
      return undefined as never;
    },
    schema.keyOptional ?? false,
  );
}

/** The first schema that accepts the value wins. */
function union<T extends Schema<any>[]>(...schemas: T): Schema<Infer<T[number]>> {
  const self: Schema<Infer<T[number]>> = make('union', () => schemas.map((schema) => schema.describe()).join(' or '), (value, at, ctx) => {
    const failures: RawIssue[][] = [];
    for (const schema of schemas) {
      const attempt: ParseContext = { issues: [] };
      const parsed = schema.parse(value, at, attempt);
      if (attempt.issues.length === 0) return parsed;
      failures.push(attempt.issues);
    }
    // A branch that matched the shape and failed only deeper inside explains the problem best.
    const deeper = failures.find((issues) => issues.every((issue) => issue.path.length > at.length));
    if (deeper) ctx.issues.push(...deeper);
    else mismatch(ctx, at, self, value);
    return undefined as never;
  });
  return self;
}

export const s = {
  string,
  number,
  integer,
  boolean,
  enum: enumOf,
  literal,
  duration,
  size,
  hostPort,
  url,
  array,
  object,
  optional,
  withDefault,
  oneOf,
  record,
  refine,
  process: processed,
  union,
};

// ---------------------------------------------------------------------------------------------
// Results

export interface ConfigIssue {
  file?: string;
  line?: number;
  column?: number;
  path: string;
  message: string;
}

/** `file:line:column: path: message`, leaving out the parts that are unknown. */
export function formatIssue(issue: ConfigIssue): string {
  let where = '';
  if (issue.file !== undefined) where = issue.line === undefined ? `${issue.file}: ` : `${issue.file}:${issue.line}:${issue.column ?? 1}: `;
  return `${where}${issue.path === '' ? '' : issue.path + ': '}${issue.message}`;
}

/** Every problem in a config, one per line of .message. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Runs a schema and returns the value with every raw issue (positions are the caller's business). */
export function check<T>(schema: Schema<T>, value: unknown): { value: T; issues: RawIssue[] } {
  const ctx: ParseContext = { issues: [] };
  const parsed = schema.parse(value, [], ctx);
  return { value: parsed, issues: ctx.issues };
}

/** Validates an already-parsed value; throws ConfigError listing every issue (without positions). */
export function validate<T>(schema: Schema<T>, value: unknown, file?: string): T {
  const result = check(schema, value);
  if (result.issues.length > 0) {
    throw new ConfigError(result.issues.map((issue) => ({ ...(file === undefined ? {} : { file }), path: formatPath(issue.path), message: issue.message })));
  }
  return result.value;
}
