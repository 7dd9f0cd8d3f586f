import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { buildInfo } from '@app/common';
import { FakeEngine } from '@app/engine/testing';
import { TokenizeController, InfoController } from '@app/embeddings';
import { RunningApp } from './app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const EOS = 151643;
const LONG =
  'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen';

describe(`${TokenizeController.name} and ${InfoController.name}`, () => {
  let modelDir: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  const call = async (path: string, body?: unknown, key: string | null = UNIT_TEST_KEY) => {
    const res = await fetch(`${sut.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const tokenize = (body: unknown) => call('/tokenize', body);

  /** The ids the engine was handed for a one-input embeddings request. */
  const embeddedIds = async (body: Record<string, unknown>): Promise<number[]> => {
    const before = engine.batches.length;
    const res = await call('/v1/embeddings', body);
    expect(res.status).toBe(200);
    expect(engine.batches).toHaveLength(before + 1);
    return Array.from(engine.batches[before].tokenIds);
  };

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-fake-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    engine = new FakeEngine({ info: { hiddenSize: 64 } });
    sut = await startWithFakeEngine(engine, modelDir, {
      SERVED_MODEL_NAME: 'fake-embedding,text-embedding-3-small',
      MAX_INPUT_TOKENS: '16',
      MAX_REQUEST_TOKENS: '40',
      PROMPT_ALIASES: JSON.stringify({ 'code-search': 'Find code' }),
    });
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  describe('POST /tokenize', () => {
    it("answers in vLLM's shape with the ids the embeddings endpoint hands the engine", async () => {
      const res = await tokenize({ model: 'fake-embedding', prompt: 'hello world' });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ count: 3, max_model_len: 16, tokens: [14990, 1879, EOS] });
      expect(res.body.tokens).toEqual(await embeddedIds({ input: 'hello world' }));
    });

    it.each<[string, Record<string, unknown>]>([
      ['input_type query', { input_type: 'query' }],
      ['prompt_name query', { prompt_name: 'query' }],
      ['input_type document', { input_type: 'document' }],
      ['an instruction', { instruction: 'Find code' }],
      ['the :query name', { model: 'fake-embedding:query' }],
      ['an alias :query name, any case', { model: 'TEXT-embedding-3-small:Query' }],
      ['the :document name', { model: 'fake-embedding:document' }],
      ['a PROMPT_ALIASES name', { model: 'code-search' }],
      ['input_type over the :query name', { model: 'fake-embedding:query', input_type: 'document' }],
    ])('applies the prompt as POST /v1/embeddings does: %s', async (_what, fields) => {
      const res = await tokenize({ prompt: 'sort a list', ...fields });
      expect(res.status).toBe(200);
      expect(res.body.tokens).toEqual(await embeddedIds({ input: 'sort a list', ...fields }));
    });

    it('binds the prompts the names say (query prompt, alias instruction, explicit fields first)', async () => {
      const ids = async (body: Record<string, unknown>) =>
        (await tokenize({ prompt: 'x', ...body })).body.tokens;
      const plain = await ids({});
      const query = await ids({ input_type: 'query' });
      expect(query.length).toBeGreaterThan(plain.length);
      expect(await ids({ model: 'fake-embedding:query' })).toEqual(query);
      expect(await ids({ model: 'fake-embedding:document' })).toEqual(plain);
      expect(await ids({ model: 'code-search' })).toEqual(await ids({ instruction: 'Find code' }));
      expect(await ids({ model: 'code-search' })).not.toEqual(query);
      expect(await ids({ model: 'code-search', input_type: 'query' })).toEqual(query);
      expect(await ids({ model: 'code-search', input_type: 'document' })).toEqual(plain);
    });

    it('leaves the special tokens out with add_special_tokens false, and spells the tokens when asked', async () => {
      const res = await tokenize({
        prompt: 'hello world',
        add_special_tokens: false,
        return_token_strs: true,
      });
      expect(res.body).toEqual({
        count: 2,
        max_model_len: 16,
        tokens: [14990, 1879],
        token_strs: ['hello', 'Ġworld'],
      });
      const withEos = await tokenize({ prompt: 'hello world', return_token_strs: true });
      expect(withEos.body.token_strs).toEqual(['hello', 'Ġworld', '<|endoftext|>']);
    });

    it('returns every id of a long text, and cuts it as the embeddings endpoint does with truncate', async () => {
      const full = await tokenize({ prompt: LONG });
      expect(full.status).toBe(200);
      expect(full.body.count).toBeGreaterThan(16);
      expect(full.body.truncated).toBeUndefined();
      const cut = await tokenize({ prompt: LONG, truncate: true });
      expect(cut.body).toMatchObject({ count: 16, truncated: true });
      expect(cut.body.tokens).toEqual([...full.body.tokens.slice(0, 15), EOS]);
      expect(cut.body.tokens).toEqual(await embeddedIds({ input: LONG, truncate: true }));
      const plainCut = await tokenize({ prompt: LONG, truncate: true, add_special_tokens: false });
      expect(plainCut.body.tokens).toEqual(full.body.tokens.slice(0, 16));
    });

    it('refuses more tokens than MAX_REQUEST_TOKENS with 413', async () => {
      const res = await tokenize({ prompt: `${LONG} ${LONG} ${LONG}` });
      expect(res.status).toBe(413);
      expect(res.body.error.message).toMatch(/tokens, more than the maximum of 40 per request/);
    });

    it.each<[string, unknown, number, string | null, string]>([
      ['no prompt', {}, 400, 'prompt', 'prompt is required'],
      ['a non-string prompt', { prompt: 7 }, 400, 'prompt', 'prompt must be a string'],
      ['query for an embedding model', { query: 'q', document: 'd' }, 400, 'query', 'is an embedding model'],
      ['document alone', { prompt: 'x', document: 'd' }, 400, 'document', 'is an embedding model'],
      ['an unknown model', { prompt: 'x', model: 'gpt-4' }, 404, 'model', "'gpt-4' does not exist"],
      ['an unknown suffix', { prompt: 'x', model: 'fake-embedding:passage' }, 404, 'model', 'does not exist'],
      [
        'instruction for documents',
        { prompt: 'x', instruction: 'i', input_type: 'document' },
        400,
        'instruction',
        'queries only',
      ],
      [
        'a bad add_special_tokens',
        { prompt: 'x', add_special_tokens: 'yes' },
        400,
        'add_special_tokens',
        'boolean',
      ],
      [
        'disagreeing prompt fields',
        { prompt: 'x', input_type: 'query', prompt_name: 'document' },
        400,
        'prompt_name',
        'disagree',
      ],
    ])('refuses %s', async (_what, body, status, param, message) => {
      const res = await tokenize(body);
      expect(res.status).toBe(status);
      expect(res.body.error.message).toContain(message);
      if (status === 400) expect(res.body.error.param).toBe(param);
    });

    it('names the task mismatch in the error code', async () => {
      const res = await tokenize({ query: 'q', document: 'd' });
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code: 'model_task_mismatch' });
    });

    it('needs the key', async () => {
      expect((await call('/tokenize', { prompt: 'x' }, null)).status).toBe(401);
      expect((await call('/detokenize', { tokens: [1] }, null)).status).toBe(401);
    });
  });

  describe('POST /detokenize', () => {
    it('gives back the text of the ids, special tokens included', async () => {
      const { tokens } = (await tokenize({ prompt: 'hello world <think>' })).body;
      const res = await call('/detokenize', { model: 'text-embedding-3-small', tokens });
      expect(res).toEqual({ status: 200, body: { prompt: 'hello world <think><|endoftext|>' } });
      expect((await call('/detokenize', { tokens: [] })).body).toEqual({ prompt: '' });
    });

    it.each<[string, unknown, number, string]>([
      [
        'an id past the vocabulary',
        { tokens: [14990, 151669] },
        400,
        'tokens[1] is token id 151669, outside the tokenizer',
      ],
      ['a negative id', { tokens: [1, -1] }, 400, 'non-negative'],
      ['a fractional id', { tokens: [1.5] }, 400, 'integer'],
      ['no array', { tokens: 'hello' }, 400, 'array'],
      ['no tokens', {}, 400, 'array'],
      ['more ids than MAX_REQUEST_TOKENS', { tokens: Array(41).fill(1) }, 413, 'more than the maximum of 40'],
      ['an unknown model', { tokens: [1], model: 'gpt-4' }, 404, 'does not exist'],
    ])('refuses %s', async (_what, body, status, message) => {
      const res = await call('/detokenize', body);
      expect(res.status).toBe(status);
      expect(res.body.error.message).toContain(message);
      if (status === 400) expect(res.body.error.param).toBe('tokens');
    });
  });

  describe('GET /info', () => {
    it("describes the model, its limits and layout in text-embeddings-inference's shape", async () => {
      const res = await call('/info');
      expect(res.status).toBe(200);
      const dirName = modelDir.split('/').pop();
      expect(res.body).toEqual({
        model_id: 'fake-embedding',
        model_sha: null,
        model_dtype: 'float32',
        model_type: { embedding: { pooling: 'last_token' } },
        max_input_length: 16,
        max_batch_tokens: 8192,
        max_batch_requests: 256,
        max_client_batch_size: 2048,
        auto_truncate: false,
        version: buildInfo().version,
        sha: buildInfo().commit,
        models: [
          {
            id: 'fake-embedding',
            task: 'embed',
            dtype: 'float32',
            device: 'cpu',
            tensor_parallel_size: 1,
            replicas: 1,
            max_input_length: 16,
            aliases: [
              'text-embedding-3-small',
              dirName,
              `Qwen/${dirName}`,
              'fake-embedding:query',
              'fake-embedding:document',
              'code-search',
            ],
          },
        ],
      });
    });

    it('is described in the OpenAPI document with the other routes, behind the key', async () => {
      const spec = (await call('/docs/json')).body;
      for (const [path, method] of [
        ['/tokenize', 'post'],
        ['/detokenize', 'post'],
        ['/info', 'get'],
      ]) {
        expect(spec.paths[path][method].security).toEqual([{ bearer: [] }]);
      }
      expect(spec.components.schemas.TokenizeRequestDto.properties.model.example).toBe('fake-embedding');
      expect(spec.components.schemas.InfoDto.properties.models).toBeDefined();
      expect(spec.components.schemas.ModelDto.properties.prompt).toBeDefined();
    });

    it('needs the key, as GET /v1/models does', async () => {
      expect((await call('/info', undefined, null)).status).toBe(401);
      expect((await call('/info', undefined, 'wrong')).status).toBe(401);
    });
  });
});
