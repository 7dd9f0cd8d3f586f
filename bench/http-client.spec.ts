import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { keepAliveFetch } from './http-client';

describe(keepAliveFetch.name, () => {
  let server: Server;
  let base: string;
  const sockets = new Set<unknown>();
  let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void;

  beforeAll(async () => {
    server = createServer((req, res) => {
      sockets.add(req.socket);
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => handler(req, Buffer.concat(chunks).toString('utf8'), res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => sockets.clear());

  it('posts the body with its headers and reads status, headers and body, over one kept-alive connection', async () => {
    const seen: Array<{ method?: string; url?: string; auth?: string; length?: string; body: string }> = [];
    handler = (req, body, res) => {
      seen.push({
        method: req.method,
        url: req.url,
        auth: req.headers.authorization,
        length: req.headers['content-length'],
        body,
      });
      res.writeHead(201, { 'content-type': 'application/json', 'x-inference-time-ms': '3.5' });
      res.end(JSON.stringify({ echo: JSON.parse(body) as unknown }));
    };
    const post = keepAliveFetch(1);
    for (let i = 0; i < 3; i++) {
      const response = await post(`${base}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
        body: JSON.stringify({ input: `é ${i}` }),
      });
      expect(response.status).toBe(201);
      expect(response.ok).toBe(true);
      expect(response.headers.get('X-Inference-Time-Ms')).toBe('3.5');
      expect(response.headers.has('x-queue-time-ms')).toBe(false);
      expect(response.headers.get('x-queue-time-ms')).toBeNull();
      expect(await response.json()).toEqual({ echo: { input: `é ${i}` } });
    }
    expect(seen[0]).toEqual({
      method: 'POST',
      url: '/v1/embeddings',
      auth: 'Bearer k',
      length: String(Buffer.byteLength(JSON.stringify({ input: 'é 0' }))),
      body: JSON.stringify({ input: 'é 0' }),
    });
    expect(sockets.size).toBe(1);
  });

  it('answers an error status as a response that is not ok', async () => {
    handler = (_req, _body, res) => {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"busy"}}');
    };
    const response = await keepAliveFetch(1)(`${base}/v1/embeddings`, { method: 'POST', body: '{}' });
    expect(response.ok).toBe(false);
    expect(response.status).toBe(429);
    expect(await response.text()).toBe('{"error":{"message":"busy"}}');
  });

  it('rejects with an AbortError when the signal fires before the answer', async () => {
    handler = () => undefined; // never answers
    await expect(
      keepAliveFetch(1)(`${base}/slow`, { signal: AbortSignal.timeout(50) }),
    ).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('rejects a URL that is not http or https', async () => {
    await expect(keepAliveFetch(1)('ftp://example.test/x', {})).rejects.toThrow('unsupported protocol ftp:');
  });
});
