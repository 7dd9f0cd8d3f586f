import { DEFAULT_QUERY_PROMPT, qwen3ConfigJson } from './checkpoint-files';
import { CheckpointDtype, toTorchDtype } from './dtype';
import {
  DecoderArchitecture,
  EncoderArchitecture,
  isEncoder,
  ModelArchitecture,
  ModelFamily,
  PoolingMode,
  RerankerForm,
} from './model-architecture';

type Json = Record<string, unknown>;

/** config.json as transformers writes it for the family's AutoModel class. */
export function familyConfigJson(arch: ModelArchitecture, dtype: CheckpointDtype): Json {
  if (isEncoder(arch)) return encoderConfigJson(arch, dtype);
  if (arch.family === 'qwen3') return qwen3ConfigJson(arch, dtype);
  return decoderConfigJson(arch, dtype);
}

const AUTO_MODEL_CLASS: Readonly<Record<ModelFamily, string>> = {
  qwen3: 'Qwen3Model',
  qwen2: 'Qwen2Model',
  mistral: 'MistralModel',
  llama: 'LlamaModel',
  bert: 'BertModel',
  'xlm-roberta': 'XLMRobertaModel',
};

function decoderConfigJson(arch: DecoderArchitecture, dtype: CheckpointDtype): Json {
  const common: Json = {
    architectures: [AUTO_MODEL_CLASS[arch.family]],
    attention_dropout: 0.0,
    bos_token_id: arch.bosTokenId,
    eos_token_id: arch.eosTokenId,
    hidden_act: 'silu',
    hidden_size: arch.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: arch.intermediateSize,
    max_position_embeddings: arch.maxPositionEmbeddings,
    model_type: arch.family,
    num_attention_heads: arch.numAttentionHeads,
    num_hidden_layers: arch.numHiddenLayers,
    num_key_value_heads: arch.numKeyValueHeads,
    rms_norm_eps: arch.rmsNormEps,
    rope_theta: arch.ropeTheta,
    tie_word_embeddings: arch.tieWordEmbeddings,
    torch_dtype: toTorchDtype(dtype),
    use_cache: true,
    vocab_size: arch.vocabSize,
  };
  switch (arch.family) {
    case 'qwen2':
      // Qwen2 derives head_dim (hidden / heads) and always has q/k/v biases.
      return sortKeys({
        ...common,
        max_window_layers: arch.numHiddenLayers,
        rope_scaling: null,
        sliding_window: arch.slidingWindow ?? arch.maxPositionEmbeddings,
        transformers_version: '4.41.2',
        use_sliding_window: false,
      });
    case 'mistral':
      return sortKeys({
        ...common,
        head_dim: arch.headDim,
        sliding_window: arch.slidingWindow,
        transformers_version: '4.34.0',
      });
    default:
      return sortKeys({
        ...common,
        attention_bias: arch.attentionBias,
        head_dim: arch.headDim,
        mlp_bias: arch.mlpBias,
        pretraining_tp: 1,
        rope_scaling: arch.ropeScaling
          ? {
              factor: arch.ropeScaling.factor,
              high_freq_factor: arch.ropeScaling.highFreqFactor,
              low_freq_factor: arch.ropeScaling.lowFreqFactor,
              original_max_position_embeddings: arch.ropeScaling.originalMaxPositionEmbeddings,
              rope_type: arch.ropeScaling.ropeType,
            }
          : null,
        transformers_version: '4.45.0',
      });
  }
}

function encoderConfigJson(arch: EncoderArchitecture, dtype: CheckpointDtype): Json {
  const config: Json = {
    architectures: [AUTO_MODEL_CLASS[arch.family]],
    attention_probs_dropout_prob: 0.1,
    classifier_dropout: null,
    hidden_act: arch.hiddenAct,
    hidden_dropout_prob: 0.1,
    hidden_size: arch.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: arch.intermediateSize,
    layer_norm_eps: arch.layerNormEps,
    max_position_embeddings: arch.maxPositionEmbeddings,
    model_type: arch.family,
    num_attention_heads: arch.numAttentionHeads,
    num_hidden_layers: arch.numHiddenLayers,
    pad_token_id: arch.padTokenId,
    position_embedding_type: 'absolute',
    torch_dtype: toTorchDtype(dtype),
    transformers_version: '4.30.0',
    type_vocab_size: arch.typeVocabSize,
    use_cache: true,
    vocab_size: arch.vocabSize,
  };
  if (arch.bosTokenId !== null) config.bos_token_id = arch.bosTokenId;
  if (arch.eosTokenId !== null) config.eos_token_id = arch.eosTokenId;
  return sortKeys(config);
}

/** <|im_end|>: the end of a Qwen3 chat turn, the published rerankers' eos_token_id. */
const QWEN3_IM_END_ID = 151645;
/** <|endoftext|>: Qwen3's pad token (what a sequence classifier skips to find the last real token). */
const QWEN3_PAD_ID = 151643;

/**
 * config.json of a Qwen3 reranker as transformers writes it: Qwen3ForCausalLM as published, or the
 * converted Qwen3ForSequenceClassification with one label (id2label / label2id are how transformers
 * stores num_labels; pad_token_id lets it find each padded sequence's last token). `name` goes to
 * `_name_or_path`, which model-task.ts reads when the directory's name does not say "rerank".
 */
export function rerankerConfigJson(
  arch: DecoderArchitecture,
  form: RerankerForm,
  dtype: CheckpointDtype,
  name: string,
): Json {
  const config: Json = {
    ...qwen3ConfigJson(arch, dtype),
    _name_or_path: name,
    architectures: [form === 'seq-cls' ? 'Qwen3ForSequenceClassification' : 'Qwen3ForCausalLM'],
    eos_token_id: QWEN3_IM_END_ID,
  };
  if (form === 'seq-cls') {
    Object.assign(config, {
      id2label: { '0': 'LABEL_0' },
      label2id: { LABEL_0: 0 },
      pad_token_id: QWEN3_PAD_ID,
    });
  }
  return sortKeys(config);
}

function sortKeys(value: Json): Json {
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The prompts a model of the family is used with (config_sentence_transformers.json). */
export function familyPrompts(family: ModelFamily): Record<string, string> {
  switch (family) {
    case 'bert':
      // bge-*-en-v1.5's query instruction.
      return { query: 'Represent this sentence for searching relevant passages: ', document: '' };
    case 'xlm-roberta':
      // multilingual-e5's prefixes.
      return { query: 'query: ', document: 'passage: ' };
    default:
      return { query: DEFAULT_QUERY_PROMPT, document: '' };
  }
}

export function familySentenceTransformersConfigJson(family: ModelFamily): Json {
  return {
    prompts: familyPrompts(family),
    default_prompt_name: null,
    similarity_fn_name: 'cosine',
    model_type: 'SentenceTransformer',
  };
}

/** What follows the Transformer module in modules.json. */
export interface SentenceTransformersHead {
  pooling: PoolingMode;
  includePrompt: boolean;
  /** Output features of a Dense layer after pooling (Tanh, with bias), or none. */
  denseOutFeatures?: number;
  normalize: boolean;
}

export const DENSE_DIRECTORY = '2_Dense';

/** modules.json: Transformer, Pooling, [Dense], [Normalize], directories numbered in order. */
export function familyModulesJson(head: SentenceTransformersHead): Array<Record<string, unknown>> {
  const modules: Array<Record<string, unknown>> = [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
  ];
  if (head.denseOutFeatures !== undefined) {
    modules.push({ idx: 2, name: '2', path: DENSE_DIRECTORY, type: 'sentence_transformers.models.Dense' });
  }
  if (head.normalize) {
    const idx = modules.length;
    modules.push({
      idx,
      name: String(idx),
      path: `${idx}_Normalize`,
      type: 'sentence_transformers.models.Normalize',
    });
  }
  return modules;
}

/** 1_Pooling/config.json with one mode on. */
export function familyPoolingConfigJson(
  hiddenSize: number,
  pooling: PoolingMode,
  includePrompt: boolean,
): Json {
  return {
    word_embedding_dimension: hiddenSize,
    pooling_mode_cls_token: pooling === 'cls',
    pooling_mode_mean_tokens: pooling === 'mean',
    pooling_mode_max_tokens: false,
    pooling_mode_mean_sqrt_len_tokens: false,
    pooling_mode_weightedmean_tokens: false,
    pooling_mode_lasttoken: pooling === 'lasttoken',
    include_prompt: includePrompt,
  };
}

/** 2_Dense/config.json as sentence-transformers' Dense saves it (weights in model.safetensors). */
export function denseConfigJson(inFeatures: number, outFeatures: number): Json {
  return {
    in_features: inFeatures,
    out_features: outFeatures,
    bias: true,
    activation_function: 'torch.nn.modules.activation.Tanh',
  };
}

export function familySentenceBertConfigJson(maxSeqLength: number, doLowerCase = false): Json {
  return { max_seq_length: maxSeqLength, do_lower_case: doLowerCase };
}

/** The longest input sentence-transformers feeds the model: encoders 512, decoders their context. */
export function familyMaxSeqLength(arch: ModelArchitecture): number {
  return isEncoder(arch) ? 512 : arch.maxPositionEmbeddings;
}
