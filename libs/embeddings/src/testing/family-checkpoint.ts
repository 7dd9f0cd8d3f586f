import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Tokenizer files of other families, small enough to read, in the formats Hugging Face saves, and a
 * checkpoint directory around them with sentence-transformers files (no weights), for unit tests.
 */

const special = (entries: Array<[string, number]>) =>
  entries.map(([content, id]) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
const template = (single: Array<string>) => ({
  type: 'TemplateProcessing',
  single: single.map((id) =>
    id === '$A' ? { Sequence: { id: 'A', type_id: 0 } } : { SpecialToken: { id, type_id: 0 } },
  ),
  pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: Object.fromEntries(
    single
      .filter((id) => id !== '$A')
      .map((id) => [
        id,
        {
          id,
          ids: [{ '[CLS]': 2, '[SEP]': 3, '<|begin_of_text|>': 0, '<|end_of_text|>': 1 }[id]],
          tokens: [id],
        },
      ]),
  ),
});

/** bge / MiniLM style: lower-casing WordPiece, [CLS] $A [SEP]. */
export const BERT_TOKENIZER = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: special([
    ['[PAD]', 0],
    ['[UNK]', 1],
    ['[CLS]', 2],
    ['[SEP]', 3],
    ['[MASK]', 4],
    // Beyond the model's table of 14 rows, as Qwen3's <think> is beyond its 151665.
    ['<extra>', 14],
  ]),
  normalizer: {
    type: 'BertNormalizer',
    clean_text: true,
    handle_chinese_chars: true,
    strip_accents: null,
    lowercase: true,
  },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: template(['[CLS]', '$A', '[SEP]']),
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: {
    type: 'WordPiece',
    unk_token: '[UNK]',
    continuing_subword_prefix: '##',
    max_input_chars_per_word: 100,
    vocab: {
      '[PAD]': 0,
      '[UNK]': 1,
      '[CLS]': 2,
      '[SEP]': 3,
      '[MASK]': 4,
      hello: 5,
      world: 6,
      '##s': 7,
      a: 8,
      the: 9,
      ',': 10,
      '!': 11,
      query: 12,
      ':': 13,
    },
  },
};

/** multilingual-e5 / bge-m3 style: Metaspace Unigram, <s> $A </s> (RobertaProcessing). */
export const XLM_R_TOKENIZER = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: special([
    ['<s>', 0],
    ['<pad>', 1],
    ['</s>', 2],
    ['<unk>', 3],
  ]),
  normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
  post_processor: {
    type: 'RobertaProcessing',
    sep: ['</s>', 2],
    cls: ['<s>', 0],
    trim_offsets: true,
    add_prefix_space: true,
  },
  decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
  model: {
    type: 'Unigram',
    unk_id: 3,
    vocab: [
      ['<s>', 0],
      ['<pad>', 0],
      ['</s>', 0],
      ['<unk>', 0],
      ['▁hello', -2],
      ['▁world', -2],
      ['▁', -5],
      ['s', -3],
      ['▁query', -2],
      [':', -2],
      ['▁passage', -2],
    ],
    byte_fallback: false,
  },
};

/** Llama 3 style decoder: BOS in front from the post-processor, EOS only where asked for. */
export function decoderTokenizer(single: string[]) {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special([
      ['<|begin_of_text|>', 0],
      ['<|end_of_text|>', 1],
    ]),
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: template(single),
    decoder: null,
    model: {
      type: 'WordLevel',
      vocab: {
        '<|begin_of_text|>': 0,
        '<|end_of_text|>': 1,
        hello: 2,
        world: 3,
        '[UNK]': 4,
        query: 5,
        ':': 6,
      },
      unk_token: '[UNK]',
    },
  };
}

/** What `writeFamilyCheckpoint` puts beside the tokenizer; absent entries are not written. */
export interface FamilyCheckpointFiles {
  modelType: string;
  tokenizer: unknown;
  tokenizerConfig?: Record<string, unknown>;
  modules?: string[];
  pooling?: Record<string, unknown>;
  dense?: Record<string, unknown>;
  prompts?: Record<string, string>;
  maxSeqLength?: number;
}

/**
 * A checkpoint directory without weights: config.json, tokenizer.json and, as given, modules.json
 * (module kinds in order: Transformer, Pooling, Dense, Normalize), 1_Pooling/config.json, 2_Dense,
 * config_sentence_transformers.json and sentence_bert_config.json.
 */
export function writeFamilyCheckpoint(dir: string, files: FamilyCheckpointFiles): void {
  const write = (relative: string, value: unknown) => {
    mkdirSync(join(dir, relative, '..'), { recursive: true });
    writeFileSync(join(dir, relative), typeof value === 'string' ? value : JSON.stringify(value));
  };
  write('config.json', { model_type: files.modelType });
  write('tokenizer.json', files.tokenizer);
  if (files.tokenizerConfig) write('tokenizer_config.json', files.tokenizerConfig);
  if (files.modules) {
    const paths: Record<string, string> = {
      Transformer: '',
      Pooling: '1_Pooling',
      Dense: '2_Dense',
      Normalize: '3_Normalize',
    };
    write(
      'modules.json',
      files.modules.map((kind, idx) => ({
        idx,
        name: String(idx),
        path: paths[kind],
        type: `sentence_transformers.models.${kind}`,
      })),
    );
  }
  if (files.pooling) write('1_Pooling/config.json', files.pooling);
  if (files.dense) {
    write('2_Dense/config.json', files.dense);
    write('2_Dense/model.safetensors', 'not read by the service');
  }
  if (files.prompts)
    write('config_sentence_transformers.json', { prompts: files.prompts, default_prompt_name: null });
  if (files.maxSeqLength) write('sentence_bert_config.json', { max_seq_length: files.maxSeqLength });
}
