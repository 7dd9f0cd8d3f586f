import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import request from 'supertest';
import type { RunningApp } from '../apps/api/src/app.factory';
import { createApp } from '../apps/api/src/app.factory';
import { DEMO_MODEL, SERVED_MODEL, startTestApp, TEST_API_KEY } from './support/test-app';

const ERROR_KEYS = ['code', 'message', 'param', 'type'];

function expectEnvelope(body: unknown, fields: Record<string, unknown>): void {
  const error = (body as { error: Record<string, unknown> }).error;
  expect(Object.keys(error).sort()).toEqual(ERROR_KEYS);
  expect(error).toMatchObject(fields);
}

/** Raw HTTP against the real app: authentication and every error status, in the OpenAI envelope. */
describe('errors and authentication (raw HTTP, real engine)', () => {
  let running: RunningApp;
  let keysDir: string;
  const auth = { Authorization: `Bearer ${TEST_API_KEY}` };

  beforeAll(async () => {
    keysDir = mkdtempSync(join(tmpdir(), 'keys-'));
    const keysFile = join(keysDir, 'api-keys');
    writeFileSync(
      keysFile,
      `# rotated monthly\nfile-key\nsha256:${createHash('sha256').update('hashed-key').digest('hex')}\n`,
    );
    running = await startTestApp({
      API_KEYS: 'second-key,third-key',
      API_KEYS_FILE: keysFile,
      MAX_INPUT_TOKENS: '32',
      MAX_REQUEST_TOKENS: '200',
      BODY_LIMIT: '64kb',
    });
  });

  afterAll(async () => {
    await running?.app.close();
    rmSync(keysDir, { recursive: true, force: true });
  });

  const post = (body: unknown, headers: Record<string, string> = auth) =>
    request(running.app.getHttpServer())
      .post('/v1/embeddings')
      .set(headers)
      .send(body as object);

  describe('authentication', () => {
    it.each(['e2e-test-key', 'second-key', 'third-key', 'file-key', 'hashed-key'])(
      'accepts %s',
      async (key) => {
        await post({ input: 'hi' }, { Authorization: `Bearer ${key}` }).expect(200);
      },
    );

    it.each([
      ['no header', {}, "You didn't provide an API key"],
      ['a wrong key', { Authorization: 'Bearer wrong' }, 'Incorrect API key provided.'],
      [
        'a digest instead of the key',
        { Authorization: `Bearer sha256:${'0'.repeat(64)}` },
        'Incorrect API key',
      ],
      ['another scheme', { Authorization: `Basic ${TEST_API_KEY}` }, 'Incorrect API key'],
    ])('refuses %s with 401 invalid_api_key', async (_label, headers, message) => {
      const res = await post({ input: 'hi' }, headers).expect(401);
      expect(res.headers['www-authenticate']).toBe('Bearer');
      expect(res.body).toEqual({
        error: {
          message: expect.stringContaining(message),
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      });
    });

    it.each([
      ['a number', { input: 'hi', access_token: 5 }, ''],
      ['an object', { input: 'hi', access_token: { key: TEST_API_KEY } }, ''],
      ['a string given twice in the query', { input: 'hi' }, '?access_token=a&access_token=b'],
    ])('refuses an access_token that is %s with 401, not 500', async (_label, body, query) => {
      const res = await request(running.app.getHttpServer())
        .post(`/v1/embeddings${query}`)
        .send(body)
        .expect(401);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key' });
    });

    it('guards the models endpoints and leaves health, metrics and docs public', async () => {
      const server = running.app.getHttpServer();
      await request(server).get('/v1/models').expect(401);
      await request(server).get('/v1/models').set(auth).expect(200);
      for (const path of ['/health', '/health/live', '/health/ready', '/metrics', '/docs', '/docs/json']) {
        await request(server).get(path).expect(200);
      }
    });

    it('tells the openai SDK about a bad key as an AuthenticationError', async () => {
      const client = new OpenAI({ apiKey: 'wrong', baseURL: `${running.url}/v1`, maxRetries: 0 });
      await expect(client.embeddings.create({ model: SERVED_MODEL, input: 'x' })).rejects.toBeInstanceOf(
        OpenAI.AuthenticationError,
      );
    });
  });

  describe('400 invalid_request_error, naming the parameter', () => {
    it.each([
      ['a missing input', { model: SERVED_MODEL }, 'input'],
      ['an empty string', { input: '' }, 'input'],
      ['an empty array', { input: [] }, 'input'],
      ['an empty string among others', { input: ['a', ''] }, 'input'],
      ['an empty token list', { input: [[1], []] }, 'input'],
      ['2049 inputs', { input: Array(2049).fill('a') }, 'input'],
      ['a token id beyond the embedding table', { input: [151665] }, 'input'],
      ['a negative token id', { input: [[1, -5]] }, 'input'],
      ['a non-integer token id', { input: [1.5] }, 'input'],
      ['mixed input types', { input: ['a', [1]] }, 'input'],
      ['an over-long input', { input: 'word '.repeat(100) }, 'input'],
      ['dimensions above the hidden size', { input: 'x', dimensions: 1025 }, 'dimensions'],
      ['dimensions below 32', { input: 'x', dimensions: 8 }, 'dimensions'],
      ['fractional dimensions', { input: 'x', dimensions: 64.5 }, 'dimensions'],
      ['an unknown encoding_format', { input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      ['an unknown input_type', { input: 'x', input_type: 'passage' }, 'input_type'],
      [
        'conflicting input_type and prompt_name',
        { input: 'x', input_type: 'query', prompt_name: 'document' },
        'prompt_name',
      ],
      [
        'an instruction for documents',
        { input: 'x', instruction: 'Find', input_type: 'document' },
        'instruction',
      ],
      ['an empty instruction', { input: 'x', instruction: '' }, 'instruction'],
      ['a non-boolean truncate', { input: 'x', truncate: 'yes' }, 'truncate'],
      ['a model that is not a string', { input: 'x', model: 42 }, 'model'],
    ])('rejects %s', async (_label, body, param) => {
      const res = await post(body).expect(400);
      expectEnvelope(res.body, { type: 'invalid_request_error', param });
    });

    it('treats options sent as null as not sent', async () => {
      const plain = await post({ input: 'null options' }).expect(200);
      const nulls = await post({
        input: 'null options',
        model: null,
        encoding_format: null,
        dimensions: null,
        user: null,
        input_type: null,
        prompt_name: null,
        instruction: null,
        truncate: null,
      }).expect(200);
      expect(nulls.body.model).toBe(plain.body.model);
      expect(nulls.body.data[0].embedding).toHaveLength(plain.body.data[0].embedding.length);
      expect(nulls.body.data[0].embedding).toEqual(plain.body.data[0].embedding);
    });

    it('names the over-long input and the limit', async () => {
      const res = await post({ input: ['ok', 'word '.repeat(100)] }).expect(400);
      expect(res.body.error.message).toMatch(
        /^input\[1\] has \d+ tokens, more than this model's maximum of 32/,
      );
      expect(res.body.error.code).toBe('context_length_exceeded');
    });

    it('answers malformed JSON with 400', async () => {
      const res = await request(running.app.getHttpServer())
        .post('/v1/embeddings')
        .set(auth)
        .set('Content-Type', 'application/json')
        .send('{"input": "unterminated')
        .expect(400);
      expectEnvelope(res.body, { type: 'invalid_request_error' });
    });
  });

  it('cuts over-long inputs with truncate=true, keeping the end-of-text token', async () => {
    const res = await post({
      input: ['word '.repeat(100), 'short'],
      truncate: true,
      encoding_format: 'float',
    }).expect(200);
    expect(res.body.usage.prompt_tokens).toBe(32 + 2);
    expect(res.body.data[0].embedding).toHaveLength(1024);
  });

  it('answers 404 model_not_found for an unknown model and 404 for an unknown route', async () => {
    const res = await post({ input: 'x', model: 'text-embedding-3-large' }).expect(404);
    expectEnvelope(res.body, { code: 'model_not_found', param: 'model' });
    const route = await request(running.app.getHttpServer())
      .post('/v1/embedding')
      .set(auth)
      .send({})
      .expect(404);
    expectEnvelope(route.body, { type: 'invalid_request_error', code: 'not_found' });
  });

  it('answers 413 for a body over BODY_LIMIT and for a request over MAX_REQUEST_TOKENS', async () => {
    const body = await post({ input: 'x'.repeat(70 * 1024) }).expect(413);
    expectEnvelope(body.body, { code: 'request_too_large' });
    const tokens = await post({ input: Array(10).fill('word '.repeat(25)) }).expect(413);
    expectEnvelope(tokens.body, { code: 'request_too_large' });
    expect(tokens.body.error.message).toContain('more than the maximum of 200 per request');
  });
});

describe('429 when the queue is full (real engine)', () => {
  let running: RunningApp;

  beforeAll(async () => {
    running = await startTestApp({ MAX_QUEUED_REQUESTS: '1' });
  });

  afterAll(async () => {
    await running?.app.close();
  });

  it('sheds load with 429 rate_limit_exceeded and Retry-After', async () => {
    const server = running.app.getHttpServer();
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request(server)
          .post('/v1/embeddings')
          .set('Authorization', `Bearer ${TEST_API_KEY}`)
          .send({ input: Array(32).fill(`a sentence to keep the engine busy for a moment ${i}`) }),
      ),
    );
    const statuses = responses.map((res) => res.status);
    expect(statuses).toContain(200);
    expect(statuses).toContain(429);
    expect(statuses.every((status) => status === 200 || status === 429)).toBe(true);
    const limited = responses.find((res) => res.status === 429)!;
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expectEnvelope(limited.body, { type: 'rate_limit_exceeded', code: 'queue_full' });
  });
});

describe('503 before the model is ready (real addon, not loaded)', () => {
  let running: RunningApp;

  beforeAll(async () => {
    running = await startTestApp({}, { load: false });
  });

  afterAll(async () => {
    await running?.app.close();
  });

  it('is live but not ready, and refuses embeddings with 503 model_not_ready', async () => {
    const server = running.app.getHttpServer();
    await request(server).get('/health/live').expect(200);
    const ready = await request(server).get('/health/ready').expect(503);
    expect(ready.body).toMatchObject({ status: 'error', error: { engine: { status: 'down' } } });
    const health = await request(server).get('/health').expect(503);
    expect(health.body).toMatchObject({ model: SERVED_MODEL, device: 'cpu' });
    const res = await request(server)
      .post('/v1/embeddings')
      .set('Authorization', `Bearer ${TEST_API_KEY}`)
      .send({ input: 'x' })
      .expect(503);
    expectEnvelope(res.body, { type: 'server_error', code: 'model_not_ready' });
    expect(res.headers['retry-after']).toBe('5');
  });
});

describe('boot', () => {
  it('refuses to start without an API key unless AUTH_DISABLED=true', async () => {
    await expect(
      createApp({
        inheritProcessEnv: false,
        shutdownHooks: false,
        env: { MODEL_PATH: DEMO_MODEL, DEVICE: 'cpu' },
      }),
    ).rejects.toThrow(/^Invalid environment variables: API_KEY: no API key configured/);
  });

  it('stops on a bad variable, naming it', async () => {
    await expect(
      createApp({
        inheritProcessEnv: false,
        shutdownHooks: false,
        env: { API_KEY: 'k', MODEL_PATH: DEMO_MODEL, DEVICE: 'gpu', PORT: 'eighty' },
      }),
    ).rejects.toThrow(
      'Invalid environment variables: PORT: must be an integer; DEVICE: must be one of cuda, cpu',
    );
  });

  it('fails to load a model directory that is not there, saying which', async () => {
    await expect(startTestApp({ MODEL_PATH: join(tmpdir(), 'no-such-model') })).rejects.toThrow(
      /no-such-model/,
    );
  });
});
