/**
 * Issue 17: one server for an embedding model and a reranker at once (MODELS), routed by each
 * request's `model`, on the real addon (CPU, fp32). Both checkpoints come from `admin checkpoint
 * generate`: the embedding model is the demo model (`--preset tiny --seed 0`, made by `make
 * demo-model`; generating it again would take most of this file's time), the reranker is generated
 * here. What the multi-model server answers is compared with what a single-model server answers on
 * the same checkpoint: routing must change where a request goes, never what it gets.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { loadAppConfig } from '@app/config';
import type { RunningApp } from '../apps/api/src/app.factory';
import { runAdmin } from './support/admin-cli';
import {
  cosine,
  DEMO_MODEL,
  Json,
  readJson,
  startTestApp,
  TEST_API_KEY,
  TEST_SERVER_ENV,
} from './support/test-app';

/** The embedding model's served id and its extra name (SERVED_MODEL_NAME), and a prompt alias of it. */
const EMBEDDER = 'mm-embedder';
const EMBEDDER_ALIAS = 'mm-embedder-alias';
const CODE_ALIAS = 'code-search';
const CODE_INSTRUCTION = 'Given a programming question, retrieve code that answers it';
/** The reranker keeps the default id: its directory's name. */
const RERANKER = 'Qwen3-Reranker-tiny';

const TEXTS = ['The capital of China is Beijing.', 'sort a list in Python', '北京是中华人民共和国的首都。'];
const QUERY = 'What is the capital of China?';
const DOCUMENTS = [
  'The capital of China is Beijing.',
  'Gravity is a force that attracts two bodies towards each other.',
  'def capital(country): return CAPITALS[country]',
];

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let index = 0; index < a.length; index += 1) max = Math.max(max, Math.abs(a[index] - b[index]));
  return max;
};

/** Each row equal to the reference's to float32 noise, the same row count. */
function expectSameRows(rows: number[][], reference: number[][]): void {
  expect(rows).toHaveLength(reference.length);
  rows.forEach((row, index) => expect(maxAbsDiff(row, reference[index])).toBeLessThanOrEqual(1e-6));
}

/** relevance_score by document index. */
const scoresByIndex = (body: Json): number[] =>
  [...body.results]
    .sort((a: Json, b: Json) => a.index - b.index)
    .map((result: Json) => result.relevance_score);

/** The value of `name`'s sample whose labels include model="<model>" (undefined when absent). */
function modelSample(metrics: string, name: string, model: string): number | undefined {
  const line = metrics
    .split('\n')
    .find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(`model="${model}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const client = (running: RunningApp): OpenAI =>
  new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 });

const post = (running: RunningApp, path: string, body: unknown): Promise<Response> =>
  fetch(`${running.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

const get = (running: RunningApp, path: string): Promise<Response> =>
  fetch(`${running.url}${path}`, { headers: { authorization: `Bearer ${TEST_API_KEY}` } });

async function embedRows(
  running: RunningApp,
  body: Record<string, unknown>,
): Promise<{ model: string; rows: number[][] }> {
  const res = await post(running, '/v1/embeddings', { encoding_format: 'float', ...body });
  expect(res.status).toBe(200);
  const answer = await readJson(res);
  return { model: answer.model, rows: answer.data.map((row: Json) => row.embedding) };
}

async function rerank(running: RunningApp, body: Record<string, unknown>): Promise<Json> {
  const res = await post(running, '/v1/rerank', body);
  expect(res.status).toBe(200);
  return readJson(res);
}

/** What the single-model servers answer on the same checkpoints. */
interface Reference {
  documents: number[][];
  queries: number[][];
  instructed: number[][];
  scores: number[];
}

describe('several models in one server (MODELS: an embedding model and a reranker, real engine, CPU)', () => {
  const embedderPath = DEMO_MODEL;
  let work: string;
  let rerankerPath: string;
  let reference: Reference;
  let running: RunningApp;
  let openai: OpenAI;

  const modelsEnv = (entries: unknown[]): Record<string, string> => ({ MODELS: JSON.stringify(entries) });
  const servedModels = (): unknown[] => [
    {
      MODEL_PATH: embedderPath,
      SERVED_MODEL_NAME: `${EMBEDDER},${EMBEDDER_ALIAS}`,
      PROMPT_ALIASES: { [CODE_ALIAS]: CODE_INSTRUCTION },
      // Per-model limits: each entry's own, the other's left at the default.
      MAX_INPUT_TOKENS: 512,
    },
    { MODEL_PATH: rerankerPath, MAX_RERANK_DOCUMENTS: DOCUMENTS.length },
  ];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'multi-model-e2e-'));
    rerankerPath = join(work, RERANKER);
    await runAdmin(['checkpoint', 'generate', '--preset', 'qwen3-reranker-tiny', '--out', rerankerPath]);

    // The references, one single-model server at a time (each closed before the next starts).
    const embedder = await startTestApp({ MODEL_PATH: embedderPath });
    try {
      reference = {
        documents: (await embedRows(embedder, { input: TEXTS })).rows,
        queries: (await embedRows(embedder, { input: TEXTS, input_type: 'query' })).rows,
        instructed: (await embedRows(embedder, { input: TEXTS, instruction: CODE_INSTRUCTION })).rows,
        scores: [],
      };
    } finally {
      await embedder.app.close();
    }
    const reranker = await startTestApp({ MODEL_PATH: rerankerPath });
    try {
      reference.scores = scoresByIndex(await rerank(reranker, { query: QUERY, documents: DOCUMENTS }));
    } finally {
      await reranker.app.close();
    }

    // startTestApp's top-level MODEL_PATH (the demo model) stays: with MODELS it is not used.
    running = await startTestApp(modelsEnv(servedModels()));
    openai = client(running);
  }, 300_000);

  afterAll(async () => {
    await running?.app.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('warns that the top-level MODEL_PATH is not used with MODELS', () => {
    expect(running.config.models).toHaveLength(2);
    expect(running.config.warnings).toEqual(expect.arrayContaining([expect.stringContaining('MODEL_PATH')]));
  });

  it('embeds through every name of the embedding model exactly as a single-model server does', async () => {
    const asDocuments = async (model: string) =>
      (await openai.embeddings.create({ model, input: TEXTS, encoding_format: 'float' })).data.map(
        (row) => row.embedding,
      );
    const byId = await openai.embeddings.create({ model: EMBEDDER, input: TEXTS, encoding_format: 'float' });
    expect(byId.model).toBe(EMBEDDER);
    expectSameRows(
      byId.data.map((row) => row.embedding),
      reference.documents,
    );
    expectSameRows(await asDocuments(EMBEDDER_ALIAS), reference.documents);
    expectSameRows(await asDocuments(`${EMBEDDER}:query`), reference.queries);

    const instructed = await openai.embeddings.create({
      model: CODE_ALIAS,
      input: TEXTS,
      encoding_format: 'float',
    });
    expect(instructed.model).toBe(CODE_ALIAS);
    expectSameRows(
      instructed.data.map((row) => row.embedding),
      reference.instructed,
    );
    // The SDK's default encoding (base64) decodes to the same rows.
    const viaBase64 = await openai.embeddings.create({ model: EMBEDDER, input: TEXTS });
    expectSameRows(
      viaBase64.data.map((row) => row.embedding),
      reference.documents,
    );
  });

  it('reranks with the reranker exactly as a single-model server does', async () => {
    const body = await rerank(running, { model: RERANKER, query: QUERY, documents: DOCUMENTS });
    expect(body.model).toBe(RERANKER);
    expect(maxAbsDiff(scoresByIndex(body), reference.scores)).toBeLessThanOrEqual(1e-6);
  });

  it('sends a request without `model` to the first model of its task', async () => {
    const embedded = await embedRows(running, { input: TEXTS });
    expect(embedded.model).toBe(EMBEDDER);
    expectSameRows(embedded.rows, reference.documents);

    // The reranker is the second entry: the first serves embeddings.
    const ranked = await rerank(running, { query: QUERY, documents: DOCUMENTS });
    expect(ranked.model).toBe(RERANKER);
    expect(maxAbsDiff(scoresByIndex(ranked), reference.scores)).toBeLessThanOrEqual(1e-6);
    const nulled = await rerank(running, { model: null, query: QUERY, documents: DOCUMENTS });
    expect(maxAbsDiff(scoresByIndex(nulled), reference.scores)).toBeLessThanOrEqual(1e-6);

    // text-embeddings-inference's /rerank has no `model` at all.
    const res = await post(running, '/rerank', { query: QUERY, texts: DOCUMENTS });
    expect(res.status).toBe(200);
    const ranks: Json = await readJson(res);
    expect(ranks.map((rank: Json) => rank.index).sort()).toEqual([0, 1, 2]);
    for (const rank of ranks) {
      expect(Math.abs(rank.score - reference.scores[rank.index])).toBeLessThanOrEqual(1e-6);
    }
  });

  it('answers a model of the other task with 400 model_task_mismatch, an unknown one with 404', async () => {
    const mismatch = { type: 'invalid_request_error', param: 'model', code: 'model_task_mismatch' };
    const asEmbeddings = openai.embeddings.create({ model: RERANKER, input: 'hello' });
    await expect(asEmbeddings).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(asEmbeddings).rejects.toMatchObject(mismatch);

    for (const model of [EMBEDDER, EMBEDDER_ALIAS, CODE_ALIAS]) {
      const res = await post(running, '/v1/rerank', { model, query: QUERY, documents: DOCUMENTS });
      expect(res.status).toBe(400);
      expect((await readJson(res)).error).toMatchObject(mismatch);
    }

    const unknown = { type: 'invalid_request_error', param: 'model', code: 'model_not_found' };
    const embedUnknown = openai.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
    await expect(embedUnknown).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(embedUnknown).rejects.toMatchObject(unknown);
    const rerankUnknown = await post(running, '/v1/rerank', {
      model: 'rerank-v3.5',
      query: QUERY,
      documents: DOCUMENTS,
    });
    expect(rerankUnknown.status).toBe(404);
    expect((await readJson(rerankUnknown)).error).toMatchObject(unknown);
  });

  it("holds each model to its own entry's limits", async () => {
    const tooMany = await post(running, '/v1/rerank', {
      query: QUERY,
      documents: [...DOCUMENTS, 'one more'],
    });
    expect(tooMany.status).toBe(400);
    expect((await readJson(tooMany)).error).toMatchObject({
      param: 'documents',
      message: expect.stringContaining('MAX_RERANK_DOCUMENTS'),
    });

    const long = 'Beijing is the capital of China. '.repeat(100); // ~700 tokens
    const refused = await post(running, '/v1/embeddings', { model: EMBEDDER, input: long });
    expect(refused.status).toBe(400);
    expect((await readJson(refused)).error).toMatchObject({ code: 'context_length_exceeded' });
    // The reranker's pair limit is its own (min(8192, its MAX_INPUT_TOKENS)): the same text is scored whole.
    const scored = await rerank(running, { model: RERANKER, query: QUERY, documents: [long] });
    expect(scored.results[0].truncated).toBeUndefined();
  });

  it('lists both models with their task, and the prompt aliases, on /v1/models and /info', async () => {
    const list = await openai.models.list();
    const entries = list.data as unknown as Json[];
    expect(entries.map((entry) => entry.id).sort()).toEqual(
      [EMBEDDER, `${EMBEDDER}:query`, `${EMBEDDER}:document`, CODE_ALIAS, RERANKER].sort(),
    );
    const byId = (id: string): Json => entries.find((entry) => entry.id === id);
    expect(byId(EMBEDDER)).toMatchObject({ object: 'model', task: 'embed' });
    expect(byId(EMBEDDER).parent).toBeUndefined();
    expect(byId(RERANKER)).toMatchObject({ object: 'model', task: 'rerank' });
    expect(byId(RERANKER).parent).toBeUndefined();
    expect(byId(CODE_ALIAS)).toMatchObject({
      task: 'embed',
      parent: EMBEDDER,
      prompt: { input_type: 'query', instruction: CODE_INSTRUCTION },
    });
    expect(byId(`${EMBEDDER}:query`)).toMatchObject({ task: 'embed', parent: EMBEDDER });
    expect(await openai.models.retrieve(RERANKER)).toMatchObject({ id: RERANKER, task: 'rerank' });
    expect(await openai.models.retrieve(EMBEDDER_ALIAS)).toMatchObject({ id: EMBEDDER, task: 'embed' });

    const info = await get(running, '/info');
    expect(info.status).toBe(200);
    const { models } = await readJson(info);
    expect(models).toHaveLength(2);
    expect(models).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          id: EMBEDDER,
          task: 'embed',
          device: 'cpu',
          max_input_length: 512,
          aliases: expect.arrayContaining([EMBEDDER_ALIAS, CODE_ALIAS]),
        }),
        expect.objectContaining({ id: RERANKER, task: 'rerank', device: 'cpu', max_input_length: 8192 }),
      ]),
    );
  });

  it('is ready once both models are, and details each model on /health', async () => {
    const ready = await fetch(`${running.url}/health/ready`);
    expect(ready.status).toBe(200);
    const readiness = await readJson(ready);
    expect(readiness).toMatchObject({ status: 'ok' });
    // One Terminus indicator per model (docs/api.md, "Several models").
    expect(Object.keys(readiness.info).sort()).toEqual([EMBEDDER, RERANKER].sort());
    expect(readiness.info[EMBEDDER]).toMatchObject({ status: 'up', state: 'ready' });
    expect(readiness.info[RERANKER]).toMatchObject({ status: 'up', state: 'ready' });

    const health = await fetch(`${running.url}/health`);
    expect(health.status).toBe(200);
    const body = await readJson(health);
    expect(body.status).toBe('ok');
    expect(Object.keys(body.models).sort()).toEqual([EMBEDDER, RERANKER].sort());
    expect(body.models[EMBEDDER]).toMatchObject({ status: 'ok', state: 'ready', task: 'embed' });
    expect(body.models[RERANKER]).toMatchObject({ status: 'ok', state: 'ready', task: 'rerank' });
  });

  it('labels model-scoped metrics with each model, and HTTP metrics with none', async () => {
    // Both have served requests by now (the tests above); one more of each makes this test stand alone.
    await embedRows(running, { model: EMBEDDER, input: 'metrics' });
    await rerank(running, { model: RERANKER, query: QUERY, documents: ['metrics'] });
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    for (const model of [EMBEDDER, RERANKER]) {
      expect(modelSample(metrics, 'qwen3_embed_tokens_total', model)).toBeGreaterThan(0);
      expect(modelSample(metrics, 'qwen3_embed_ready', model)).toBe(1);
    }
    expect(modelSample(metrics, 'qwen3_embed_rerank_documents_total', RERANKER)).toBeGreaterThan(0);
    const http = metrics.split('\n').filter((line) => line.startsWith('qwen3_embed_http_requests_total{'));
    expect(http.length).toBeGreaterThan(0);
    for (const line of http) expect(line).not.toContain('model=');
  });

  it('serves a mixed burst to both models at once, each answer right', async () => {
    const burst = Array.from({ length: 20 }, (_, index) =>
      index % 2 === 0
        ? openai.embeddings
            .create({ model: EMBEDDER, input: TEXTS[index % TEXTS.length], encoding_format: 'float' })
            .then((res) => {
              expect(res.model).toBe(EMBEDDER);
              // Shared forward batches may differ from the reference's: cosine, as the embeddings e2e checks.
              expect(
                cosine(res.data[0].embedding, reference.documents[index % TEXTS.length]),
              ).toBeGreaterThan(0.99999);
            })
        : rerank(running, { model: RERANKER, query: QUERY, documents: DOCUMENTS }).then((body) => {
            expect(body.model).toBe(RERANKER);
            expect(maxAbsDiff(scoresByIndex(body), reference.scores)).toBeLessThanOrEqual(1e-5);
          }),
    );
    await Promise.all(burst);
  });

  describe('a bad entry stops the boot, naming it', () => {
    const load = (entries: unknown[]) =>
      loadAppConfig({ ...TEST_SERVER_ENV, MODEL_PATH: undefined, ...modelsEnv(entries) });

    it('a served name another entry already has (case-insensitively)', () => {
      expect(() =>
        load([
          { MODEL_PATH: embedderPath, SERVED_MODEL_NAME: 'shared-name' },
          { MODEL_PATH: rerankerPath, SERVED_MODEL_NAME: 'Shared-Name' },
        ]),
      ).toThrow(/^Invalid environment variables: .*MODELS\[1\].*SERVED_MODEL_NAME/);
      expect(() =>
        load([
          { MODEL_PATH: embedderPath, PROMPT_ALIASES: { [RERANKER]: CODE_INSTRUCTION } },
          { MODEL_PATH: rerankerPath },
        ]),
      ).toThrow(/MODELS\[1\]/);
    });

    it('a process-wide variable inside an entry', () => {
      expect(() => load([{ MODEL_PATH: embedderPath }, { MODEL_PATH: rerankerPath, PORT: 7000 }])).toThrow(
        /MODELS\[1\].*PORT is process-wide/,
      );
    });

    it('a model directory that is not there', async () => {
      await expect(
        startTestApp(modelsEnv([{ MODEL_PATH: embedderPath }, { MODEL_PATH: join(work, 'no-such-model') }])),
      ).rejects.toThrow(/MODELS\[1\][^]*no-such-model/);
    });
  });
});
