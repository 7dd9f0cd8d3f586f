import { Agent, IncomingHttpHeaders, request } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** What the load generator reads of a response: the part of fetch's Response it uses. */
export interface ResponseLike {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null; has(name: string): boolean };
  text(): Promise<string>;
  json(): Promise<unknown>;
}

export interface RequestInitLike {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

/** The part of fetch the load generator calls; global fetch is one. */
export type FetchLike = (url: string, init: RequestInitLike) => Promise<ResponseLike>;

export type BenchClient = 'http' | 'fetch';

class BufferedResponse implements ResponseLike {
  readonly ok: boolean;
  readonly headers: ResponseLike['headers'];

  constructor(
    readonly status: number,
    raw: IncomingHttpHeaders,
    private readonly body: string,
  ) {
    this.ok = status >= 200 && status < 300;
    const value = (name: string): string | null => {
      const v = raw[name.toLowerCase()];
      if (v === undefined) return null;
      return Array.isArray(v) ? v.join(', ') : v;
    };
    this.headers = { get: value, has: (name) => value(name) !== null };
  }

  text(): Promise<string> {
    return Promise.resolve(this.body);
  }

  json(): Promise<unknown> {
    return Promise.resolve(JSON.parse(this.body) as unknown);
  }
}

/**
 * A fetch-like client over node:http with a keep-alive agent: it resolves once the whole body is in,
 * like `await (await fetch(...)).text()`. Global fetch (undici's web streams) costs Node 20 ~1 ms of
 * a short query's round trip on a GPU host's CPU (docs/benchmarks.md), which is the client's time, not
 * the server's; this client measures the server more closely. `maxSockets`: connections kept open.
 */
export function keepAliveFetch(maxSockets: number): FetchLike {
  const agents = {
    'http:': new Agent({ keepAlive: true, maxSockets }),
    'https:': new HttpsAgent({ keepAlive: true, maxSockets }),
  };
  return (url, init) =>
    new Promise<ResponseLike>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === 'https:';
      if (!secure && target.protocol !== 'http:') {
        reject(new TypeError(`unsupported protocol ${target.protocol}`));
        return;
      }
      const body = init.body === undefined ? undefined : Buffer.from(init.body);
      const send = secure ? httpsRequest : request;
      const req = send(
        target,
        {
          method: init.method ?? 'GET',
          agent: agents[secure ? 'https:' : 'http:'],
          headers: { ...init.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
          signal: init.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve(
              new BufferedResponse(res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8')),
            ),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}
