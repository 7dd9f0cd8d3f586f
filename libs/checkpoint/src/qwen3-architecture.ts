import { elementCount, TensorSpec } from './safetensors';
import { SafetensorsDtype } from './dtype';

/** The shape of a Qwen3 decoder, as config.json states it. */
export interface Qwen3Architecture {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
}

export type Qwen3PresetName = 'tiny' | '0.6b' | '4b' | '8b';

const QWEN3_VOCAB_ROWS = 151665;

/**
 * Qwen3-Embedding shapes. `tiny` is ours (the demo model and test fixture); the others match the
 * published Qwen3-Embedding-0.6B/4B/8B config.json files.
 */
export const QWEN3_PRESETS: Readonly<Record<Qwen3PresetName, Qwen3Architecture>> = {
  tiny: {
    vocabSize: QWEN3_VOCAB_ROWS,
    hiddenSize: 1024,
    numHiddenLayers: 3,
    numAttentionHeads: 16,
    numKeyValueHeads: 8,
    headDim: 64,
    intermediateSize: 2048,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 32768,
    tieWordEmbeddings: false,
  },
  '0.6b': {
    vocabSize: QWEN3_VOCAB_ROWS,
    hiddenSize: 1024,
    numHiddenLayers: 28,
    numAttentionHeads: 16,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 3072,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 32768,
    tieWordEmbeddings: true,
  },
  '4b': {
    vocabSize: QWEN3_VOCAB_ROWS,
    hiddenSize: 2560,
    numHiddenLayers: 36,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 9728,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 40960,
    tieWordEmbeddings: false,
  },
  '8b': {
    vocabSize: QWEN3_VOCAB_ROWS,
    hiddenSize: 4096,
    numHiddenLayers: 36,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 128,
    intermediateSize: 12288,
    rmsNormEps: 1e-6,
    ropeTheta: 1_000_000,
    maxPositionEmbeddings: 40960,
    tieWordEmbeddings: false,
  },
};

export const QWEN3_PRESET_NAMES = Object.keys(QWEN3_PRESETS) as Qwen3PresetName[];

export function qwen3Preset(name: string): Qwen3Architecture {
  const key = name.trim().toLowerCase() as Qwen3PresetName;
  const preset = QWEN3_PRESETS[key];
  if (!preset) throw new RangeError(`unknown preset "${name}": use one of ${QWEN3_PRESET_NAMES.join(', ')}`);
  return preset;
}

/**
 * What the generator draws for a tensor: N(0, 0.02) for matrices, 1 + noise for norm weights, small
 * values for biases (the other families; Qwen3 has none), and a reranker's output rows (`head`:
 * lm_head or score, seeded-weights.ts says why its scale differs).
 */
export type Qwen3TensorRole = 'embedding' | 'linear' | 'norm' | 'bias' | 'head';

export interface Qwen3TensorSpec extends TensorSpec {
  role: Qwen3TensorRole;
}

/**
 * Every tensor of a Qwen3-Embedding checkpoint, named as the published ones are (no `model.` prefix),
 * in the order we write them. Linear weights are [out, in].
 */
export function qwen3TensorSpecs(
  arch: Qwen3Architecture,
  dtype: SafetensorsDtype = 'BF16',
): Qwen3TensorSpec[] {
  const h = arch.hiddenSize;
  const q = arch.numAttentionHeads * arch.headDim;
  const kv = arch.numKeyValueHeads * arch.headDim;
  const spec = (name: string, shape: number[], role: Qwen3TensorRole): Qwen3TensorSpec => ({
    name,
    dtype,
    shape,
    role,
  });
  const specs: Qwen3TensorSpec[] = [spec('embed_tokens.weight', [arch.vocabSize, h], 'embedding')];
  for (let layer = 0; layer < arch.numHiddenLayers; layer++) {
    const p = `layers.${layer}`;
    specs.push(
      spec(`${p}.input_layernorm.weight`, [h], 'norm'),
      spec(`${p}.self_attn.q_proj.weight`, [q, h], 'linear'),
      spec(`${p}.self_attn.k_proj.weight`, [kv, h], 'linear'),
      spec(`${p}.self_attn.v_proj.weight`, [kv, h], 'linear'),
      spec(`${p}.self_attn.o_proj.weight`, [h, q], 'linear'),
      spec(`${p}.self_attn.q_norm.weight`, [arch.headDim], 'norm'),
      spec(`${p}.self_attn.k_norm.weight`, [arch.headDim], 'norm'),
      spec(`${p}.post_attention_layernorm.weight`, [h], 'norm'),
      spec(`${p}.mlp.gate_proj.weight`, [arch.intermediateSize, h], 'linear'),
      spec(`${p}.mlp.up_proj.weight`, [arch.intermediateSize, h], 'linear'),
      spec(`${p}.mlp.down_proj.weight`, [h, arch.intermediateSize], 'linear'),
    );
  }
  specs.push(spec('norm.weight', [h], 'norm'));
  return specs;
}

export interface Qwen3ParameterCount {
  total: number;
  embedding: number;
  nonEmbedding: number;
}

export function qwen3ParameterCount(arch: Qwen3Architecture): Qwen3ParameterCount {
  let total = 0;
  let embedding = 0;
  for (const spec of qwen3TensorSpecs(arch)) {
    const n = elementCount(spec.shape);
    total += n;
    if (spec.role === 'embedding') embedding += n;
  }
  return { total, embedding, nonEmbedding: total - embedding };
}

/** Structural rules the engine relies on; returns human-readable violations. */
export function qwen3ArchitectureProblems(arch: Qwen3Architecture): string[] {
  const problems: string[] = [];
  const positive: Array<keyof Qwen3Architecture> = [
    'vocabSize',
    'hiddenSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'numKeyValueHeads',
    'headDim',
    'intermediateSize',
    'maxPositionEmbeddings',
  ];
  for (const key of positive) {
    const value = arch[key];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${key} must be a positive integer (got ${String(value)})`);
    }
  }
  if (problems.length > 0) return problems;
  if (arch.numAttentionHeads % arch.numKeyValueHeads !== 0) {
    problems.push(
      `num_attention_heads (${arch.numAttentionHeads}) must be a multiple of num_key_value_heads (${arch.numKeyValueHeads})`,
    );
  }
  if (arch.headDim % 2 !== 0) problems.push(`head_dim (${arch.headDim}) must be even for RoPE`);
  if (!(arch.rmsNormEps > 0)) problems.push(`rms_norm_eps must be > 0 (got ${arch.rmsNormEps})`);
  if (!(arch.ropeTheta > 0)) problems.push(`rope_theta must be > 0 (got ${arch.ropeTheta})`);
  return problems;
}
