import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { ModelRegistry } from '@app/embeddings/model-registry';
import { FakeEngine } from '@app/engine/testing';
import { createApp, RunningApp } from './app.factory';
import { UNIT_TEST_KEY } from './testing/fake-engine-app';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const readJson = (res: Response): Promise<any> => res.json();

/**
 * Two models in one app (MODELS), each over its own fake engine: an embedding model and a reranker.
 * The routing, listing, readiness and metrics are the HTTP layer's; test/multi-model.e2e-spec.ts runs
 * the same on the real engine.
 */
describe('several models in one app (MODELS)', () => {
  let work: string;
  let embedder: FakeEngine;
  let reranker: FakeEngine;
  let sut: RunningApp;

  const call = (path: string, body?: unknown) =>
    fetch(`${sut.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${UNIT_TEST_KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'multi-model-'));
    const embedDir = join(work, 'Qwen3-Embedding-fake');
    const rerankDir = join(work, 'Qwen3-Reranker-fake');
    writeTokenizerOnlyModel(embedDir, { query: 'Instruct: find\nQuery:', document: '' });
    writeTokenizerOnlyModel(rerankDir);
    writeFileSync(
      join(rerankDir, 'config.json'),
      JSON.stringify({ model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'] }),
    );
    embedder = new FakeEngine({ info: { hiddenSize: 32 } });
    reranker = new FakeEngine({ info: { vocabSize: 151669, maxPositionEmbeddings: 40960 }, holdLoad: true });
    sut = await createApp({
      engines: [embedder, reranker],
      inheritProcessEnv: false,
      shutdownHooks: false,
      env: {
        API_KEY: UNIT_TEST_KEY,
        DEVICE: 'cpu',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'silent',
        MODELS: JSON.stringify([
          {
            MODEL_PATH: embedDir,
            SERVED_MODEL_NAME: 'embedder',
            PROMPT_ALIASES: { 'code-search': 'find code' },
          },
          { MODEL_PATH: rerankDir, SERVED_MODEL_NAME: 'reranker', MAX_RERANK_DOCUMENTS: 3 },
        ]),
      },
    });
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('is not ready while one model still loads, and says which', async () => {
    // The reranker's load is held; the embedder comes up (its setup is the promise load() returns).
    await sut.app.get(ModelRegistry).first.model.load();
    try {
      await assertOneModelLoading();
    } finally {
      reranker.releaseLoad(); // the other tests need it, whatever happened here
    }
    await sut.ready;
    expect((await call('/health/ready')).status).toBe(200);
    expect((await readJson(await call('/health'))).status).toBe('ok');
  });

  async function assertOneModelLoading(): Promise<void> {
    const ready = await call('/health/ready');
    expect(ready.status).toBe(503);
    const body = await readJson(ready);
    expect(body.details).toMatchObject({
      embedder: { status: 'up', state: 'ready' },
      reranker: { status: 'down', state: 'loading' },
    });
    const health = await readJson(await call('/health'));
    expect(health).toMatchObject({
      status: 'degraded',
      model: 'embedder',
      models: { embedder: { status: 'ok', task: 'embed' }, reranker: { status: 'loading' } },
    });
    // The ready model serves meanwhile; the loading one answers 503.
    expect((await call('/v1/embeddings', { input: 'x', model: 'embedder' })).status).toBe(200);
    const loading = await call('/v1/rerank', { model: 'reranker', query: 'q', documents: ['d'] });
    expect(loading.status).toBe(503);
    expect((await readJson(loading)).error.code).toBe('model_not_ready');
  }

  it('routes each request to the model it names, on that model’s engine', async () => {
    const [embedBatches, rerankBatches] = [embedder.batches.length, reranker.batches.length];
    const embedded = await call('/v1/embeddings', { input: ['a', 'b'], model: 'embedder' });
    expect(embedded.status).toBe(200);
    expect((await readJson(embedded)).data[0].embedding).toHaveLength(32);
    const ranked = await call('/v1/rerank', { model: 'reranker', query: 'q', documents: ['x', 'y'] });
    expect(ranked.status).toBe(200);
    expect((await readJson(ranked)).results).toHaveLength(2);
    expect(embedder.batches.length).toBeGreaterThan(embedBatches);
    expect(reranker.batches.length).toBeGreaterThan(rerankBatches);
    // Each model keeps its own limits.
    const tooMany = await call('/v1/rerank', {
      model: 'reranker',
      query: 'q',
      documents: ['1', '2', '3', '4'],
    });
    expect(tooMany.status).toBe(400);
    expect((await readJson(tooMany)).error.message).toContain('at most 3');
  });

  it('sends a request without a model to the first model of its task', async () => {
    const embedded = await call('/v1/embeddings', { input: 'a' });
    expect((await readJson(embedded)).model).toBe('embedder');
    const ranked = await call('/v1/rerank', { query: 'q', documents: ['x'] });
    expect((await readJson(ranked)).model).toBe('reranker');
    const tei = await call('/rerank', { query: 'q', texts: ['x', 'y'] });
    expect(tei.status).toBe(200);
    const tokenized = await readJson(await call('/tokenize', { query: 'q', document: 'd' }));
    expect(tokenized.count).toBeGreaterThan(20); // the reranker's template
  });

  it('answers the wrong task with 400 model_task_mismatch and an unknown model with 404', async () => {
    const asEmbedder = await call('/v1/embeddings', { input: 'a', model: 'reranker' });
    expect(asEmbedder.status).toBe(400);
    expect((await readJson(asEmbedder)).error.code).toBe('model_task_mismatch');
    const asReranker = await call('/v1/rerank', { model: 'code-search', query: 'q', documents: ['x'] });
    expect(asReranker.status).toBe(400);
    expect((await readJson(asReranker)).error.code).toBe('model_task_mismatch');
    const unknown = await call('/v1/embeddings', { input: 'a', model: 'nope' });
    expect(unknown.status).toBe(404);
    expect((await readJson(unknown)).error.code).toBe('model_not_found');
  });

  it('lists every model with its task, then its prompt aliases, and describes each in /info', async () => {
    const list = await readJson(await call('/v1/models'));
    expect(list.data.map((entry: { id: string; task: string }) => [entry.id, entry.task])).toEqual([
      ['embedder', 'embed'],
      ['embedder:query', 'embed'],
      ['embedder:document', 'embed'],
      ['code-search', 'embed'],
      ['reranker', 'rerank'],
    ]);
    expect((await readJson(await call('/v1/models/reranker'))).task).toBe('rerank');
    const info = await readJson(await call('/info'));
    expect(info.model_id).toBe('embedder');
    expect(info.models.map((model: { id: string; task: string }) => [model.id, model.task])).toEqual([
      ['embedder', 'embed'],
      ['reranker', 'rerank'],
    ]);
  });

  it("labels each model's series with its id", async () => {
    const metrics = await (await fetch(`${sut.url}/metrics`)).text();
    expect(metrics).toMatch(/^qwen3_embed_tokens_total\{model="embedder"\} [1-9]/m);
    expect(metrics).toMatch(/^qwen3_embed_rerank_documents_total\{model="reranker"\} [1-9]/m);
    expect(metrics).toContain('qwen3_embed_ready{model="embedder"} 1');
    expect(metrics).toContain('qwen3_embed_ready{model="reranker"} 1');
  });
});
