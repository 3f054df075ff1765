/**
 * A deliberately small, safe JSON path subset for picking one value out of an MQTT payload:
 *
 *   $                  the whole document
 *   $.a.b              member access (identifier: letters, digits, _ and -, not starting with a digit or -)
 *   $.a[0].c           array index (non-negative integer)
 *   $['odd key'] / $["odd key"]   member access for any other key (no escapes inside quotes)
 *
 * Anything else (wildcards, recursive descent `..`, filters, slices, negative indices,
 * scripts) is refused when the config is loaded, with a message naming the position.
 * Evaluation only follows own properties, so `__proto__` or `constructor` never reach the prototype.
 */

export type PathSegment = { kind: 'key'; key: string } | { kind: 'index'; index: number };

export interface JsonPath {
  /** The path as written in the config. */
  text: string;
  segments: readonly PathSegment[];
}

const MAX_PATH_LENGTH = 256;
const MAX_SEGMENTS = 32;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_-]*/;
const INDEX = /^(0|[1-9][0-9]{0,8})\]/;

/** Parses a path; returns an error message (for the config validator) instead of throwing. */
export function parseJsonPath(text: string): JsonPath | string {
  if (text.length > MAX_PATH_LENGTH) return `JSON path longer than ${MAX_PATH_LENGTH} characters`;
  if (!text.startsWith('$')) return 'JSON path must start with "$" (e.g. "$.temperature" or "$.sensors[0].value")';
  const segments: PathSegment[] = [];
  let at = 1;
  while (at < text.length) {
    const rest = text.slice(at);
    const unsupported = describeUnsupported(rest);
    if (unsupported) return `unsupported JSON path syntax at position ${at}: ${unsupported} (supported: $.key, [index], ['key'])`;
    if (rest.startsWith('.')) {
      const name = IDENTIFIER.exec(rest.slice(1));
      if (!name) return `expected a key name after "." at position ${at + 1}; use ['key'] for keys with other characters`;
      segments.push({ kind: 'key', key: name[0] });
      at += 1 + name[0].length;
    } else if (rest.startsWith("['") || rest.startsWith('["')) {
      const quote = rest[1]!;
      const end = rest.indexOf(quote + ']', 2);
      if (end < 0) return `unterminated quoted key at position ${at}`;
      const key = rest.slice(2, end);
      if (key.includes('\\')) return `escapes in quoted keys are not supported at position ${at}`;
      segments.push({ kind: 'key', key });
      at += end + 2;
    } else if (rest.startsWith('[')) {
      const index = INDEX.exec(rest.slice(1));
      if (!index) return `expected a non-negative array index at position ${at + 1}`;
      segments.push({ kind: 'index', index: Number(index[1]) });
      at += 1 + index[0].length;
    } else {
      return `unexpected "${rest[0]}" at position ${at}; expected "." or "["`;
    }
    if (segments.length > MAX_SEGMENTS) return `JSON path deeper than ${MAX_SEGMENTS} segments`;
  }
  return { text, segments };
}

function describeUnsupported(rest: string): string | undefined {
  if (rest.startsWith('..')) return 'recursive descent ".."';
  if (rest.startsWith('.*') || rest.startsWith('[*]')) return 'wildcard "*"';
  if (rest.startsWith('[?')) return 'filter expression "[?(...)]"';
  if (rest.startsWith('[(')) return 'script expression "[(...)]"';
  if (/^\[-/.test(rest)) return 'negative index';
  if (/^\[[0-9]*:/.test(rest)) return 'slice "[a:b]"';
  if (/^\[[^\]]*,/.test(rest)) return 'union "[a,b]"';
  return undefined;
}

export type PathResult = { found: true; value: unknown } | { found: false; missing: string };

/** Follows the path through a parsed JSON value. `missing` names the first segment that was absent. */
export function evaluateJsonPath(path: JsonPath, document: unknown): PathResult {
  let current: unknown = document;
  let walked = '$';
  for (const segment of path.segments) {
    if (segment.kind === 'index') {
      walked += `[${segment.index}]`;
      if (!Array.isArray(current) || segment.index >= current.length) return { found: false, missing: walked };
      current = current[segment.index];
    } else {
      walked += IDENTIFIER.test(segment.key) && IDENTIFIER.exec(segment.key)![0] === segment.key ? `.${segment.key}` : `['${segment.key}']`;
      if (current === null || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, segment.key)) {
        return { found: false, missing: walked };
      }
      current = (current as Record<string, unknown>)[segment.key];
    }
  }
  return { found: true, value: current };
}
