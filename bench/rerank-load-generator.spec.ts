import { RerankWorkload } from './bench-corpus';
import {
  formatRerankRun,
  readRerankResponse,
  RerankLoadGenerator,
  RerankOutcome,
  RerankRunOptions,
  rerankRequestBodies,
  summariseRerankRun,
} from './rerank-load-generator';

const workload: RerankWorkload = {
  groups: [
    { query: 'q1', documents: ['a', 'b', 'c'] },
    { query: 'q2', instruction: 'Find code', documents: ['d', 'e'] },
  ],
};

/** A /v1/rerank answer scoring every document of the request, as the server does without top_n. */
const answer = (documents: readonly string[], tokensEach = 10): string =>
  JSON.stringify({
    id: 'rerank-1',
    model: 'qwen3-reranker',
    results: documents.map((_, index) => ({ index, relevance_score: 1 / (index + 2) })),
    usage: { prompt_tokens: tokensEach * documents.length, total_tokens: tokensEach * documents.length },
  });

describe(rerankRequestBodies.name, () => {
  it('serialises one body per group, without the documents echoed back unless asked', () => {
    const sut = rerankRequestBodies(workload, 'qwen3-reranker').map((body) => JSON.parse(body) as unknown);

    expect(sut).toEqual([
      { model: 'qwen3-reranker', query: 'q1', documents: ['a', 'b', 'c'], return_documents: false },
      {
        model: 'qwen3-reranker',
        query: 'q2',
        documents: ['d', 'e'],
        instruction: 'Find code',
        return_documents: false,
      },
    ]);
    expect(JSON.parse(rerankRequestBodies(workload, undefined, true)[0])).toEqual({
      query: 'q1',
      documents: ['a', 'b', 'c'],
      return_documents: true,
    });
  });
});

describe(readRerankResponse.name, () => {
  it('counts the pairs and the usage tokens of a complete answer', () => {
    expect(readRerankResponse(answer(['a', 'b', 'c']), 3)).toEqual({
      ok: true,
      status: '200',
      pairs: 3,
      tokens: 30,
    });
  });

  it('fails an answer that drops, repeats or mangles pairs', () => {
    const results = (list: unknown[]): string => JSON.stringify({ results: list });
    const cases: Array<[string, RegExp]> = [
      ['not json', /not JSON/],
      [JSON.stringify({ data: [] }), /no results array/],
      [results([{ index: 0, relevance_score: 0.5 }]), /1 results for 2 documents/],
      [
        results([
          { index: 0, relevance_score: 0.5 },
          { index: 1, relevance_score: null },
        ]),
        /finite/,
      ],
      [
        results([
          { index: 0, relevance_score: 0.5 },
          { index: 0, relevance_score: 0.4 },
        ]),
        /indices/,
      ],
      [
        results([
          { index: 0, relevance_score: 0.5 },
          { index: 2, relevance_score: 0.4 },
        ]),
        /indices/,
      ],
    ];
    for (const [text, error] of cases) {
      const sut = readRerankResponse(text, 2);
      expect(sut).toMatchObject({ ok: false, status: 'bad-response', pairs: 0 });
      expect(sut.error).toMatch(error);
    }
  });
});

describe(summariseRerankRun.name, () => {
  it('turns outcomes into pairs/s, tokens/s, latency percentiles and failures', () => {
    const ok = (ms: number, stages?: RerankOutcome['stages']): RerankOutcome => ({
      ok: true,
      ms,
      status: '200',
      pairs: 100,
      tokens: 38000,
      stages,
    });
    const outcomes: RerankOutcome[] = [
      ok(100, { tokenization: 2, queue: 1, inference: 90 }),
      ok(200, { tokenization: 4, queue: 3, inference: 180 }),
      ok(300),
      { ok: false, ms: 5, status: '429', pairs: 0, tokens: 0, error: 'queue full' },
    ];

    const sut = summariseRerankRun(
      {
        url: 'http://h/v1/rerank',
        model: 'm',
        concurrency: 4,
        workload: { groups: [{ query: 'q', documents: Array(100).fill('d') }] },
      },
      outcomes,
      2,
    );

    expect(sut).toMatchObject({
      task: 'rerank',
      requests: 4,
      ok: 3,
      failed: 1,
      failures: { '429': 1 },
      firstError: '429: queue full',
      pairs: 300,
      tokens: 114000,
      groups: 1,
      documentsPerRequest: 100,
      throughput: { requestsPerSecond: 1.5, pairsPerSecond: 150, tokensPerSecond: 57000 },
    });
    expect(sut.latencyMs).toMatchObject({ count: 3, p50: 200, min: 100, max: 300 });
    expect(sut.serverMs?.inference).toMatchObject({ count: 2, min: 90, max: 180 });
    const text = formatRerankRun({ ...sut, documentTokens: { mean: 299.5, min: 286, max: 313 } });
    expect(text).toContain('100 documents a request of ~300 tokens (286-313)');
    expect(text).toContain('150.0 pairs/s');
    expect(text).toContain('p50 200.0 ms');
    expect(text).toContain('1 x 429');
  });

  it('reports zero throughput and no server stages when nothing succeeded', () => {
    const sut = summariseRerankRun(
      { url: 'u', concurrency: 1, workload },
      [{ ok: false, ms: 1, status: 'network', pairs: 0, tokens: 0, error: 'ECONNREFUSED' }],
      0.5,
    );

    expect(sut).toMatchObject({ ok: 0, failed: 1, pairs: 0, documentsPerRequest: 2.5 });
    expect(sut.throughput.pairsPerSecond).toBe(0);
    expect(sut.serverMs).toBeUndefined();
  });
});

describe(RerankLoadGenerator.name, () => {
  const sut = new RerankLoadGenerator();
  const options = (extra: Partial<RerankRunOptions> = {}): RerankRunOptions => ({
    url: 'http://bench.test:6008',
    apiKey: 'sk-test',
    workload,
    concurrency: 3,
    requests: 12,
    warmupRequests: 2,
    timeoutMs: 1000,
    ...extra,
  });

  it('sends each group in turn to /v1/rerank as the served reranker, at most `concurrency` at once', async () => {
    const bodies: Array<{ model?: string; query: string; documents: string[] }> = [];
    let inFlight = 0;
    let peak = 0;
    const fakeFetch = (async (url: string, init: RequestInit) => {
      if (url.endsWith('/v1/models')) {
        return new Response(
          JSON.stringify({
            data: [
              { id: 'qwen3-embed', task: 'embed' },
              { id: 'qwen3-reranker', task: 'rerank' },
            ],
          }),
        );
      }
      expect(url).toBe('http://bench.test:6008/v1/rerank');
      expect((init.headers as Record<string, string>).authorization).toBe('Bearer sk-test');
      const body = JSON.parse(init.body as string) as { model?: string; query: string; documents: string[] };
      bodies.push(body);
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 2));
      inFlight -= 1;
      return new Response(answer(body.documents), { status: 200, headers: { 'x-inference-time-ms': '1.5' } });
    }) as unknown as typeof fetch;

    const result = await sut.run(options(), fakeFetch);

    expect(bodies).toHaveLength(14);
    expect(bodies.every((body) => body.model === 'qwen3-reranker')).toBe(true);
    expect(bodies.slice(0, 4).map((body) => body.query)).toEqual(['q1', 'q2', 'q1', 'q2']);
    expect(peak).toBeLessThanOrEqual(3);
    // The 12 measured requests: six of each group after the two warm-ups.
    expect(result).toMatchObject({
      ok: 12,
      failed: 0,
      pairs: 6 * 3 + 6 * 2,
      tokens: 300,
      model: 'qwen3-reranker',
    });
    expect(result.latencyMs.count).toBe(12);
    expect(result.serverMs?.inference.p50).toBe(1.5);
    expect(result.throughput.pairsPerSecond).toBeCloseTo(30 / result.durationSeconds, 6);
  });

  it('counts refusals and incomplete answers as failures', async () => {
    let calls = 0;
    const fakeFetch = (async (url: string, init: RequestInit) => {
      if (url.endsWith('/v1/models')) return new Response('no', { status: 404 });
      calls += 1;
      const body = JSON.parse(init.body as string) as { model?: string; documents: string[] };
      expect(body.model).toBeUndefined();
      if (calls % 3 === 0) return new Response('{"error":{"message":"queue full"}}', { status: 429 });
      if (calls % 3 === 1) return new Response(answer(body.documents.slice(1)));
      return new Response(answer(body.documents));
    }) as unknown as typeof fetch;

    const result = await sut.run(options({ warmupRequests: 0, concurrency: 1, requests: 9 }), fakeFetch);

    expect(result).toMatchObject({ ok: 3, failed: 6, failures: { '429': 3, 'bad-response': 3 } });
    expect(result.firstError).toMatch(/^bad-response: 2 results for 3 documents/);
  });

  it('refuses an empty workload', async () => {
    await expect(sut.run(options({ workload: { groups: [] } }))).rejects.toThrow(/no documents/);
  });
});
