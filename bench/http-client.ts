import { Agent, IncomingHttpHeaders, request } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { performance } from 'node:perf_hooks';

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

/** One request's outcome, read in full; `ms` runs from the request's start to its last body byte. */
export interface HttpExchange {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  ms: number;
}

export interface SendInit {
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
}

/**
 * One request over node:http(s) on the given keep-alive agent, resolved once the whole body is in.
 * The clock stops at the response's 'end', before the body is decoded: the client's own work is not
 * the server's time.
 */
export function send(url: URL, init: SendInit, agent: Agent): Promise<HttpExchange> {
  return new Promise<HttpExchange>((resolve, reject) => {
    const secure = url.protocol === 'https:';
    if (!secure && url.protocol !== 'http:') {
      reject(new TypeError(`unsupported protocol ${url.protocol}`));
      return;
    }
    const started = performance.now();
    const req = (secure ? httpsRequest : request)(
      url,
      {
        method: init.method ?? 'GET',
        agent,
        headers: {
          ...init.headers,
          ...(init.body ? { 'content-length': String(init.body.length) } : {}),
        },
        signal: init.signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const ms = performance.now() - started;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            ms,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(init.body);
  });
}

/** A keep-alive agent for `send`: `maxSockets` connections kept open (https URLs get a TLS one). */
export function keepAliveAgent(maxSockets: number, secure = false): Agent {
  return secure
    ? new HttpsAgent({ keepAlive: true, maxSockets })
    : new Agent({ keepAlive: true, maxSockets });
}

/**
 * The load generator's client: `send` behind fetch's shape, resolving once the whole body is in, like
 * `await (await fetch(...)).text()`. Global fetch (undici's web streams) costs Node 20 ~1 ms of a
 * short query's round trip on a GPU host's CPU (docs/benchmarks.md), which is the client's time, not
 * the server's; this client measures the server more closely.
 */
export function keepAliveFetch(maxSockets: number): FetchLike {
  const agents = { http: keepAliveAgent(maxSockets), https: keepAliveAgent(maxSockets, true) };
  return async (url, init) => {
    const target = new URL(url);
    const exchange = await send(
      target,
      {
        method: init.method,
        headers: init.headers,
        body: init.body === undefined ? undefined : Buffer.from(init.body),
        signal: init.signal,
      },
      target.protocol === 'https:' ? agents.https : agents.http,
    );
    return new BufferedResponse(exchange.status, exchange.headers, exchange.body);
  };
}
