import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { batchingOptions } from '@app/batching/batching-options.factory';
import { BatchingService } from '@app/batching/batching.service';
import type { ModelTask } from '@app/checkpoint/model-task';
import { ModelNotFoundError } from '@app/common';
import { AppConfig } from '@app/config';
import { EngineFactory } from '@app/engine/engine-factory';
import type { EnginePort } from '@app/engine/engine.port';
import { FloatArrayFormatter } from '@app/engine/float-array-formatter';
import { CUDA_DEVICE_COUNT, type CudaDeviceCount, ModelLifecycle } from '@app/engine/model-lifecycle.service';
import { HubModelDownloader } from '@app/hub/hub-model-downloader';
import { MetricsService, type ModelMetrics } from '@app/metrics/metrics.service';
import { EmbeddingsService } from './embeddings.service';
import { ModelService, type Readiness } from './model.service';
import { RerankTemplates } from './rerank-template';
import { TokenizeService } from './tokenize.service';
import { TokenizerService } from './tokenizer.service';

/**
 * One served model (a MODELS entry, or the top-level model): its own engine, lifecycle, tokenizer and
 * batcher, and the services of its requests, all reading its own section of the configuration.
 */
export interface ServedModel {
  /** Its place in MODELS (0 without MODELS). */
  readonly index: number;
  /** The served id. */
  readonly id: string;
  /** The configuration with this model's `model` and `limits` sections. */
  readonly config: AppConfig;
  readonly engine: EnginePort;
  readonly lifecycle: ModelLifecycle;
  readonly tokenizer: TokenizerService;
  readonly batching: BatchingService;
  readonly model: ModelService;
  readonly metrics: ModelMetrics;
  readonly embeddings: EmbeddingsService;
  readonly tokenize: TokenizeService;
}

/** A served model's readiness under its id, as /health and /health/ready report it. */
export interface ModelReadiness extends Readiness {
  id: string;
}

/**
 * Every model this process serves, built once at boot from the configuration's `models` (one entry
 * without MODELS), and the routing of a request's `model` to one of them. Each model comes up
 * (download, load, warm-up) on its own; the process is ready when all are. Shutdown stops, drains and
 * disposes them all.
 */
@Injectable()
export class ModelRegistry implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(ModelRegistry.name);
  readonly models: readonly ServedModel[];

  constructor(
    config: AppConfig,
    engines: EngineFactory,
    metrics: MetricsService,
    formatter: FloatArrayFormatter,
    private readonly modules: ModuleRef,
    @Optional() @Inject(CUDA_DEVICE_COUNT) cudaDeviceCount?: CudaDeviceCount,
    @Optional() hub?: HubModelDownloader,
  ) {
    this.models = config.models.map((_, index) => {
      const own = config.forModel(index);
      const engine = engines.create(index);
      const lifecycle = new ModelLifecycle(own, engine, cudaDeviceCount, hub);
      const tokenizer = new TokenizerService();
      const model = new ModelService(own, lifecycle, tokenizer, formatter);
      const modelMetrics = metrics.forModel(model.id);
      const batching = new BatchingService(engine, modelMetrics, batchingOptions(own));
      const served: ServedModel = {
        index,
        id: model.id,
        config: own,
        engine,
        lifecycle,
        tokenizer,
        batching,
        model,
        metrics: modelMetrics,
        embeddings: new EmbeddingsService(own, model, tokenizer, batching, modelMetrics),
        tokenize: new TokenizeService(own, model, tokenizer, () => this.rerankTemplates().for(served)),
      };
      return served;
    });
    metrics.reportModels(() =>
      this.models.map(({ id, lifecycle, engine }) => ({
        model: id,
        ready: () => lifecycle.readiness().ready,
        devices: () => {
          try {
            return engine.info().devices ?? [];
          } catch {
            return []; // not loaded yet
          }
        },
      })),
    );
  }

  /** The first served model: the one a single-model deployment serves. */
  get first(): ServedModel {
    return this.models[0];
  }

  /**
   * The model a request's `model` names (any of its names or prompt aliases; 404 model_not_found for
   * none). A request that names none goes to the first model serving `task`; while some model's task
   * is not known yet (it is loading), to that one (which answers 503); else to the first model, which
   * answers model_task_mismatch.
   */
  route(requested: string | null | undefined, task: ModelTask): ServedModel {
    if (requested !== undefined && requested !== null) {
      const named = this.models.find((served) => served.model.accepts(requested));
      if (!named) throw new ModelNotFoundError(requested);
      return named;
    }
    return (
      this.models.find((served) => served.model.detectedTask === task) ??
      this.models.find((served) => served.model.detectedTask === undefined) ??
      this.first
    );
  }

  /**
   * Sets every model up at once (download, load, warm-up); resolves when all are ready. The first
   * failure rejects, naming the model when there are several.
   */
  load(): Promise<void> {
    const several = this.models.length > 1;
    return Promise.all(
      this.models.map((served) =>
        served.model.load().catch((error: unknown) => {
          if (!several) throw error;
          // No `cause`: the log's error serializer would print the message twice.
          throw new Error(`MODELS[${served.index}] (${served.id}): ${(error as Error).message}`);
        }),
      ),
    ).then(() => undefined);
  }

  /** Each model's readiness, in order. */
  readiness(): ModelReadiness[] {
    return this.models.map((served) => ({ id: served.id, ...served.lifecycle.readiness() }));
  }

  /** Readiness turns 503 (`stopping`) for good on every model: the first thing a shutdown does. */
  markStopping(): void {
    for (const served of this.models) served.lifecycle.markStopping();
  }

  /** Lets every model's admitted requests finish (up to `timeoutMs`), then fails the rest with 503. */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.all(this.models.map((served) => served.batching.drain(timeoutMs)));
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.markStopping();
    await Promise.all(this.models.map((served) => served.batching.beforeApplicationShutdown()));
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.models.map((served) => served.lifecycle.teardown()));
    this.logger.debug(`disposed ${this.models.length} model(s)`);
  }

  /** Provided by libs/rerank, which sits above this module: looked up app-wide, not imported. */
  private rerankTemplates(): RerankTemplates {
    return this.modules.get(RerankTemplates, { strict: false });
  }
}
