import { performance } from 'node:perf_hooks';
import { BusyPoll } from '@app/common';
import { AppConfig } from '@app/config';
import type { EmbedJobResult } from '@app/batching/batching.service';
import type { ModelTask } from '@app/checkpoint/model-task';
import type { ModelMetrics } from '@app/metrics/metrics.service';
import type { EmbeddingTimings } from './embeddings.service';
import { ModelBinding, ModelService } from './model.service';

/** A request let through to its own work: the model name's binding and its deadline (performance.now() ms). */
export interface ModelRequest {
  binding: ModelBinding;
  deadline: number;
}

/**
 * What every request to the model (embeddings, rerank) does around its own work: BUSY_POLL held
 * while it waits for the tokenizer and the engine, its deadline, the model name, readiness and task
 * checks; then the engine's and the request's times in the metrics.
 */
export class ModelRequestGate {
  private readonly busyPoll: BusyPoll;

  constructor(
    private readonly config: AppConfig,
    private readonly model: ModelService,
    private readonly metrics: ModelMetrics,
  ) {
    this.busyPoll = new BusyPoll(config.server.busyPoll, config.server.busyPollLingerMs);
  }

  /**
   * `deadlineMs`: the client's X-Request-Deadline-Ms (validated by `parseDeadlineHeader`), else
   * REQUEST_DEADLINE_MS; counted from now.
   */
  async run<T>(
    modelName: string | null | undefined,
    task: ModelTask,
    deadlineMs: number | undefined,
    work: (request: ModelRequest) => Promise<T>,
  ): Promise<T> {
    // BUSY_POLL: no sleeping while this request waits for the tokenizer and the engine.
    const hold = this.busyPoll.hold();
    try {
      const started = performance.now();
      const deadline = started + (deadlineMs ?? this.config.limits.requestDeadlineMs);
      const binding = this.model.binding(modelName);
      this.model.assertReady();
      this.model.assertTask(task);
      const outcome = await work({ binding, deadline });
      this.metrics.requestSeconds.observe((performance.now() - started) / 1000);
      return outcome;
    } finally {
      hold.release();
    }
  }

  /** The engine's part of a request in the metrics, and the request's timing headers. */
  engineTimings(result: EmbedJobResult, tokenizationMs: number, totalTokens: number): EmbeddingTimings {
    this.metrics.queueSeconds.observe(result.queueTimeMs / 1000);
    this.metrics.inferenceSeconds.observe(result.inferenceTimeMs / 1000);
    this.metrics.tokens.inc(totalTokens);
    return {
      tokenizationMs,
      queueMs: result.queueTimeMs,
      inferenceMs: result.inferenceTimeMs,
      totalTokens,
      batches: result.batches,
    };
  }
}
