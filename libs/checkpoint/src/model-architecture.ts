import { SafetensorsDtype } from './dtype';
import {
  Qwen3Architecture,
  qwen3ArchitectureProblems,
  QWEN3_PRESETS,
  Qwen3PresetName,
  Qwen3TensorRole,
  Qwen3TensorSpec,
  qwen3TensorSpecs,
} from './qwen3-architecture';
import { elementCount } from './safetensors';

/** A checkpoint family, named by the `model_type` its config.json carries. */
export type DecoderFamily = 'qwen3' | 'qwen2' | 'mistral' | 'llama';
export type EncoderFamily = 'bert' | 'xlm-roberta';
export type ModelFamily = DecoderFamily | EncoderFamily;

export const MODEL_FAMILIES: readonly ModelFamily[] = [
  'qwen3',
  'qwen2',
  'mistral',
  'llama',
  'bert',
  'xlm-roberta',
];

export type PoolingMode = 'lasttoken' | 'cls' | 'mean';
export const POOLING_MODES: readonly PoolingMode[] = ['lasttoken', 'cls', 'mean'];

/** What sentence-transformers uses when a checkpoint has no Pooling config (issue 18's contract). */
export const DEFAULT_POOLING: Readonly<Record<ModelFamily, PoolingMode>> = {
  qwen3: 'lasttoken',
  qwen2: 'lasttoken',
  mistral: 'lasttoken',
  llama: 'lasttoken',
  bert: 'cls',
  'xlm-roberta': 'mean',
};

/** Llama 3's frequency-dependent RoPE rescaling, as config.json's rope_scaling states it. */
export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * A pre-norm RoPE decoder (Qwen3, Qwen2, Mistral, Llama). The Qwen3 fields keep their meaning; the
 * rest say where the families differ.
 */
export interface DecoderArchitecture extends Qwen3Architecture {
  family: DecoderFamily;
  /** qwen2: biases on q/k/v; llama: on q/k/v/o (config attention_bias). */
  attentionBias: boolean;
  /** llama's mlp_bias: biases on gate/up/down. */
  mlpBias: boolean;
  /** Qwen3's per-head RMSNorm on q and k. */
  qkNorm: boolean;
  ropeScaling: Llama3RopeScaling | null;
  /** mistral's sliding_window (null: full attention). */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenId: number;
}

/** A post-norm BERT-style encoder (BERT, XLM-RoBERTa): absolute positions, token types, GELU. */
export interface EncoderArchitecture {
  family: EncoderFamily;
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** Rows of the position table: 512 for BERT, 514 for XLM-R (its positions start at pad_token_id + 1). */
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  layerNormEps: number;
  padTokenId: number;
  hiddenAct: 'gelu';
  bosTokenId: number | null;
  eosTokenId: number | null;
}

export type ModelArchitecture = DecoderArchitecture | EncoderArchitecture;

export function isEncoder(arch: ModelArchitecture): arch is EncoderArchitecture {
  return arch.family === 'bert' || arch.family === 'xlm-roberta';
}

/** A Qwen3Architecture without `family` (the original presets, tests) is a qwen3 decoder. */
export function asModelArchitecture(arch: Qwen3Architecture | ModelArchitecture): ModelArchitecture {
  if ('family' in arch) return arch;
  return qwen3Decoder(arch);
}

function qwen3Decoder(arch: Qwen3Architecture): DecoderArchitecture {
  return {
    ...arch,
    family: 'qwen3',
    attentionBias: false,
    mlpBias: false,
    qkNorm: true,
    ropeScaling: null,
    slidingWindow: null,
    bosTokenId: QWEN_EOS_ID,
    eosTokenId: QWEN_EOS_ID,
  };
}

const QWEN_EOS_ID = 151643;
/** Qwen2's tokenizer: the byte-level BPE (151643) plus <|endoftext|>, <|im_start|>, <|im_end|>. */
export const QWEN2_VOCAB_ROWS = 151646;
/** Llama 3's tokenizer: 128000 BPE entries and 256 special tokens. */
export const LLAMA3_VOCAB_ROWS = 128256;
/** Llama 2 / Mistral v0.1 SentencePiece vocabulary. */
export const LLAMA2_VOCAB_ROWS = 32000;
/** Rows of the generated tokenizers' vocabularies (tokenizer.json of bert-tiny / xlm-roberta-tiny). */
export const GENERATED_WORDPIECE_ROWS = 4096;
export const GENERATED_UNIGRAM_ROWS = 4096;

export type FamilyPresetName =
  | 'qwen2-tiny'
  | 'mistral-tiny'
  | 'llama-tiny'
  | 'bert-tiny'
  | 'xlm-roberta-tiny'
  | 'bert-base'
  | 'xlm-roberta-base'
  | 'qwen2-1.5b'
  | 'llama-1b'
  | 'mistral-7b';

const decoder = (
  family: DecoderFamily,
  fields: Omit<
    DecoderArchitecture,
    'family' | 'qkNorm' | 'attentionBias' | 'mlpBias' | 'ropeScaling' | 'slidingWindow'
  > &
    Partial<DecoderArchitecture>,
): DecoderArchitecture => ({
  family,
  qkNorm: false,
  attentionBias: false,
  mlpBias: false,
  ropeScaling: null,
  slidingWindow: null,
  ...fields,
});

const LLAMA32_ROPE: Llama3RopeScaling = {
  ropeType: 'llama3',
  factor: 32,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 8192,
};

/**
 * The other families. The tiny ones are CI fixtures (a few MB; GQA, biases and llama3 RoPE scaling
 * exercised: with head_dim 16 and theta 500000, llama-tiny's frequencies fall in all three llama3
 * bands); the others match the published config.json of the model named beside them.
 */
export const FAMILY_PRESETS: Readonly<Record<FamilyPresetName, ModelArchitecture>> = {
  'qwen2-tiny': decoder('qwen2', {
    vocabSize: QWEN2_VOCAB_ROWS,
    hiddenSize: 64,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    intermediateSize: 128,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false,
    attentionBias: true,
    bosTokenId: QWEN_EOS_ID,
    eosTokenId: QWEN_EOS_ID,
  }),
  'mistral-tiny': decoder('mistral', {
    vocabSize: LLAMA2_VOCAB_ROWS,
    hiddenSize: 64,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    intermediateSize: 128,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false,
    slidingWindow: 4096,
    bosTokenId: 1,
    eosTokenId: 2,
  }),
  'llama-tiny': decoder('llama', {
    vocabSize: LLAMA3_VOCAB_ROWS,
    hiddenSize: 64,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    intermediateSize: 128,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: true,
    ropeScaling: LLAMA32_ROPE,
    bosTokenId: 128000,
    eosTokenId: 128001,
  }),
  'bert-tiny': {
    family: 'bert',
    vocabSize: GENERATED_WORDPIECE_ROWS,
    hiddenSize: 64,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    intermediateSize: 256,
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    padTokenId: 0,
    hiddenAct: 'gelu',
    bosTokenId: null,
    eosTokenId: null,
  },
  'xlm-roberta-tiny': {
    family: 'xlm-roberta',
    vocabSize: GENERATED_UNIGRAM_ROWS,
    hiddenSize: 64,
    numHiddenLayers: 2,
    numAttentionHeads: 4,
    intermediateSize: 256,
    maxPositionEmbeddings: 514,
    typeVocabSize: 1,
    layerNormEps: 1e-5,
    padTokenId: 1,
    hiddenAct: 'gelu',
    bosTokenId: 0,
    eosTokenId: 2,
  },
  // BAAI/bge-base-en-v1.5
  'bert-base': {
    family: 'bert',
    vocabSize: 30522,
    hiddenSize: 768,
    numHiddenLayers: 12,
    numAttentionHeads: 12,
    intermediateSize: 3072,
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    padTokenId: 0,
    hiddenAct: 'gelu',
    bosTokenId: null,
    eosTokenId: null,
  },
  // intfloat/multilingual-e5-base
  'xlm-roberta-base': {
    family: 'xlm-roberta',
    vocabSize: 250002,
    hiddenSize: 768,
    numHiddenLayers: 12,
    numAttentionHeads: 12,
    intermediateSize: 3072,
    maxPositionEmbeddings: 514,
    typeVocabSize: 1,
    layerNormEps: 1e-5,
    padTokenId: 1,
    hiddenAct: 'gelu',
    bosTokenId: 0,
    eosTokenId: 2,
  },
  // Alibaba-NLP/gte-Qwen2-1.5B-instruct
  'qwen2-1.5b': decoder('qwen2', {
    vocabSize: QWEN2_VOCAB_ROWS,
    hiddenSize: 1536,
    numHiddenLayers: 28,
    numAttentionHeads: 12,
    numKeyValueHeads: 2,
    headDim: 128,
    intermediateSize: 8960,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: false,
    attentionBias: true,
    bosTokenId: QWEN_EOS_ID,
    eosTokenId: QWEN_EOS_ID,
  }),
  // meta-llama/Llama-3.2-1B
  'llama-1b': decoder('llama', {
    vocabSize: LLAMA3_VOCAB_ROWS,
    hiddenSize: 2048,
    numHiddenLayers: 16,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 64,
    intermediateSize: 8192,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    maxPositionEmbeddings: 131072,
    tieWordEmbeddings: true,
    ropeScaling: LLAMA32_ROPE,
    bosTokenId: 128000,
    eosTokenId: 128001,
  }),
  // intfloat/e5-mistral-7b-instruct
  'mistral-7b': decoder('mistral', {
    vocabSize: LLAMA2_VOCAB_ROWS,
    hiddenSize: 4096,
    numHiddenLayers: 32,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 14336,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false,
    slidingWindow: 4096,
    bosTokenId: 1,
    eosTokenId: 2,
  }),
};

/** Qwen3-Reranker's vocabulary: every id its tokenizer knows (the prompt's <think> is 151667). */
export const QWEN3_RERANKER_VOCAB_ROWS = 151669;

export type RerankerPresetName =
  'qwen3-reranker-tiny' | 'qwen3-reranker-0.6b' | 'qwen3-reranker-4b' | 'qwen3-reranker-8b';

const qwen3Reranker = (
  fields: Omit<Qwen3Architecture, 'vocabSize' | 'rmsNormEps' | 'ropeTheta' | 'maxPositionEmbeddings'>,
): DecoderArchitecture =>
  qwen3Decoder({
    vocabSize: QWEN3_RERANKER_VOCAB_ROWS,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 40960,
    ...fields,
  });

/**
 * Qwen3-Reranker shapes (issue 17), saved as transformers saves Qwen3ForCausalLM (rerankerTensorSpecs).
 * `qwen3-reranker-tiny` is ours (the CPU parity fixtures; its context passes the 8192-token cut); the
 * others match the published Qwen3-Reranker-0.6B/4B/8B config.json files (0.6B and 4B tie lm_head to
 * the embeddings, 8B does not).
 */
export const RERANKER_PRESETS: Readonly<Record<RerankerPresetName, DecoderArchitecture>> = {
  'qwen3-reranker-tiny': qwen3Reranker({
    hiddenSize: 64,
    numHiddenLayers: 3,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    intermediateSize: 128,
    tieWordEmbeddings: true,
  }),
  'qwen3-reranker-0.6b': qwen3Reranker({
    hiddenSize: 1024,
    numHiddenLayers: 28,
    numAttentionHeads: 16,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 3072,
    tieWordEmbeddings: true,
  }),
  'qwen3-reranker-4b': qwen3Reranker({
    hiddenSize: 2560,
    numHiddenLayers: 36,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 9728,
    tieWordEmbeddings: true,
  }),
  'qwen3-reranker-8b': qwen3Reranker({
    hiddenSize: 4096,
    numHiddenLayers: 36,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 12288,
    tieWordEmbeddings: false,
  }),
};

export function isRerankerPreset(name: string): name is RerankerPresetName {
  return Object.prototype.hasOwnProperty.call(RERANKER_PRESETS, name.trim().toLowerCase());
}

/**
 * How a reranker checkpoint is saved: `causal-lm` as published (Qwen3ForCausalLM: the yes/no rows of
 * lm_head, or of the embeddings when tied), `seq-cls` as the converted Qwen3ForSequenceClassification
 * (a [1, hidden] score.weight).
 */
export type RerankerForm = 'causal-lm' | 'seq-cls';

export type ModelPresetName = Qwen3PresetName | FamilyPresetName | RerankerPresetName;

export const MODEL_PRESET_NAMES: readonly ModelPresetName[] = [
  ...(Object.keys(QWEN3_PRESETS) as Qwen3PresetName[]),
  ...(Object.keys(FAMILY_PRESETS) as FamilyPresetName[]),
  ...(Object.keys(RERANKER_PRESETS) as RerankerPresetName[]),
];

/** Any preset by name: the Qwen3 ones (as qwen3 decoders), the rerankers and the other families. */
export function modelPreset(name: string): ModelArchitecture {
  const key = name.trim().toLowerCase();
  if (key in QWEN3_PRESETS) return qwen3Decoder(QWEN3_PRESETS[key as Qwen3PresetName]);
  if (isRerankerPreset(key)) return RERANKER_PRESETS[key];
  const preset = FAMILY_PRESETS[key as FamilyPresetName];
  if (!preset) throw new RangeError(`unknown preset "${name}": use one of ${MODEL_PRESET_NAMES.join(', ')}`);
  return preset;
}

export type TensorRole = Qwen3TensorRole;
export type ModelTensorSpec = Qwen3TensorSpec;

/**
 * Every tensor of a checkpoint of the family, named as transformers' AutoModel (Qwen2Model,
 * MistralModel, LlamaModel, BertModel, XLMRobertaModel) saves them, without a `model.` prefix, in the
 * order we write them. Linear weights are [out, in]. qwen3 keeps qwen3TensorSpecs exactly.
 */
export function modelTensorSpecs(
  arch: ModelArchitecture,
  dtype: SafetensorsDtype = 'BF16',
): ModelTensorSpec[] {
  if (isEncoder(arch)) return encoderTensorSpecs(arch, dtype);
  if (arch.family === 'qwen3') return qwen3TensorSpecs(arch, dtype);
  return decoderTensorSpecs(arch, dtype);
}

/**
 * A reranker's tensors as transformers saves its task model: the decoder's under `model.`, then
 * `lm_head.weight` when a causal LM does not tie it to the embeddings (a tied one is saved once, as
 * `model.embed_tokens.weight`), or a sequence classifier's `score.weight` [1, hidden] (num_labels 1).
 */
export function rerankerTensorSpecs(
  arch: DecoderArchitecture,
  form: RerankerForm,
  dtype: SafetensorsDtype = 'BF16',
): ModelTensorSpec[] {
  const specs = modelTensorSpecs(arch, dtype).map((spec) => ({ ...spec, name: `model.${spec.name}` }));
  if (form === 'seq-cls')
    specs.push({ name: 'score.weight', dtype, shape: [1, arch.hiddenSize], role: 'head' });
  else if (!arch.tieWordEmbeddings)
    specs.push({ name: 'lm_head.weight', dtype, shape: [arch.vocabSize, arch.hiddenSize], role: 'head' });
  return specs;
}

function specMaker(dtype: SafetensorsDtype) {
  return (name: string, shape: number[], role: TensorRole): ModelTensorSpec => ({ name, dtype, shape, role });
}

function decoderTensorSpecs(arch: DecoderArchitecture, dtype: SafetensorsDtype): ModelTensorSpec[] {
  const spec = specMaker(dtype);
  const h = arch.hiddenSize;
  const q = arch.numAttentionHeads * arch.headDim;
  const kv = arch.numKeyValueHeads * arch.headDim;
  const i = arch.intermediateSize;
  const qkvBias = arch.attentionBias;
  const oBias = arch.attentionBias && arch.family === 'llama';
  const specs: ModelTensorSpec[] = [spec('embed_tokens.weight', [arch.vocabSize, h], 'embedding')];
  for (let layer = 0; layer < arch.numHiddenLayers; layer++) {
    const p = `layers.${layer}`;
    const linear = (name: string, out: number, inFeatures: number, bias: boolean): void => {
      specs.push(spec(`${p}.${name}.weight`, [out, inFeatures], 'linear'));
      if (bias) specs.push(spec(`${p}.${name}.bias`, [out], 'bias'));
    };
    specs.push(spec(`${p}.input_layernorm.weight`, [h], 'norm'));
    linear('self_attn.q_proj', q, h, qkvBias);
    linear('self_attn.k_proj', kv, h, qkvBias);
    linear('self_attn.v_proj', kv, h, qkvBias);
    linear('self_attn.o_proj', h, q, oBias);
    if (arch.qkNorm) {
      specs.push(spec(`${p}.self_attn.q_norm.weight`, [arch.headDim], 'norm'));
      specs.push(spec(`${p}.self_attn.k_norm.weight`, [arch.headDim], 'norm'));
    }
    specs.push(spec(`${p}.post_attention_layernorm.weight`, [h], 'norm'));
    linear('mlp.gate_proj', i, h, arch.mlpBias);
    linear('mlp.up_proj', i, h, arch.mlpBias);
    linear('mlp.down_proj', h, i, arch.mlpBias);
  }
  specs.push(spec('norm.weight', [h], 'norm'));
  return specs;
}

function encoderTensorSpecs(arch: EncoderArchitecture, dtype: SafetensorsDtype): ModelTensorSpec[] {
  const spec = specMaker(dtype);
  const h = arch.hiddenSize;
  const i = arch.intermediateSize;
  const linear = (name: string, out: number, inFeatures: number): ModelTensorSpec[] => [
    spec(`${name}.weight`, [out, inFeatures], 'linear'),
    spec(`${name}.bias`, [out], 'bias'),
  ];
  const layerNorm = (name: string): ModelTensorSpec[] => [
    spec(`${name}.weight`, [h], 'norm'),
    spec(`${name}.bias`, [h], 'bias'),
  ];
  const specs: ModelTensorSpec[] = [
    spec('embeddings.word_embeddings.weight', [arch.vocabSize, h], 'embedding'),
    spec('embeddings.position_embeddings.weight', [arch.maxPositionEmbeddings, h], 'embedding'),
    spec('embeddings.token_type_embeddings.weight', [arch.typeVocabSize, h], 'embedding'),
    ...layerNorm('embeddings.LayerNorm'),
  ];
  for (let layer = 0; layer < arch.numHiddenLayers; layer++) {
    const p = `encoder.layer.${layer}`;
    specs.push(
      ...linear(`${p}.attention.self.query`, h, h),
      ...linear(`${p}.attention.self.key`, h, h),
      ...linear(`${p}.attention.self.value`, h, h),
      ...linear(`${p}.attention.output.dense`, h, h),
      ...layerNorm(`${p}.attention.output.LayerNorm`),
      ...linear(`${p}.intermediate.dense`, i, h),
      ...linear(`${p}.output.dense`, h, i),
      ...layerNorm(`${p}.output.LayerNorm`),
    );
  }
  // Real checkpoints carry the pooler (BertModel's add_pooling_layer); embedding models never use it.
  specs.push(...linear('pooler.dense', h, h));
  return specs;
}

export function modelParameterCount(arch: ModelArchitecture): {
  total: number;
  embedding: number;
  nonEmbedding: number;
} {
  let total = 0;
  let embedding = 0;
  for (const spec of modelTensorSpecs(arch)) {
    const n = elementCount(spec.shape);
    total += n;
    if (spec.role === 'embedding') embedding += n;
  }
  return { total, embedding, nonEmbedding: total - embedding };
}

/** Structural rules the engine relies on; returns human-readable violations. */
export function modelArchitectureProblems(arch: ModelArchitecture): string[] {
  if (!isEncoder(arch)) {
    const problems = qwen3ArchitectureProblems(arch);
    if (problems.length > 0 || arch.ropeScaling === null) return problems;
    const r = arch.ropeScaling;
    if (!(r.factor > 0) || !(r.lowFreqFactor > 0) || !(r.highFreqFactor > r.lowFreqFactor)) {
      problems.push('rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0');
    }
    if (!Number.isSafeInteger(r.originalMaxPositionEmbeddings) || r.originalMaxPositionEmbeddings <= 0) {
      problems.push('rope_scaling.original_max_position_embeddings must be a positive integer');
    }
    return problems;
  }
  const problems: string[] = [];
  const positive: Array<keyof EncoderArchitecture> = [
    'vocabSize',
    'hiddenSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'intermediateSize',
    'maxPositionEmbeddings',
    'typeVocabSize',
  ];
  for (const key of positive) {
    const value = arch[key];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${key} must be a positive integer (got ${String(value)})`);
    }
  }
  if (problems.length > 0) return problems;
  if (arch.hiddenSize % arch.numAttentionHeads !== 0) {
    problems.push(
      `hidden_size (${arch.hiddenSize}) must be a multiple of num_attention_heads (${arch.numAttentionHeads})`,
    );
  }
  if (!(arch.layerNormEps > 0)) problems.push(`layer_norm_eps must be > 0 (got ${arch.layerNormEps})`);
  if (!Number.isSafeInteger(arch.padTokenId) || arch.padTokenId < 0 || arch.padTokenId >= arch.vocabSize) {
    problems.push(`pad_token_id ${arch.padTokenId} is outside the vocabulary`);
  }
  return problems;
}
