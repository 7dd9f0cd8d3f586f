import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { FakeEngine } from '@app/engine/testing';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import { createApp, RunningApp } from './app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const readJson = (res: Response): Promise<any> => res.json();

const HIDDEN = 64;
const KEY = UNIT_TEST_KEY;

describe(createApp.name, () => {
  let modelDir: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${sut.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-fake-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    // Rows derive from the token ids, so equal inputs give equal rows.
    engine = new FakeEngine({ info: { hiddenSize: HIDDEN } });
    sut = await startWithFakeEngine(engine, modelDir, {
      SERVED_MODEL_NAME: 'fake-embedding,text-embedding-3-small',
      BODY_LIMIT: '64kb',
      MAX_INPUT_TOKENS: '16',
      MAX_REQUEST_TOKENS: '40',
    });
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('loads the engine with the configured options and warms it up', () => {
    expect(engine.loadOptions).toMatchObject({
      modelPath: modelDir,
      device: 'cpu',
      dtype: 'float32',
      deviceIds: [],
    });
    expect(engine.batches.length).toBeGreaterThanOrEqual(1);
  });

  it('answers in the OpenAI shape with timing headers', async () => {
    const res = await post({ input: ['hello', 'world'], model: 'fake-embedding' });
    expect(res.status).toBe(200);
    for (const header of [
      'x-queue-time-ms',
      'x-inference-time-ms',
      'x-tokenization-time-ms',
      'x-total-tokens',
    ]) {
      expect(res.headers.get(header)).toMatch(/^\d+(\.\d+)?$/);
    }
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('etag')).toBeNull(); // no hash of every body
    const text = await res.text();
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    const body = JSON.parse(text);
    expect(body).toMatchObject({
      object: 'list',
      model: 'fake-embedding',
      data: [
        { object: 'embedding', index: 0 },
        { object: 'embedding', index: 1 },
      ],
      usage: { prompt_tokens: 4, total_tokens: 4 },
    });
    expect(body.data[0].embedding).toHaveLength(HIDDEN);
  });

  it('encodes base64 as little-endian float32 equal to the float answer', async () => {
    const [asFloat, asBase64] = await Promise.all([
      post({ input: 'same text', dimensions: 32 }).then(readJson),
      post({ input: 'same text', dimensions: 32, encoding_format: 'base64' }).then(readJson),
    ]);
    expect(Array.from(fromBase64(asBase64.data[0].embedding))).toEqual(asFloat.data[0].embedding);
    expect(asFloat.data[0].embedding).toHaveLength(32);
  });

  it('accepts aliases and an omitted model, and lists the model', async () => {
    expect((await post({ input: 'x', model: 'text-embedding-3-small' })).status).toBe(200);
    const dirName = modelDir.split('/').pop();
    expect((await post({ input: 'x', model: `Qwen/${dirName}` })).status).toBe(200);
    expect((await post({ input: 'x' })).status).toBe(200);
    const list = await fetch(`${sut.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(await readJson(list)).toMatchObject({
      object: 'list',
      data: [
        { id: 'fake-embedding', object: 'model' },
        { id: 'fake-embedding:query', parent: 'fake-embedding' },
        { id: 'fake-embedding:document', parent: 'fake-embedding' },
      ],
    });
    const one = await fetch(`${sut.url}/v1/models/Qwen/${dirName}`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(one.status).toBe(200);
  });

  it.each([
    ['empty string', { input: '' }, 400, 'input', 'input must not be an empty string'],
    ['empty array', { input: [] }, 400, 'input', 'input must not be an empty array'],
    ['empty string item', { input: ['a', ''] }, 400, 'input', 'input[1] must not be an empty string'],
    ['empty id list', { input: [[1, 2], []] }, 400, 'input', 'input[1] must not be an empty array'],
    ['mixed types', { input: ['a', 1] }, 400, 'input', 'input must be a string'],
    ['negative id', { input: [-1] }, 400, 'input', 'input[0] must be a non-negative integer token id'],
    ['id beyond the vocabulary', { input: [999999] }, 400, 'input', 'outside the model'],
    ['2049 inputs', { input: Array(2049).fill('a') }, 400, 'input', 'at most 2048'],
    ['dimensions below 32', { input: 'x', dimensions: 16 }, 400, 'dimensions', 'at least 32'],
    ['dimensions above hidden', { input: 'x', dimensions: 65 }, 400, 'dimensions', 'between 32 and 64'],
    [
      'unknown encoding',
      { input: 'x', encoding_format: 'hex' },
      400,
      'encoding_format',
      "'float' or 'base64'",
    ],
    ['unknown input_type', { input: 'x', input_type: 'passage' }, 400, 'input_type', "'query' or 'document'"],
    [
      'input_type with token ids',
      { input: [1, 2], input_type: 'query' },
      400,
      'input_type',
      'text input only',
    ],
    [
      'instruction for documents',
      { input: 'x', instruction: 'task', input_type: 'document' },
      400,
      'instruction',
      'queries only',
    ],
    ['over-long input', { input: 'word '.repeat(40) }, 400, 'input', 'input[0] has'],
    ['unknown model', { input: 'x', model: 'gpt-4' }, 404, 'model', "The model 'gpt-4' does not exist"],
    [
      'too many tokens in the request',
      { input: Array(3).fill('word '.repeat(14)) },
      413,
      null,
      'more than the maximum of 40',
    ],
  ])('%s -> %i (param %s)', async (_label, body, status, param, message) => {
    const res = await post(body);
    expect(res.status).toBe(status);
    const json = await readJson(res);
    expect(json.error).toMatchObject({ param, message: expect.stringContaining(message) });
    expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  });

  it('cuts over-long inputs when asked, keeping the final end-of-text token', async () => {
    const before = engine.batches.length;
    const res = await post({ input: 'word '.repeat(40), truncate: true });
    expect(res.status).toBe(200);
    expect((await readJson(res)).usage.prompt_tokens).toBe(16);
    const batch = engine.batches[before];
    expect(batch.tokenIds).toHaveLength(16);
    expect(batch.tokenIds[15]).toBe(151643);
  });

  it('prefixes queries with the instruction prompt and appends one end-of-text token', async () => {
    const before = engine.batches.length;
    await post({ input: 'x', input_type: 'query' });
    await post({ input: 'x', instruction: 'Find it' });
    await post({ input: [1, 2, 151643] });
    const ids = engine.batches.slice(before).map((b) => Array.from(b.tokenIds));
    expect(ids[0].length).toBeGreaterThan(3);
    expect(ids[0].filter((id) => id === 151643)).toHaveLength(1);
    expect(ids[1]).not.toEqual(ids[0]);
    expect(ids[2]).toEqual([1, 2, 151643]);
  });

  it('answers malformed JSON, oversized bodies and unknown routes in the error envelope', async () => {
    const malformed = await post('{"input": ');
    expect(malformed.status).toBe(400);
    expect((await readJson(malformed)).error).toMatchObject({ type: 'invalid_request_error' });

    const huge = await post({ input: 'x'.repeat(70_000) });
    expect(huge.status).toBe(413);
    expect((await readJson(huge)).error).toMatchObject({ code: 'request_too_large' });

    const unknown = await fetch(`${sut.url}/v1/nothing`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(unknown.status).toBe(404);
    expect((await readJson(unknown)).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'not_found',
    });
  });

  it('takes the key as access_token in the body or query string too, but not in two places', async () => {
    const bare = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${sut.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    expect((await bare(`/v1/embeddings?access_token=${KEY}`, { input: 'x' })).status).toBe(200);
    expect((await bare('/v1/embeddings', { input: 'x', access_token: KEY })).status).toBe(200);
    const twice = await bare(
      `/v1/embeddings?access_token=${KEY}`,
      { input: 'x' },
      { authorization: `Bearer ${KEY}` },
    );
    expect(twice.status).toBe(401);
    expect((await readJson(twice)).error).toMatchObject({
      code: 'invalid_api_key',
      message: 'Incorrect API key provided.',
    });
    const wrong = await bare('/v1/embeddings?access_token=nope', { input: 'x' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('refuses missing and wrong keys with 401 invalid_api_key', async () => {
    for (const headers of [
      { authorization: '' },
      { authorization: 'Bearer nope' },
      { authorization: 'Basic abc' },
    ]) {
      const res = await post({ input: 'x' }, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(await readJson(res)).toEqual({
        error: {
          message: expect.any(String),
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      });
    }
  });

  it('serves health, metrics and docs without a key', async () => {
    const health = await fetch(`${sut.url}/health`);
    expect(health.status).toBe(200);
    expect(await readJson(health)).toMatchObject({
      status: 'ok',
      model: 'fake-embedding',
      device: 'cpu',
      replicas: 1,
      queue: { pendingRequests: 0 },
      details: { hiddenSize: HIDDEN, dtype: 'float32', tensorParallelSize: 1 },
    });
    expect((await fetch(`${sut.url}/health/live`)).status).toBe(200);
    const ready = await fetch(`${sut.url}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await readJson(ready)).toMatchObject({
      status: 'ok',
      info: { engine: { status: 'up', state: 'ready' } },
    });
    const metrics = await (await fetch(`${sut.url}/metrics`)).text();
    expect(metrics).toContain(
      'qwen3_embed_http_requests_total{method="POST",route="/v1/embeddings",status="200"}',
    );
    expect(metrics).toMatch(/^qwen3_embed_tokens_total\{model="fake-embedding"\} [1-9]/m);
    expect(metrics).toContain(
      'qwen3_embed_device_memory_used_bytes{model="fake-embedding",device="-1",name="cpu",replica="0",rank="0"} 1',
    );
    expect(metrics).toMatch(
      /^qwen3_embed_build_info\{version="\d+\.\d+\.\d+[^"]*",commit="[^"]+",device="cpu"\} 1$/m,
    );
    expect(metrics).toContain('qwen3_embed_ready{model="fake-embedding"} 1');
    expect((await fetch(`${sut.url}/docs`)).status).toBe(200);
    const spec = await readJson(await fetch(`${sut.url}/docs/json`));
    expect(spec.paths['/v1/embeddings']).toBeDefined();
    // The examples name the served model (another id is 404) and the key is no JWT.
    expect(spec.components.schemas.EmbeddingsRequestDto.properties.model.example).toBe('fake-embedding');
    expect(spec.components.schemas.ModelDto.properties.id.example).toBe('fake-embedding');
    expect(spec.components.securitySchemes.bearer).toEqual({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'API key',
    });
  });

  it('shows no filesystem path and no host data on /health by default', async () => {
    const text = await (await fetch(`${sut.url}/health`)).text();
    expect(text).not.toContain('modelPath');
    expect(text).not.toContain('/fake');
    expect(text).not.toContain(modelDir);
    expect(text).not.toContain('devices');
    expect(text).not.toContain('MemoryBytes');
  });

  it('echoes a sane x-request-id and replaces an unsafe one', async () => {
    const kept = await post({ input: 'x' }, { 'x-request-id': 'abc-123' });
    expect(kept.headers.get('x-request-id')).toBe('abc-123');
    const replaced = await post({ input: 'x' }, { 'x-request-id': 'bad id with spaces' });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('createApp with HEALTH_DETAILS=full', () => {
  let modelDir: string;
  let sut: RunningApp;

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-fake-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    sut = await startWithFakeEngine(
      new FakeEngine({ info: { hiddenSize: HIDDEN, modelPath: modelDir } }),
      modelDir,
      {
        HEALTH_DETAILS: 'full',
      },
    );
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('adds the model path and the devices with their memory to /health', async () => {
    expect(await readJson(await fetch(`${sut.url}/health`))).toMatchObject({
      status: 'ok',
      details: {
        modelPath: modelDir,
        devices: [{ name: 'cpu', totalMemoryBytes: 1, usedMemoryBytes: 1 }],
      },
    });
  });
});
