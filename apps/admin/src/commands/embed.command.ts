import { Command, CommandRunner, Option } from 'nest-commander';
import { norm } from '@app/embeddings/embedding-similarity';
import { packBatch, splitRows } from '@app/engine/packed-batch';
import { EngineSession } from '../engine/engine-session';
import { EngineCommandOptions, engineOptionParsers, overridesFrom } from './engine-options';
import { parseInteger } from './option-parsers';

interface EmbedOptions extends EngineCommandOptions {
  query?: boolean;
  instruction?: string;
  dimensions?: number;
  full?: boolean;
  json?: boolean;
}

/**
 * Embeds texts with the local engine, tokenized and prompted exactly as the API does: prints each
 * vector (summary, --full or --json) and the cosine similarities between them.
 */
@Command({
  name: 'embed',
  arguments: '<text...>',
  description: 'embed texts with the local engine (MODEL_PATH, DEVICE, ... or the options below)',
})
export class EmbedCommand extends CommandRunner {
  constructor(private readonly sessions: EngineSession) {
    super();
  }

  async run(texts: string[], options: EmbedOptions): Promise<void> {
    const session = await this.sessions.open(overridesFrom(options));
    try {
      const { model, tokenizer, engine } = session;
      const info = model.info;
      const dimensions = options.dimensions ?? model.defaultDimensions;
      if (dimensions < 32 || dimensions > info.outputDimension) {
        throw new Error(`--dimensions must be between 32 and ${info.outputDimension}`);
      }
      const prefix = model.prompts.prefix({
        inputType: options.query || options.instruction !== undefined ? 'query' : undefined,
        instruction: options.instruction,
      });
      const sequences = await tokenizer.encode(texts.map((text) => prefix + text));
      const promptLength = model.excludesPrompt ? await tokenizer.promptLength(prefix) : 0;
      const batch = packBatch(
        sequences.map((tokens) => ({
          tokens,
          dimensions,
          promptLength: Math.min(promptLength, tokens.length - 1),
        })),
      );
      const total = batch.tokenIds.length;
      const started = performance.now();
      const rows = await engine.embed(batch);
      const ms = performance.now() - started;
      const vectors = splitRows(rows, batch.dimensions);
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({
            model: model.id,
            device: info.device,
            dtype: info.dtype,
            dimensions,
            data: texts.map((text, index) => ({
              text,
              tokens: sequences[index].length,
              embedding: Array.from(vectors[index]),
            })),
          })}\n`,
        );
        return;
      }
      process.stdout.write(
        `${model.id} on ${info.device} (${info.dtype}, tp ${info.tensorParallelSize}), ${dimensions} dimensions, ${total} tokens in ${ms.toFixed(1)} ms\n`,
      );
      texts.forEach((text, index) => {
        const vector = vectors[index];
        const length = norm(vector);
        const shown = options.full ? Array.from(vector) : Array.from(vector.subarray(0, 8));
        process.stdout.write(
          `[${index}] ${JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text)} tokens ${sequences[index].length} norm ${length.toFixed(6)}\n` +
            `    [${shown.map((value) => value.toFixed(6)).join(', ')}${options.full ? '' : ', ...'}]\n`,
        );
      });
      if (texts.length > 1) {
        process.stdout.write('cosine similarity\n');
        for (let i = 0; i < texts.length; i++) {
          const row = vectors.map((other) => dot(vectors[i], other).toFixed(4));
          process.stdout.write(`  [${i}] ${row.join('  ')}\n`);
        }
      }
    } finally {
      await this.sessions.close(session);
    }
  }

  @Option({ flags: '--query', description: 'embed as queries (with the default instruction)' })
  parseQuery(): boolean {
    return true;
  }

  @Option({ flags: '--instruction <task>', description: 'custom query instruction (implies --query)' })
  parseInstruction(value: string): string {
    return value;
  }

  @Option({
    flags: '--dimensions <n>',
    description: 'Matryoshka output size (default: EMBEDDING_DIMENSION or hidden)',
  })
  parseDimensions(value: string): number {
    return parseInteger('--dimensions', value, 32);
  }

  @Option({ flags: '--model-path <dir>', description: 'checkpoint directory (default: MODEL_PATH)' })
  parseModelPath(value: string): string {
    return engineOptionParsers.modelPath(value);
  }

  @Option({ flags: '--device <device>', description: 'cpu or cuda (default: DEVICE)' })
  parseDevice(value: string): 'cpu' | 'cuda' {
    return engineOptionParsers.device(value);
  }

  @Option({ flags: '--dtype <dtype>', description: 'float32, bfloat16 or float16 (default: DTYPE)' })
  parseDtype(value: string): 'float32' | 'bfloat16' | 'float16' {
    return engineOptionParsers.dtype(value);
  }

  @Option({ flags: '--tp <n>', description: 'tensor-parallel size (default: TENSOR_PARALLEL_SIZE)' })
  parseTp(value: string): number {
    return engineOptionParsers.tp(value);
  }

  @Option({ flags: '--addon <path>', description: 'qwen3_embed.node (default: NATIVE_ADDON_PATH)' })
  parseAddon(value: string): string {
    return value;
  }

  @Option({ flags: '--full', description: 'print every value' })
  parseFull(): boolean {
    return true;
  }

  @Option({ flags: '--json', description: 'print {data: [{text, tokens, embedding}]} as JSON' })
  parseJson(): boolean {
    return true;
  }
}

function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}
