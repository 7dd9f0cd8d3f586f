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
});
