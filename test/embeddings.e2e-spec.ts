import { Tokenizer } from '@anush008/tokenizers';
import OpenAI from 'openai';
import { countImmediates } from '@app/common/testing';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import type { RunningApp } from '../apps/api/src/app.factory';
import {
  cosine,
  DEMO_MODEL,
  metricValue,
  norm,
  SERVED_MODEL,
  startTestApp,
  readJson,
  TEST_API_KEY,
} from './support/test-app';

const HIDDEN = 1024; // the tiny preset (docs/architecture.md)
const EOS = 151643;

/** The OpenAI SDK against the real app, real addon and demo model on the CPU. */
describe('POST /v1/embeddings (openai SDK, real engine)', () => {
  let running: RunningApp;
  let client: OpenAI;
  let tokenizer: Tokenizer;

  const embedOne = async (input: string, extra: Record<string, unknown> = {}) =>
    (await client.embeddings.create({ model: SERVED_MODEL, input, encoding_format: 'float', ...extra }))
      .data[0].embedding;

  beforeAll(async () => {
    running = await startTestApp();
    client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 });
    tokenizer = Tokenizer.fromFile(`${DEMO_MODEL}/tokenizer.json`);
  });

  afterAll(async () => {
    await running?.app.close();
  });

  it('embeds a string as a unit vector of the hidden size', async () => {
    const res = await client.embeddings.create({
      model: SERVED_MODEL,
      input: 'Hello world',
      encoding_format: 'float',
    });
    expect(res.object).toBe('list');
    expect(res.model).toBe(SERVED_MODEL);
    expect(res.data).toHaveLength(1);
    expect(res.data[0]).toMatchObject({ object: 'embedding', index: 0 });
    expect(res.data[0].embedding).toHaveLength(HIDDEN);
    expect(norm(res.data[0].embedding)).toBeCloseTo(1, 5);
    // "Hello world" is 2 tokens, plus the appended <|endoftext|>.
    expect(res.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
  });

  it("decodes the SDK's default base64 to exactly the float answer", async () => {
    const asFloat = await embedOne('base64 and float agree');
    const viaBase64 = await client.embeddings.create({
      model: SERVED_MODEL,
      input: 'base64 and float agree',
    });
    // The float encoding writes each value's shortest float32 digits ("0.0023064255", as OpenAI
    // does): read back as float32 they are exactly the base64 bytes.
    expect(viaBase64.data[0].embedding).toEqual(asFloat.map((value) => Math.fround(value)));
    const raw = await client.embeddings.create({
      model: SERVED_MODEL,
      input: 'base64 and float agree',
      encoding_format: 'base64',
    });
    expect(typeof raw.data[0].embedding).toBe('string');
  });

  it('honours dimensions: the normalised prefix of the full embedding', async () => {
    const full = await embedOne('Matryoshka');
    const short = await embedOne('Matryoshka', { dimensions: 64 });
    expect(short).toHaveLength(64);
    expect(norm(short)).toBeCloseTo(1, 5);
    expect(cosine(short, full.slice(0, 64))).toBeGreaterThan(0.99999);
  });

  it('returns a batch in input order, each row as if embedded alone', async () => {
    const texts = [
      'a fairly long sentence that has quite a few more tokens than the others in this batch',
      'short',
      'medium length text here',
      'x',
      'another rather long input so that packing order differs from input order',
    ];
    const { data, response } = await client.embeddings
      .create({ model: SERVED_MODEL, input: texts, encoding_format: 'float' })
      .withResponse();
    expect(data.data.map((row) => row.index)).toEqual([0, 1, 2, 3, 4]);
    expect(Number(response.headers.get('x-total-tokens'))).toBe(data.usage.prompt_tokens);
    // Milliseconds with one decimal; a forward on the CPU takes well over 0.05 ms.
    for (const header of ['x-queue-time-ms', 'x-inference-time-ms', 'x-tokenization-time-ms']) {
      expect(response.headers.get(header)).toMatch(/^\d+\.\d$/);
    }
    expect(Number(response.headers.get('x-inference-time-ms'))).toBeGreaterThan(0);
    for (const [index, text] of texts.entries()) {
      expect(cosine(data.data[index].embedding, await embedOne(text))).toBeGreaterThan(0.99999);
    }
  });

  it('takes token ids (int[] and int[][]) and matches the text they encode', async () => {
    const ids = (await tokenizer.encode('token ids work', null, { addSpecialTokens: false })).getIds();
    const fromText = await embedOne('token ids work');
    const single = await client.embeddings.create({
      model: SERVED_MODEL,
      input: ids,
      encoding_format: 'float',
    });
    expect(cosine(single.data[0].embedding, fromText)).toBeGreaterThan(0.99999);
    expect(single.usage.prompt_tokens).toBe(ids.length + 1);
    const withEos = await client.embeddings.create({
      model: SERVED_MODEL,
      input: [[...ids, EOS], ids],
      encoding_format: 'float',
    });
    expect(withEos.usage.prompt_tokens).toBe(2 * (ids.length + 1));
    expect(cosine(withEos.data[0].embedding, withEos.data[1].embedding)).toBeGreaterThan(0.99999);
  });

  it('embeds queries with the instruction prompt and documents as they are', async () => {
    const document = await embedOne('what is the capital of France?', { input_type: 'document' });
    const plain = await embedOne('what is the capital of France?');
    const query = await embedOne('what is the capital of France?', { input_type: 'query' });
    const promptName = await embedOne('what is the capital of France?', { prompt_name: 'query' });
    const custom = await embedOne('what is the capital of France?', { instruction: 'Find the answer' });
    expect(cosine(document, plain)).toBeGreaterThan(0.99999);
    expect(cosine(query, promptName)).toBeGreaterThan(0.99999);
    expect(cosine(query, document)).toBeLessThan(0.9999);
    expect(cosine(custom, query)).toBeLessThan(0.9999);
  });

  it('takes 2048 inputs in one request, spread over forward batches and put back in order', async () => {
    const texts = Array.from({ length: 2048 }, (_, i) => `item number ${i}`);
    const { data, response } = await client.embeddings
      .create({ model: SERVED_MODEL, input: texts, encoding_format: 'base64', dimensions: 32 })
      .withResponse();
    expect(data.data).toHaveLength(2048);
    expect(data.data.every((row, i) => row.index === i && row.embedding.length > 0)).toBe(true);
    expect(Number(response.headers.get('x-forward-batches'))).toBeGreaterThan(1); // BATCH_SIZE 256
    const [first, last] = await Promise.all(
      [texts[0], texts[2047]].map((t) => embedOne(t, { dimensions: 32 })),
    );
    const decode = (value: unknown) => fromBase64(value as string);
    expect(cosine(decode(data.data[0].embedding), first)).toBeGreaterThan(0.99999);
    expect(cosine(decode(data.data[2047].embedding), last)).toBeGreaterThan(0.99999);
  });

  it('coalesces concurrent requests into shared forward batches', async () => {
    const metrics = async () => (await fetch(`${running.url}/metrics`)).text();
    const before = await metrics();
    // A large request keeps the engine busy while the small ones arrive and queue together.
    const blocker = client.embeddings.create({
      model: SERVED_MODEL,
      input: Array.from(
        { length: 64 },
        (_, i) => `${'a long filler sentence for the blocking batch '.repeat(8)}${i}`,
      ),
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const small = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        client.embeddings.create({ model: SERVED_MODEL, input: `query ${i}` }),
      ),
    );
    await blocker;
    expect(small.every((res) => res.data.length === 1)).toBe(true);
    const after = await metrics();
    const batches =
      metricValue(after, 'qwen3_embed_batches_total{outcome="ok"}') -
      metricValue(before, 'qwen3_embed_batches_total{outcome="ok"}');
    const sequences =
      metricValue(after, 'qwen3_embed_batch_sequences_sum') -
      metricValue(before, 'qwen3_embed_batch_sequences_sum');
    expect(sequences).toBe(64 + 16);
    // One request per batch would take 17 batches.
    expect(batches).toBeLessThanOrEqual(8);
  });

  it('reports health, readiness, metrics and docs', async () => {
    const health = await fetch(`${running.url}/health`);
    expect(health.status).toBe(200);
    expect(await readJson(health)).toMatchObject({
      status: 'ok',
      model: SERVED_MODEL,
      device: 'cpu',
      replicas: 1,
      queue: { pendingRequests: 0, queuedTokens: 0 },
      details: { hiddenSize: HIDDEN, device: 'cpu', dtype: 'float32', vocabSize: 151665 },
    });
    expect((await fetch(`${running.url}/health/live`)).status).toBe(200);
    const ready = await fetch(`${running.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await readJson(ready)).toMatchObject({ status: 'ok', info: { engine: { status: 'up' } } });

    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    for (const name of [
      'qwen3_embed_http_requests_total',
      'qwen3_embed_tokenization_seconds_bucket',
      'qwen3_embed_queue_seconds_bucket',
      'qwen3_embed_inference_seconds_bucket',
      'qwen3_embed_request_seconds_bucket',
      'qwen3_embed_batch_sequences_bucket',
      'qwen3_embed_batch_tokens_bucket',
      'qwen3_embed_queue_requests',
      'qwen3_embed_tokens_total',
      'qwen3_embed_device_memory_used_bytes',
      'process_cpu_seconds_total',
    ]) {
      expect(metrics).toContain(name);
    }
    expect((await fetch(`${running.url}/docs`)).status).toBe(200);
    const spec = await readJson(await fetch(`${running.url}/docs/json`));
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/v1/embeddings', '/v1/models', '/health/ready']),
    );
  });

  it('lists the served model and finds it by alias', async () => {
    const list = await client.models.list();
    // The served model first, then its prompt aliases (docs/api.md, "Prompt aliases").
    expect(list.data.map((model) => model.id)).toEqual([
      SERVED_MODEL,
      `${SERVED_MODEL}:query`,
      `${SERVED_MODEL}:document`,
    ]);
    expect((await client.models.retrieve(SERVED_MODEL)).id).toBe(SERVED_MODEL);
    expect((await client.models.retrieve(`Qwen/${SERVED_MODEL}`)).id).toBe(SERVED_MODEL);
    await expect(client.models.retrieve('text-embedding-ada-002')).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });
});

/** BUSY_POLL=true changes when the event loop sleeps, never what it answers. */
describe('POST /v1/embeddings with BUSY_POLL=true', () => {
  let plain: RunningApp;
  let polling: RunningApp;

  beforeAll(async () => {
    [plain, polling] = await Promise.all([
      startTestApp(),
      startTestApp({ BUSY_POLL: 'true', BUSY_POLL_LINGER_MS: '20' }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([plain?.app.close(), polling?.app.close()]);
  });

  it('answers as the default server does, concurrent requests included, and stops spinning after the linger', async () => {
    const clientOf = (app: RunningApp) =>
      new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${app.url}/v1`, maxRetries: 0 });
    const inputs = ['busy polling', 'a second text', 'and a third, longer one than the others'];
    const [expected, got] = await Promise.all(
      [plain, polling].map((app) =>
        Promise.all(
          inputs.map(
            async (input) =>
              (await clientOf(app).embeddings.create({ model: SERVED_MODEL, input })).data[0].embedding,
          ),
        ),
      ),
    );
    // Requests of one event-loop turn may share a batch on one server and not on the other: the same
    // rows up to the last bits of a packed forward.
    got.forEach((row, i) => expect(cosine(row, expected[i])).toBeGreaterThan(0.99999));
    // Idle past the 20 ms linger: the loop no longer turns (a spinning loop would run thousands of
    // immediates here).
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(await countImmediates(new Promise((resolve) => setTimeout(resolve, 50)))).toBeLessThan(20);
  });
});
