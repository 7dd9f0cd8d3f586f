import { basename, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { ServiceUnavailableError } from '@app/common';
import { formatBytes } from '@app/checkpoint/quantities';
import { AppConfig } from '@app/config';
import { HubModelDownloader } from '@app/hub/hub-model-downloader';
import { deviceLayout } from './device-layout';
import { EngineHead, EngineInfo, EngineLoadOptions, EnginePort, PackedBatch } from './engine.port';

export type ModelState = 'idle' | 'downloading' | 'loading' | 'warming' | 'ready' | 'failed' | 'stopping';

/**
 * Counts the CUDA devices visible to this process (the addon's `cudaDevices().length`). Needed only
 * when DEVICE=cuda and CUDA_VISIBLE_DEVICES is unset.
 */
export const CUDA_DEVICE_COUNT = Symbol('CUDA_DEVICE_COUNT');
export type CudaDeviceCount = () => number;

export interface Readiness {
  ready: boolean;
  state: ModelState;
  reason?: string;
}

/**
 * How the checkpoint pools and normalises (its sentence-transformers modules), or the score head of a
 * reranker: passed to the engine's load.
 */
export type ModelHeadOptions = Pick<
  EngineLoadOptions,
  'pooling' | 'normalize' | 'denseLayers' | 'head' | 'yesNoTokenIds'
>;

/** What the layers above the engine do while the model comes up (tokenizer, prompts, warm-up). */
export interface ModelSetupSteps {
  /**
   * Before the engine loads, given the checkpoint directory; a failure stops the setup. May return
   * the checkpoint's pooling, normalisation and Dense layers for the load.
   */
  prepare?(directory: string): Promise<ModelHeadOptions | void>;
  /**
   * After the load, before readiness: a batch embedded (or scored) once so the first client pays no
   * setup (skipped with WARMUP=false).
   */
  warmUpBatch?(info: EngineInfo): Promise<PackedBatch>;
}

/**
 * The served model's life on the engine, owned once: `setup()` downloads a MODEL_ID checkpoint,
 * lays the model over the devices and loads it, warms up and turns ready; `teardown()` disposes the
 * engine, cancelling a load still running. Readiness comes from this state and `engine.health()`
 * only, never from an embed call, so probes never wait behind running batches.
 */
export class ModelLifecycle {
  private readonly logger: Logger;
  private current: ModelState = 'idle';
  private failure?: string;
  private engineInfo?: EngineInfo;
  private setting?: Promise<void>;
  private teardownDone?: Promise<void>;
  /** The checkpoint directory: MODEL_PATH, or the cache snapshot that MODEL_ID resolved to. */
  private folder: string;
  /** Stops a MODEL_ID download when the server shuts down (the partial file is kept to resume). */
  private readonly download = new AbortController();
  /** While downloading: how far it is, for /health/ready. */
  private downloadProgress?: string;
  /** The head the engine is loaded with; unset until the checkpoint has been read. */
  private loadedHead?: EngineHead;

  constructor(
    private readonly config: AppConfig,
    private readonly engine: EnginePort,
    private readonly cudaDeviceCount?: CudaDeviceCount,
    private readonly hub: HubModelDownloader = new HubModelDownloader(),
  ) {
    this.folder = config.model.path;
    this.logger = new Logger(modelLogContext(ModelLifecycle.name, config));
  }

  get state(): ModelState {
    return this.current;
  }

  /** The checkpoint directory's name: the model's name on disk (or on the Hub). */
  get directoryName(): string {
    return this.config.model.hub ? basename(this.config.model.hub.modelId) : basename(resolve(this.folder));
  }

  get info(): EngineInfo {
    if (!this.engineInfo) {
      throw new ServiceUnavailableError('The model is loading.', 'model_not_ready', 5);
    }
    return this.engineInfo;
  }

  /**
   * What the model's pooled state becomes: 'embedding' rows, or a reranker's score ('yes-no',
   * 'classifier'); undefined until setup has read the checkpoint.
   */
  get head(): EngineHead | undefined {
    return this.loadedHead;
  }

  readiness(): Readiness {
    if (this.current === 'ready') {
      const health = this.engine.health();
      if (!health.ok) {
        this.failure = health.reason ?? 'the engine reported a failure';
        this.current = 'failed';
        this.logger.error(`engine failed: ${this.failure}`);
      }
    }
    const reason = this.failure ?? (this.current === 'downloading' ? this.downloadProgress : undefined);
    return { ready: this.current === 'ready', state: this.current, reason };
  }

  /** Throws the 503 that embeddings requests get while the model cannot serve. */
  assertReady(): void {
    const { ready, state } = this.readiness();
    if (ready) return;
    if (state === 'failed') {
      throw new ServiceUnavailableError('The embedding engine is unavailable.', 'engine_unavailable');
    }
    if (state === 'stopping') {
      throw new ServiceUnavailableError('The server is shutting down.', 'shutting_down');
    }
    throw new ServiceUnavailableError('The model is loading; retry shortly.', 'model_not_ready', 5);
  }

  /** Downloads (MODEL_ID), loads and warms up; resolves once ready. Safe to call twice. */
  setup(steps: ModelSetupSteps = {}): Promise<void> {
    this.setting ??= this.setupOnce(steps).catch((error: unknown) => {
      this.current = 'failed';
      this.failure = (error as Error).message;
      throw error;
    });
    return this.setting;
  }

  private async setupOnce(steps: ModelSetupSteps): Promise<void> {
    const { model } = this.config;
    // The process's remarks, once: by the first served model's lifecycle.
    if (model === this.config.models[0].model) {
      for (const warning of this.config.warnings) this.logger.warn(warning);
    }
    const source = model.hub;
    if (source) {
      this.current = 'downloading';
      const snapshot = await this.hub.download(source, {
        signal: this.download.signal,
        log: (line) => this.logger.log(line),
        warn: (line) => this.logger.warn(line),
        onProgress: (bytes, total) => {
          this.downloadProgress = `${source.modelId}: ${formatBytes(bytes)} of ${formatBytes(total)} downloaded`;
        },
      });
      this.folder = snapshot.directory;
    }
    if (this.current === 'stopping') return;
    this.current = 'loading';
    const options = this.loadOptions();
    this.logger.log(
      `loading ${this.folder} on ${options.device} (${options.dtype}, devices [${options.deviceIds.join(',')}], tensor parallel ${options.tensorParallelSize})`,
    );
    const started = performance.now();
    const head = await steps.prepare?.(this.folder);
    this.loadedHead = head?.head ?? 'embedding';
    const info = await this.engine.load({ ...options, ...head });
    this.engineInfo = info;
    if (
      this.loadedHead === 'embedding' &&
      model.embeddingDimension &&
      model.embeddingDimension > info.outputDimension
    ) {
      this.logger.warn(
        `EMBEDDING_DIMENSION=${model.embeddingDimension} exceeds the model's output dimension; using ${info.outputDimension}`,
      );
    }
    const output = info.outputDimension !== info.hiddenSize ? `, output ${info.outputDimension}` : '';
    this.logger.log(
      `loaded ${info.modelType} (${info.numLayers} layers, hidden ${info.hiddenSize}${output}, ${info.replicas} replica(s) of ${info.tensorParallelSize} device(s)) in ${Math.round(performance.now() - started)} ms`,
    );
    // A shutdown that began during the load keeps the state `stopping`.
    if (model.warmup && steps.warmUpBatch && this.current === 'loading') {
      this.current = 'warming';
      const warming = performance.now();
      await this.engine.embed(await steps.warmUpBatch(info));
      this.logger.log(`warmed up in ${Math.round(performance.now() - warming)} ms`);
    }
    if (this.current === 'warming' || this.current === 'loading') {
      this.current = 'ready';
    }
  }

  private loadOptions(): EngineLoadOptions {
    const { model } = this.config;
    const { deviceIds, tensorParallelSize } = deviceLayout(
      model.device,
      model.device === 'cuda' ? (model.visibleCudaDevices ?? this.cudaDeviceCount?.()) : undefined,
      model.tensorParallelSize,
      model.gpus,
    );
    return {
      modelPath: this.folder,
      device: model.device,
      dtype: model.dtype,
      deviceIds,
      tensorParallelSize,
      cpuThreads: model.cpuThreads,
      cudaGraphMaxTokens: model.cudaGraphMaxTokens,
      peerAllReduce: model.peerAllReduce,
      // BUSY_POLL: the engine's rank threads spin between batches as the event loop does.
      idleSpinUs: this.config.server.busyPoll ? this.config.server.busyPollLingerMs * 1000 : 0,
      onProgress: (message) => this.logger.log(message),
    };
  }

  /** Readiness turns 503 (`stopping`) for good: the first thing a shutdown does. */
  markStopping(): void {
    if (this.current !== 'failed') {
      this.current = 'stopping';
    }
    this.download.abort();
  }

  /**
   * Disposes the engine (the only place that does), once. Disposing first cancels a load still
   * running on the engine's thread (a large checkpoint takes minutes); waiting for the load to end
   * first would hold the shutdown that long.
   */
  teardown(): Promise<void> {
    this.teardownDone ??= (async () => {
      this.markStopping();
      const disposal = this.engine.dispose();
      await this.setting?.catch(() => undefined);
      try {
        await disposal;
        this.logger.log('engine disposed');
      } catch (error) {
        this.logger.warn(`engine dispose failed: ${(error as Error).message}`);
      }
    })();
    return this.teardownDone;
  }
}

/** A log context naming the served model when the process serves several (`ModelLifecycle reranker`). */
export function modelLogContext(name: string, config: AppConfig): string {
  return config.models.length > 1 ? `${name} ${config.model.servedNames[0]}` : name;
}
