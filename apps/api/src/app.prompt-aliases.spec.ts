import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizerOnlyModel } from '@app/checkpoint';
import { FakeEngine } from '@app/engine/testing';
import { createApp, RunningApp } from './app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

describe('prompt aliases', () => {
  let modelDir: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  const call = async (path: string, body?: unknown) => {
    const res = await fetch(`${sut.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${UNIT_TEST_KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const embed = (body: Record<string, unknown>) => call('/v1/embeddings', body);
  /** The ids the engine was handed for a one-input request. */
  const embedded = async (body: Record<string, unknown>) => {
    const before = engine.batches.length;
    const res = await embed(body);
    expect(res.status).toBe(200);
    return { model: res.body.model as string, ids: Array.from(engine.batches[before].tokenIds) };
  };

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'Qwen3-Embedding-fake-'));
    writeTokenizerOnlyModel(modelDir, { query: 'Instruct: find\nQuery:', document: '' });
    engine = new FakeEngine({ info: { hiddenSize: 64 } });
    sut = await startWithFakeEngine(engine, modelDir, {
      SERVED_MODEL_NAME: 'fake-embedding,text-embedding-3-small',
      PROMPT_ALIASES: JSON.stringify({
        'code-search': 'Find code',
        'Org/faq@v1': 'Answer a FAQ',
        thinking: 'Find <think> blocks',
      }),
    });
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it('embeds `<name>:query` as input_type query, and echoes the name as sent', async () => {
    const query = await embedded({ input: 'sort a list', input_type: 'query' });
    expect(query.model).toBe('fake-embedding');
    for (const model of ['fake-embedding:query', 'FAKE-embedding:QUERY', 'text-embedding-3-small:query']) {
      expect(await embedded({ input: 'sort a list', model })).toEqual({ model, ids: query.ids });
    }
  });

  it('embeds `<name>:document` as a document', async () => {
    const plain = await embedded({ input: 'sort a list', input_type: 'document' });
    expect(await embedded({ input: 'sort a list', model: 'fake-embedding:document' })).toEqual({
      model: 'fake-embedding:document',
      ids: plain.ids,
    });
  });

  it('embeds a PROMPT_ALIASES name as a query with its instruction', async () => {
    const instructed = await embedded({ input: 'sort a list', instruction: 'Find code' });
    expect(await embedded({ input: 'sort a list', model: 'code-search' })).toEqual({
      model: 'code-search',
      ids: instructed.ids,
    });
    const faq = await embedded({ input: 'sort a list', model: 'org/FAQ@v1' });
    expect(faq).toEqual({
      model: 'org/FAQ@v1',
      ids: (await embedded({ input: 'sort a list', instruction: 'Answer a FAQ' })).ids,
    });
  });

  it('lets the request’s own input_type, prompt_name or instruction beat the alias', async () => {
    const ids = async (body: Record<string, unknown>) => (await embedded({ input: 'x', ...body })).ids;
    expect(await ids({ model: 'code-search', input_type: 'document' })).toEqual(await ids({}));
    expect(await ids({ model: 'code-search', prompt_name: 'query' })).toEqual(
      await ids({ input_type: 'query' }),
    );
    expect(await ids({ model: 'fake-embedding:document', instruction: 'Other' })).toEqual(
      await ids({ instruction: 'Other' }),
    );
  });

  it('keeps naming the served id for its own names', async () => {
    expect((await embedded({ input: 'x', model: 'text-embedding-3-small' })).model).toBe('fake-embedding');
    expect((await embedded({ input: 'x' })).model).toBe('fake-embedding');
  });

  it('refuses token ids under a name that binds a prompt, naming model', async () => {
    const res = await embed({ input: [1, 2], model: 'code-search' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: 'model' });
    expect(res.body.error.message).toContain("the model name 'code-search' binds a prompt");
    expect((await embed({ input: [1, 2], model: 'fake-embedding' })).status).toBe(200);
  });

  it("blames the model name when its alias's instruction holds a token the model cannot embed", async () => {
    const res = await embed({ input: 'x', model: 'thinking' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({
      param: 'model',
      message:
        "the instruction of the model name 'thinking' contains `<think>`, a special token this model cannot embed; remove it",
    });
    const own = await embed({ input: 'x', instruction: 'Find <think> blocks' });
    expect(own.body.error).toMatchObject({ param: 'instruction' });
    expect(own.body.error.message).toMatch(/^instruction contains `<think>`/);
  });

  it('lists the served model, then its prompt aliases with what they bind', async () => {
    const res = await call('/v1/models');
    const created = res.body.data[0].created;
    const entry = (id: string, prompt: Json) => ({
      id,
      object: 'model',
      created,
      owned_by: 'system',
      task: 'embed',
      parent: 'fake-embedding',
      prompt,
    });
    expect(res.body).toEqual({
      object: 'list',
      data: [
        { id: 'fake-embedding', object: 'model', created, owned_by: 'system', task: 'embed' },
        entry('fake-embedding:query', { input_type: 'query' }),
        entry('fake-embedding:document', { input_type: 'document' }),
        entry('code-search', { input_type: 'query', instruction: 'Find code' }),
        entry('Org/faq@v1', { input_type: 'query', instruction: 'Answer a FAQ' }),
        entry('thinking', { input_type: 'query', instruction: 'Find <think> blocks' }),
      ],
    });
  });

  it('describes one prompt alias by any of its names', async () => {
    expect((await call('/v1/models/CODE-search')).body).toMatchObject({
      id: 'code-search',
      prompt: { input_type: 'query', instruction: 'Find code' },
    });
    expect((await call('/v1/models/text-embedding-3-small:query')).body).toMatchObject({
      id: 'text-embedding-3-small:query',
      parent: 'fake-embedding',
      prompt: { input_type: 'query' },
    });
    expect((await call('/v1/models/text-embedding-3-small')).body).toMatchObject({ id: 'fake-embedding' });
    expect((await call('/v1/models/code-search:query')).status).toBe(404);
  });

  it('stops the boot on an alias that is the directory name', async () => {
    const dirName = modelDir.split('/').pop() as string;
    await expect(
      createApp({
        engine: new FakeEngine(),
        inheritProcessEnv: false,
        shutdownHooks: false,
        load: false,
        env: {
          API_KEY: UNIT_TEST_KEY,
          MODEL_PATH: modelDir,
          DEVICE: 'cpu',
          PORT: '0',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'silent',
          SERVED_MODEL_NAME: 'fake-embedding',
          PROMPT_ALIASES: JSON.stringify({ [`qwen/${dirName}`]: 'x' }),
        },
      }),
    ).rejects.toThrow(`PROMPT_ALIASES: "qwen/${dirName}" is already a name of the served model`);
  });
});
