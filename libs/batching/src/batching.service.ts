import { performance } from 'node:perf_hooks';
import { BeforeApplicationShutdown, Inject, Injectable, Logger } from '@nestjs/common';
import { QueueFullError, RequestAbortedError, ServiceUnavailableError } from '@app/common';
import { EngineError, EngineErrorCode, EnginePort } from '@app/engine/engine.port';
import { packBatch } from '@app/engine/packed-batch';
import { MetricsService } from '@app/metrics/metrics.service';
import { BATCHING_OPTIONS, BatchingOptions } from './batching.options';
import { SequenceQueue } from './sequence-queue';

/** One request's tokenized inputs, all embedded at the same Matryoshka size. */
export interface EmbedJob {
  sequences: Int32Array[];
  dimensions: number;
  /** Aborted when the client goes away: work not yet running is dropped. */
  signal?: AbortSignal;
}

export interface EmbedJobResult {
  /** One row per sequence, in input order, each `dimensions` long and L2-normalised. */
  embeddings: Float32Array[];
  /** From submission to the start of the request's first forward batch. */
  queueTimeMs: number;
  /** From the start of its first forward batch to its last row. */
  inferenceTimeMs: number;
  /** Forward batches the request's sequences ran in. */
  batches: number;
}

export interface BatchingStats {
  /** Requests admitted and not yet answered. */
  pendingRequests: number;
  queuedSequences: number;
  queuedTokens: number;
  batchesInFlight: number;
  replicas: number;
  maxBatchTokens: number;
  maxBatchSequences: number;
  maxQueueTokens: number;
  maxQueuedRequests: number;
}

class PendingRequest {
  readonly embeddings: Float32Array[];
  remaining: number;
  /** Tokens and sequences of this request not yet handed to the engine. */
  queuedTokens: number;
  queuedSequences: number;
  settled = false;
  firstDispatchAt?: number;
  batches = 0;
  detach: () => void = () => undefined;

  constructor(
    readonly job: EmbedJob,
    readonly tokens: number,
    readonly enqueuedAt: number,
    private readonly onResolve: (result: EmbedJobResult) => void,
    private readonly onReject: (error: unknown) => void,
  ) {
    this.embeddings = new Array<Float32Array>(job.sequences.length);
    this.remaining = job.sequences.length;
    this.queuedTokens = tokens;
    this.queuedSequences = job.sequences.length;
  }

  resolve(now: number): void {
    const firstDispatchAt = this.firstDispatchAt ?? now;
    this.onResolve({
      embeddings: this.embeddings,
      queueTimeMs: firstDispatchAt - this.enqueuedAt,
      inferenceTimeMs: now - firstDispatchAt,
      batches: this.batches,
    });
  }

  reject(error: unknown): void {
    this.onReject(error);
  }
}

interface QueuedSequence {
  request: PendingRequest;
  index: number;
  tokens: Int32Array;
  priority: number;
  order: number;
  /** Handed to the engine at least once (a retried half is not counted as queued again). */
  dispatched: boolean;
}

interface ForwardBatch {
  items: QueuedSequence[];
  tokens: number;
  /** A half of a failed batch: it is not split again. */
  retry: boolean;
}

/** Failures worth one retry in halves: they may come from the batch's size or from one bad sequence. */
const RETRYABLE: ReadonlySet<EngineErrorCode> = new Set(['OUT_OF_MEMORY', 'INTERNAL', 'INVALID_ARGUMENT']);
/** How many sequences that do not fit the budget a batch may step over looking for ones that do. */
const MAX_SKIPS = 64;

/** The port rejects with EngineError; anything else is a bug somewhere below, reported as INTERNAL. */
function asEngineError(error: unknown): EngineError {
  return error instanceof EngineError
    ? error
    : new EngineError('INTERNAL', String((error as Error)?.message ?? error));
}

/**
 * The dynamic batching provider. Sequences of concurrent requests share forward batches under a token
 * budget and a sequence cap; a large request is spread over several batches and put back in order.
 * Exactly one batch runs per engine replica and the next one is packed while they run, so a finished
 * batch is followed at once. Short sequences go first, with aging so nothing starves. The queue is
 * bounded (429 with Retry-After when full); work of a client that disconnects is dropped before it
 * runs; a failed batch is retried once in halves and then fails only the requests it carried.
 */
@Injectable()
export class BatchingService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(BatchingService.name);
  private readonly queue = new SequenceQueue<QueuedSequence>();
  private readonly pending = new Set<PendingRequest>();
  private readonly retries: ForwardBatch[] = [];
  private prepared?: ForwardBatch;
  private inFlight = 0;
  private queuedTokens = 0;
  private queuedSequences = 0;
  private order = 0;
  private pumpScheduled = false;
  private accepting = true;
  private replicaCount?: number;
  /** Smoothed tokens per second of one replica, for Retry-After. */
  private throughput = 0;
  private drained?: () => void;
  private readonly agingPerMs: number;

  constructor(
    private readonly engine: EnginePort,
    private readonly metrics: MetricsService,
    @Inject(BATCHING_OPTIONS) private readonly options: BatchingOptions,
  ) {
    this.agingPerMs = options.agingTokensPerSecond / 1000;
  }

  /** Queues a request's sequences; resolves with one row per sequence, in order. */
  submit(job: EmbedJob): Promise<EmbedJobResult> {
    if (!this.accepting) {
      return Promise.reject(new ServiceUnavailableError('The server is shutting down.', 'shutting_down'));
    }
    if (job.signal?.aborted) {
      return Promise.reject(new RequestAbortedError());
    }
    const tokens = job.sequences.reduce((sum, sequence) => sum + sequence.length, 0);
    if (job.sequences.length === 0) {
      return Promise.resolve({ embeddings: [], queueTimeMs: 0, inferenceTimeMs: 0, batches: 0 });
    }
    if (
      this.pending.size >= this.options.maxQueuedRequests ||
      (this.queuedTokens > 0 && this.queuedTokens + tokens > this.options.maxQueueTokens)
    ) {
      this.metrics.rejected.inc({ reason: 'queue_full' });
      const retryAfter = this.retryAfterSeconds();
      return Promise.reject(
        new QueueFullError(
          `The server is at capacity (${this.pending.size} requests, ${this.queuedTokens} tokens waiting); retry after ${retryAfter} s.`,
          retryAfter,
        ),
      );
    }

    return new Promise<EmbedJobResult>((resolve, reject) => {
      const now = performance.now();
      const request = new PendingRequest(job, tokens, now, resolve, reject);
      this.pending.add(request);
      job.sequences.forEach((sequence, index) => {
        this.queue.push({
          request,
          index,
          tokens: sequence,
          priority: sequence.length + this.agingPerMs * now,
          order: this.order++,
          dispatched: false,
        });
      });
      this.queuedTokens += tokens;
      this.queuedSequences += job.sequences.length;
      if (job.signal) {
        const signal = job.signal;
        const onAbort = () => {
          if (!request.settled) {
            this.metrics.rejected.inc({ reason: 'client_closed' });
            this.settle(request, new RequestAbortedError());
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        request.detach = () => signal.removeEventListener('abort', onAbort);
      }
      // A packed-ahead batch with room left is re-packed so the newcomer can join it.
      if (this.prepared && !this.isFull(this.prepared)) {
        this.returnPrepared();
      }
      this.schedulePump();
    });
  }

  stats(): BatchingStats {
    return {
      pendingRequests: this.pending.size,
      queuedSequences: this.queuedSequences,
      queuedTokens: this.queuedTokens,
      batchesInFlight: this.inFlight,
      replicas: this.replicas(),
      maxBatchTokens: this.options.maxBatchTokens,
      maxBatchSequences: this.options.maxBatchSequences,
      maxQueueTokens: this.options.maxQueueTokens,
      maxQueuedRequests: this.options.maxQueuedRequests,
    };
  }

  /**
   * Stops admitting work and waits up to `timeoutMs` for admitted requests to be answered; what is
   * left then fails with 503.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    if (this.pending.size > 0) {
      this.logger.log(`draining ${this.pending.size} requests (up to ${timeoutMs} ms)`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    for (const request of [...this.pending]) {
      this.settle(request, new ServiceUnavailableError('The server is shutting down.', 'shutting_down'));
    }
  }

  /** Graceful shutdown: Nest calls this before closing the HTTP server and disposing the engine. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.drain(this.options.drainTimeoutMs);
  }

  private replicas(): number {
    if (this.replicaCount === undefined) {
      try {
        this.replicaCount = Math.max(1, this.engine.info().replicas);
      } catch {
        return 1; // not loaded yet
      }
    }
    return this.replicaCount;
  }

  private isFull(batch: ForwardBatch): boolean {
    return (
      batch.tokens >= this.options.maxBatchTokens || batch.items.length >= this.options.maxBatchSequences
    );
  }

  private schedulePump(): void {
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      // Requests arriving in the same turn of the event loop share a batch.
      setImmediate(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  /** Fills every idle replica, then packs the next batch ahead. */
  private pump(): void {
    const replicas = this.replicas();
    while (this.inFlight < replicas) {
      const batch = this.retries.shift() ?? this.takePrepared() ?? this.takeBatch();
      if (!batch) break;
      this.run(batch);
    }
    if (this.inFlight >= replicas && !this.prepared && this.retries.length === 0) {
      this.prepared = this.takeBatch();
    }
    this.publishGauges();
  }

  private takePrepared(): ForwardBatch | undefined {
    const batch = this.prepared;
    this.prepared = undefined;
    return batch;
  }

  private returnPrepared(): void {
    const batch = this.takePrepared();
    for (const item of batch?.items ?? []) {
      if (!item.request.settled) this.queue.push(item);
    }
  }

  /** Pops the best sequences that fit the budget; the best one always goes, so aging guarantees progress. */
  private takeBatch(): ForwardBatch | undefined {
    const { maxBatchTokens, maxBatchSequences } = this.options;
    const items: QueuedSequence[] = [];
    const skipped: QueuedSequence[] = [];
    let tokens = 0;
    while (items.length < maxBatchSequences && tokens < maxBatchTokens && skipped.length < MAX_SKIPS) {
      const item = this.queue.pop();
      if (!item) break;
      if (item.request.settled) continue; // dropped: aborted or failed
      if (items.length > 0 && tokens + item.tokens.length > maxBatchTokens) {
        skipped.push(item);
        continue;
      }
      items.push(item);
      tokens += item.tokens.length;
    }
    for (const item of skipped) this.queue.push(item);
    return items.length > 0 ? { items, tokens, retry: false } : undefined;
  }

  private run(batch: ForwardBatch): void {
    const items = batch.items.filter((item) => !item.request.settled);
    if (items.length === 0) {
      return;
    }
    const started = performance.now();
    const requests = new Set<PendingRequest>();
    let tokens = 0;
    for (const item of items) {
      tokens += item.tokens.length;
      requests.add(item.request);
      if (!item.dispatched) {
        item.dispatched = true;
        item.request.queuedTokens -= item.tokens.length;
        item.request.queuedSequences -= 1;
        this.queuedTokens -= item.tokens.length;
        this.queuedSequences -= 1;
      }
    }
    for (const request of requests) {
      request.firstDispatchAt ??= started;
      request.batches += 1;
    }
    this.inFlight += 1;
    this.metrics.batchSequences.observe(items.length);
    this.metrics.batchTokens.observe(tokens);

    let result: Promise<Float32Array>;
    try {
      result = this.engine.embed(
        packBatch(items.map((item) => ({ tokens: item.tokens, dimensions: item.request.job.dimensions }))),
      );
    } catch (error) {
      result = Promise.reject(error);
    }
    result.then(
      (rows) => {
        this.inFlight -= 1;
        this.completed(items, batch.retry, tokens, rows, started);
      },
      (error: unknown) => {
        this.inFlight -= 1;
        this.failed(items, batch.retry, error, started);
      },
    );
  }

  private completed(
    items: QueuedSequence[],
    wasRetry: boolean,
    tokens: number,
    rows: Float32Array,
    started: number,
  ): void {
    const now = performance.now();
    const expected = items.reduce((sum, item) => sum + item.request.job.dimensions, 0);
    // Checked by tag, not instanceof: the addon's arrays may come from another realm (e.g. under jest).
    if (Object.prototype.toString.call(rows) !== '[object Float32Array]' || rows.length !== expected) {
      const error = new EngineError(
        'INTERNAL',
        `engine returned ${rows?.length} floats where ${expected} were due`,
      );
      this.failed(items, wasRetry, error, started);
      return;
    }
    this.pump(); // keep the replica busy before distributing rows
    const seconds = (now - started) / 1000;
    this.metrics.batchSeconds.observe(seconds);
    this.metrics.batches.inc({ outcome: 'ok' });
    if (seconds > 0) {
      const rate = tokens / seconds;
      this.throughput = this.throughput === 0 ? rate : 0.8 * this.throughput + 0.2 * rate;
    }
    let offset = 0;
    for (const item of items) {
      const request = item.request;
      const dimensions = request.job.dimensions;
      if (!request.settled) {
        request.embeddings[item.index] = rows.subarray(offset, offset + dimensions);
        request.remaining -= 1;
        if (request.remaining === 0) {
          this.settle(request, undefined, now);
        }
      }
      offset += dimensions;
    }
  }

  private failed(items: QueuedSequence[], wasRetry: boolean, cause: unknown, started: number): void {
    this.metrics.batchSeconds.observe((performance.now() - started) / 1000);
    const error = asEngineError(cause);
    const live = items.filter((item) => !item.request.settled);
    if (!wasRetry && live.length > 1 && RETRYABLE.has(error.code)) {
      this.metrics.batches.inc({ outcome: 'retried' });
      this.logger.warn(
        `forward batch of ${live.length} sequences failed (${error.code}); retrying in halves`,
      );
      const middle = Math.ceil(live.length / 2);
      for (const half of [live.slice(0, middle), live.slice(middle)]) {
        this.retries.push({
          items: half,
          tokens: half.reduce((sum, item) => sum + item.tokens.length, 0),
          retry: true,
        });
      }
    } else {
      this.metrics.batches.inc({ outcome: 'failed' });
      this.logger.error(`forward batch of ${live.length} sequences failed (${error.code}): ${error.message}`);
      for (const request of new Set(live.map((item) => item.request))) {
        this.settle(request, error);
      }
    }
    this.pump();
  }

  /** Answers a request (or fails it) and forgets whatever of it still waits. */
  private settle(request: PendingRequest, error?: unknown, now = performance.now()): void {
    if (request.settled) return;
    request.settled = true;
    request.detach();
    this.pending.delete(request);
    this.queuedTokens -= request.queuedTokens;
    this.queuedSequences -= request.queuedSequences;
    request.queuedTokens = 0;
    request.queuedSequences = 0;
    if (this.prepared?.items.some((item) => item.request === request)) {
      this.returnPrepared();
      this.schedulePump();
    }
    // Dropped sequences are skipped lazily when popped; compact when they dominate the heap.
    if (this.queue.size > 2 * this.queuedSequences + 1024) {
      this.queue.retain((item) => !item.request.settled);
    }
    if (error === undefined) {
      request.resolve(now);
    } else {
      request.reject(error);
    }
    if (this.pending.size === 0) {
      this.drained?.();
    }
    this.publishGauges();
  }

  private retryAfterSeconds(): number {
    const rate = this.throughput * this.replicas();
    const seconds = rate > 0 ? Math.ceil(this.queuedTokens / rate) : 1;
    return Math.min(60, Math.max(1, seconds));
  }

  private publishGauges(): void {
    this.metrics.queueRequests.set(this.pending.size);
    this.metrics.queueSequences.set(this.queuedSequences);
    this.metrics.queueTokens.set(this.queuedTokens);
    this.metrics.batchesInFlight.set(this.inFlight);
  }
}
