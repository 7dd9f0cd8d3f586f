import { CheckpointDtype, toTorchDtype } from './dtype';
import { EOS_TOKEN_ID } from './embedding-tokenizer';
import { Qwen3Architecture } from './qwen3-architecture';

/** The default query instruction of Qwen3-Embedding (config_sentence_transformers.json `prompts.query`). */
export const DEFAULT_QUERY_PROMPT =
  'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:';

/** config.json as Qwen3-Embedding publishes it (transformers' Qwen3Config). */
export function qwen3ConfigJson(arch: Qwen3Architecture, dtype: CheckpointDtype): Record<string, unknown> {
  return {
    architectures: ['Qwen3ForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: EOS_TOKEN_ID,
    eos_token_id: EOS_TOKEN_ID,
    head_dim: arch.headDim,
    hidden_act: 'silu',
    hidden_size: arch.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: arch.intermediateSize,
    max_position_embeddings: arch.maxPositionEmbeddings,
    max_window_layers: arch.numHiddenLayers,
    model_type: 'qwen3',
    num_attention_heads: arch.numAttentionHeads,
    num_hidden_layers: arch.numHiddenLayers,
    num_key_value_heads: arch.numKeyValueHeads,
    rms_norm_eps: arch.rmsNormEps,
    rope_scaling: null,
    rope_theta: arch.ropeTheta,
    sliding_window: null,
    tie_word_embeddings: arch.tieWordEmbeddings,
    torch_dtype: toTorchDtype(dtype),
    transformers_version: '4.51.3',
    use_cache: true,
    use_sliding_window: false,
    vocab_size: arch.vocabSize,
  };
}

/** Reads the architecture back from a config.json object; missing or mistyped fields become problems. */
export function architectureFromConfigJson(config: Record<string, unknown>): {
  architecture: Qwen3Architecture;
  problems: string[];
} {
  const problems: string[] = [];
  const int = (key: string, fallback?: number): number => {
    const value = config[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      problems.push(
        `${key} is ${value === undefined ? 'missing' : `not an integer (${JSON.stringify(value)})`}`,
      );
      return NaN;
    }
    return value;
  };
  const num = (key: string, fallback: number): number => {
    const value = config[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      problems.push(`${key} is not a number (${JSON.stringify(value)})`);
      return NaN;
    }
    return value;
  };
  const hiddenSize = int('hidden_size');
  const numAttentionHeads = int('num_attention_heads');
  const architecture: Qwen3Architecture = {
    vocabSize: int('vocab_size'),
    hiddenSize,
    numHiddenLayers: int('num_hidden_layers'),
    numAttentionHeads,
    numKeyValueHeads: int('num_key_value_heads', numAttentionHeads),
    headDim: int('head_dim', Math.floor(hiddenSize / numAttentionHeads)),
    intermediateSize: int('intermediate_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    maxPositionEmbeddings: int('max_position_embeddings'),
    tieWordEmbeddings: config.tie_word_embeddings === true,
  };
  return { architecture, problems };
}

export function sentenceTransformersConfigJson(): Record<string, unknown> {
  return {
    prompts: { query: DEFAULT_QUERY_PROMPT, document: '' },
    default_prompt_name: null,
    similarity_fn_name: 'cosine',
    model_type: 'SentenceTransformer',
  };
}

export function modulesJson(): Array<Record<string, unknown>> {
  return [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
  ];
}

/** 1_Pooling/config.json: last-token pooling (the appended <|endoftext|>). */
export function poolingConfigJson(arch: Qwen3Architecture): Record<string, unknown> {
  return {
    word_embedding_dimension: arch.hiddenSize,
    pooling_mode_cls_token: false,
    pooling_mode_mean_tokens: false,
    pooling_mode_max_tokens: false,
    pooling_mode_mean_sqrt_len_tokens: false,
    pooling_mode_weightedmean_tokens: false,
    pooling_mode_lasttoken: true,
    include_prompt: true,
  };
}

export function sentenceBertConfigJson(arch: Qwen3Architecture): Record<string, unknown> {
  return { max_seq_length: arch.maxPositionEmbeddings, do_lower_case: false };
}
