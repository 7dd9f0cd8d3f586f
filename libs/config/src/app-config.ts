import { constants as bufferConstants } from 'node:buffer';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { EnvDto } from './env.dto';
import { parsePromptAliases, type PromptAlias } from './prompt-aliases';

export type Device = 'cuda' | 'cpu';
export type Dtype = 'bfloat16' | 'float16' | 'float32';
export type HealthDetails = 'basic' | 'full';
/** MODEL_TASK: what the checkpoint serves; auto reads it from the checkpoint (detectModelTask). */
export type ModelTaskSetting = 'auto' | 'embed' | 'rerank';
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
  /** HEALTH_DETAILS: `full` adds the model path, devices (memory) and failure reasons to /health. */
  healthDetails: HealthDetails;
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
  /** Where --demo keeps that key (mode 0600) and finds it again on the next run. */
  demoKeyFile: string;
}

/** MODEL_ID: a checkpoint fetched from the Hugging Face Hub (or a mirror) into its cache before loading. */
export interface HubModelConfig {
  /** MODEL_ID, e.g. Qwen/Qwen3-Embedding-4B. */
  modelId: string;
  /** MODEL_REVISION: a branch, tag or commit hash (default main). */
  revision: string;
  /** HF_TOKEN (never logged). */
  token?: string;
  /** HF_ENDPOINT (default https://huggingface.co). */
  endpoint: string;
  /** The huggingface_hub cache directory (HF_HUB_CACHE, HF_HOME/hub, ...). */
  cacheDir: string;
  /** HF_HUB_OFFLINE: use the cache only, never the network. */
  offline: boolean;
}

export interface ModelConfig {
  /** MODEL_PATH; with MODEL_ID, the repository's folder in the cache (the snapshot is chosen at load). */
  path: string;
  /** Set when MODEL_ID names the checkpoint. */
  hub?: HubModelConfig;
  /** The served model id first, then extra names accepted as aliases. */
  servedNames: string[];
  /** PROMPT_ALIASES: names that embed their texts as queries with their own instruction. */
  promptAliases: PromptAlias[];
  device: Device;
  dtype: Dtype;
  /** MODEL_TASK: embed or rerank, or auto (from the checkpoint's config.json and files). */
  task: ModelTaskSetting;
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
  /** MAX_RERANK_DOCUMENTS: most documents in one rerank request. */
  maxRerankDocuments: number;
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

/** Relative to the working directory (the repository for `make serve`; git-ignored). */
export const DEMO_KEY_FILE = '.demo/api-key';

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
/** body-parser decodes the body into one string, and V8's strings are at most this long. */
const MAX_BODY_LIMIT_BYTES = bufferConstants.MAX_STRING_LENGTH;

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

  if (device === 'cpu' && dto.TENSOR_PARALLEL_SIZE !== undefined && dto.TENSOR_PARALLEL_SIZE > 1) {
    // The CPU engine's ranks are threads of one process over one memory: a simulation that tests the
    // sharded code (they build the engine directly), never a way to serve faster.
    problems.push('TENSOR_PARALLEL_SIZE: must be 1 with DEVICE=cpu (tensor parallel needs GPUs)');
  }

  const bodyLimitBytes = parseBytes(dto.BODY_LIMIT ?? '16mb');
  if (dto.BODY_LIMIT !== undefined && bodyLimitBytes < 1) {
    problems.push('BODY_LIMIT: must be at least 1 byte');
  } else if (bodyLimitBytes > MAX_BODY_LIMIT_BYTES) {
    problems.push(
      `BODY_LIMIT: must be at most ${MAX_BODY_LIMIT_BYTES} bytes (about 511mb: the longest string Node can parse)`,
    );
  }
  const maxRequestTokens = dto.MAX_REQUEST_TOKENS ?? 300_000;
  const maxQueueTokens = dto.MAX_QUEUE_TOKENS ?? Math.max(1_000_000, maxRequestTokens);
  const maxInputTokens = dto.MAX_INPUT_TOKENS ?? 8_192;
  if (maxRequestTokens < maxInputTokens) {
    warnings.push(
      `MAX_REQUEST_TOKENS (${maxRequestTokens}) is below MAX_INPUT_TOKENS (${maxInputTokens}): a request is refused before one input reaches its own limit`,
    );
  }
  if (maxQueueTokens < maxRequestTokens) {
    problems.push(
      'MAX_QUEUE_TOKENS: must be at least MAX_REQUEST_TOKENS, or the largest request could never queue',
    );
  }

  if (dto.MODEL_ID && dto.MODEL_PATH) {
    problems.push(
      'MODEL_ID: set either MODEL_PATH (a checkpoint directory) or MODEL_ID (a Hub model id, downloaded into the cache), not both',
    );
  }
  let token = dto.HF_TOKEN;
  if (dto.MODEL_ID && !token) {
    const path = dto.HF_TOKEN_PATH ?? join(huggingFaceHome(dto), 'token');
    try {
      token = readFileSync(path, 'utf8').trim() || undefined;
    } catch {
      // no saved token: public models need none
    }
    if (token && !/^hf_\w+$/.test(token)) {
      problems.push(`HF_TOKEN_PATH: ${path} does not hold a Hugging Face access token (hf_...)`);
    }
  }
  if (dto.MODEL_REVISION && !dto.MODEL_ID) {
    problems.push('MODEL_REVISION: applies only with MODEL_ID');
  }

  const hub = dto.MODEL_ID ? hubModelConfig(dto, dto.MODEL_ID, token) : undefined;
  const modelPath = hub
    ? hubRepositoryFolder(hub.cacheDir, hub.modelId)
    : (dto.MODEL_PATH ?? './models/Qwen3-Embedding-4B');
  const listedNames = splitList(dto.SERVED_MODEL_NAME);
  const servedNames =
    listedNames.length > 0 ? listedNames : [hub ? hub.modelId : basename(resolve(modelPath))];
  const prompts = parsePromptAliases(dto.PROMPT_ALIASES, servedNames);
  if (prompts.problem !== undefined) problems.push(`PROMPT_ALIASES: ${prompts.problem}`);

  if (problems.length > 0) {
    throw new Error(`Invalid environment variables: ${problems.join('; ')}`);
  }

  return new AppConfig({
    server: {
      host: dto.HOST ?? '0.0.0.0',
      port: dto.PORT ?? 6008,
      bodyLimitBytes,
      shutdownTimeoutMs: dto.SHUTDOWN_TIMEOUT_MS ?? 30_000,
      busyPoll: dto.BUSY_POLL ?? false,
      busyPollLingerMs: dto.BUSY_POLL_LINGER_MS ?? 20,
      healthDetails: (dto.HEALTH_DETAILS as HealthDetails | undefined) ?? 'basic',
    },
    auth: {
      disabled: authDisabled,
      keys,
      keysFile: dto.API_KEYS_FILE,
      demo,
      demoKeyFile: resolve(DEMO_KEY_FILE),
    },
    model: {
      path: modelPath,
      hub,
      servedNames,
      promptAliases: prompts.aliases,
      device,
      dtype,
      task: (dto.MODEL_TASK as ModelTaskSetting | undefined) ?? 'auto',
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
      maxInputTokens,
      maxRequestTokens,
      maxRerankDocuments: dto.MAX_RERANK_DOCUMENTS ?? 1_000,
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

/** huggingface_hub's cache directory, resolved as it resolves it. */
/** huggingface_hub's home: HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
function huggingFaceHome(env: Pick<EnvDto, 'HF_HOME' | 'XDG_CACHE_HOME'>): string {
  return env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

export function hubCacheDir(
  env: Pick<EnvDto, 'HF_HUB_CACHE' | 'HUGGINGFACE_HUB_CACHE' | 'HF_HOME' | 'XDG_CACHE_HOME'>,
): string {
  return resolve(env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? join(huggingFaceHome(env), 'hub'));
}

/** `models--Qwen--Qwen3-Embedding-4B` under the cache, as huggingface_hub lays it out. */
export function hubRepositoryFolder(cacheDir: string, modelId: string): string {
  return join(cacheDir, ['models', ...modelId.split('/')].join('--'));
}

function hubModelConfig(dto: EnvDto, modelId: string, token: string | undefined): HubModelConfig {
  return {
    modelId,
    revision: dto.MODEL_REVISION ?? 'main',
    token,
    endpoint: (dto.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    cacheDir: hubCacheDir(dto),
    offline: dto.HF_HUB_OFFLINE ?? false,
  };
}

/**
 * The service configuration for a command outside the server (`admin`): this process's environment
 * with `overrides` laid over it (an `undefined` override unsets the variable), validated as at boot.
 */
export function loadProcessConfig(
  overrides: Record<string, string | undefined>,
  options: LoadConfigOptions = {},
): AppConfig {
  return loadAppConfig({ ...process.env, ...overrides }, options);
}

/**
 * The Hub settings for a download outside the service (`admin model download`): this process's
 * environment (HF_TOKEN, HF_HOME, HF_ENDPOINT, ...) under the given overrides, validated as at boot.
 */
export function loadHubConfig(overrides: {
  modelId: string;
  revision?: string;
  cacheDir?: string;
}): HubModelConfig {
  const env: Record<string, string | undefined> = {
    AUTH_DISABLED: 'true',
    // A download needs no GPU: GPU settings of the environment are not its business.
    DEVICE: 'cpu',
    MODEL_PATH: undefined,
    MODEL_ID: overrides.modelId,
  };
  if (overrides.revision) env.MODEL_REVISION = overrides.revision;
  if (overrides.cacheDir) env.HF_HUB_CACHE = overrides.cacheDir;
  const hub = loadProcessConfig(env).model.hub;
  if (!hub) throw new Error('MODEL_ID: missing');
  return hub;
}

/**
 * The effective configuration as logged at boot: everything but secrets (keys are counted, the Hub
 * token only said to be present).
 */
export function loggableConfig(config: AppConfigData): Record<string, unknown> {
  const { keys, ...auth } = config.auth;
  const hub = config.model.hub && { ...config.model.hub, token: config.model.hub.token ? 'set' : undefined };
  return {
    server: config.server,
    auth: { ...auth, keys: keys.length },
    model: { ...config.model, hub },
    limits: config.limits,
    logLevel: config.logLevel,
  };
}
