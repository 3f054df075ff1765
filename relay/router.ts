/**
 * One route table, `[method, pattern, handler]`, and the only place that decides 404 and 405.
 *
 * Pattern segments: a literal; `:name`, one segment of any text (even empty), handed to the
 * handler as `params.name` undecoded: the handler checks it against its id pattern after
 * authentication, so an id's shape never answers before the key does; a final `*`, one or more
 * segments, handed over as `params['*']` ("0/x001/234.p/7").
 *
 * A request matches the first route with its method and pattern. Otherwise it is 405 when some
 * route's pattern matches its path (a known path, another method) and 404 when none does
 * (docs/API.md). 405 says nothing about whether an id exists: `:name` matches any text.
 */
import { Refusal, notFound } from './refusal.js';

export type Params = Readonly<Record<string, string>>;
export type Route<H> = readonly [method: string, pattern: string, handler: H];

interface Compiled<H> {
  method: string;
  segments: readonly string[];
  handler: H;
}

export class Router<H> {
  private readonly routes: Compiled<H>[];

  constructor(table: readonly Route<H>[]) {
    this.routes = table.map(([method, pattern, handler]) => {
      const segments = pattern.split('/').slice(1);
      const wild = segments.indexOf('*');
      if (wild !== -1 && wild !== segments.length - 1) throw new Error(`route ${method} ${pattern}: '*' only as the last segment`);
      return { method, segments, handler };
    });
  }

  /** `path` is a URL pathname ("/v2/did/…"), still percent-encoded. */
  match(method: string, path: string): { handler: H; params: Params } | Refusal {
    const parts = path.split('/').slice(1);
    let known = false;
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (params === undefined) continue;
      if (route.method === method) return { handler: route.handler, params };
      known = true;
    }
    return known ? new Refusal('method_not_allowed', `${method} is not allowed here`) : notFound();
  }
}

function matchSegments(pattern: readonly string[], parts: readonly string[]): Params | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const segment = pattern[i]!;
    if (segment === '*') {
      if (parts.length <= i) return undefined;
      params['*'] = parts.slice(i).join('/');
      return params;
    }
    if (i >= parts.length) return undefined;
    if (segment.startsWith(':')) params[segment.slice(1)] = parts[i]!;
    else if (segment !== parts[i]) return undefined;
  }
  return parts.length === pattern.length ? params : undefined;
}
