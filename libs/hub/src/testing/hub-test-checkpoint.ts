import { generateCheckpoint, Qwen3Architecture } from '@app/checkpoint';

/**
 * The smallest checkpoint the real loader and the real tokenizer serve as text: the full Qwen3
 * vocabulary (so any text's token ids are in the table) over a 32-wide, one-layer model. About 10 MB
 * of bf16 weights, split in two shards so the index is exercised too.
 */
export const HUB_TEST_ARCHITECTURE: Qwen3Architecture = {
  vocabSize: 151665,
  hiddenSize: 32,
  numHiddenLayers: 1,
  numAttentionHeads: 2,
  numKeyValueHeads: 1,
  headDim: 16,
  intermediateSize: 64,
  rmsNormEps: 1e-6,
  ropeTheta: 1_000_000,
  maxPositionEmbeddings: 2048,
  tieWordEmbeddings: false,
};

export async function generateHubTestCheckpoint(outDir: string): Promise<void> {
  await generateCheckpoint({
    preset: HUB_TEST_ARCHITECTURE,
    seed: 7,
    outDir,
    maxShardBytes: 4 * 1024 * 1024,
  });
}
