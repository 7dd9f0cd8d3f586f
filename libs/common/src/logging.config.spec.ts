import { createServer, IncomingMessage, request, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Options, pinoHttp } from 'pino-http';
import { createLoggerParams } from './logging.config';

/** The request lines nestjs-pino's middleware (pino-http) writes with the app's options. */
describe(createLoggerParams.name, () => {
  let server: Server;
  let url: string;
  const lines: Record<string, unknown>[] = [];
  const slow = { arrived: () => undefined as void, closed: () => undefined as void };

  beforeAll(async () => {
    const params = createLoggerParams('info');
    const [options] = params.pinoHttp as [Options, unknown];
    const capture = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
        done();
      },
    });
    const middleware = pinoHttp(options, capture);
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      // As Express sets them: the client behind a trusted proxy, and the filter's error code.
      if (req.url === '/proxied') Object.assign(req, { ip: '203.0.113.9' });
      middleware(req, res, () => undefined);
      if (req.url === '/timed') {
        res.setHeader('x-request-id', 'timed');
        res.writeHead(200, {
          'x-tokenization-time-ms': '0.41',
          'x-queue-time-ms': '0.05',
          'x-inference-time-ms': '3.20',
          'x-total-tokens': '12',
        });
        res.end('{}');
        return;
      }
      if (req.url === '/refused') {
        Object.assign(res, { locals: { errorCode: 'invalid_request_error' } });
        res.statusCode = 400;
        res.end('{}');
        return;
      }
      if (req.url === '/slow') {
        // Answered never: the client gives up.
        res.on('close', () => slow.closed());
        slow.arrived();
        return;
      }
      if (req.url === '/broken') {
        res.statusCode = 503;
        res.end();
        return;
      }
      res.statusCode = req.url?.startsWith('/missing') ? 404 : 200;
      res.setHeader('set-cookie', 'secret=1');
      res.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  beforeEach(() => {
    lines.length = 0;
  });

  const finished = () => lines.find((line) => line.msg === 'request completed');

  it('logs method, path, status and timing with the request id, never headers or the query string', async () => {
    const res = await fetch(`${url}/v1/embeddings?access_token=sk-secret`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-secret', 'x-request-id': 'req-42', cookie: 'c=1' },
      body: '{"input":"private text"}',
    });
    expect(res.headers.get('x-request-id')).toBe('req-42');
    await res.text();
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished()).toMatchObject({
      level: 30,
      req: { id: 'req-42', method: 'POST', path: '/v1/embeddings' },
      res: { statusCode: 200 },
      responseTime: expect.any(Number),
    });
    expect(Object.keys(finished()!)).toEqual([
      'level',
      'time',
      'pid',
      'hostname',
      'req',
      'res',
      'responseTime',
      'msg',
    ]);
    expect(Object.keys(finished()!.req as object)).toEqual(['id', 'method', 'path', 'remoteAddress']);
    expect(Object.keys(finished()!.res as object)).toEqual(['statusCode']);
    const written = JSON.stringify(lines);
    for (const secret of ['sk-secret', 'access_token', 'cookie', 'private text', 'headers']) {
      expect(written).not.toContain(secret);
    }
  });

  it('says when the client went away before the answer, and errs on server errors', async () => {
    const arrived = new Promise<void>((resolve) => (slow.arrived = resolve));
    const closed = new Promise<void>((resolve) => (slow.closed = resolve));
    const req = request(`${url}/slow`, { headers: { 'x-request-id': 'gone' } });
    req.on('error', () => undefined);
    req.end();
    await arrived;
    req.destroy();
    await closed; // the line is written by then: the log's listener came first
    const about = lines.filter((line) => (line.req as { id: string }).id === 'gone');
    expect(about.find((line) => line.res)).toMatchObject({
      level: 30,
      res: { statusCode: null }, // nothing was sent
      msg: 'request aborted',
    });
    lines.length = 0;
    await (await fetch(`${url}/broken`)).text();
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.find((line) => line.msg === 'request errored')).toMatchObject({
      level: 50,
      res: { statusCode: 503 },
      err: { type: 'Error', message: 'failed with status code 503' },
      responseTime: expect.any(Number),
    });
    expect(Object.keys(lines.find((line) => line.msg === 'request errored')!)).toEqual([
      'level',
      'time',
      'pid',
      'hostname',
      'req',
      'res',
      'err',
      'responseTime',
      'msg',
    ]);
  });

  it('carries tokens and timings of an embeddings answer, the error code of a failure and the proxied client', async () => {
    await (await fetch(`${url}/timed`)).text();
    await (await fetch(`${url}/refused`)).text();
    await (await fetch(`${url}/proxied`)).text();
    await new Promise((resolve) => setImmediate(resolve));
    const line = (path: string) => lines.find((entry) => (entry.req as { path: string }).path === path);
    expect(line('/timed')).toMatchObject({
      res: { statusCode: 200, tokens: 12, tokenizationMs: 0.41, queueMs: 0.05, inferenceMs: 3.2 },
    });
    expect(line('/refused')).toMatchObject({
      level: 40,
      res: { statusCode: 400, errorCode: 'invalid_request_error' },
    });
    expect(line('/proxied')).toMatchObject({ req: { remoteAddress: '203.0.113.9' } });
  });

  it('warns on client errors and stays quiet for health and metrics', async () => {
    await (await fetch(`${url}/missing`)).text();
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished()).toMatchObject({ level: 40, res: { statusCode: 404 } });
    lines.length = 0;
    await (await fetch(`${url}/health/ready`)).text();
    await (await fetch(`${url}/metrics`)).text();
    await new Promise((resolve) => setImmediate(resolve));
    expect(finished()).toBeUndefined();
  });
});
