import { loadAppConfig } from './app-config';

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
    });
    expect(sut.model).toMatchObject({
      servedNames: ['Qwen3-Embedding-4B'],
      device: 'cuda',
      dtype: 'bfloat16',
      cpuThreads: 0,
      cudaGraphMaxTokens: 512,
      peerAllReduce: true,
      warmup: true,
    });
    expect(sut.model.visibleCudaDevices).toBeUndefined();
    expect(sut.limits).toEqual({
      batchSize: 256,
      maxBatchTokens: 16384,
      maxInputTokens: 8192,
      maxRequestTokens: 300000,
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
    });
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
  ])('rejects %j', (env, message) => {
    expect(() => loadAppConfig({ ...base, ...env })).toThrow(`Invalid environment variables: ${message}`);
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
});
