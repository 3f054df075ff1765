/**
 * A minimal fetch over node:http/https for the relay and webhook connections: it trusts only a
 * pinned CA or certificate (PEM) when one is given (Node 20's global fetch has no per-request CA
 * option), else the system CAs, and it caps every response body, so a hostile or broken relay
 * cannot make the receiver buffer without bound (global fetch has no such limit).
 */
import http from 'node:http';
import https from 'node:https';

/** Responses larger than this are cut off with an error (the largest envelope is about 5 MiB). */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export function pinnedFetch(ca?: string | Buffer): typeof fetch {
  const pinned = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const client = url.protocol === 'https:' ? https : http;
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    const body = init.body === undefined || init.body === null ? undefined : typeof init.body === 'string' ? init.body : Buffer.from(init.body as Uint8Array);
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const attempt = (retried: boolean) => new Promise<Response>((resolve, reject) => {
      const req = client.request(url, { method: init.method ?? 'GET', headers, signal: init.signal ?? undefined, ...(ca !== undefined ? { ca } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) req.destroy(new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) out.set(k, Array.isArray(v) ? v.join(', ') : v);
          const status = res.statusCode ?? 502;
          const noBody = [101, 204, 205, 304].includes(status);
          resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers: out }));
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive socket the server closed just as we reused it: the request never arrived (Node's documented retry case).
        if (!retried && req.reusedSocket && err.code === 'ECONNRESET') attempt(true).then(resolve, reject);
        else reject(err);
      });
      req.end(body);
    });
    return attempt(false);
  };
  return pinned as typeof fetch;
}
