/**
 * No client can fail another's request, through the real app, tokenizer, batcher and engine: special
 * tokens without an embedding row are refused for their input alone, deadlines are honoured, and a
 * client that disconnects takes the rest of its work with it.
 */
import { request as httpRequest } from 'node:http';
import OpenAI from 'openai';
import type { RunningApp } from '../apps/api/src/app.factory';
import { Json, metricValue, readJson, SERVED_MODEL, startTestApp, TEST_API_KEY } from './support/test-app';

const HEADERS = { Authorization: `Bearer ${TEST_API_KEY}`, 'Content-Type': 'application/json' };

/** A document of roughly `tokens` tokens (the Qwen3 tokenizer reads each ` wordN` as about 2-3). */
const doc = (tokens: number, seed: number) =>
  Array.from({ length: Math.ceil(tokens / 2.5) }, (_, i) => `word${(i * 31 + seed) % 997}`).join(' ');

describe('isolation between clients (real engine)', () => {
  let running: RunningApp;
  let url: string;

  beforeAll(async () => {
    // Small forward batches, so a batch's run on a busy 2-core CI machine stays around a second or two.
    running = await startTestApp({ MAX_BATCH_TOKENS: '1024' });
    url = running.url;
  });

  afterAll(async () => {
    await running?.app.close();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}/v1/embeddings`, {
      method: 'POST',
      headers: { ...HEADERS, ...headers },
      body: JSON.stringify(body),
    });

  it('refuses each special token the model has no row for, naming the input, and only that input', async () => {
    const client = new OpenAI({ apiKey: TEST_API_KEY, baseURL: `${url}/v1`, maxRetries: 0 });
    for (const [index, token] of [
      [0, '<think>'],
      [1, '</think>'],
      [2, '<tool_response>'],
      [3, '</tool_response>'],
    ] as const) {
      const input = ['fine', 'also fine', 'still fine', 'fine again'];
      input[index] = `look: ${token} here`;
      const error = await client.embeddings.create({ model: SERVED_MODEL, input }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).error).toEqual({
        message: `input[${index}] contains \`${token}\`, a special token this model cannot embed; remove it`,
        type: 'invalid_request_error',
        param: 'input',
        code: null,
      });
    }
    // Special tokens that do have a row are embedded, as Hugging Face would.
    const ok = await client.embeddings.create({ model: SERVED_MODEL, input: ['<|im_start|>user hi'] });
    expect(ok.data).toHaveLength(1);
    // Token-id input goes through the same check.
    const ids = await post({
      input: [
        [1, 2],
        [3, 151667],
      ],
    });
    expect(ids.status).toBe(400);
    expect(((await readJson(ids)) as Json).error.message).toBe(
      "input[1][1] is token id 151667, outside the model's vocabulary (0..151664)",
    );
  });

  it('lets 15 clients succeed while a 16th sends <think>, behind a slow request (3 trials)', async () => {
    for (let trial = 0; trial < 3; trial += 1) {
      // One slow request ahead, so the others queue up and would share a batch.
      const slow = post({ input: Array.from({ length: 4 }, (_, i) => doc(300, i + trial)) });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const good = Array.from({ length: 15 }, (_, i) => post({ input: [`query ${trial} ${i}`] }));
      const bad = post({ input: ['<think>'] });
      const responses = await Promise.all([slow, ...good, bad]);
      const statuses = responses.map((res) => res.status);
      expect(statuses).toEqual([...Array(16).fill(200), 400]);
      const badBody = (await readJson(responses[16])) as Json;
      expect(badBody.error).toMatchObject({ param: 'input', type: 'invalid_request_error' });
      expect(badBody.error.message).toMatch(/^input\[0\] contains `<think>`/);
      for (const res of responses.slice(1, 16)) {
        expect(((await readJson(res)) as Json).data).toHaveLength(1);
      }
    }
  });

  it('validates the deadline header and honours it', async () => {
    for (const value of ['0', '-5', 'soon', '1.5', '3600001']) {
      const res = await post({ input: 'hello' }, { 'X-Request-Deadline-Ms': value });
      expect(res.status).toBe(400);
      expect(((await readJson(res)) as Json).error).toMatchObject({
        param: 'X-Request-Deadline-Ms',
        code: 'invalid_value',
      });
    }
    expect((await post({ input: 'hello' }, { 'X-Request-Deadline-Ms': '5000' })).status).toBe(200);
    // Behind a long request, a 1 ms deadline cannot be met: refused at once with Retry-After.
    const slow = post({ input: Array.from({ length: 8 }, (_, i) => doc(300, i)) });
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = Date.now();
    const refused = await post({ input: doc(2000, 1) }, { 'X-Request-Deadline-Ms': '1' });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await readJson(refused)) as Json).error.type).toBe('rate_limit_exceeded');
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await slow).status).toBe(200);
  });

  it('drops the parts not yet started of a long input whose client disconnects', async () => {
    const metrics = async () => (await fetch(`${url}/metrics`)).text();
    const closedBefore = metricValue(
      await metrics(),
      'qwen3_embed_requests_rejected_total{reason="client_closed"}',
    );
    const batchesBefore = metricValue(await metrics(), 'qwen3_embed_batches_total{outcome="ok"}');
    // About 30k tokens: 30 forward batches, a minute or more of CPU work.
    const body = JSON.stringify({ input: Array.from({ length: 100 }, (_, i) => doc(300, i)) });
    const req = httpRequest(`${url}/v1/embeddings`, {
      method: 'POST',
      headers: { ...HEADERS, 'Content-Length': Buffer.byteLength(body) },
    });
    req.on('error', () => undefined);
    req.end(body);
    // Wait until it runs, then hang up.
    for (let i = 0; i < 200; i += 1) {
      if (metricValue(await metrics(), 'qwen3_embed_batches_in_flight') > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    req.destroy();
    let text = '';
    for (let i = 0; i < 200; i += 1) {
      text = await metrics();
      if (metricValue(text, 'qwen3_embed_queue_requests') === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(metricValue(text, 'qwen3_embed_requests_rejected_total{reason="client_closed"}')).toBe(
      closedBefore + 1,
    );
    expect(metricValue(text, 'qwen3_embed_queue_sequences')).toBe(0);
    // A short request is served after at most the batch that was running, not the abandoned work.
    expect((await post({ input: 'are you free?' })).status).toBe(200);
    const batchesAfter = metricValue(await metrics(), 'qwen3_embed_batches_total{outcome="ok"}');
    expect(batchesAfter - batchesBefore).toBeLessThanOrEqual(3); // of 30 + 1
  });
});
