/**
 * The typed surface of the native addon (`build/native/Release/qwen3_embed.node`), exactly as
 * docs/architecture.md specifies it. Only `native-engine.ts` loads the addon; everything else goes
 * through `EnginePort`.
 */
import type { EngineDevice, EngineDtype, EngineHead, EngineInfo } from './engine.port';

export interface AddonLoadOptions {
  modelPath: string;
  device: EngineDevice;
  dtype: EngineDtype;
  /** CUDA ordinals; [] on the CPU. */
  deviceIds: number[];
  /** Ranks per replica. */
  tensorParallelSize: number;
  /** 0 = libtorch default. */
  cpuThreads: number;
  /** CUDA graphs for batches up to this many tokens; 0 = off. */
  cudaGraphMaxTokens: number;
  /** Small tensor-parallel all-reduces through the peer (NVLink) kernel instead of NCCL. */
  peerAllReduce: boolean;
  /** How long an idle rank thread spins for the next batch before it sleeps, in microseconds. */
  idleSpinUs: number;
  /** How long a rank thread polls its GPU without sleeping each batch, in microseconds (10000). */
  deviceSpinUs?: number;
  /** How a sequence's hidden states become one row (default 'lasttoken'). */
  pooling?: 'lasttoken' | 'cls' | 'mean';
  /** L2-normalise after Matryoshka truncation (default true, false with a score head); false: truncate only. */
  normalize?: boolean;
  /** sentence-transformers Dense module directories (absolute), in modules.json order. */
  denseLayers?: string[];
  /** Default 'embedding'; a score head returns one raw score per sequence. */
  head?: EngineHead;
  /** [yes, no] token ids, for head 'yes-no'. */
  yesNoTokenIds?: [number, number];
}

/**
 * Same fields as EngineInfo; outputDimension: the last Dense layer's out_features, else hiddenSize (1
 * with a score head). An addon built before score heads reports no head.
 */
export type AddonInfo = Omit<EngineInfo, 'head'> & { outputDimension: number; head?: EngineHead };

export interface AddonHealth {
  ok: boolean;
  reason?: string;
}

export interface AddonEngine {
  /** Loads on engine-owned threads; onProgress is called on the JS thread. */
  load(options: AddonLoadOptions, onProgress?: (line: string) => void): Promise<AddonInfo>;
  /**
   * Resolves with the rows back to back: row i has dimensions[i] floats, L2-normalised unless the
   * engine was loaded with normalize: false. promptLengths[i] (omitted: zeros) leading tokens of
   * sequence i are left out of mean pooling.
   */
  embed(
    tokenIds: Int32Array,
    cuSeqlens: Int32Array,
    dimensions: Int32Array,
    promptLengths?: Int32Array,
  ): Promise<Float32Array>;
  info(): AddonInfo;
  health(): AddonHealth;
  /** Waits for in-flight batches, frees the devices; later calls reject with ENGINE_DISPOSED. */
  dispose(): Promise<void>;
}

export interface AddonBuildInfo {
  torchVersion: string;
  cuda: boolean;
  nccl: boolean;
  flashAttention: boolean;
}

export interface AddonCudaDevice {
  index: number;
  name: string;
  totalMemoryBytes: number;
  freeMemoryBytes: number;
}

export interface AddonAllReduceCheck {
  ok: boolean;
  /** One fp32 all-reduce of `bytes` (32 MiB, NCCL), on the slowest rank. */
  ms: number;
  bytes: number;
  /** The path a short query's all-reduce takes in serving: the peer kernel or NCCL. */
  smallPath: 'peer' | 'nccl';
  /** That message: [16, 2560] bf16 partial sums. */
  smallBytes: number;
  /**
   * Mean microseconds per all-reduce of it as a forward runs it (with the residual add and norm after
   * it: one kernel on the peer path), 200 back to back, on the slowest rank.
   */
  smallUs: number;
}

export interface AddonBinding {
  Engine: new () => AddonEngine;
  buildInfo(): AddonBuildInfo;
  /** Empty in a build without CUDA. */
  cudaDevices(): AddonCudaDevice[];
  /**
   * Checked all-reduces over the GPUs, as the engine's group runs them (peerAllReduce defaults to
   * true); rejects with code DEVICE_FAILED.
   */
  allReduceCheck(deviceIds: number[], options?: { peerAllReduce?: boolean }): Promise<AddonAllReduceCheck>;
  /** "[v0,v1,...]" with the shortest float32 round-trip digits; non-finite values as null. */
  floatArrayJson(values: Float32Array): string;
}
