import { Transform } from 'class-transformer';
import { IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, Min } from 'class-validator';

type Raw = { value: unknown };

/** Environment strings: an empty value counts as unset (as compose files often write them). */
function blankToUndefined({ value }: Raw): unknown {
  return typeof value === 'string' && value.trim() === '' ? undefined : value;
}

function toInt({ value }: Raw): unknown {
  const v = blankToUndefined({ value });
  return typeof v === 'string' ? (/^[+-]?\d+$/.test(v.trim()) ? Number(v) : NaN) : v;
}

function toBool({ value }: Raw): unknown {
  const v = blankToUndefined({ value });
  if (typeof v !== 'string') {
    return v;
  }
  const lower = v.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lower)) return true;
  if (['false', '0', 'no', 'off'].includes(lower)) return false;
  return v;
}

function toLower({ value }: Raw): unknown {
  const v = blankToUndefined({ value });
  return typeof v === 'string' ? v.trim().toLowerCase() : v;
}

const INT = 'must be an integer';
const BOOL = 'must be true or false';

/**
 * Every environment variable the service reads, validated once at boot (see `.env.example`).
 * Pass-through variables (CUDA_VISIBLE_DEVICES, NCCL_*, OMP_NUM_THREADS) are read by CUDA, NCCL and
 * OpenMP themselves; they are checked here so a typo fails the boot instead of a GPU job.
 */
export class EnvDto {
  @IsOptional() @IsString() @Transform(blankToUndefined) API_KEY?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) API_KEYS?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) API_KEYS_FILE?: string;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) AUTH_DISABLED?: boolean;

  @IsOptional()
  @Min(0, { message: 'must be between 0 and 65535' })
  @Max(65535, { message: 'must be between 0 and 65535' })
  @IsInt({ message: INT })
  @Transform(toInt)
  PORT?: number;
  @IsOptional() @IsString() @Transform(blankToUndefined) HOST?: string;

  /** A JSON array of model entries (several models in one process); parsed in loadAppConfig. */
  @IsOptional() @IsString() @Transform(blankToUndefined) MODELS?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) MODEL_PATH?: string;
  @IsOptional()
  @Matches(/^(?!.*(--|\.\.))[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/, {
    message: 'must be a Hugging Face Hub model id such as Qwen/Qwen3-Embedding-4B',
  })
  @Transform(blankToUndefined)
  MODEL_ID?: string;
  @IsOptional()
  @Matches(/^[\w.\-/]+$/, { message: 'must be a branch, tag or commit hash' })
  @Transform(blankToUndefined)
  MODEL_REVISION?: string;
  /** The Hub library accepts only user access tokens (hf_...). */
  @IsOptional()
  @Matches(/^hf_\w+$/, { message: 'must be a Hugging Face access token (hf_...)' })
  @Transform(blankToUndefined)
  HF_TOKEN?: string;
  /** Where `huggingface-cli login` keeps the token (default $HF_HOME/token); read when HF_TOKEN is unset. */
  @IsOptional() @IsString() @Transform(blankToUndefined) HF_TOKEN_PATH?: string;
  @IsOptional()
  @Matches(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, { message: 'must be an http(s) URL' })
  @Transform(blankToUndefined)
  HF_ENDPOINT?: string;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) HF_HUB_OFFLINE?: boolean;
  /** Cache locations, in huggingface_hub's order: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub. */
  @IsOptional() @IsString() @Transform(blankToUndefined) HF_HUB_CACHE?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) HUGGINGFACE_HUB_CACHE?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) HF_HOME?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) XDG_CACHE_HOME?: string;
  @IsOptional()
  @Matches(/^[\w.\-/:@]+(,[\w.\-/:@]+)*$/, {
    message: 'must be a model name or a comma-separated list of names',
  })
  @Transform(blankToUndefined)
  SERVED_MODEL_NAME?: string;
  /** A JSON object of model names bound to a query instruction; parsed in loadAppConfig. */
  @IsOptional() @IsString() @Transform(blankToUndefined) PROMPT_ALIASES?: string;
  @IsOptional()
  @IsIn(['cuda', 'cpu'], { message: 'must be one of cuda, cpu' })
  @Transform(toLower)
  DEVICE?: string;
  @IsOptional()
  @IsIn(['bfloat16', 'float16', 'float32'], { message: 'must be one of bfloat16, float16, float32' })
  @Transform(toLower)
  DTYPE?: string;
  @IsOptional()
  @Min(32, { message: 'must be at least 32' })
  @IsInt({ message: INT })
  @Transform(toInt)
  EMBEDDING_DIMENSION?: number;
  @IsOptional()
  @IsIn(['auto', 'embed', 'rerank'], { message: 'must be one of auto, embed, rerank' })
  @Transform(toLower)
  MODEL_TASK?: string;
  @IsOptional()
  @Matches(/^[\w,\-:]*$/, { message: 'must be a comma-separated list of GPU ordinals or UUIDs' })
  CUDA_VISIBLE_DEVICES?: string;
  @IsOptional()
  @IsIn([1, 2, 4, 8], { message: 'must be 1, 2, 4 or 8 (it must divide the 8 key/value heads)' })
  @Transform(toInt)
  TENSOR_PARALLEL_SIZE?: number;

  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  BATCH_SIZE?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_BATCH_TOKENS?: number;
  @IsOptional()
  @Min(2, { message: 'must be at least 2' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_INPUT_TOKENS?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_REQUEST_TOKENS?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_RERANK_DOCUMENTS?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_QUEUE_TOKENS?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  MAX_QUEUED_REQUESTS?: number;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  REQUEST_DEADLINE_MS?: number;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) AUTO_TRUNCATE?: boolean;
  @IsOptional()
  @Matches(/^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/i, { message: 'must be a size such as 16mb, 512kb or 1048576' })
  @Transform(blankToUndefined)
  BODY_LIMIT?: string;

  @IsOptional()
  @IsIn(['basic', 'full'], { message: 'must be basic or full' })
  @Transform(toLower)
  HEALTH_DETAILS?: string;

  @IsOptional()
  @IsIn(['VERSION', 'WARN', 'INFO', 'TRACE'], { message: 'must be one of VERSION, WARN, INFO, TRACE' })
  @Transform(({ value }: Raw) =>
    typeof value === 'string' ? value.trim().toUpperCase() || undefined : value,
  )
  NCCL_DEBUG?: string;
  @IsOptional()
  @IsIn(['0', '1'], { message: 'must be 0 or 1' })
  @Transform(blankToUndefined)
  NCCL_IB_DISABLE?: string;
  @IsOptional()
  @Min(1, { message: 'must be at least 1' })
  @IsInt({ message: INT })
  @Transform(toInt)
  OMP_NUM_THREADS?: number;
  @IsOptional()
  @Min(0, { message: 'must be at least 0' })
  @Max(8192, { message: 'must be at most 8192' })
  @IsInt({ message: INT })
  @Transform(toInt)
  CUDA_GRAPH_MAX_TOKENS?: number;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) TP_PEER_ALL_REDUCE?: boolean;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) BUSY_POLL?: boolean;
  @IsOptional()
  @Min(0, { message: 'must be at least 0' })
  @Max(60_000, { message: 'must be at most 60000' })
  @IsInt({ message: INT })
  @Transform(toInt)
  BUSY_POLL_LINGER_MS?: number;

  @IsOptional()
  @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    message: 'must be one of fatal, error, warn, info, debug, trace, silent',
  })
  @Transform(({ value }: Raw) => {
    const v = toLower({ value });
    return v === 'warning' ? 'warn' : v;
  })
  LOG_LEVEL?: string;
  @IsOptional() @IsString() @Transform(blankToUndefined) NATIVE_ADDON_PATH?: string;
  @IsOptional() @IsBoolean({ message: BOOL }) @Transform(toBool) WARMUP?: boolean;
  @IsOptional()
  @Min(0, { message: 'must be at least 0' })
  @IsInt({ message: INT })
  @Transform(toInt)
  SHUTDOWN_TIMEOUT_MS?: number;
}

/**
 * One MODELS entry laid over the environment it inherits from: EnvDto's rules, plus GPUS, which only
 * an entry may set (so it is no top-level variable and has no flag).
 */
export class ModelEntryDto extends EnvDto {
  @IsOptional()
  @Matches(/^\s*\d+\s*(,\s*\d+\s*)*$/, {
    message: 'must be a comma-separated list of GPU ordinals such as 1 or 2,3',
  })
  @Transform(blankToUndefined)
  GPUS?: string;
}
