import { Logger } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeEngine } from '@app/engine/testing';
import { BERT_TOKENIZER, writeFamilyCheckpoint } from '@app/embeddings/testing';
import { RunningApp } from './app.factory';
import { startWithFakeEngine, UNIT_TEST_KEY } from './testing/fake-engine-app';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const readJson = (res: Response): Promise<any> => res.json();

const MEAN_WITHOUT_PROMPT = {
  word_embedding_dimension: 64,
  pooling_mode_cls_token: false,
  pooling_mode_mean_tokens: true,
  pooling_mode_max_tokens: false,
  pooling_mode_mean_sqrt_len_tokens: false,
  pooling_mode_weightedmean_tokens: false,
  pooling_mode_lasttoken: false,
  include_prompt: false,
};

/**
 * A BERT checkpoint's sentence-transformers files through the whole app over a fake engine: what the
 * engine is loaded with, and the token ids, prompt lengths and limits each request reaches it with.
 */
describe('the app over a BERT checkpoint (mean pooling without the prompt, Dense 64 -> 32)', () => {
  let modelDir: string;
  let engine: FakeEngine;
  let sut: RunningApp;

  const post = (body: unknown) =>
    fetch(`${sut.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: `Bearer ${UNIT_TEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  /** The last batch the engine got, as plain arrays. */
  const lastBatch = () => {
    const batch = engine.batches[engine.batches.length - 1];
    return {
      tokenIds: Array.from(batch.tokenIds),
      cuSeqlens: Array.from(batch.cuSeqlens),
      dimensions: Array.from(batch.dimensions),
      promptLengths: Array.from(batch.promptLengths ?? []),
    };
  };

  beforeAll(async () => {
    modelDir = mkdtempSync(join(tmpdir(), 'bge-fake-'));
    writeFamilyCheckpoint(modelDir, {
      modelType: 'bert',
      tokenizer: BERT_TOKENIZER,
      modules: ['Transformer', 'Pooling', 'Dense', 'Normalize'],
      pooling: MEAN_WITHOUT_PROMPT,
      dense: {
        in_features: 64,
        out_features: 32,
        bias: true,
        activation_function: 'torch.nn.modules.activation.Tanh',
      },
      prompts: { query: 'query: ' },
      maxSeqLength: 8,
    });
    engine = new FakeEngine({
      info: {
        modelType: 'bert',
        hiddenSize: 64,
        outputDimension: 32,
        vocabSize: 14,
        maxPositionEmbeddings: 512,
      },
    });
    sut = await startWithFakeEngine(engine, modelDir);
  });

  afterAll(async () => {
    await sut.app.close();
    rmSync(modelDir, { recursive: true, force: true });
  });

  it("loads the engine with the checkpoint's pooling, normalisation and Dense directory", () => {
    expect(engine.loadOptions).toMatchObject({
      pooling: 'mean',
      normalize: true,
      denseLayers: [join(modelDir, '2_Dense')],
    });
  });

  it('warms up with the query prompt left out of the pooling', () => {
    expect(Array.from(engine.batches[0].promptLengths ?? [])).toEqual([3, 0]);
  });

  it("sends a query with [CLS] and [SEP] and its prompt's length, and rows of the Dense layer's size", async () => {
    const res = await post({ input: 'Hello world', input_type: 'query' });
    expect(res.status).toBe(200);
    const body = await readJson(res);
    expect(lastBatch()).toEqual({
      tokenIds: [2, 12, 13, 5, 6, 3],
      cuSeqlens: [0, 6],
      dimensions: [32],
      promptLengths: [3],
    });
    expect(body.data[0].embedding).toHaveLength(32);
    expect(body.usage).toEqual({ prompt_tokens: 6, total_tokens: 6 });
  });

  it('sends documents (no prompt) and token ids with no prompt length', async () => {
    expect((await post({ input: ['hello', 'the world'] })).status).toBe(200);
    expect(lastBatch()).toMatchObject({ tokenIds: [2, 5, 3, 2, 9, 6, 3], promptLengths: [0, 0] });
    expect((await post({ input: [5, 6] })).status).toBe(200);
    expect(lastBatch()).toMatchObject({ tokenIds: [2, 5, 6, 3], promptLengths: [0] });
  });

  it('checks dimensions against the output dimension, not the hidden size', async () => {
    const res = await post({ input: 'hello', dimensions: 64 });
    expect(res.status).toBe(400);
    expect((await readJson(res)).error.message).toBe(
      'dimensions must be between 32 and 32 for this model, got 64',
    );
  });

  it("limits each input to sentence_bert_config.json's max_seq_length: refused, or cut keeping [SEP]", async () => {
    const long = 'hello world hello world hello world hello';
    const refused = await post({ input: long });
    expect(refused.status).toBe(400);
    expect((await readJson(refused)).error).toMatchObject({
      code: 'context_length_exceeded',
      message: expect.stringContaining("more than this model's maximum of 8 per input"),
    });
    const cut = await post({ input: long, input_type: 'query', truncate: true });
    expect(cut.status).toBe(200);
    expect(lastBatch()).toMatchObject({ tokenIds: [2, 12, 13, 5, 6, 5, 6, 3], promptLengths: [3] });
    expect((await readJson(cut)).usage.prompt_tokens).toBe(8);
  });

  it('refuses a text holding a special token the model has no row for, naming the input', async () => {
    const res = await post({ input: ['hello', 'hello <extra> world'] });
    expect(res.status).toBe(400);
    expect((await readJson(res)).error).toMatchObject({
      param: 'input',
      message: 'input[1] contains `<extra>`, a special token this model cannot embed; remove it',
    });
  });
});

describe('the app over a checkpoint without sentence-transformers files', () => {
  let modelDir: string;
  beforeEach(() => (modelDir = mkdtempSync(join(tmpdir(), 'family-fake-'))));
  afterEach(() => rmSync(modelDir, { recursive: true, force: true }));

  it('uses the family default and says so in the boot log', async () => {
    writeFamilyCheckpoint(modelDir, { modelType: 'bert', tokenizer: BERT_TOKENIZER });
    const log = jest.spyOn(Logger.prototype, 'log');
    const engine = new FakeEngine({ info: { modelType: 'bert', vocabSize: 15 } });
    const sut = await startWithFakeEngine(engine, modelDir);
    try {
      expect(engine.loadOptions).toMatchObject({ pooling: 'cls', normalize: true, denseLayers: [] });
      expect(log).toHaveBeenCalledWith(
        'bert checkpoint, no modules.json: the bert default, cls pooling, normalized',
      );
      expect(Array.from(engine.batches[0].promptLengths ?? [])).toEqual([0, 0]);
    } finally {
      log.mockRestore();
      await sut.app.close();
    }
  });
});
