import { builtinCorpus } from './bench-corpus';
import { LoadGenerator, LoadRunOptions } from './load-generator';

describe(LoadGenerator.name, () => {
  const sut = new LoadGenerator();
  const options = (extra: Partial<LoadRunOptions> = {}): LoadRunOptions => ({
    url: 'http://bench.test:6008',
    apiKey: 'sk-test',
    texts: ['a', 'b', 'c'],
    concurrency: 4,
    requests: 20,
    batch: 3,
    encodingFormat: 'base64',
    warmupRequests: 2,
    timeoutMs: 1000,
    ...extra,
  });

  it('sends batches to /v1/embeddings and counts embeddings and tokens of successful requests', async () => {
    const bodies: Array<Record<string, unknown>> = [];
    let inFlight = 0;
    let peak = 0;
    const fakeFetch = (async (url: string, init: RequestInit) => {
      if (url.endsWith('/v1/models')) {
        return new Response(
          JSON.stringify({ object: 'list', data: [{ id: 'qwen3-test', object: 'model' }] }),
        );
      }
      expect(url).toBe('http://bench.test:6008/v1/embeddings');
      expect((init.headers as Record<string, string>).authorization).toBe('Bearer sk-test');
      const body = JSON.parse(init.body as string) as { input: string[] };
      bodies.push(body);
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight -= 1;
      return new Response(
        JSON.stringify({ data: body.input.map(() => ({})), usage: { prompt_tokens: 2 * body.input.length } }),
        { status: 200 },
      );
    }) as unknown as typeof fetch;

    const result = await sut.run(options({ dimensions: 256, inputType: 'query' }), fakeFetch);

    expect(bodies).toHaveLength(22);
    expect(bodies[0]).toMatchObject({
      input: ['a', 'b', 'c'],
      dimensions: 256,
      input_type: 'query',
      encoding_format: 'base64',
    });
    expect(peak).toBeLessThanOrEqual(4);
    expect(result).toMatchObject({ ok: 20, failed: 0, embeddings: 60, tokens: 120, failures: {} });
    expect(result.latencyMs.count).toBe(20);
    expect(result.throughput.embeddingsPerSecond).toBeCloseTo(60 / result.durationSeconds, 6);
  });

  it('summarises the server timing headers of successful requests, and leaves them out when absent', async () => {
    let call = 0;
    const fakeFetch = (async (url: string) => {
      if (url.endsWith('/v1/models')) return new Response(JSON.stringify({ data: [{ id: 'm' }] }));
      call += 1;
      return new Response(JSON.stringify({ data: [{}], usage: { prompt_tokens: 1 } }), {
        status: 200,
        headers: {
          'x-tokenization-time-ms': '0.5',
          'x-queue-time-ms': String(call % 2),
          'x-inference-time-ms': String(10 + (call % 3)),
        },
      });
    }) as unknown as typeof fetch;

    const result = await sut.run(options({ warmupRequests: 0, requests: 9, concurrency: 1 }), fakeFetch);

    expect(result.serverMs?.tokenization).toMatchObject({ count: 9, p50: 0.5 });
    expect(result.serverMs?.queue.max).toBe(1);
    expect(result.serverMs?.inference).toMatchObject({ count: 9, min: 10, max: 12 });

    const bare = (async (url: string) =>
      url.endsWith('/v1/models')
        ? new Response(JSON.stringify({ data: [{ id: 'm' }] }))
        : new Response(
            JSON.stringify({ data: [{}], usage: { prompt_tokens: 1 } }),
          )) as unknown as typeof fetch;
    expect((await sut.run(options({ warmupRequests: 0, requests: 3 }), bare)).serverMs).toBeUndefined();
  });

  it('counts failures by status and keeps the first error', async () => {
    let calls = 0;
    const fakeFetch = (async (url: string) => {
      if (url.endsWith('/v1/models')) return new Response('not here', { status: 404 });
      calls += 1;
      return calls % 2 === 0
        ? new Response('{"error":{"message":"queue full"}}', { status: 429 })
        : new Response(JSON.stringify({ data: [{}], usage: { prompt_tokens: 1 } }), { status: 200 });
    }) as unknown as typeof fetch;

    const result = await sut.run(
      options({ batch: 1, warmupRequests: 0, concurrency: 1, requests: 10 }),
      fakeFetch,
    );

    expect(result).toMatchObject({ ok: 5, failed: 5, failures: { '429': 5 } });
    expect(result.firstError).toMatch(/^429: .*queue full/);
  });
});

describe(builtinCorpus.name, () => {
  it('is deterministic and mixes short and long texts', () => {
    const sut = builtinCorpus(200);

    expect(builtinCorpus(200)).toEqual(sut);
    const words = sut.map((text) => text.split(' ').length);
    expect(Math.min(...words)).toBeLessThan(25);
    expect(Math.max(...words)).toBeGreaterThan(400);
  });
});
