import { Qwen3Architecture } from '../qwen3-architecture';

/** For tests: small enough to write in milliseconds, shaped like the real thing (GQA, q/k norms). */
export const MINI_ARCHITECTURE: Qwen3Architecture = {
  vocabSize: 512,
  hiddenSize: 64,
  numHiddenLayers: 2,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 16,
  intermediateSize: 128,
  rmsNormEps: 1e-6,
  ropeTheta: 1_000_000,
  maxPositionEmbeddings: 2048,
  tieWordEmbeddings: false,
};
