import { basename, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { ModelNotFoundError, ServiceUnavailableError } from '@app/common';
import { AppConfig } from '@app/config';
import { EngineInfo, EngineLoadOptions, EnginePort } from '@app/engine/engine.port';
import { deviceLayout } from '@app/engine/device-layout';
import { packBatch } from '@app/engine/packed-batch';
import { formatBytes } from '@app/checkpoint/quantities';
import { HubModelDownloader } from '@app/hub/hub-model-downloader';
import { PromptTemplate } from './prompt-template';
import { TokenizerService } from './tokenizer.service';

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

const HF_ORGANIZATION = 'Qwen';

/**
 * The served model: loads the engine and tokenizer, warms up, knows its names, limits and prompts, and
 * tells whether it can serve. Readiness comes from this state and `engine.health()` only, never from
 * an embed call, so probes never wait behind running batches.
 */
@Injectable()
export class ModelService implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(ModelService.name);
  private current: ModelState = 'idle';
  private failure?: string;
  private engineInfo?: EngineInfo;
  private template = new PromptTemplate({ query: '', document: '' });
  private loading?: Promise<void>;
  /** The checkpoint directory: MODEL_PATH, or the cache snapshot that MODEL_ID resolved to. */
  private directory: string;
  /** Stops a MODEL_ID download when the server shuts down (the partial file is kept to resume). */
  private readonly download = new AbortController();
  /** While downloading: how far it is, for /health/ready. */
  private downloadProgress?: string;
  /** Unix seconds at which the service started; reported as the model's `created`. */
  readonly created = Math.floor(Date.now() / 1000);
  readonly id: string;
  private readonly names: Map<string, string>;

  constructor(
    private readonly config: AppConfig,
    private readonly engine: EnginePort,
    private readonly tokenizer: TokenizerService,
    @Optional() @Inject(CUDA_DEVICE_COUNT) private readonly cudaDeviceCount?: CudaDeviceCount,
    @Optional() private readonly hub: HubModelDownloader = new HubModelDownloader(),
  ) {
    const [id, ...aliases] = config.model.servedNames;
    this.directory = config.model.path;
    const directory = config.model.hub
      ? basename(config.model.hub.modelId)
      : basename(resolve(config.model.path));
    this.id = id;
    this.names = new Map(
      [id, ...aliases, directory, `${HF_ORGANIZATION}/${directory}`].map((name) => [
        name.toLowerCase(),
        name,
      ]),
    );
  }

  get state(): ModelState {
    return this.current;
  }

  /** Every name a request may use for this model, the served id first. */
  get aliases(): string[] {
    return [...new Set([this.id, ...this.names.values()])];
  }

  get info(): EngineInfo {
    if (!this.engineInfo) {
      throw new ServiceUnavailableError('The model is loading.', 'model_not_ready', 5);
    }
    return this.engineInfo;
  }

  get prompts(): PromptTemplate {
    return this.template;
  }

  /** Per-input token limit: MAX_INPUT_TOKENS, never above the model's max_position_embeddings. */
  get maxInputTokens(): number {
    return Math.min(this.config.limits.maxInputTokens, this.info.maxPositionEmbeddings);
  }

  /** Default output size: EMBEDDING_DIMENSION capped at the hidden size, else the hidden size. */
  get defaultDimensions(): number {
    const hidden = this.info.hiddenSize;
    return Math.min(this.config.model.embeddingDimension ?? hidden, hidden);
  }

  /** Resolves the request's `model` to the served id; omitted means the served model. */
  /** The served id for a request's `model`; null or absent means the served model. */
  resolve(requested: string | null | undefined): string {
    if (requested === undefined || requested === null || this.names.has(requested.toLowerCase())) {
      return this.id;
    }
    throw new ModelNotFoundError(requested);
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

  /** A row as JSON text from the engine's native formatter; undefined when it has none. */
  floatArrayJson(row: Float32Array): string | undefined {
    return this.engine.floatArrayJson(row);
  }

  /** Loads the engine and tokenizer, then warms up; resolves once ready. Safe to call twice. */
  load(): Promise<void> {
    this.loading ??= this.loadOnce().catch((error: unknown) => {
      this.current = 'failed';
      this.failure = (error as Error).message;
      throw error;
    });
    return this.loading;
  }

  private async loadOnce(): Promise<void> {
    const { model } = this.config;
    for (const warning of this.config.warnings) this.logger.warn(warning);
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
      this.directory = snapshot.directory;
    }
    if (this.current === 'stopping') return;
    this.current = 'loading';
    const options = this.loadOptions();
    this.logger.log(
      `loading ${this.directory} on ${options.device} (${options.dtype}, devices [${options.deviceIds.join(',')}], tensor parallel ${options.tensorParallelSize})`,
    );
    const started = performance.now();
    this.tokenizer.load(join(this.directory, 'tokenizer.json'));
    const [info, template] = await Promise.all([
      this.engine.load(options),
      PromptTemplate.load(this.directory),
    ]);
    this.engineInfo = info;
    this.template = template;
    if (this.config.model.embeddingDimension && this.config.model.embeddingDimension > info.hiddenSize) {
      this.logger.warn(
        `EMBEDDING_DIMENSION=${this.config.model.embeddingDimension} exceeds the hidden size; using ${info.hiddenSize}`,
      );
    }
    this.logger.log(
      `loaded ${info.modelType} (${info.numLayers} layers, hidden ${info.hiddenSize}, ${info.replicas} replica(s) of ${info.tensorParallelSize} device(s)) in ${Math.round(performance.now() - started)} ms`,
    );
    // A shutdown that began during the load keeps the state `stopping`.
    if (model.warmup && this.current === 'loading') {
      this.current = 'warming';
      await this.warmUp();
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
    );
    return {
      modelPath: this.directory,
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

  /** One short query and one short document through the engine, so the first client pays no setup. */
  private async warmUp(): Promise<void> {
    const started = performance.now();
    const [query, document] = await this.tokenizer.encode([
      `${this.template.prefix({ inputType: 'query' })}warm-up`,
      'warm-up',
    ]);
    const dimensions = this.defaultDimensions;
    await this.engine.embed(
      packBatch([
        { tokens: query, dimensions },
        { tokens: document, dimensions },
      ]),
    );
    this.logger.log(`warmed up in ${Math.round(performance.now() - started)} ms`);
  }

  /** Readiness turns 503 (`stopping`) for good: the first thing a shutdown does. */
  markStopping(): void {
    if (this.current !== 'failed') {
      this.current = 'stopping';
    }
    this.download.abort();
  }

  beforeApplicationShutdown(): void {
    this.markStopping();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.loading) {
      // Disposing first cancels a load still running on the engine's thread (a large checkpoint
      // takes minutes); waiting for the load to end first would hold the shutdown that long.
      const disposal = this.engine.dispose();
      await this.loading.catch(() => undefined);
      try {
        await disposal;
        this.logger.log('engine disposed');
      } catch (error) {
        this.logger.warn(`engine dispose failed: ${(error as Error).message}`);
      }
    }
  }
}
