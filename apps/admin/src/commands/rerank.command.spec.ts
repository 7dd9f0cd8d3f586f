import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatRerankTable, readDocumentsFile, RerankCommand } from './rerank.command';

interface Received {
  url?: string;
  authorization?: string;
  body: Record<string, unknown>;
}

/** A stand-in for the API server: scores a document by its length, answers in /v1/rerank's shape. */
async function startServer(status = 200): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const read = async (req: IncomingMessage): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };
  const server = createServer((req, res) => {
    void read(req).then((text) => {
      const body = JSON.parse(text) as { documents: string[]; top_n?: number; return_documents?: boolean };
      received.push({ url: req.url, authorization: req.headers.authorization, body });
      res.setHeader('content-type', 'application/json');
      if (status !== 200) {
        res.statusCode = status;
        res.end(
          JSON.stringify({
            error: {
              message: 'the model qwen3-embed embeds: use POST /v1/embeddings',
              type: 'invalid_request_error',
              param: 'model',
              code: 'model_task_mismatch',
            },
          }),
        );
        return;
      }
      const results = body.documents
        .map((document, index) => ({
          index,
          relevance_score: document.length / 100,
          ...(body.return_documents ? { document: { text: document } } : {}),
        }))
        .sort((a, b) => b.relevance_score - a.relevance_score)
        .slice(0, body.top_n ?? body.documents.length);
      res.end(
        JSON.stringify({
          id: 'r',
          model: 'qwen3-reranker',
          results,
          usage: { prompt_tokens: 42, total_tokens: 42 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

describe(RerankCommand.name, () => {
  let dir: string;
  let stdout: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'admin-rerank-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));
  beforeEach(() => {
    stdout = [];
    jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (stdout.push(String(chunk)), true));
    jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterEach(() => jest.restoreAllMocks());

  it('posts the query and the documents of the arguments and the file, and prints them ranked', async () => {
    const { server, url, received } = await startServer();
    const file = join(dir, 'docs.txt');
    await writeFile(file, 'a much longer document from the file\n\nmid-sized one\n');
    const sut = new RerankCommand();

    try {
      await sut.run(['short'], {
        url,
        apiKey: 'sk-test',
        model: 'qwen3-reranker',
        query: 'which is longest?',
        documentsFile: file,
        topN: 2,
        instruction: 'Prefer long texts',
        timeout: 5000,
      });
    } finally {
      server.close();
    }

    expect(received).toEqual([
      {
        url: '/v1/rerank',
        authorization: 'Bearer sk-test',
        body: {
          model: 'qwen3-reranker',
          query: 'which is longest?',
          documents: ['short', 'a much longer document from the file', 'mid-sized one'],
          top_n: 2,
          instruction: 'Prefer long texts',
          return_documents: false,
        },
      },
    ]);
    const lines = stdout.join('').trimEnd().split('\n');
    expect(lines[0]).toMatch(/^qwen3-reranker: 3 document\(s\), 42 tokens, [\d.]+ ms$/);
    expect(lines.slice(2)).toEqual([
      '   1      1  0.360000  "a much longer document from the file"',
      '   2      2  0.130000  "mid-sized one"',
    ]);
  });

  it('prints the answer as JSON with --json, documents included', async () => {
    const { server, url, received } = await startServer();
    try {
      await new RerankCommand().run(['x', 'yy'], { url, apiKey: 'k', query: 'q', timeout: 5000, json: true });
    } finally {
      server.close();
    }

    expect(received[0].body).toMatchObject({ return_documents: true });
    expect(received[0].body.model).toBeUndefined();
    expect(JSON.parse(stdout.join(''))).toMatchObject({
      results: [
        { index: 1, document: { text: 'yy' } },
        { index: 0, document: { text: 'x' } },
      ],
    });
  });

  it("fails with the server's error, and without a query or documents before sending anything", async () => {
    const { server, url, received } = await startServer(400);
    const sut = new RerankCommand();
    try {
      await expect(sut.run(['d'], { url, apiKey: 'k', query: 'q', timeout: 5000 })).rejects.toThrow(
        /400 invalid_request_error \(model_task_mismatch\): the model qwen3-embed embeds/,
      );
      await expect(sut.run(['d'], { url, timeout: 5000 })).rejects.toThrow('--query is required');
      await expect(sut.run([], { url, query: 'q', timeout: 5000 })).rejects.toThrow(/no documents/);
    } finally {
      server.close();
    }
    expect(received).toHaveLength(1);
  });
});

describe(readDocumentsFile.name, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'admin-rerank-docs-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads a JSON array of strings or {text}, else a document per non-empty line', async () => {
    await writeFile(join(dir, 'a.json'), JSON.stringify(['one', { text: 'two\nlines' }]));
    await writeFile(join(dir, 'b.txt'), 'one\r\n\r\n  two  \n');
    await writeFile(join(dir, 'c.json'), '[1]');
    await writeFile(join(dir, 'd.json'), '[oops');

    expect(await readDocumentsFile(join(dir, 'a.json'))).toEqual(['one', 'two\nlines']);
    expect(await readDocumentsFile(join(dir, 'b.txt'))).toEqual(['one', '  two  ']);
    await expect(readDocumentsFile(join(dir, 'c.json'))).rejects.toThrow(/item 0/);
    await expect(readDocumentsFile(join(dir, 'd.json'))).rejects.toThrow(/not a JSON array/);
  });
});

describe(formatRerankTable.name, () => {
  it('shortens long documents to one line and marks truncated ones', () => {
    const sut = formatRerankTable(
      { results: [{ index: 0, relevance_score: 0.5, truncated: true }] },
      [`first line\n${'x'.repeat(200)}`],
      60,
    );

    expect(sut.split('\n')[1]).toBe(`   1      0  0.500000  "first line ${'x'.repeat(21)}..." (truncated)`);
  });
});
