import { createServer, IncomingMessage } from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RERANK_BENCH_QUERY } from '@app/bench/bench-corpus';
import { LoadGenerator } from '@app/bench/load-generator';
import { RerankLoadGenerator } from '@app/bench/rerank-load-generator';
import { BenchCommand } from './bench.command';

describe(BenchCommand.name, () => {
  let dir: string;
  let stdout: string[];
  const sut = new BenchCommand(new LoadGenerator(), new RerankLoadGenerator());
  const defaults = {
    task: 'rerank' as const,
    concurrency: 2,
    requests: 4,
    warmup: 1,
    corpus: 'builtin',
    corpusSize: 1000,
    batch: 1,
    encoding: 'base64' as const,
    client: 'http' as const,
    timeout: 5000,
    documents: 8,
    docTokens: 100,
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'admin-bench-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  beforeEach(() => {
    stdout = [];
    jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true));
    jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterEach(() => jest.restoreAllMocks());

  it('--task rerank --write-corpus writes the workload the baseline reads, then benchmarks it over HTTP', async () => {
    const bodies: Array<{ query: string; documents: string[] }> = [];
    const read = async (req: IncomingMessage): Promise<string> => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    };
    const server = createServer((req, res) => {
      void read(req).then((text) => {
        res.setHeader('content-type', 'application/json');
        if (req.url === '/v1/models') {
          res.end(JSON.stringify({ data: [{ id: 'reranker', task: 'rerank' }] }));
          return;
        }
        const body = JSON.parse(text) as { query: string; documents: string[] };
        bodies.push(body);
        res.end(
          JSON.stringify({
            results: body.documents.map((_, index) => ({ index, relevance_score: 0.5 })),
            usage: { prompt_tokens: 1000, total_tokens: 1000 },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const file = join(dir, 'workload.json');

    try {
      await sut.run([], { ...defaults, url, apiKey: 'k', writeCorpus: file, json: true });
    } finally {
      server.close();
    }

    const workload = JSON.parse(await readFile(file, 'utf8')) as {
      groups: Array<{ query: string; documents: string[] }>;
    };
    expect(workload.groups).toHaveLength(1);
    expect(workload.groups[0].query).toBe(RERANK_BENCH_QUERY);
    expect(workload.groups[0].documents).toHaveLength(8);
    expect(bodies).toHaveLength(5);
    expect(bodies[0]).toMatchObject({ query: RERANK_BENCH_QUERY, documents: workload.groups[0].documents });
    const output = stdout.join('');
    expect(output).toMatch(/^wrote 1 query, 8 documents of \d+ tokens on average/);
    const result = JSON.parse(output.slice(output.indexOf('{'))) as Record<string, unknown>;
    expect(result).toMatchObject({ task: 'rerank', model: 'reranker', ok: 4, pairs: 32, tokens: 4000 });
    expect((result.documentTokens as { mean: number }).mean).toBeGreaterThan(85);
  });

  it('refuses options of the other task, and a rerank workload file that is not .json', async () => {
    await expect(sut.run([], { ...defaults, url: 'http://x', batch: 4 })).rejects.toThrow(
      /--batch is for --task embed/,
    );
    await expect(sut.run([], { ...defaults, writeCorpus: join(dir, 'w.jsonl') })).rejects.toThrow(/\*\.json/);
    await expect(sut.run([], { ...defaults, task: 'embed', query: 'q' })).rejects.toThrow(
      /--query is for --task rerank/,
    );
  });
});
