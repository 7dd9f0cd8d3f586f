import { accessSync, constants } from 'node:fs';
import { basename, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { EnvDto } from './env.dto';

export type Device = 'cuda' | 'cpu';
export type Dtype = 'bfloat16' | 'float16' | 'float32';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ServerConfig {
  host: string;
  port: number;
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  /** BUSY_POLL: the event loop spins instead of sleeping while requests are in the service. */
  busyPoll: boolean;
  /** BUSY_POLL_LINGER_MS: with busyPoll, how long it keeps spinning after the last request left. */
  busyPollLingerMs: number;
}

export interface AuthConfig {
  /** AUTH_DISABLED=true: every route is public. */
  disabled: boolean;
  /** Plain keys from API_KEY and API_KEYS (never logged). */
  keys: string[];
  /** API_KEYS_FILE: one key (or `sha256:<hex>`) per line. */
  keysFile?: string;
  /** Started with --demo: a random key is generated when none is configured. */
  demo: boolean;
}

export interface ModelConfig {
  path: string;
  /** The served model id first, then extra names accepted as aliases. */
  servedNames: string[];
  device: Device;
  dtype: Dtype;
  /** Default output size (EMBEDDING_DIMENSION); capped at the model's hidden size. Unset: hidden size. */
  embeddingDimension?: number;
  /** Unset: every visible GPU in one tensor-parallel group (1 on the CPU). */
  tensorParallelSize?: number;
  /** GPUs left visible by CUDA_VISIBLE_DEVICES; unset when the variable is unset (all GPUs). */
  visibleCudaDevices?: number;
  /** OMP_NUM_THREADS, 0 = libtorch default. */
  cpuThreads: number;
  /** CUDA_GRAPH_MAX_TOKENS: CUDA graphs for batches up to this many tokens; 0 = off. */
  cudaGraphMaxTokens: number;
  /** TP_PEER_ALL_REDUCE: small tensor-parallel all-reduces over peer access instead of NCCL. */
  peerAllReduce: boolean;
  nativeAddonPath?: string;
  warmup: boolean;
}

export interface LimitsConfig {
  /** BATCH_SIZE: most sequences in one forward batch. */
  batchSize: number;
  maxBatchTokens: number;
  /** Per input; lowered to the model's max_position_embeddings at load. */
  maxInputTokens: number;
  maxRequestTokens: number;
  maxQueueTokens: number;
  maxQueuedRequests: number;
  /** REQUEST_DEADLINE_MS: a request's deadline from arrival unless it sends X-Request-Deadline-Ms. */
  requestDeadlineMs: number;
  autoTruncate: boolean;
}

export interface AppConfigData {
  server: ServerConfig;
  auth: AuthConfig;
  model: ModelConfig;
  limits: LimitsConfig;
  logLevel: LogLevel;
  /** Non-fatal remarks on the configuration, logged at boot. */
  warnings: string[];
}

/** The typed, validated configuration. Inject it; never read process.env elsewhere. */
export class AppConfig implements AppConfigData {
  readonly server: ServerConfig;
  readonly auth: AuthConfig;
  readonly model: ModelConfig;
  readonly limits: LimitsConfig;
  readonly logLevel: LogLevel;
  readonly warnings: string[];

  constructor(data: AppConfigData) {
    this.server = data.server;
    this.auth = data.auth;
    this.model = data.model;
    this.limits = data.limits;
    this.logLevel = data.logLevel;
    this.warnings = data.warnings;
  }
}

export interface LoadConfigOptions {
  demo?: boolean;
}

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

function parseBytes(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(value.trim());
  return match ? Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]) : NaN;
}

/** CUDA enumerates CUDA_VISIBLE_DEVICES up to the first invalid entry (e.g. -1). */
function countVisibleCudaDevices(value: string | undefined): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  let count = 0;
  for (const entry of value.split(',').map((part) => part.trim())) {
    if (entry === '' || entry.startsWith('-')) break;
    count += 1;
  }
  return count;
}

function splitList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/**
 * Validates the environment and builds the typed configuration. Throws
 * `Invalid environment variables: VAR: reason; ...`, naming variables but never their values.
 */
export function loadAppConfig(
  env: Record<string, string | undefined>,
  options: LoadConfigOptions = {},
): AppConfig {
  const dto = plainToInstance(EnvDto, env, { excludeExtraneousValues: false });
  const problems: string[] = [];
  for (const error of validateSync(dto, { stopAtFirstError: true })) {
    problems.push(`${error.property}: ${Object.values(error.constraints ?? {})[0] ?? 'is invalid'}`);
  }
  const warnings: string[] = [];
  const demo = options.demo ?? false;

  const device: Device = (dto.DEVICE as Device | undefined) ?? 'cuda';
  let dtype: Dtype = (dto.DTYPE as Dtype | undefined) ?? (device === 'cpu' ? 'float32' : 'bfloat16');
  if (device === 'cpu' && dtype !== 'float32') {
    warnings.push(`DTYPE=${dtype} is not supported on the CPU; using float32`);
    dtype = 'float32';
  }

  const keys = [...splitList(dto.API_KEY), ...splitList(dto.API_KEYS)];
  const authDisabled = dto.AUTH_DISABLED ?? false;
  if (dto.API_KEYS_FILE) {
    try {
      accessSync(dto.API_KEYS_FILE, constants.R_OK);
    } catch {
      problems.push(`API_KEYS_FILE: cannot read ${dto.API_KEYS_FILE}`);
    }
  }
  if (!authDisabled && !demo && keys.length === 0 && !dto.API_KEYS_FILE) {
    problems.push(
      'API_KEY: no API key configured; set API_KEY, API_KEYS or API_KEYS_FILE, or AUTH_DISABLED=true to serve without authentication',
    );
  }

  const visibleCudaDevices = countVisibleCudaDevices(dto.CUDA_VISIBLE_DEVICES);
  if (device === 'cuda' && visibleCudaDevices === 0) {
    problems.push('CUDA_VISIBLE_DEVICES: hides every GPU, but DEVICE=cuda');
  }
  if (
    device === 'cuda' &&
    visibleCudaDevices &&
    dto.TENSOR_PARALLEL_SIZE &&
    visibleCudaDevices % dto.TENSOR_PARALLEL_SIZE !== 0
  ) {
    problems.push(
      `TENSOR_PARALLEL_SIZE: must divide the ${visibleCudaDevices} visible GPUs (replicas = GPUs / TENSOR_PARALLEL_SIZE)`,
    );
  }

  const bodyLimitBytes = parseBytes(dto.BODY_LIMIT ?? '16mb');
  const maxRequestTokens = dto.MAX_REQUEST_TOKENS ?? 300_000;
  const maxQueueTokens = dto.MAX_QUEUE_TOKENS ?? Math.max(1_000_000, maxRequestTokens);
  if (maxQueueTokens < maxRequestTokens) {
    problems.push(
      'MAX_QUEUE_TOKENS: must be at least MAX_REQUEST_TOKENS, or the largest request could never queue',
    );
  }

  if (problems.length > 0) {
    throw new Error(`Invalid environment variables: ${problems.join('; ')}`);
  }

  const modelPath = dto.MODEL_PATH ?? './models/Qwen3-Embedding-4B';
  const servedNames = splitList(dto.SERVED_MODEL_NAME);
  return new AppConfig({
    server: {
      host: dto.HOST ?? '0.0.0.0',
      port: dto.PORT ?? 6008,
      bodyLimitBytes,
      shutdownTimeoutMs: dto.SHUTDOWN_TIMEOUT_MS ?? 30_000,
      busyPoll: dto.BUSY_POLL ?? false,
      busyPollLingerMs: dto.BUSY_POLL_LINGER_MS ?? 20,
    },
    auth: { disabled: authDisabled, keys, keysFile: dto.API_KEYS_FILE, demo },
    model: {
      path: modelPath,
      servedNames: servedNames.length > 0 ? servedNames : [basename(resolve(modelPath))],
      device,
      dtype,
      embeddingDimension: dto.EMBEDDING_DIMENSION,
      tensorParallelSize: dto.TENSOR_PARALLEL_SIZE,
      visibleCudaDevices,
      cpuThreads: dto.OMP_NUM_THREADS ?? 0,
      cudaGraphMaxTokens: dto.CUDA_GRAPH_MAX_TOKENS ?? 512,
      peerAllReduce: dto.TP_PEER_ALL_REDUCE ?? true,
      nativeAddonPath: dto.NATIVE_ADDON_PATH,
      warmup: dto.WARMUP ?? true,
    },
    limits: {
      batchSize: dto.BATCH_SIZE ?? 256,
      maxBatchTokens: dto.MAX_BATCH_TOKENS ?? (device === 'cuda' ? 16_384 : 8_192),
      maxInputTokens: dto.MAX_INPUT_TOKENS ?? 8_192,
      maxRequestTokens,
      maxQueueTokens,
      maxQueuedRequests: dto.MAX_QUEUED_REQUESTS ?? 1_024,
      // Half the 60 s that nginx's proxy_read_timeout and cloud load balancers default to: an
      // answer later than that would reach nobody, and a refused client still has time to retry.
      requestDeadlineMs: dto.REQUEST_DEADLINE_MS ?? 30_000,
      autoTruncate: dto.AUTO_TRUNCATE ?? false,
    },
    logLevel: (dto.LOG_LEVEL as LogLevel | undefined) ?? 'info',
    warnings,
  });
}
