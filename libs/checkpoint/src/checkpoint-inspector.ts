import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { architectureFromConfigJson } from './checkpoint-files';
import { SafetensorsDtype } from './dtype';
import { EOS_TOKEN, EOS_TOKEN_ID } from './embedding-tokenizer';
import {
  expectedTemplateTokens,
  familyArchitectureFromConfigJson,
  familyOfModelType,
  templateEnds,
} from './family-inspection';
import {
  asModelArchitecture,
  isEncoder,
  MODEL_FAMILIES,
  ModelArchitecture,
  modelArchitectureProblems,
  ModelFamily,
  modelTensorSpecs,
} from './model-architecture';
import { detectModelTask, ModelTaskDetection } from './model-task';
import { qwen3ArchitectureProblems, Qwen3ParameterCount } from './qwen3-architecture';
import { formatBytes, formatCount } from './quantities';
import {
  elementCount,
  layoutProblems,
  readSafetensorsHeader,
  SafetensorsHeader,
  TensorEntry,
} from './safetensors';
import { SHARD_INDEX_FILE_NAME, SINGLE_FILE_NAME } from './shard-plan';
import {
  readTorchBin,
  TORCH_BIN_INDEX_FILE_NAME,
  TORCH_BIN_SINGLE_FILE_NAME,
  TorchBinFormatError,
} from './torch-bin';
import { parseStrictJson } from './strict-json';

export interface CheckpointIssue {
  severity: 'error' | 'warning';
  /** The file (relative to the checkpoint directory) the problem is in. */
  file: string;
  tensor?: string;
  message: string;
}

export interface CheckpointSummary {
  dir: string;
  modelType?: string;
  /** The family model_type names (undefined: one the service does not run). */
  family?: ModelFamily;
  architectures?: string[];
  architecture?: ModelArchitecture;
  configDtype?: string;
  parameters?: Qwen3ParameterCount;
  /** Parameters actually stored (all tensors in the files). */
  storedParameters: number;
  dtypes: SafetensorsDtype[];
  /** Which weight files were read: safetensors, else pytorch_model.bin (torch.save zip format). */
  weightFormat?: 'safetensors' | 'bin';
  /** '' (Qwen3-Embedding style) or 'model.'. */
  tensorPrefix?: string;
  shards: Array<{ file: string; tensors: number; bytes: number }>;
  weightBytes: number;
  diskBytes: number;
  /** special: the first/last special tokens its post-processor adds (the other families). */
  tokenizer?: { file: string; appendsEos: boolean; maxId?: number; special?: string[] };
  prompts?: Record<string, string>;
  pooling?: string;
  /** The sentence-transformers modules after the Transformer, in modules.json order (types' last part). */
  modules?: string[];
  generator?: Record<string, string>;
  /** What the server would serve it as (MODEL_TASK=auto): embeddings, or a reranker and its head. */
  task?: ModelTaskDetection;
}

export interface CheckpointReport {
  ok: boolean;
  issues: CheckpointIssue[];
  summary: CheckpointSummary;
}

const SUPPORTED_DTYPES: readonly SafetensorsDtype[] = ['BF16', 'F16', 'F32'];
/** Tensors a checkpoint may carry that the embedding model ignores. */
const IGNORED_TENSOR =
  /^(model\.|bert\.|roberta\.)?(lm_head\.weight|layers\.\d+\.self_attn\.rotary_emb\.inv_freq|rotary_emb\.inv_freq|embeddings\.position_ids)$/;
/** Tensors an encoder checkpoint may lack: BertModel's pooler, which embedding models never use. */
const OPTIONAL_TENSOR = /^pooler\./;

/**
 * Validates a Hugging Face checkpoint directory of any family the service runs (MODEL_FAMILIES)
 * without loading weights: config fields, every
 * expected tensor present with the right shape and a supported dtype, safetensors headers against file
 * sizes (truncation), the shard index against the shards, tokenizer and sentence-transformers files.
 * Every problem names its file and, where it applies, its tensor.
 */
export async function inspectCheckpoint(directory: string): Promise<CheckpointReport> {
  const dir = resolve(directory);
  const issues: CheckpointIssue[] = [];
  const error = (file: string, message: string, tensor?: string): void => {
    issues.push({ severity: 'error', file, tensor, message });
  };
  const warning = (file: string, message: string, tensor?: string): void => {
    issues.push({ severity: 'warning', file, tensor, message });
  };
  const summary: CheckpointSummary = {
    dir,
    storedParameters: 0,
    dtypes: [],
    shards: [],
    weightBytes: 0,
    diskBytes: 0,
  };
  const done = (): CheckpointReport => ({
    ok: !issues.some((issue) => issue.severity === 'error'),
    issues,
    summary,
  });

  if (!existsSync(dir) || !(await stat(dir)).isDirectory()) {
    error(dir, 'not a directory');
    return done();
  }
  summary.diskBytes = await directoryBytes(dir);

  // config.json
  const config = await readJson(dir, 'config.json', error, true);
  if (config && typeof config === 'object' && !Array.isArray(config)) {
    const fields = config as Record<string, unknown>;
    summary.modelType = typeof fields.model_type === 'string' ? fields.model_type : undefined;
    summary.architectures = Array.isArray(fields.architectures)
      ? fields.architectures.map(String)
      : undefined;
    summary.configDtype =
      typeof fields.torch_dtype === 'string'
        ? fields.torch_dtype
        : typeof fields.dtype === 'string'
          ? fields.dtype
          : undefined;
    const family = familyOfModelType(fields.model_type);
    summary.family = family;
    if (family === undefined) {
      error(
        'config.json',
        `model_type is ${JSON.stringify(fields.model_type)}, expected one of ${MODEL_FAMILIES.map((f) => `"${f}"`).join(', ')}`,
      );
    } else if (family === 'qwen3') {
      inspectQwen3Config(fields, summary, error);
    } else {
      const { architecture, problems } = familyArchitectureFromConfigJson(family, fields);
      for (const problem of problems) error('config.json', problem);
      if (problems.length === 0 && architecture) {
        const structural = modelArchitectureProblems(architecture);
        for (const problem of structural) error('config.json', problem);
        if (structural.length === 0) setArchitecture(summary, architecture);
      }
    }
  } else if (config !== undefined) {
    error('config.json', 'is not a JSON object');
  }

  // A config.json that is not JSON is already reported above; detection has nothing to read then.
  summary.task = await detectModelTask(dir).catch(() => undefined);
  const reranker = summary.task?.task === 'rerank';

  // weights
  const tensors = await inspectWeights(dir, summary, error, warning);
  if (summary.architecture && tensors) {
    checkExpectedTensors(summary, tensors, error, warning);
    if (reranker) checkScoreHead(summary, tensors, error);
  }

  // tokenizer.json
  if (!existsSync(join(dir, 'tokenizer.json'))) {
    error('tokenizer.json', 'missing: the service tokenizes with it');
  } else {
    const tokenizer = await readJson(dir, 'tokenizer.json', error, true);
    if (tokenizer && typeof tokenizer === 'object') {
      const fields = tokenizer as Record<string, unknown>;
      const added = Array.isArray(fields.added_tokens)
        ? (fields.added_tokens as Array<Record<string, unknown>>)
        : [];
      if (summary.family === undefined || summary.family === 'qwen3') {
        const eos = added.find((token) => token.content === EOS_TOKEN);
        if (!eos) error('tokenizer.json', `no ${EOS_TOKEN} added token`);
        else if (eos.id !== EOS_TOKEN_ID)
          error('tokenizer.json', `${EOS_TOKEN} has id ${String(eos.id)}, expected ${EOS_TOKEN_ID}`);
        const appendsEos = postProcessorAppendsEos(fields.post_processor);
        summary.tokenizer = { file: 'tokenizer.json', appendsEos };
        // A reranker's prompt ends in its own template, never <|endoftext|>.
        if (!appendsEos && !reranker) {
          warning(
            'tokenizer.json',
            `post_processor does not append ${EOS_TOKEN}: this service appends it itself, but transformers and sentence-transformers will not`,
          );
        }
      } else {
        summary.tokenizer = { file: 'tokenizer.json', appendsEos: false };
        if (summary.architecture) {
          inspectFamilyTokenizer(summary, fields, added, await readTokenizerEos(dir), warning);
        }
      }
      const vocab = (fields.model as Record<string, unknown> | undefined)?.vocab;
      const vocabIds = vocab && typeof vocab === 'object' ? Object.keys(vocab).length : 0;
      summary.tokenizer.maxId = Math.max(vocabIds - 1, ...added.map((token) => Number(token.id)));
    }
  }

  // sentence-transformers files (optional)
  if (existsSync(join(dir, 'config_sentence_transformers.json'))) {
    const st = await readJson(dir, 'config_sentence_transformers.json', error, false);
    const prompts = (st as Record<string, unknown> | undefined)?.prompts;
    if (prompts && typeof prompts === 'object') {
      const entries = Object.entries(prompts as Record<string, unknown>);
      for (const [name, value] of entries) {
        if (typeof value !== 'string')
          error('config_sentence_transformers.json', `prompts.${name} is not a string`);
      }
      summary.prompts = Object.fromEntries(
        entries.filter(([, value]) => typeof value === 'string'),
      ) as Record<string, string>;
    }
  }
  if (existsSync(join(dir, 'modules.json'))) {
    const modules = await readJson(dir, 'modules.json', error, false);
    if (Array.isArray(modules)) {
      summary.modules = modules
        .map(
          (module) =>
            String((module as Record<string, unknown>)?.type ?? '?')
              .split('.')
              .pop() ?? '?',
        )
        .filter((type) => type !== 'Transformer');
    } else if (modules !== undefined) {
      error('modules.json', 'is not a JSON array');
    }
  }
  const poolingFile = join('1_Pooling', 'config.json');
  if (existsSync(join(dir, poolingFile))) {
    const pooling = (await readJson(dir, poolingFile, error, false)) as Record<string, unknown> | undefined;
    if (pooling) {
      const modes = Object.entries(pooling)
        .filter(([key, value]) => key.startsWith('pooling_mode_') && value === true)
        .map(([key]) => key.slice('pooling_mode_'.length));
      summary.pooling = modes.join(', ') || 'none';
      if ((summary.family ?? 'qwen3') === 'qwen3' && (modes.length !== 1 || modes[0] !== 'lasttoken')) {
        warning(
          poolingFile,
          `pooling is ${summary.pooling}; Qwen3-Embedding (and this service) use lasttoken`,
        );
      }
      if (summary.architecture && pooling.word_embedding_dimension !== summary.architecture.hiddenSize) {
        error(
          poolingFile,
          `word_embedding_dimension ${String(pooling.word_embedding_dimension)} != hidden_size ${summary.architecture.hiddenSize}`,
        );
      }
    }
  }
  return done();
}

type Report = (file: string, message: string, tensor?: string) => void;

/** Qwen3's config checks: no biases, SiLU, no RoPE scaling (the engine refuses it). */
function inspectQwen3Config(
  fields: Record<string, unknown>,
  summary: CheckpointSummary,
  error: Report,
): void {
  if (fields.attention_bias === true) error('config.json', 'attention_bias is true; Qwen3 has no biases');
  if (fields.hidden_act !== undefined && fields.hidden_act !== 'silu') {
    error('config.json', `hidden_act is ${JSON.stringify(fields.hidden_act)}, expected "silu"`);
  }
  // The engine refuses a scaled RoPE (native loader): say so here rather than pass the checkpoint.
  if (fields.rope_scaling !== undefined && fields.rope_scaling !== null) {
    error(
      'config.json',
      `rope_scaling ${JSON.stringify(fields.rope_scaling)} is not supported (it must be null or absent)`,
    );
  }
  const { architecture, problems } = architectureFromConfigJson(fields);
  for (const problem of problems) error('config.json', problem);
  if (problems.length > 0) return;
  const structural = qwen3ArchitectureProblems(architecture);
  for (const problem of structural) error('config.json', problem);
  if (structural.length === 0) setArchitecture(summary, asModelArchitecture(architecture));
}

function setArchitecture(summary: CheckpointSummary, architecture: ModelArchitecture): void {
  summary.architecture = architecture;
  let total = 0;
  let embedding = 0;
  for (const spec of modelTensorSpecs(architecture)) {
    const n = elementCount(spec.shape);
    total += n;
    if (spec.role === 'embedding') embedding += n;
  }
  summary.parameters = { total, embedding, nonEmbedding: total - embedding };
}

/** tokenizer_config.json's eos_token (a string or an AddedToken object), if the file says. */
async function readTokenizerEos(dir: string): Promise<string | undefined> {
  const path = join(dir, 'tokenizer_config.json');
  if (!existsSync(path)) return undefined;
  try {
    const config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    const eos = config.eos_token as string | { content?: string } | null | undefined;
    return typeof eos === 'string' ? eos : (eos?.content ?? undefined);
  } catch {
    return undefined;
  }
}

/**
 * The other families' tokenizer checks: the post-processor adds the specials the family's pooling
 * relies on (a decoder's EOS last, [CLS]/<s> first for an encoder); a missing one is a warning, as
 * for Qwen3: the service follows the file, but the embeddings would not be the model's.
 */
function inspectFamilyTokenizer(
  summary: CheckpointSummary,
  tokenizer: Record<string, unknown>,
  added: Array<Record<string, unknown>>,
  configEos: string | undefined,
  warning: Report,
): void {
  const architecture = summary.architecture!;
  const eosFromConfig = isEncoder(architecture)
    ? undefined
    : added.find((token) => token.id === architecture.eosTokenId)?.content;
  const eos = configEos ?? (typeof eosFromConfig === 'string' ? eosFromConfig : undefined);
  const expected = expectedTemplateTokens(architecture, eos);
  const actual = templateEnds(tokenizer.post_processor);
  summary.tokenizer!.appendsEos = !isEncoder(architecture) && eos !== undefined && actual.last === eos;
  summary.tokenizer!.special = [actual.first, actual.last].filter((token) => token !== undefined) as string[];
  if (expected.first !== undefined && actual.first !== expected.first) {
    warning('tokenizer.json', `post_processor does not start a sequence with ${expected.first}`);
  }
  if (expected.last !== undefined && actual.last !== expected.last) {
    warning(
      'tokenizer.json',
      `post_processor does not append ${expected.last}${isEncoder(architecture) ? '' : ' (the EOS whose hidden state last-token pooling reads)'}`,
    );
  }
}

interface LocatedTensor {
  file: string;
  entry: TensorEntry;
}

async function inspectWeights(
  dir: string,
  summary: CheckpointSummary,
  error: Report,
  warning: Report,
): Promise<Map<string, LocatedTensor> | undefined> {
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  let declaredTotal: number | undefined;
  // safetensors when present, else pytorch_model.bin (torch.save's zip format), as the engine chooses.
  const bin = !hasSafetensors(dir) && hasTorchBin(dir);
  const indexFile = indexFileName(bin);
  const singleFile = bin ? TORCH_BIN_SINGLE_FILE_NAME : SINGLE_FILE_NAME;
  summary.weightFormat = bin ? 'bin' : 'safetensors';
  if (existsSync(join(dir, indexFile))) {
    const index = (await readJson(dir, indexFile, error, true)) as Record<string, unknown> | undefined;
    if (!index) return undefined;
    const map = index.weight_map;
    if (!map || typeof map !== 'object' || Array.isArray(map)) {
      error(indexFile, 'weight_map is missing or not an object');
      return undefined;
    }
    weightMap = {};
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== 'string') error(indexFile, `weight_map entry is not a file name`, name);
      else weightMap[name] = file;
    }
    const metadata = index.metadata as Record<string, unknown> | undefined;
    if (metadata && typeof metadata.total_size === 'number') declaredTotal = metadata.total_size;
    files = [...new Set(Object.values(weightMap))].sort();
    if (existsSync(join(dir, singleFile)) && !files.includes(singleFile)) {
      warning(singleFile, `ignored: ${indexFile} lists the shards`);
    }
  } else if (existsSync(join(dir, singleFile))) {
    files = [singleFile];
  } else {
    const stray = (await readdir(dir)).filter((name) => name.endsWith('.safetensors'));
    error(
      singleFile,
      stray.length > 0
        ? `missing, and ${stray.join(', ')} ha${stray.length === 1 ? 's' : 've'} no ${indexFile}`
        : `no ${singleFile} or ${indexFile}`,
    );
    return undefined;
  }

  const tensors = new Map<string, LocatedTensor>();
  const dtypes = new Set<SafetensorsDtype>();
  for (const file of files) {
    const path = join(dir, file);
    if (!existsSync(path)) {
      const listed = weightMap ? Object.keys(weightMap).filter((name) => weightMap![name] === file) : [];
      error(file, `missing (${indexFile} places ${listed.length} tensors in it, e.g. ${listed[0]})`);
      continue;
    }
    let header;
    try {
      header = bin ? await readTorchBinAsHeader(path) : await readSafetensorsHeader(path);
    } catch (problem) {
      if (problem instanceof TorchBinFormatError) error(file, problem.detail, problem.tensor);
      else error(file, (problem as Error).message.replace(`${path}: `, '').replace(`${path} `, ''));
      continue;
    }
    for (const problem of bin ? [] : layoutProblems(header)) {
      error(
        file,
        problem.message.replace(`${path}${problem.tensor ? ` [${problem.tensor}]` : ''}: `, ''),
        problem.tensor,
      );
    }
    if (bin) {
      // torch.save files carry no metadata
    } else if (header.metadata.format !== undefined && header.metadata.format !== 'pt') {
      warning(file, `__metadata__.format is "${header.metadata.format}"; transformers expects "pt"`);
    } else if (header.metadata.format === undefined) {
      warning(file, '__metadata__.format is missing; transformers expects "pt"');
    }
    if (header.metadata.generator && !summary.generator) {
      const { format: _format, ...rest } = header.metadata;
      summary.generator = rest;
    }
    let bytes = 0;
    for (const entry of header.tensors) {
      bytes += entry.dataOffsets[1] - entry.dataOffsets[0];
      summary.storedParameters += elementCount(entry.shape);
      dtypes.add(entry.dtype);
      const earlier = tensors.get(entry.name);
      if (earlier) error(file, `also stored in ${earlier.file}`, entry.name);
      tensors.set(entry.name, { file, entry });
      if (weightMap && weightMap[entry.name] !== file) {
        error(
          file,
          weightMap[entry.name] === undefined
            ? `not listed in ${indexFile}`
            : `${indexFile} places it in ${weightMap[entry.name]}`,
          entry.name,
        );
      }
    }
    summary.shards.push({ file, tensors: header.tensors.length, bytes: header.fileSize });
    summary.weightBytes += bytes;
  }
  if (weightMap) {
    for (const [name, file] of Object.entries(weightMap)) {
      if (!tensors.has(name) && existsSync(join(dir, file))) {
        error(indexFile, `lists it in ${file}, which does not contain it`, name);
      }
    }
    if (declaredTotal !== undefined && declaredTotal !== summary.weightBytes) {
      warning(
        indexFile,
        `metadata.total_size ${declaredTotal} != ${summary.weightBytes} bytes of tensor data`,
      );
    }
  }
  summary.dtypes = [...dtypes].sort();
  return tensors;
}

/** A torch.save file's tensors in the shape of a safetensors header (offsets absolute, no metadata). */
async function readTorchBinAsHeader(path: string): Promise<SafetensorsHeader> {
  const contents = await readTorchBin(path);
  return {
    path,
    fileSize: contents.fileSize,
    headerByteLength: 0,
    dataOffset: 0,
    metadata: {},
    tensors: contents.tensors.map((tensor) => ({
      name: tensor.name,
      dtype: tensor.dtype,
      shape: tensor.shape,
      dataOffsets: [tensor.dataOffset, tensor.dataOffset + tensor.byteLength] as const,
    })),
  };
}

function indexFileName(bin: boolean): string {
  return bin ? TORCH_BIN_INDEX_FILE_NAME : SHARD_INDEX_FILE_NAME;
}

function hasSafetensors(dir: string): boolean {
  return existsSync(join(dir, SHARD_INDEX_FILE_NAME)) || existsSync(join(dir, SINGLE_FILE_NAME));
}

function hasTorchBin(dir: string): boolean {
  return (
    existsSync(join(dir, TORCH_BIN_INDEX_FILE_NAME)) || existsSync(join(dir, TORCH_BIN_SINGLE_FILE_NAME))
  );
}

/**
 * A reranker's score head, as the engine loads it: a classifier's score.weight [1, hidden]
 * (num_labels 1), or the yes/no rows of lm_head.weight, which an untied causal LM must carry.
 */
function checkScoreHead(
  summary: CheckpointSummary,
  tensors: Map<string, LocatedTensor>,
  error: Report,
): void {
  const architecture = summary.architecture!;
  if (isEncoder(architecture)) {
    error('config.json', `a ${architecture.family} reranker is not supported (decoders only)`);
    return;
  }
  const fallbackFile = summary.shards.length === 1 ? summary.shards[0].file : 'config.json';
  const expectShape = (name: string, shape: number[], why: string): void => {
    const found = tensors.get(name);
    if (!found) error(fallbackFile, `missing tensor: ${why}`, name);
    else if (
      found.entry.shape.length !== shape.length ||
      found.entry.shape.some((dim, i) => dim !== shape[i])
    ) {
      error(
        found.file,
        `shape [${found.entry.shape.join(', ')}], expected [${shape.join(', ')}]: ${why}`,
        name,
      );
    }
  };
  if (summary.task?.head === 'classifier') {
    expectShape(
      'score.weight',
      [1, architecture.hiddenSize],
      'the classifier of a reranker (num_labels must be 1)',
    );
  } else if (!architecture.tieWordEmbeddings) {
    expectShape(
      'lm_head.weight',
      [architecture.vocabSize, architecture.hiddenSize],
      'tie_word_embeddings is false, so the yes/no logits come from lm_head',
    );
  }
}

function checkExpectedTensors(
  summary: CheckpointSummary,
  tensors: Map<string, LocatedTensor>,
  error: Report,
  warning: Report,
): void {
  const architecture = summary.architecture!;
  const expected = modelTensorSpecs(architecture);
  // Decoders may prefix `model.`; encoders saved from a task model `bert.` / `roberta.`.
  const candidates = isEncoder(architecture) ? ['', 'bert.', 'roberta.'] : ['', 'model.'];
  const prefix = candidates.find((p) => tensors.has(`${p}${expected[0].name}`)) ?? '';
  summary.tensorPrefix = prefix;
  const fallbackFile =
    summary.shards.length === 1 ? summary.shards[0].file : indexFileName(summary.weightFormat === 'bin');
  const expectedNames = new Set<string>();
  for (const spec of expected) {
    const name = `${prefix}${spec.name}`;
    expectedNames.add(name);
    const found = tensors.get(name);
    if (!found) {
      if (!(isEncoder(architecture) && OPTIONAL_TENSOR.test(spec.name)))
        error(fallbackFile, 'missing tensor', name);
      continue;
    }
    const { entry, file } = found;
    if (entry.shape.length !== spec.shape.length || entry.shape.some((dim, i) => dim !== spec.shape[i])) {
      error(file, `shape [${entry.shape.join(', ')}], expected [${spec.shape.join(', ')}]`, name);
    }
    if (!SUPPORTED_DTYPES.includes(entry.dtype)) {
      error(file, `dtype ${entry.dtype} is not supported (use ${SUPPORTED_DTYPES.join(', ')})`, name);
    }
  }
  const head = summary.task?.head === 'classifier' ? 'score.weight' : undefined;
  for (const [name, { file }] of tensors) {
    if (expectedNames.has(name) || IGNORED_TENSOR.test(name) || name === head) continue;
    warning(file, 'unexpected tensor (ignored by the engine)', name);
  }
  if (summary.dtypes.length > 1) {
    warning(
      fallbackFile,
      `mixed dtypes ${summary.dtypes.join(', ')}; the engine converts each tensor on load`,
    );
  }
}

/**
 * The files the engine's loader reads, under its JSON rules (a key named twice refuses the file); the
 * others are read as the server reads them, with JSON.parse (the tokenizer's 10 MB among them).
 */
const ENGINE_JSON_FILES: ReadonlySet<string> = new Set([
  'config.json',
  SHARD_INDEX_FILE_NAME,
  TORCH_BIN_INDEX_FILE_NAME,
]);

async function readJson(dir: string, file: string, error: Report, required: boolean): Promise<unknown> {
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (required) error(file, 'missing');
    return undefined;
  }
  try {
    const text = await readFile(path, 'utf8');
    return ENGINE_JSON_FILES.has(file) ? parseStrictJson(text) : (JSON.parse(text) as unknown);
  } catch (problem) {
    error(file, `not valid JSON (${(problem as Error).message})`);
    return undefined;
  }
}

function postProcessorAppendsEos(processor: unknown): boolean {
  if (!processor || typeof processor !== 'object') return false;
  const fields = processor as Record<string, unknown>;
  if (fields.type === 'Sequence' && Array.isArray(fields.processors)) {
    return fields.processors.some((inner) => postProcessorAppendsEos(inner));
  }
  if (fields.type !== 'TemplateProcessing' || !Array.isArray(fields.single)) return false;
  const last = fields.single[fields.single.length - 1] as Record<string, { id?: string }> | undefined;
  return last?.SpecialToken?.id === EOS_TOKEN;
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await directoryBytes(path);
    else if (entry.isFile()) total += (await stat(path)).size;
  }
  return total;
}

/** A human summary, then one line per problem. */
export function formatCheckpointReport(report: CheckpointReport): string {
  const { summary } = report;
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${label.padEnd(11)} ${value}`);
  };
  row('checkpoint', summary.dir);
  const a = summary.architecture;
  if (a) {
    const shape = isEncoder(a)
      ? `hidden ${a.hiddenSize}, ${a.numHiddenLayers} layers, ${a.numAttentionHeads} heads x ${a.hiddenSize / a.numAttentionHeads}, mlp ${a.intermediateSize}, vocab ${a.vocabSize}, max positions ${a.maxPositionEmbeddings}, token types ${a.typeVocabSize}, eps ${a.layerNormEps}`
      : `hidden ${a.hiddenSize}, ${a.numHiddenLayers} layers, ${a.numAttentionHeads} q / ${a.numKeyValueHeads} kv heads x ${a.headDim}, mlp ${a.intermediateSize}, vocab ${a.vocabSize}, max positions ${a.maxPositionEmbeddings}, eps ${a.rmsNormEps}, rope theta ${a.ropeTheta}${a.ropeScaling ? ` (${a.ropeScaling.ropeType} scaling x${a.ropeScaling.factor})` : ''}${a.attentionBias ? ', attention biases' : ''}${a.slidingWindow ? `, sliding window ${a.slidingWindow}` : ''}`;
    row(
      'model',
      `${summary.modelType ?? '?'}${summary.architectures ? ` (${summary.architectures.join(', ')})` : ''}: ${shape}`,
    );
  }
  if (summary.family) row('family', `${summary.family} (${a && isEncoder(a) ? 'encoder' : 'decoder'})`);
  if (summary.task) {
    const { task, head, reason } = summary.task;
    row('task', `${task === 'rerank' ? 'reranker' : 'embedding'} (${head} head); ${reason}`);
  }
  if (summary.parameters) {
    row(
      'parameters',
      `${formatCount(summary.parameters.total)} (embedding ${formatCount(summary.parameters.embedding)}, non-embedding ${formatCount(summary.parameters.nonEmbedding)}; ${summary.parameters.nonEmbedding.toLocaleString('en-US')} non-embedding)`,
    );
  }
  row(
    'weights',
    `${summary.dtypes.join('+') || '?'}${summary.configDtype ? ` (config: ${summary.configDtype})` : ''}, ${summary.shards.length} file${summary.shards.length === 1 ? '' : 's'}, ${formatBytes(summary.weightBytes)} of tensors, ${formatBytes(summary.diskBytes)} on disk${summary.tensorPrefix ? `, names prefixed "${summary.tensorPrefix}"` : ''}`,
  );
  for (const shard of summary.shards) {
    lines.push(
      `  ${shard.file.padEnd(36)} ${String(shard.tensors).padStart(5)} tensors  ${formatBytes(shard.bytes)}`,
    );
  }
  if (summary.tokenizer) {
    const { file, appendsEos, maxId, special } = summary.tokenizer;
    const rows = summary.architecture?.vocabSize;
    const adds =
      special && special.length > 0
        ? ` (adds ${special.join(' … ')})`
        : appendsEos
          ? ` (appends ${EOS_TOKEN})`
          : '';
    row(
      'tokenizer',
      `${file}${adds}${maxId !== undefined ? `, ids 0..${maxId}` : ''}${rows !== undefined && maxId !== undefined && maxId >= rows ? ` (ids >= ${rows} have no embedding row and are rejected)` : ''}`,
    );
  }
  if (summary.prompts) {
    row(
      'prompts',
      Object.entries(summary.prompts)
        .map(([name, text]) => `${name}: ${JSON.stringify(text)}`)
        .join(', '),
    );
  }
  if (summary.pooling) row('pooling', summary.pooling);
  if (summary.modules) row('modules', summary.modules.join(' -> ') || 'none');
  if (summary.generator) {
    row(
      'generated',
      Object.entries(summary.generator)
        .map(([key, value]) => `${key} ${value}`)
        .join(', '),
    );
  }
  const errors = report.issues.filter((issue) => issue.severity === 'error').length;
  const warnings = report.issues.length - errors;
  row(
    'status',
    `${report.ok ? 'OK' : 'INVALID'} (${errors} error${errors === 1 ? '' : 's'}, ${warnings} warning${warnings === 1 ? '' : 's'})`,
  );
  for (const issue of report.issues) {
    lines.push(
      `${issue.severity === 'error' ? 'ERROR' : 'WARN '} ${issue.file}${issue.tensor ? ` [${issue.tensor}]` : ''}: ${issue.message}`,
    );
  }
  return lines.join('\n');
}
