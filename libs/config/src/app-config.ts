import { constants as bufferConstants } from 'node:buffer';
import { accessSync, constants, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { parseTree } from 'jsonc-parser';
import { configVariables } from './config-flags';
import { EnvDto, ModelEntryDto } from './env.dto';
import { parsePromptAliases, PROMPT_SUFFIXES, type PromptAlias } from './prompt-aliases';

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
  /** GPUS: ordinals among the visible GPUs; unset: all. */
  gpus?: number[];
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

/** One served model: a MODELS entry, or the top-level variables without MODELS. */
export interface ServedModelConfig {
  model: ModelConfig;
  limits: LimitsConfig;
}

export interface AppConfigData {
  server: ServerConfig;
  auth: AuthConfig;
  /** models[0]'s (what the admin commands and single-model code read). */
  model: ModelConfig;
  limits: LimitsConfig;
  /**
   * Every served model, in MODELS order; [ {model, limits} ] without MODELS. Optional here so data
   * built by hand (tests) needs none: AppConfig then serves `model` alone.
   */
  models?: ServedModelConfig[];
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
  readonly models: ServedModelConfig[];
  readonly logLevel: LogLevel;
  readonly warnings: string[];

  constructor(data: AppConfigData) {
    this.server = data.server;
    this.auth = data.auth;
    this.model = data.model;
    this.limits = data.limits;
    this.models = data.models ?? [{ model: data.model, limits: data.limits }];
    this.logLevel = data.logLevel;
    this.warnings = data.warnings;
  }

  /** This config with `model` and `limits` of one served model (what each model's services read). */
  forModel(index: number): AppConfig {
    const served = this.models[index];
    if (served === undefined) {
      throw new RangeError(`no served model ${index}: there are ${this.models.length}`);
    }
    return new AppConfig({
      server: this.server,
      auth: this.auth,
      model: served.model,
      limits: served.limits,
      models: this.models,
      logLevel: this.logLevel,
      warnings: this.warnings,
    });
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

/** MODELS entry keys that name and shape one model; never inherited from the top level. */
export const MODEL_IDENTITY_VARIABLES = [
  'MODEL_PATH',
  'MODEL_ID',
  'MODEL_REVISION',
  'SERVED_MODEL_NAME',
  'PROMPT_ALIASES',
  'MODEL_TASK',
  'EMBEDDING_DIMENSION',
] as const satisfies readonly (keyof EnvDto)[];

/** MODELS entry keys that default to the top-level variable of the same name. */
export const PER_MODEL_VARIABLES = [
  'DEVICE',
  'DTYPE',
  'TENSOR_PARALLEL_SIZE',
  'CUDA_GRAPH_MAX_TOKENS',
  'TP_PEER_ALL_REDUCE',
  'WARMUP',
  'BATCH_SIZE',
  'MAX_BATCH_TOKENS',
  'MAX_INPUT_TOKENS',
  'MAX_REQUEST_TOKENS',
  'MAX_RERANK_DOCUMENTS',
  'MAX_QUEUE_TOKENS',
  'MAX_QUEUED_REQUESTS',
  'REQUEST_DEADLINE_MS',
  'AUTO_TRUNCATE',
] as const satisfies readonly (keyof EnvDto)[];

/** Every key a MODELS entry may hold: GPUS only there. */
const ENTRY_VARIABLES: ReadonlySet<string> = new Set<string>([
  ...MODEL_IDENTITY_VARIABLES,
  ...PER_MODEL_VARIABLES,
  'GPUS' satisfies keyof ModelEntryDto,
]);

const DEFAULT_MODEL_PATH = './models/Qwen3-Embedding-4B';

type Env = Record<string, string | undefined>;

/** EnvDto's (or ModelEntryDto's) rules over `env`: the typed values and `[VAR, reason]` per bad one. */
function validateEnv<T extends EnvDto>(
  type: new () => T,
  env: Env,
): { dto: T; invalid: [variable: string, reason: string][] } {
  const dto = plainToInstance(type, env, { excludeExtraneousValues: false });
  const invalid = validateSync(dto, { stopAtFirstError: true }).map((error): [string, string] => [
    error.property,
    Object.values(error.constraints ?? {})[0] ?? 'is invalid',
  ]);
  return { dto, invalid };
}

/**
 * Validates the environment and builds the typed configuration. Throws
 * `Invalid environment variables: VAR: reason; ...`, naming variables but never their values.
 * With MODELS, one served model per entry (`MODELS[i] (name): VAR: reason` for an entry's problems).
 */
export function loadAppConfig(env: Env, options: LoadConfigOptions = {}): AppConfig {
  const entries = parseModelEntries(env.MODELS);
  // With MODELS the top level names no model: its identity variables are neither used nor checked.
  const processEnv = entries === undefined ? env : omit(env, MODEL_IDENTITY_VARIABLES);
  const { dto, invalid } = validateEnv(EnvDto, processEnv);
  const problems = invalid.map(([variable, reason]) => `${variable}: ${reason}`);
  const warnings: string[] = [];
  const demo = options.demo ?? false;

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

  const bodyLimitBytes = parseBytes(dto.BODY_LIMIT ?? '16mb');
  if (dto.BODY_LIMIT !== undefined && bodyLimitBytes < 1) {
    problems.push('BODY_LIMIT: must be at least 1 byte');
  } else if (bodyLimitBytes > MAX_BODY_LIMIT_BYTES) {
    problems.push(
      `BODY_LIMIT: must be at most ${MAX_BODY_LIMIT_BYTES} bytes (about 511mb: the longest string Node can parse)`,
    );
  }

  if (isSet(env.GPUS)) problems.push('GPUS: set it in a MODELS entry');

  let models: ServedModelConfig[];
  if (entries === undefined) {
    const token = hubToken(dto, dto.MODEL_ID !== undefined, problems);
    const section = servedModel(dto, token, DEFAULT_MODEL_PATH);
    problems.push(...section.problems);
    warnings.push(...section.warnings);
    models = [section.served];
  } else if ('problem' in entries) {
    problems.push(`MODELS: ${entries.problem}`);
    models = [];
  } else {
    const unused = MODEL_IDENTITY_VARIABLES.filter((variable) => isSet(env[variable]));
    if (unused.length > 0) {
      warnings.push(`${unused.join(', ')}: not used with MODELS (each MODELS entry names its own model)`);
    }
    const needsToken = entries.entries.some((entry) => isSet(entry.values.MODEL_ID));
    const token = hubToken(dto, needsToken, problems);
    models = servedModelEntries(entries.entries, omit(processEnv, ['MODELS']), token, problems, warnings);
  }

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
    model: models[0].model,
    limits: models[0].limits,
    models,
    logLevel: (dto.LOG_LEVEL as LogLevel | undefined) ?? 'info',
    warnings,
  });
}

/** HF_TOKEN, else (when a model comes from the Hub) the token `huggingface-cli login` saved. */
function hubToken(dto: EnvDto, needed: boolean, problems: string[]): string | undefined {
  if (dto.HF_TOKEN || !needed) return dto.HF_TOKEN;
  const path = dto.HF_TOKEN_PATH ?? join(huggingFaceHome(dto), 'token');
  let token: string | undefined;
  try {
    token = readFileSync(path, 'utf8').trim() || undefined;
  } catch {
    // no saved token: public models need none
  }
  if (token && !/^hf_\w+$/.test(token)) {
    problems.push(`HF_TOKEN_PATH: ${path} does not hold a Hugging Face access token (hf_...)`);
  }
  return token;
}

interface ServedModelSection {
  served: ServedModelConfig;
  /** `VAR: reason`, as for the environment. */
  problems: string[];
  warnings: string[];
}

/**
 * The model and limits sections of one served model from its variables: the environment's without
 * MODELS, a MODELS entry laid over the environment's with it. `defaultPath`: MODEL_PATH when neither
 * it nor MODEL_ID is set (none for an entry, which must name its model).
 */
function servedModel(
  dto: ModelEntryDto,
  token: string | undefined,
  defaultPath: string | undefined,
): ServedModelSection {
  const problems: string[] = [];
  const warnings: string[] = [];

  const device: Device = (dto.DEVICE as Device | undefined) ?? 'cuda';
  let dtype: Dtype = (dto.DTYPE as Dtype | undefined) ?? (device === 'cpu' ? 'float32' : 'bfloat16');
  if (device === 'cpu' && dtype !== 'float32') {
    warnings.push(`DTYPE=${dtype} is not supported on the CPU; using float32`);
    dtype = 'float32';
  }

  const visibleCudaDevices = countVisibleCudaDevices(dto.CUDA_VISIBLE_DEVICES);
  const gpus = parseGpus(dto.GPUS);
  if (device === 'cuda' && visibleCudaDevices === 0) {
    problems.push('CUDA_VISIBLE_DEVICES: hides every GPU, but DEVICE=cuda');
  }
  if (gpus !== undefined && device === 'cpu') {
    problems.push('GPUS: applies only with DEVICE=cuda');
  } else if (gpus !== undefined) {
    const repeated = gpus.find((gpu, index) => gpus.indexOf(gpu) !== index);
    if (repeated !== undefined) problems.push(`GPUS: names GPU ${repeated} twice`);
    const hidden = visibleCudaDevices ? gpus.find((gpu) => gpu >= visibleCudaDevices) : undefined;
    if (hidden !== undefined) {
      problems.push(
        `GPUS: GPU ${hidden} is not visible (CUDA_VISIBLE_DEVICES leaves ${visibleCudaDevices}, numbered from 0)`,
      );
    }
    if (dto.TENSOR_PARALLEL_SIZE && gpus.length % dto.TENSOR_PARALLEL_SIZE !== 0) {
      problems.push(
        `TENSOR_PARALLEL_SIZE: must divide the ${gpus.length} GPUs of GPUS (replicas = GPUs / TENSOR_PARALLEL_SIZE)`,
      );
    }
  } else if (
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
  if (!dto.MODEL_ID && !dto.MODEL_PATH && defaultPath === undefined) {
    problems.push('MODEL_PATH: every MODELS entry needs MODEL_PATH or MODEL_ID');
  }
  if (dto.MODEL_REVISION && !dto.MODEL_ID) {
    problems.push('MODEL_REVISION: applies only with MODEL_ID');
  }

  const hub = dto.MODEL_ID ? hubModelConfig(dto, dto.MODEL_ID, token) : undefined;
  const modelPath = hub
    ? hubRepositoryFolder(hub.cacheDir, hub.modelId)
    : (dto.MODEL_PATH ?? defaultPath ?? '');
  const listedNames = splitList(dto.SERVED_MODEL_NAME);
  const servedNames =
    listedNames.length > 0 ? listedNames : [hub ? hub.modelId : basename(resolve(modelPath))];
  const prompts = parsePromptAliases(dto.PROMPT_ALIASES, servedNames);
  if (prompts.problem !== undefined) problems.push(`PROMPT_ALIASES: ${prompts.problem}`);

  const model: ModelConfig = {
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
  };
  if (gpus !== undefined) model.gpus = gpus;
  const limits: LimitsConfig = {
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
  };
  return { served: { model, limits }, problems, warnings };
}

/** GPUS as ordinals; undefined when unset or malformed (the validator has named it). */
function parseGpus(value: string | undefined): number[] | undefined {
  const gpus = value?.split(',').map((part) => Number(part.trim()));
  return gpus?.every((gpu) => Number.isInteger(gpu) && gpu >= 0) ? gpus : undefined;
}

/** One MODELS entry as written: its keys, each value as the environment would hold it. */
interface ModelEntry {
  values: Record<string, unknown>;
  /** PROMPT_ALIASES given as an object: its JSON text, so repeated aliases are still seen. */
  promptAliasesText?: string;
  /** A key the entry sets twice (JSON.parse would keep the last silently). */
  repeatedKey?: string;
}

const MODELS_EXAMPLE =
  '[{"MODEL_ID": "Qwen/Qwen3-Embedding-0.6B", "GPUS": "0"}, {"MODEL_ID": "Qwen/Qwen3-Reranker-0.6B", "GPUS": "1"}]';

/** MODELS: undefined when unset or blank (one model from the top level), else its entries or why not. */
function parseModelEntries(
  value: string | undefined,
): { entries: ModelEntry[] } | { problem: string } | undefined {
  if (!isSet(value)) return undefined;
  const shape = `must be a JSON array of model objects such as ${MODELS_EXAMPLE}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { problem: `${shape}, but it is not JSON` };
  }
  if (!Array.isArray(parsed)) return { problem: `${shape}, but it is not an array` };
  if (parsed.length === 0) return { problem: `${shape}, but it is empty` };
  const notObject = parsed.findIndex((entry) => !isPlainObject(entry));
  if (notObject >= 0) return { problem: `${shape}, but MODELS[${notObject}] is not an object` };
  // The syntax tree, for what JSON.parse hides: repeated keys, and an object's own text.
  const nodes = parseTree(value)?.children ?? [];
  const entries = parsed.map((values: Record<string, unknown>, index): ModelEntry => {
    const entry: ModelEntry = { values };
    const seen = new Set<string>();
    for (const property of nodes[index]?.children ?? []) {
      const [key, node] = property.children ?? [];
      if (key === undefined || node === undefined) continue;
      if (seen.has(key.value as string)) entry.repeatedKey ??= key.value as string;
      seen.add(key.value as string);
      if (key.value === 'PROMPT_ALIASES' && node.type === 'object') {
        entry.promptAliasesText = value.slice(node.offset, node.offset + node.length);
      }
    }
    return entry;
  });
  return { entries };
}

/**
 * One served model per MODELS entry: each entry's keys over `inherited` (the top level without its
 * identity variables), validated as the environment is. Problems and warnings name the entry.
 */
function servedModelEntries(
  entries: ModelEntry[],
  inherited: Env,
  token: string | undefined,
  problems: string[],
  warnings: string[],
): ServedModelConfig[] {
  const processWide = new Set(configVariables().filter((variable) => !ENTRY_VARIABLES.has(variable)));
  /** Lower-cased names an earlier entry answers to, and that entry's index. */
  const owners = new Map<string, number>();
  return entries.map((entry, index) => {
    const label = entryLabel(index, entry.values);
    const entryProblems: string[] = [];
    if (entry.repeatedKey !== undefined) {
      entryProblems.push(`${label}: ${entry.repeatedKey}: is set twice in the entry`);
    }
    const own: Env = {};
    for (const [key, value] of Object.entries(entry.values)) {
      if (!ENTRY_VARIABLES.has(key)) {
        entryProblems.push(
          processWide.has(key)
            ? `MODELS[${index}]: ${key} is process-wide; set it outside MODELS`
            : `MODELS[${index}]: ${key} is not a model setting`,
        );
        continue;
      }
      const text =
        key === 'PROMPT_ALIASES' && entry.promptAliasesText !== undefined
          ? entry.promptAliasesText
          : environmentValue(value);
      if (text === undefined) {
        entryProblems.push(
          `${label}: ${key}: must be a string, number or boolean${key === 'PROMPT_ALIASES' ? ', or a JSON object' : ''}`,
        );
      } else {
        own[key] = text;
      }
    }
    const { dto, invalid } = validateEnv(ModelEntryDto, { ...inherited, ...own });
    // An inherited value is the top level's, already named there without the entry.
    for (const [variable, reason] of invalid) {
      if (variable in own) entryProblems.push(`${label}: ${variable}: ${reason}`);
    }
    const section = servedModel(dto, token, undefined);
    entryProblems.push(...section.problems.map((problem) => `${label}: ${problem}`));
    warnings.push(...section.warnings.map((warning) => `${label}: ${warning}`));
    if (entryProblems.length === 0) {
      const clash = claimNames(owners, index, section.served.model);
      if (clash !== undefined) entryProblems.push(clash);
    }
    problems.push(...entryProblems);
    return section.served;
  });
}

/**
 * Records the names entry `index` answers to (served names with their :query and :document forms,
 * prompt aliases); returns the problem when one is already an earlier entry's.
 */
function claimNames(owners: Map<string, number>, index: number, model: ModelConfig): string | undefined {
  const names: [variable: string, name: string][] = [
    ...model.servedNames.flatMap((name) =>
      [name, ...PROMPT_SUFFIXES.map((suffix) => name + suffix)].map((form): [string, string] => [
        'SERVED_MODEL_NAME',
        form,
      ]),
    ),
    ...model.promptAliases.map((alias): [string, string] => ['PROMPT_ALIASES', alias.name]),
  ];
  for (const [variable, name] of names) {
    const owner = owners.get(name.toLowerCase());
    if (owner !== undefined && owner !== index) {
      return `MODELS[${index}]: ${variable} "${name}" is already MODELS[${owner}]'s`;
    }
  }
  for (const [, name] of names) if (!owners.has(name.toLowerCase())) owners.set(name.toLowerCase(), index);
  return undefined;
}

/** `MODELS[1] (qwen3-reranker)`: the entry's first served name, else its MODEL_ID or MODEL_PATH. */
function entryLabel(index: number, values: Record<string, unknown>): string {
  const name = [values.SERVED_MODEL_NAME, values.MODEL_ID, values.MODEL_PATH]
    .filter((value): value is string => isSet(value))
    .map((value) => value.split(',')[0].trim())
    .find((value) => value.length > 0);
  return name === undefined ? `MODELS[${index}]` : `MODELS[${index}] (${name})`;
}

/** An entry's value as the environment would hold it; undefined for what no variable can hold. */
function environmentValue(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSet(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '';
}

function omit(env: Env, variables: readonly string[]): Env {
  const rest = { ...env };
  for (const variable of variables) delete rest[variable];
  return rest;
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
    // The download names its model: MODELS would make the top-level MODEL_ID unused.
    MODELS: undefined,
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
  const models = config.models ?? [{ model: config.model, limits: config.limits }];
  return {
    server: config.server,
    auth: { ...auth, keys: keys.length },
    model: loggableModel(config.model),
    limits: config.limits,
    models: models.map(({ model, limits }) => ({ model: loggableModel(model), limits })),
    logLevel: config.logLevel,
  };
}

function loggableModel(model: ModelConfig): Record<string, unknown> {
  const hub = model.hub && { ...model.hub, token: model.hub.token ? 'set' : undefined };
  return { ...model, hub };
}
