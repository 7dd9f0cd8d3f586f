/**
 * The only door from the service to the model. `NativeEngine` (the C++ addon) implements it; unit tests
 * may fake it. Everything crossing it is plain data: token ids, lengths, requested dimensions, rows.
 */

export type EngineDevice = 'cpu' | 'cuda';
export type EngineDtype = 'float32' | 'bfloat16' | 'float16';
/**
 * How a sequence's hidden states become its embedding (sentence-transformers' Pooling module): the
 * last token's, the first token's ([CLS] / <s>), or the mean over its tokens past its prompt length.
 */
export type EnginePooling = 'lasttoken' | 'cls' | 'mean';
/**
 * What the pooled row becomes: the embedding itself, or a reranker's score head, one raw float per
 * sequence (relevance = sigmoid(raw)): 'yes-no' is logit(yes) - logit(no) from the LM head (or the
 * tied embeddings) of a CausalLM reranker, 'classifier' the logit of a SequenceClassification
 * model's score.weight (num_labels 1).
 */
export type EngineHead = 'embedding' | 'yes-no' | 'classifier';

export interface EngineLoadOptions {
  /** Hugging Face checkpoint directory (config.json + safetensors). */
  modelPath: string;
  device: EngineDevice;
  /** Compute dtype. CPU supports float32 only. */
  dtype: EngineDtype;
  /** CUDA ordinals to use (after CUDA_VISIBLE_DEVICES). Ignored on the CPU. */
  deviceIds: number[];
  /**
   * GPUs per tensor-parallel group; must divide the KV heads and deviceIds.length.
   * replicas = deviceIds.length / tensorParallelSize. On the CPU it is the number of simulated ranks
   * (threads with an in-process communicator) of the single replica.
   */
  tensorParallelSize: number;
  /** Intra-op threads for CPU compute (0 = libtorch default). */
  cpuThreads?: number;
  /**
   * CUDA graphs for batches of up to this many tokens (and 64 texts), captured at load; 0 turns
   * them off. Default 512. Used on CUDA with bf16/fp16 only.
   */
  cudaGraphMaxTokens?: number;
  /**
   * Tensor-parallel groups send small all-reduces through a one-shot kernel over peer access
   * (NVLink) instead of NCCL, which also lets their forward be captured in CUDA graphs. Used only
   * when every pair of a group's GPUs has peer access. Default true.
   */
  peerAllReduce?: boolean;
  /**
   * How long an idle rank thread spins for the next batch before it sleeps, in microseconds (0,
   * the default: it sleeps at once). Saves a thread wake-up per rank and batch; costs a busy CPU
   * core per rank while it spins. The server sets it from BUSY_POLL.
   */
  idleSpinUs?: number;
  /** Called with human-readable progress lines while loading (per shard, per rank). */
  onProgress?: (message: string) => void;
  /** Default 'lasttoken'. */
  pooling?: EnginePooling;
  /** L2-normalise each row after the Matryoshka truncation (default true); false: truncate only. */
  normalize?: boolean;
  /**
   * Absolute paths of the sentence-transformers Dense module directories, in modules.json order,
   * applied after pooling (default none).
   */
  denseLayers?: string[];
  /**
   * Default 'embedding'. 'yes-no' needs yesNoTokenIds. A score head needs pooling 'lasttoken', no
   * Dense layers and normalize false (its default then), and a decoder model.
   */
  head?: EngineHead;
  /** [yes, no] token ids for head 'yes-no' (Qwen3: [9693, 2152]). */
  yesNoTokenIds?: [number, number];
}

/**
 * A packed forward batch: every sequence's token ids back to back, no padding.
 * cuSeqlens has n+1 entries: 0, end of sequence 0, ..., tokenIds.length (strictly increasing).
 * dimensions has n entries, each 32..outputDimension: the Matryoshka size of that sequence's row;
 * with a score head, each 1.
 * promptLengths has n entries: the tokens at the start of each sequence that mean pooling leaves out
 * (sentence-transformers' include_prompt=false); all zeros otherwise, and absent means zeros.
 */
export interface PackedBatch {
  tokenIds: Int32Array;
  cuSeqlens: Int32Array;
  dimensions: Int32Array;
  promptLengths?: Int32Array;
}

export interface EngineDeviceInfo {
  /** CUDA ordinal, or -1 for the CPU. */
  index: number;
  name: string;
  totalMemoryBytes: number;
  /** Bytes allocated by this engine on the device (weights + caches). */
  usedMemoryBytes: number;
  /** Replica and tensor-parallel rank of this device. */
  replica: number;
  rank: number;
}

export interface EngineInfo {
  modelPath: string;
  /** config.json's model_type: the family (qwen3, qwen2, mistral, llama, bert, xlm-roberta). */
  modelType: string;
  hiddenSize: number;
  /** Length of a full row: the last Dense layer's out_features, else hiddenSize; 1 with a score head. */
  outputDimension: number;
  /** The head the model was loaded with. */
  head: EngineHead;
  numLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Rows of the embedding table: token ids must be < vocabSize. */
  vocabSize: number;
  maxPositionEmbeddings: number;
  parameters: number;
  device: EngineDevice;
  dtype: EngineDtype;
  tensorParallelSize: number;
  replicas: number;
  /** The largest batch (tokens) served by CUDA graph replay; 0 when graphs are not in use. */
  cudaGraphMaxTokens: number;
  /** Whether the tensor-parallel groups send small all-reduces through the peer kernel. */
  peerAllReduce: boolean;
  devices: EngineDeviceInfo[];
}

// The engine's errors are plain domain errors of libs/common (which sits below the engine), mapped to
// HTTP by the one global filter; re-exported here for the engine's users.
export { EngineError } from '@app/common/engine.error';
export type { EngineErrorCode } from '@app/common/engine.error';

export abstract class EnginePort {
  /** Loads the checkpoint onto the devices; resolves with the model's description. */
  abstract load(options: EngineLoadOptions): Promise<EngineInfo>;
  /**
   * Embeds one packed batch. Resolves with the rows back to back (row i has dimensions[i] floats, L2
   * normalised unless the model was loaded with normalize=false); with a score head, one raw score
   * per sequence. Up to `info().replicas` batches run at once; more wait inside the engine.
   */
  abstract embed(batch: PackedBatch): Promise<Float32Array>;
  abstract info(): EngineInfo;
  /** ok=false once a device failed; the reason says why. */
  abstract health(): { ok: boolean; reason?: string };
  abstract dispose(): Promise<void>;
}
