import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAppConfig, loggableConfig } from './app-config';

const base = { API_KEY: 'k', MODEL_PATH: '/models/Qwen3-Embedding-4B' };

describe(loadAppConfig.name, () => {
  it('applies the documented defaults', () => {
    const sut = loadAppConfig(base);
    expect(sut.server).toEqual({
      host: '0.0.0.0',
      port: 6008,
      bodyLimitBytes: 16 * 1024 * 1024,
      shutdownTimeoutMs: 30000,
      busyPoll: false,
      busyPollLingerMs: 20,
      healthDetails: 'basic',
    });
    expect(sut.model).toMatchObject({
      servedNames: ['Qwen3-Embedding-4B'],
      device: 'cuda',
      dtype: 'bfloat16',
      cpuThreads: 0,
      cudaGraphMaxTokens: 512,
      peerAllReduce: true,
      warmup: true,
      task: 'auto',
    });
    expect(sut.model.visibleCudaDevices).toBeUndefined();
    expect(sut.limits).toEqual({
      batchSize: 256,
      maxBatchTokens: 16384,
      maxInputTokens: 8192,
      maxRequestTokens: 300000,
      maxRerankDocuments: 1000,
      maxQueueTokens: 1000000,
      maxQueuedRequests: 1024,
      requestDeadlineMs: 30000,
      autoTruncate: false,
    });
    expect(sut.logLevel).toBe('info');
  });

  it('parses numbers, booleans, lists and sizes', () => {
    const sut = loadAppConfig({
      ...base,
      PORT: '7000',
      AUTO_TRUNCATE: 'TRUE',
      WARMUP: '0',
      API_KEYS: 'a, b,,c',
      BODY_LIMIT: '2mb',
      SERVED_MODEL_NAME: 'qwen3-embedding,text-embedding-3-small',
      LOG_LEVEL: 'DEBUG',
      CUDA_VISIBLE_DEVICES: '2,3,-1,4',
      TENSOR_PARALLEL_SIZE: '2',
      CUDA_GRAPH_MAX_TOKENS: '0',
      TP_PEER_ALL_REDUCE: 'false',
      BUSY_POLL: 'true',
      BUSY_POLL_LINGER_MS: '0',
      HEALTH_DETAILS: 'FULL',
      MODEL_TASK: 'Rerank',
      MAX_RERANK_DOCUMENTS: '64',
    });
    expect(sut.model.task).toBe('rerank');
    expect(sut.limits.maxRerankDocuments).toBe(64);
    expect(sut.server.healthDetails).toBe('full');
    expect(sut.server.port).toBe(7000);
    expect(sut.server.busyPoll).toBe(true);
    expect(sut.server.busyPollLingerMs).toBe(0);
    expect(sut.model.cudaGraphMaxTokens).toBe(0);
    expect(sut.model.peerAllReduce).toBe(false);
    expect(sut.limits.autoTruncate).toBe(true);
    expect(sut.model.warmup).toBe(false);
    expect(sut.auth.keys).toEqual(['k', 'a', 'b', 'c']);
    expect(sut.server.bodyLimitBytes).toBe(2 * 1024 * 1024);
    expect(sut.model.servedNames).toEqual(['qwen3-embedding', 'text-embedding-3-small']);
    expect(sut.logLevel).toBe('debug');
    expect(sut.model.visibleCudaDevices).toBe(2);
  });

  it('forces float32 on the CPU with a warning', () => {
    const sut = loadAppConfig({ ...base, DEVICE: 'cpu', DTYPE: 'bfloat16' });
    expect(sut.model.dtype).toBe('float32');
    expect(sut.limits.maxBatchTokens).toBe(8192);
    expect(sut.warnings).toEqual([expect.stringContaining('DTYPE=bfloat16')]);
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT: must be an integer'],
    [{ PORT: '70000' }, 'PORT: must be between 0 and 65535'],
    [{ DEVICE: 'tpu' }, 'DEVICE: must be one of cuda, cpu'],
    [{ DTYPE: 'int8' }, 'DTYPE: must be one of bfloat16, float16, float32'],
    [{ EMBEDDING_DIMENSION: '16' }, 'EMBEDDING_DIMENSION: must be at least 32'],
    [{ BATCH_SIZE: '1.5' }, 'BATCH_SIZE: must be an integer'],
    [{ TENSOR_PARALLEL_SIZE: '3' }, 'TENSOR_PARALLEL_SIZE: must be 1, 2, 4 or 8'],
    [{ AUTO_TRUNCATE: 'maybe' }, 'AUTO_TRUNCATE: must be true or false'],
    [{ BODY_LIMIT: 'lots' }, 'BODY_LIMIT: must be a size'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL: must be one of'],
    [{ HEALTH_DETAILS: 'all' }, 'HEALTH_DETAILS: must be basic or full'],
    [{ MODEL_TASK: 'classify' }, 'MODEL_TASK: must be one of auto, embed, rerank'],
    [{ MAX_RERANK_DOCUMENTS: '0' }, 'MAX_RERANK_DOCUMENTS: must be at least 1'],
    [{ NCCL_IB_DISABLE: 'yes' }, 'NCCL_IB_DISABLE: must be 0 or 1'],
    [{ CUDA_GRAPH_MAX_TOKENS: '9000' }, 'CUDA_GRAPH_MAX_TOKENS: must be at most 8192'],
    [{ REQUEST_DEADLINE_MS: '0' }, 'REQUEST_DEADLINE_MS: must be at least 1'],
    [
      { MAX_QUEUE_TOKENS: '10', MAX_REQUEST_TOKENS: '20' },
      'MAX_QUEUE_TOKENS: must be at least MAX_REQUEST_TOKENS',
    ],
    [{ CUDA_VISIBLE_DEVICES: '-1' }, 'CUDA_VISIBLE_DEVICES: hides every GPU'],
    [
      { CUDA_VISIBLE_DEVICES: '0,1,2', TENSOR_PARALLEL_SIZE: '2' },
      'TENSOR_PARALLEL_SIZE: must divide the 3 visible GPUs',
    ],
    [{ API_KEYS_FILE: '/nonexistent/keys' }, 'API_KEYS_FILE: cannot read /nonexistent/keys'],
    [{ BODY_LIMIT: '0' }, 'BODY_LIMIT: must be at least 1 byte'],
    [{ BODY_LIMIT: '0.4b' }, 'BODY_LIMIT: must be at least 1 byte'],
    [{ BODY_LIMIT: '0kb' }, 'BODY_LIMIT: must be at least 1 byte'],
    [{ BODY_LIMIT: '-1mb' }, 'BODY_LIMIT: must be a size'],
    [{ BODY_LIMIT: '1gb' }, 'BODY_LIMIT: must be at most'],
    [{ DEVICE: 'cpu', TENSOR_PARALLEL_SIZE: '2' }, 'TENSOR_PARALLEL_SIZE: must be 1 with DEVICE=cpu'],
    [{ DEVICE: 'cpu', TENSOR_PARALLEL_SIZE: '8' }, 'TENSOR_PARALLEL_SIZE: must be 1 with DEVICE=cpu'],
  ])('rejects %j', (env, message) => {
    expect(() => loadAppConfig({ ...base, ...env })).toThrow(`Invalid environment variables: ${message}`);
  });

  it('takes the boundary values of what it refuses', () => {
    expect(loadAppConfig({ ...base, BODY_LIMIT: '1' }).server.bodyLimitBytes).toBe(1);
    expect(loadAppConfig({ ...base, BODY_LIMIT: '511mb' }).server.bodyLimitBytes).toBe(511 * 1024 ** 2);
    expect(
      loadAppConfig({ ...base, DEVICE: 'cpu', TENSOR_PARALLEL_SIZE: '1' }).model.tensorParallelSize,
    ).toBe(1);
    // An input longer than a batch's token budget runs alone in its own batch: not a contradiction.
    expect(loadAppConfig({ ...base, MAX_BATCH_TOKENS: '1024', MAX_INPUT_TOKENS: '8192' }).warnings).toEqual(
      [],
    );
  });

  it('warns when the request limit is below the per-input limit', () => {
    const sut = loadAppConfig({ ...base, MAX_REQUEST_TOKENS: '1000', MAX_INPUT_TOKENS: '8192' });
    expect(sut.warnings).toEqual([
      expect.stringContaining('MAX_REQUEST_TOKENS (1000) is below MAX_INPUT_TOKENS (8192)'),
    ]);
  });

  it('lists every bad variable in one message', () => {
    expect(() => loadAppConfig({ ...base, PORT: 'x', DEVICE: 'y' })).toThrow(
      /^Invalid environment variables: PORT: .*; DEVICE: .*/,
    );
  });

  it('never echoes a value, so keys cannot leak through the boot error', () => {
    expect(() => loadAppConfig({ ...base, API_KEY: 'secret-value', PORT: 'secret-port' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('secret') }),
    );
  });

  it('refuses to boot without a key unless auth is disabled or in demo mode', () => {
    expect(() => loadAppConfig({ MODEL_PATH: '/m' })).toThrow('API_KEY: no API key configured');
    expect(loadAppConfig({ AUTH_DISABLED: 'true' }).auth.disabled).toBe(true);
    expect(loadAppConfig({}, { demo: true }).auth).toMatchObject({ demo: true, keys: [] });
  });

  it('treats empty values as unset', () => {
    const sut = loadAppConfig({ ...base, PORT: '', DEVICE: ' ', API_KEYS: '' });
    expect(sut.server.port).toBe(6008);
    expect(sut.model.device).toBe('cuda');
  });

  describe('MODEL_ID', () => {
    const hubEnv = { API_KEY: 'k', MODEL_ID: 'Qwen/Qwen3-Embedding-4B' };

    it('names a Hub model that is fetched into the huggingface_hub cache, served under its id', () => {
      const sut = loadAppConfig({ ...hubEnv, HF_HOME: '/data/hf' });
      expect(sut.model.hub).toEqual({
        modelId: 'Qwen/Qwen3-Embedding-4B',
        revision: 'main',
        token: undefined,
        endpoint: 'https://huggingface.co',
        cacheDir: '/data/hf/hub',
        offline: false,
      });
      expect(sut.model.path).toBe('/data/hf/hub/models--Qwen--Qwen3-Embedding-4B');
      expect(sut.model.servedNames).toEqual(['Qwen/Qwen3-Embedding-4B']);
    });

    it('honours HF_HUB_CACHE over HF_HOME, and the revision, token, endpoint and offline mode', () => {
      const sut = loadAppConfig({
        ...hubEnv,
        HF_HOME: '/data/hf',
        HF_HUB_CACHE: '/cache',
        MODEL_REVISION: 'v1.0',
        HF_TOKEN: 'hf_abc',
        HF_ENDPOINT: 'http://mirror.local:8080/',
        HF_HUB_OFFLINE: '1',
      });
      expect(sut.model.hub).toEqual({
        modelId: 'Qwen/Qwen3-Embedding-4B',
        revision: 'v1.0',
        token: 'hf_abc',
        endpoint: 'http://mirror.local:8080',
        cacheDir: '/cache',
        offline: true,
      });
    });

    it('reads the token huggingface-cli login saved ($HF_HOME/token or HF_TOKEN_PATH) when HF_TOKEN is unset', () => {
      const home = mkdtempSync(join(tmpdir(), 'hf-home-'));
      try {
        writeFileSync(join(home, 'token'), 'hf_saved\n');
        expect(loadAppConfig({ ...hubEnv, HF_HOME: home }).model.hub?.token).toBe('hf_saved');
        expect(loadAppConfig({ ...hubEnv, HF_HOME: home, HF_TOKEN: 'hf_env' }).model.hub?.token).toBe(
          'hf_env',
        );
        writeFileSync(join(home, 'other'), 'not-a-token');
        expect(() => loadAppConfig({ ...hubEnv, HF_HOME: home, HF_TOKEN_PATH: join(home, 'other') })).toThrow(
          /HF_TOKEN_PATH: .*other does not hold a Hugging Face access token/,
        );
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });

    it('refuses MODEL_ID with MODEL_PATH, a malformed id or token, and MODEL_REVISION alone', () => {
      expect(() => loadAppConfig({ ...hubEnv, MODEL_PATH: '/models/x' })).toThrow(
        /MODEL_ID: set either MODEL_PATH .* or MODEL_ID .*, not both/,
      );
      expect(() => loadAppConfig({ ...hubEnv, MODEL_ID: '../etc' })).toThrow(
        /MODEL_ID: must be a Hugging Face Hub model id/,
      );
      expect(() => loadAppConfig({ ...hubEnv, HF_TOKEN: 'secret' })).toThrow(
        /HF_TOKEN: must be a Hugging Face access token \(hf_\.\.\.\)/,
      );
      expect(() => loadAppConfig({ ...base, MODEL_REVISION: 'main' })).toThrow(
        /MODEL_REVISION: applies only with MODEL_ID/,
      );
      expect(() => loadAppConfig({ ...hubEnv, HF_ENDPOINT: 'mirror' })).toThrow(
        /HF_ENDPOINT: must be an http\(s\) URL/,
      );
    });
  });
});

describe('MODELS', () => {
  const models = (...entries: unknown[]) => ({ MODELS: JSON.stringify(entries) });
  const embedder = { MODEL_PATH: '/models/Qwen3-Embedding-0.6B', GPUS: '0' };
  const reranker = { MODEL_PATH: '/models/Qwen3-Reranker-0.6B', GPUS: '1', MODEL_TASK: 'rerank' };

  it('serves one model per entry, each on its own GPUs, TENSOR_PARALLEL_SIZE inherited or its own', () => {
    const sut = loadAppConfig({
      API_KEY: 'k',
      CUDA_VISIBLE_DEVICES: '4,5,6',
      // Three GPUs, groups of one: no model uses them all, so the top level's layout is never checked.
      TENSOR_PARALLEL_SIZE: '1',
      ...models(embedder, { ...reranker, GPUS: '1,2', TENSOR_PARALLEL_SIZE: 2 }),
    });
    expect(sut.models).toHaveLength(2);
    expect(sut.models[0].model).toMatchObject({
      path: '/models/Qwen3-Embedding-0.6B',
      servedNames: ['Qwen3-Embedding-0.6B'],
      task: 'auto',
      gpus: [0],
      tensorParallelSize: 1,
      visibleCudaDevices: 3,
    });
    expect(sut.models[1].model).toMatchObject({
      path: '/models/Qwen3-Reranker-0.6B',
      servedNames: ['Qwen3-Reranker-0.6B'],
      task: 'rerank',
      gpus: [1, 2],
      tensorParallelSize: 2,
    });
    expect(sut.model).toBe(sut.models[0].model);
    expect(sut.limits).toBe(sut.models[0].limits);
    expect(sut.warnings).toEqual([]);

    const second = sut.forModel(1);
    expect(second.model).toBe(sut.models[1].model);
    expect(second.limits).toBe(sut.models[1].limits);
    expect(second.server).toBe(sut.server);
    expect(second.models).toBe(sut.models);
    expect(() => sut.forModel(2)).toThrow(RangeError);
  });

  it('inherits the per-model variables, never the identity ones; values may be numbers, booleans or objects', () => {
    const sut = loadAppConfig({
      API_KEY: 'k',
      DEVICE: 'cpu',
      BATCH_SIZE: '64',
      AUTO_TRUNCATE: 'true',
      MAX_INPUT_TOKENS: '512',
      WARMUP: 'false',
      SERVED_MODEL_NAME: 'top',
      EMBEDDING_DIMENSION: '256',
      MODEL_TASK: 'embed',
      ...models(
        { MODEL_PATH: '/models/a' },
        {
          MODEL_PATH: '/models/b',
          SERVED_MODEL_NAME: 'b,b-alias',
          BATCH_SIZE: 8,
          AUTO_TRUNCATE: false,
          PROMPT_ALIASES: { 'b-search': 'Given a question, find passages' },
        },
      ),
    });
    const [a, b] = sut.models;
    expect(a.model).toMatchObject({ servedNames: ['a'], device: 'cpu', task: 'auto', warmup: false });
    expect(a.model.embeddingDimension).toBeUndefined();
    expect(a.limits).toMatchObject({ batchSize: 64, autoTruncate: true, maxInputTokens: 512 });
    expect(b.model).toMatchObject({
      servedNames: ['b', 'b-alias'],
      promptAliases: [{ name: 'b-search', instruction: 'Given a question, find passages' }],
      device: 'cpu',
    });
    expect(b.limits).toMatchObject({ batchSize: 8, autoTruncate: false, maxInputTokens: 512 });
    expect(a.model.gpus).toBeUndefined();
    expect(sut.warnings).toEqual([
      'SERVED_MODEL_NAME, MODEL_TASK, EMBEDDING_DIMENSION: not used with MODELS (each MODELS entry names its own model)',
    ]);
  });

  it('warns that the top-level MODEL_PATH is not used (the images set one), without checking it', () => {
    const sut = loadAppConfig({
      API_KEY: 'k',
      MODEL_PATH: '/models/Qwen3-Embedding-4B',
      MODEL_REVISION: 'main',
      ...models(embedder),
    });
    expect(sut.models.map(({ model }) => model.path)).toEqual(['/models/Qwen3-Embedding-0.6B']);
    expect(sut.warnings).toEqual([
      'MODEL_PATH, MODEL_REVISION: not used with MODELS (each MODELS entry names its own model)',
    ]);
  });

  it('names the entry in its warnings', () => {
    const sut = loadAppConfig({
      API_KEY: 'k',
      ...models({ ...embedder, GPUS: '', DEVICE: 'cpu', DTYPE: 'float16' }),
    });
    expect(sut.warnings).toEqual([
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): DTYPE=float16 is not supported on the CPU; using float32',
    ]);
  });

  it('is one model from the top level when unset or blank', () => {
    for (const value of [undefined, '', '  ']) {
      const sut = loadAppConfig({ ...base, MODELS: value });
      expect(sut.models).toEqual([{ model: sut.model, limits: sut.limits }]);
      expect(sut.model.path).toBe('/models/Qwen3-Embedding-4B');
    }
  });

  const shape = 'MODELS: must be a JSON array of model objects such as [';
  it.each([
    [{ MODELS: '[{"MODEL_PATH": "/a"}' }, `${shape}`, ', but it is not JSON'],
    [{ MODELS: '{"MODEL_PATH": "/a"}' }, `${shape}`, ', but it is not an array'],
    [{ MODELS: '[]' }, `${shape}`, ', but it is empty'],
    [models(embedder, '/models/b'), `${shape}`, ', but MODELS[1] is not an object'],
    [
      models(embedder, { ...reranker, PORT: 7000 }),
      'MODELS[1]: PORT is process-wide; set it outside MODELS',
      '',
    ],
    [
      models({ ...embedder, HF_TOKEN: 'hf_x' }),
      'MODELS[0]: HF_TOKEN is process-wide; set it outside MODELS',
      '',
    ],
    [
      models({ ...embedder, CUDA_VISIBLE_DEVICES: '0' }),
      'MODELS[0]: CUDA_VISIBLE_DEVICES is process-wide; set it outside MODELS',
      '',
    ],
    [models(embedder, { ...reranker, FOO: 1 }), 'MODELS[1]: FOO is not a model setting', ''],
    [models(embedder, { ...reranker, gpus: '1' }), 'MODELS[1]: gpus is not a model setting', ''],
    [models({ GPUS: '0' }), 'MODELS[0]: MODEL_PATH: every MODELS entry needs MODEL_PATH or MODEL_ID', ''],
    [
      models({ SERVED_MODEL_NAME: 'e', DTYPE: 'float16' }),
      'MODELS[0] (e): MODEL_PATH: every MODELS entry needs MODEL_PATH or MODEL_ID',
      '',
    ],
    [models({ MODEL_PATH: ['/a'] }), 'MODELS[0]: MODEL_PATH: must be a string, number or boolean', ''],
    [
      models({ ...embedder, PROMPT_ALIASES: ['q'] }),
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): PROMPT_ALIASES: must be a string, number or boolean, or a JSON object',
      '',
    ],
    [
      models(embedder, { ...reranker, BATCH_SIZE: 0 }),
      'MODELS[1] (/models/Qwen3-Reranker-0.6B): BATCH_SIZE: must be at least 1',
      '',
    ],
    [
      models({ ...embedder, SERVED_MODEL_NAME: 'embed', DEVICE: 'tpu' }),
      'MODELS[0] (embed): DEVICE: must be one of cuda, cpu',
      '',
    ],
    [
      models({
        ...embedder,
        MODEL_PATH: undefined,
        MODEL_ID: 'Qwen/Qwen3-Embedding-0.6B',
        TENSOR_PARALLEL_SIZE: 3,
      }),
      'MODELS[0] (Qwen/Qwen3-Embedding-0.6B): TENSOR_PARALLEL_SIZE: must be 1, 2, 4 or 8',
      '',
    ],
    [
      models({ ...embedder, MODEL_ID: 'Qwen/Qwen3-Embedding-0.6B' }),
      'MODELS[0] (Qwen/Qwen3-Embedding-0.6B): MODEL_ID: set either MODEL_PATH',
      '',
    ],
    [
      models({ ...embedder, GPUS: 'first' }),
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): GPUS: must be a comma-separated list of GPU ordinals such as 1 or 2,3',
      '',
    ],
    [
      models({ ...embedder, GPUS: '1, 2,1' }),
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): GPUS: names GPU 1 twice',
      '',
    ],
    [
      models({ ...embedder, GPUS: '0,1,2', TENSOR_PARALLEL_SIZE: 2 }),
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): TENSOR_PARALLEL_SIZE: must divide the 3 GPUs of GPUS (replicas = GPUs / TENSOR_PARALLEL_SIZE)',
      '',
    ],
    [
      { CUDA_VISIBLE_DEVICES: '2,3', ...models({ ...embedder, GPUS: '1,2' }) },
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): GPUS: GPU 2 is not visible (CUDA_VISIBLE_DEVICES leaves 2, numbered from 0)',
      '',
    ],
    [
      models({ ...embedder, DEVICE: 'cpu' }),
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): GPUS: applies only with DEVICE=cuda',
      '',
    ],
    [
      { DEVICE: 'cpu', ...models(embedder) },
      'MODELS[0] (/models/Qwen3-Embedding-0.6B): GPUS: applies only with DEVICE=cuda',
      '',
    ],
    [
      {
        MAX_QUEUE_TOKENS: '1000',
        MAX_REQUEST_TOKENS: '500',
        ...models(embedder, { ...reranker, MAX_REQUEST_TOKENS: 2000 }),
      },
      'MODELS[1] (/models/Qwen3-Reranker-0.6B): MAX_QUEUE_TOKENS: must be at least MAX_REQUEST_TOKENS',
      '',
    ],
    [
      { MODELS: '[{"MODEL_PATH": "/models/a", "GPUS": "0", "GPUS": "1"}]' },
      'MODELS[0] (/models/a): GPUS: is set twice in the entry',
      '',
    ],
    [
      { MODELS: '[{"MODEL_PATH": "/models/a", "PROMPT_ALIASES": {"q": "one", "Q": "two"}}]' },
      'MODELS[0] (/models/a): PROMPT_ALIASES: names "Q" twice',
      '',
    ],
    [
      models({ MODEL_PATH: '/a/Qwen3-Embedding-0.6B' }, { MODEL_PATH: '/b/Qwen3-Embedding-0.6B' }),
      `MODELS[1]: SERVED_MODEL_NAME "Qwen3-Embedding-0.6B" is already MODELS[0]'s`,
      '',
    ],
    [
      models({ ...embedder, SERVED_MODEL_NAME: 'Embed' }, { ...reranker, SERVED_MODEL_NAME: 'rerank,embed' }),
      `MODELS[1]: SERVED_MODEL_NAME "embed" is already MODELS[0]'s`,
      '',
    ],
    [
      models(
        { ...embedder, SERVED_MODEL_NAME: 'search' },
        { ...reranker, PROMPT_ALIASES: { Search: 'Find it' } },
      ),
      `MODELS[1]: PROMPT_ALIASES "Search" is already MODELS[0]'s`,
      '',
    ],
    [
      models(
        { ...embedder, PROMPT_ALIASES: '{"search": "Find it"}' },
        { ...reranker, SERVED_MODEL_NAME: 'search' },
      ),
      `MODELS[1]: SERVED_MODEL_NAME "search" is already MODELS[0]'s`,
      '',
    ],
    [
      models({ ...embedder, SERVED_MODEL_NAME: 'e' }, { ...reranker, SERVED_MODEL_NAME: 'E:query' }),
      `MODELS[1]: SERVED_MODEL_NAME "E:query" is already MODELS[0]'s`,
      '',
    ],
  ])('rejects %j', (env, message, detail) => {
    expect(() => loadAppConfig({ API_KEY: 'k', ...env })).toThrow(
      new RegExp(`^Invalid environment variables: (.*; )?${escape(message)}.*${escape(detail)}($|;)`),
    );
  });

  it('refuses GPUS outside an entry, with MODELS or without', () => {
    expect(() => loadAppConfig({ ...base, GPUS: '0' })).toThrow(
      'Invalid environment variables: GPUS: set it in a MODELS entry',
    );
    expect(() => loadAppConfig({ API_KEY: 'k', GPUS: '1', ...models(embedder) })).toThrow(
      'Invalid environment variables: GPUS: set it in a MODELS entry',
    );
  });

  it('names a bad inherited value once, at the top level', () => {
    expect(() => loadAppConfig({ API_KEY: 'k', BATCH_SIZE: '0', ...models(embedder, reranker) })).toThrow(
      /^Invalid environment variables: BATCH_SIZE: must be at least 1$/,
    );
  });

  it("lists every entry's problems in one message", () => {
    expect(() =>
      loadAppConfig({
        API_KEY: 'k',
        ...models({ ...embedder, DTYPE: 'int8' }, { ...reranker, WARMUP: 'maybe' }),
      }),
    ).toThrow(
      /^Invalid environment variables: MODELS\[0\] \(.*\): DTYPE: .*; MODELS\[1\] \(.*\): WARMUP: must be true or false$/,
    );
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe(loggableConfig.name, () => {
  it('keeps paths and limits, never keys nor the Hub token', () => {
    const config = loadAppConfig({
      API_KEY: 'sk-secret-one',
      API_KEYS: 'sk-secret-two',
      MODEL_ID: 'Qwen/Qwen3-Embedding-0.6B',
      HF_TOKEN: 'hf_secrettoken',
      HF_HUB_CACHE: '/tmp/hub',
    });
    const sut = JSON.stringify(loggableConfig(config));
    expect(sut).not.toMatch(/secret/);
    expect(loggableConfig(config)).toMatchObject({
      auth: { keys: 2 },
      model: { hub: { token: 'set', modelId: 'Qwen/Qwen3-Embedding-0.6B' } },
      server: { port: 6008 },
    });
  });

  it('logs every served model, each without the Hub token', () => {
    const config = loadAppConfig({
      API_KEY: 'k',
      HF_TOKEN: 'hf_secrettoken',
      HF_HUB_CACHE: '/tmp/hub',
      MODELS: JSON.stringify([
        { MODEL_ID: 'Qwen/Qwen3-Embedding-0.6B', GPUS: '0' },
        { MODEL_ID: 'Qwen/Qwen3-Reranker-0.6B', GPUS: '1' },
      ]),
    });
    expect(JSON.stringify(loggableConfig(config))).not.toMatch(/secret/);
    expect(loggableConfig(config)).toMatchObject({
      models: [
        {
          model: { hub: { token: 'set', modelId: 'Qwen/Qwen3-Embedding-0.6B' }, gpus: [0] },
          limits: { batchSize: 256 },
        },
        { model: { hub: { token: 'set', modelId: 'Qwen/Qwen3-Reranker-0.6B' }, gpus: [1] } },
      ],
    });
  });
});
