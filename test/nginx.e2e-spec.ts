import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { RunningApp } from '../apps/api/src/app.factory';
import { RunningNginx, startNginx } from './support/nginx';
import { cosine, readJson, SERVED_MODEL, startTestApp, TEST_API_KEY } from './support/test-app';

/** The real app behind a real nginx running docker/nginx/nginx.conf. */
describe('behind nginx (docker/nginx/nginx.conf)', () => {
  let running: RunningApp;
  let nginx: RunningNginx;
  let client: OpenAI;

  beforeAll(async () => {
    running = await startTestApp();
    const { port } = running.app.getHttpServer().address() as AddressInfo;
    nginx = await startNginx(port);
    client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${nginx.url}/v1`, maxRetries: 0 });
  });

  afterAll(async () => {
    await nginx?.stop();
    await running?.app.close();
  });

  it('serves the openai SDK through the proxy with the same embeddings as direct', async () => {
    const direct = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 });
    const input = ['through nginx', 'and a second one'];
    const [proxied, straight] = await Promise.all([
      client.embeddings.create({ model: SERVED_MODEL, input }),
      direct.embeddings.create({ model: SERVED_MODEL, input }),
    ]);
    expect(proxied.data).toHaveLength(2);
    for (const i of [0, 1]) {
      expect(cosine(proxied.data[i].embedding, straight.data[i].embedding)).toBeGreaterThan(0.99999);
    }
  });

  it('passes the client request id through to the app and back', async () => {
    const res = await fetch(`${nginx.url}/v1/embeddings`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${TEST_API_KEY}`,
        'content-type': 'application/json',
        'x-request-id': 'trace-42',
      },
      body: JSON.stringify({ input: 'id', model: SERVED_MODEL }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('trace-42');
    const generated = await fetch(`${nginx.url}/health/live`);
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/); // nginx's $request_id
    const log = readFileSync(join(nginx.dir, 'access.log'), 'utf8');
    expect(log).toContain('"request_id":"trace-42"');
  });

  it('keeps error responses in the OpenAI envelope, including 401 and oversized bodies', async () => {
    const unauthorized = await fetch(`${nginx.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'x' }),
    });
    expect(unauthorized.status).toBe(401);
    expect((await readJson(unauthorized)).error.code).toBe('invalid_api_key');

    // Past nginx's own client_max_body_size (17m): nginx answers, in the same envelope.
    const huge = await fetch(`${nginx.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input: 'x'.repeat(18 * 1024 * 1024) }),
    });
    expect(huge.status).toBe(413);
    expect((await readJson(huge)).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'request_too_large',
    });
  });

  it('serves health and metrics through the proxy', async () => {
    const ready = await fetch(`${nginx.url}/health/ready`);
    expect(ready.status).toBe(200);
    const metrics = await fetch(`${nginx.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('qwen3_embed_http_requests_total');
  });

  it('reuses upstream connections (keepalive) across many requests', async () => {
    await Promise.all(
      Array.from({ length: 20 }, () => client.embeddings.create({ model: SERVED_MODEL, input: 'k' })),
    );
    const server = running.app.getHttpServer();
    const connections = await new Promise<number>((resolve, reject) =>
      server.getConnections((error: Error | null, count: number) => (error ? reject(error) : resolve(count))),
    );
    // nginx holds idle keepalive connections open to the app instead of closing each one.
    expect(connections).toBeGreaterThan(0);
  });
});
