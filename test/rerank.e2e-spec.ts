/**
 * Issue 17: a Qwen3-Reranker checkpoint served by the real app on the real addon (CPU, fp32), asked
 * through plain fetch as a Cohere / Jina / vLLM client and a text-embeddings-inference client would
 * (no OpenAI SDK has rerank). The checkpoints come from `admin checkpoint generate --preset
 * qwen3-reranker-tiny` (tied LM head, as Qwen3-Reranker-0.6B/4B), with `--untied` (lm_head.weight, as
 * 8B) and `--seq-cls` (the converted Qwen3ForSequenceClassification); their task comes from the
 * checkpoint alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RERANK_MAX_LENGTH, RerankPromptBuilder } from '@app/rerank/rerank-prompt';
import { sigmoid } from '@app/rerank/rerank.service';
import { ModelRegistry } from '@app/embeddings/model-registry';
import type { RunningApp } from '../apps/api/src/app.factory';
import { runAdmin } from './support/admin-cli';
import { Json, readJson, startTestApp, TEST_API_KEY } from './support/test-app';

const QUERY = 'What is the capital of China?';
const DOCUMENTS = [
  'The capital of China is Beijing.',
  'Gravity is a force that attracts two bodies towards each other.',
  '北京是中华人民共和国的首都。',
  'def capital(country): return CAPITALS[country]',
  '',
];

/** The generator's variants: flags after the preset, the head the engine must load. */
const VARIANTS: Array<{ name: string; flags: string[]; head: 'yes-no' | 'classifier' }> = [
  { name: 'Qwen3-Reranker-tiny', flags: [], head: 'yes-no' },
  { name: 'Qwen3-Reranker-tiny-untied', flags: ['--untied'], head: 'yes-no' },
  // Detection must not depend on the name for the converted form: this one does not say "rerank".
  { name: 'qwen3-seq-cls-tiny', flags: ['--seq-cls'], head: 'classifier' },
];

describe.each(VARIANTS)('a generated reranker ($name) through the HTTP API (real engine, CPU)', (variant) => {
  let work: string;
  let running: RunningApp;
  let builder: RerankPromptBuilder;

  const post = (path: string, body: unknown) =>
    fetch(`${running.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const rerank = async (body: Record<string, unknown>): Promise<Json> => {
    const res = await post('/v1/rerank', body);
    expect(res.status).toBe(200);
    return readJson(res);
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'rerank-e2e-'));
    const modelPath = join(work, variant.name);
    await runAdmin([
      'checkpoint',
      'generate',
      '--preset',
      'qwen3-reranker-tiny',
      ...variant.flags,
      '--out',
      modelPath,
    ]);
    running = await startTestApp({ MODEL_PATH: modelPath });
    const tokenizer = running.app.get(ModelRegistry).first.tokenizer;
    builder = new RerankPromptBuilder((text) => tokenizer.encodeText(text, false), RERANK_MAX_LENGTH);
  }, 300_000);

  afterAll(async () => {
    await running?.app.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('is served as a reranker with the head its checkpoint has', async () => {
    expect(running.app.get(ModelRegistry).first.lifecycle.head).toBe(variant.head);
    const models = await readJson(
      await fetch(`${running.url}/v1/models`, { headers: { authorization: `Bearer ${TEST_API_KEY}` } }),
    );
    expect(models.data[0]).toEqual(expect.objectContaining({ id: variant.name, task: 'rerank' }));
    const health = await readJson(await fetch(`${running.url}/health`));
    expect(health).toMatchObject({ status: 'ok', task: 'rerank', details: { outputDimension: 1 } });
  });

  it('ranks the documents best first, each score sigmoid of the logit /rerank returns raw', async () => {
    const body = await rerank({ model: variant.name, query: QUERY, documents: DOCUMENTS });
    expect(body).toMatchObject({ id: expect.stringMatching(/^rerank-/), model: variant.name });
    expect(body.results).toHaveLength(DOCUMENTS.length);
    expect(body.results.map((result: Json) => result.index).sort()).toEqual([0, 1, 2, 3, 4]);
    const scores: number[] = body.results.map((result: Json) => result.relevance_score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    for (const result of body.results) {
      expect(result.relevance_score).toBeGreaterThan(0);
      expect(result.relevance_score).toBeLessThan(1);
      expect(result.document).toEqual({ text: DOCUMENTS[result.index] });
    }
    // Usage: the templated pairs' tokens, exactly as the model card builds them.
    const pairs = await Promise.all(DOCUMENTS.map((document) => builder.build(QUERY, document)));
    const tokens = pairs.reduce((sum, pair) => sum + pair.tokenIds.length, 0);
    expect(body.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });

    const raw: Json = await readJson(
      await post('/rerank', { query: QUERY, texts: DOCUMENTS, raw_scores: true }),
    );
    expect(raw.map((rank: Json) => rank.index)).toEqual(body.results.map((result: Json) => result.index));
    for (const rank of raw) {
      const relevance = body.results.find((result: Json) => result.index === rank.index).relevance_score;
      expect(Math.abs(sigmoid(rank.score) - relevance)).toBeLessThanOrEqual(1e-6);
    }
  });

  it('scores a document the same whatever else shares its request (and forward batch)', async () => {
    const together = await rerank({ query: QUERY, documents: DOCUMENTS, return_documents: false });
    for (const [index, document] of DOCUMENTS.entries()) {
      const alone = await rerank({ query: QUERY, documents: [document] });
      const inGroup = together.results.find((result: Json) => result.index === index).relevance_score;
      expect(Math.abs(alone.results[0].relevance_score - inGroup)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('takes a custom instruction, top_n and {text} documents', async () => {
    const body = await rerank({
      query: QUERY,
      documents: DOCUMENTS.map((text) => ({ text })),
      instruction: 'Given a question, find the passage that answers it',
      top_n: 2,
    });
    expect(body.results).toHaveLength(2);
    const pairs = await Promise.all(
      DOCUMENTS.map((document) =>
        builder.build(QUERY, document, 'Given a question, find the passage that answers it'),
      ),
    );
    expect(body.usage.prompt_tokens).toBe(pairs.reduce((sum, pair) => sum + pair.tokenIds.length, 0));
  });

  it('cuts a document past 8192 templated tokens at its end, and refuses it with truncate=false', async () => {
    const long = 'Beijing is the capital of China. '.repeat(1400); // ~9800 tokens
    const body = await rerank({ query: QUERY, documents: [long, DOCUMENTS[0]] });
    expect(body.results.find((result: Json) => result.index === 0).truncated).toBe(true);
    expect(body.results.find((result: Json) => result.index === 1).truncated).toBeUndefined();
    const short = (await builder.build(QUERY, DOCUMENTS[0])).tokenIds.length;
    expect(body.usage.prompt_tokens).toBe(RERANK_MAX_LENGTH + short);

    const refused = await post('/v1/rerank', {
      query: QUERY,
      documents: [DOCUMENTS[0], long],
      truncate: false,
    });
    expect(refused.status).toBe(413);
    expect((await readJson(refused)).error).toMatchObject({
      param: 'documents',
      code: 'context_length_exceeded',
      message: expect.stringContaining('documents[1]'),
    });
  });

  it('answers /rerank in the text-embeddings-inference shape', async () => {
    const res = await post('/rerank', { query: QUERY, texts: DOCUMENTS.slice(0, 3), return_text: true });
    expect(res.status).toBe(200);
    const ranks: Json = await readJson(res);
    expect(ranks).toHaveLength(3);
    for (const rank of ranks) {
      expect(Object.keys(rank).sort()).toEqual(['index', 'score', 'text']);
      expect(rank.text).toBe(DOCUMENTS[rank.index]);
    }
  });

  it('refuses embeddings with 400 model_task_mismatch', async () => {
    const res = await post('/v1/embeddings', { input: 'hello' });
    expect(res.status).toBe(400);
    expect((await readJson(res)).error).toMatchObject({
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_task_mismatch',
    });
  });
});
