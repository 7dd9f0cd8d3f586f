import { IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { BeforeApplicationShutdown, Logger } from '@nestjs/common';
import {
  InvalidRequestError,
  QueueFullError,
  RequestAbortedError,
  ServiceUnavailableError,
} from '@app/common';
import { EngineError, EngineErrorCode, EngineInfo, EnginePort } from '@app/engine/engine.port';
import { packBatch } from '@app/engine/packed-batch';
import type { ModelMetrics } from '@app/metrics/metrics.service';
import { BatchingOptions } from './batching.options';
import { BatchCostModel } from './batch-cost';
import { RequestQueue } from './request-queue';

/** One request's tokenized inputs, all embedded at the same Matryoshka size. */
export interface EmbedJob {
  sequences: Int32Array[];
  dimensions: number;
  /**
   * Per sequence: tokens at its start that mean pooling leaves out (the prompt, when the checkpoint
   * pools with include_prompt=false); absent means none.
   */
  promptLengths?: readonly number[];
  /** Aborted when the client goes away: work not yet running is dropped. */
  signal?: AbortSignal;
  /**
   * When the answer is due, on the `performance.now()` clock (e.g. arrival + X-Request-Deadline-Ms);
   * default: submission + REQUEST_DEADLINE_MS.
   */
  deadline?: number;
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
  /** Measured (or, before the first batch, assumed) tokens per second of one replica. */
  tokensPerSecond: number;
}

class PendingRequest {
  readonly embeddings: Float32Array[];
  remaining: number;
  /** Tokens and sequences of this request not yet handed to the engine. */
  queuedTokens: number;
  queuedSequences: number;
  /** The next sequence to put in a batch: sequences before it are in a batch (packed or running). */
  next = 0;
  /** In the request heap now. */
  inQueue = false;
  settled = false;
  firstDispatchAt?: number;
  batches = 0;
  detach: () => void = () => undefined;

  constructor(
    readonly job: EmbedJob,
    readonly tokens: number,
    readonly enqueuedAt: number,
    readonly deadline: number,
    /** Its place in the heap: `tokens + aging * enqueuedAt` (smaller goes first). */
    readonly priority: number,
    readonly order: number,
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

interface BatchItem {
  request: PendingRequest;
  index: number;
  tokens: Int32Array;
  /** Handed to the engine at least once (a part of a failed batch is not counted as queued again). */
  dispatched: boolean;
}

interface ForwardBatch {
  items: BatchItem[];
  tokens: number;
}

interface RunningBatch {
  started: number;
  tokens: number;
}

/** Failures that say nothing about the other sequences of the batch: split it to find the culprit. */
const SPLITTABLE: ReadonlySet<EngineErrorCode> = new Set(['OUT_OF_MEMORY', 'INTERNAL', 'INVALID_ARGUMENT']);
/** How many requests that do not fit the budget a batch may step over looking for ones that do. */
const MAX_SKIPS = 64;
/**
 * Before any batch is measured, the engine is assumed to deliver this many FLOP/s on one replica
 * (2 FLOP per weight and token) after a fixed cost per batch: modest figures, soon outweighed by
 * measured batches (BatchCostModel).
 */
const PRIOR_FLOPS: Record<EngineInfo['device'], number> = { cpu: 5e10, cuda: 1e14 };
const PRIOR_OVERHEAD_SECONDS: Record<EngineInfo['device'], number> = { cpu: 0.005, cuda: 0.002 };
/**
 * Expected durations are stretched by this much before they are held against a deadline: batch
 * times vary (other work on the machine, sequence lengths), and a request answered late is worth as
 * little as one refused, after having cost the engine.
 */
const DEADLINE_MARGIN = 1.5;
/** How often the event loop's delay is read (and its histogram restarted). */
const LOOP_DELAY_WINDOW_MS = 500;

/** The port rejects with EngineError; anything else is a bug somewhere below, reported as INTERNAL. */
function asEngineError(error: unknown): EngineError {
  return error instanceof EngineError
    ? error
    : new EngineError('INTERNAL', String((error as Error)?.message ?? error));
}

/**
 * The dynamic batching provider. Requests wait in one heap, smallest first with aging; a forward batch
 * takes whole requests' sequences, in order, under a token budget and a sequence cap, so each request
 * finishes as soon as it can instead of every request's texts being interleaved (under overload that
 * made every request late). A large request is spread over several batches and put back in order.
 * Exactly one batch runs per engine replica and the next one is packed while they run.
 * Admission looks at the expected wait (the tokens ahead, costed by the measured batches) against the
 * request's deadline, besides the size bounds: what cannot be served in time is refused at once (429
 * with Retry-After), and what is still waiting when its deadline passes is dropped, as is the work of
 * a client that disconnects. A failed batch is split in halves until the failing sequence runs alone;
 * only its request fails.
 */
export class BatchingService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(BatchingService.name);
  private readonly queue = new RequestQueue<PendingRequest>();
  private readonly pending = new Set<PendingRequest>();
  /** Parts of failed batches, run before anything new. */
  private readonly retries: ForwardBatch[] = [];
  private readonly running = new Set<RunningBatch>();
  private prepared?: ForwardBatch;
  private queuedTokens = 0;
  private queuedSequences = 0;
  private order = 0;
  private pumpScheduled = false;
  private accepting = true;
  private replicaCount?: number;
  /** What a batch costs on one replica; made once the engine is loaded (its prior needs the model). */
  private costModel?: BatchCostModel;
  private drained?: () => void;
  private readonly agingPerMs: number;
  /**
   * The event loop's delay (libuv samples it on a 20 ms timer): under overload a request also waits
   * for the loop on its way in and out, time the batch cost does not see.
   */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private loopDelayMs = 0;
  private loopDelayReadAt = 0;

  constructor(
    private readonly engine: EnginePort,
    private readonly metrics: ModelMetrics,
    private readonly options: BatchingOptions,
  ) {
    this.agingPerMs = options.agingTokensPerSecond / 1000;
    this.loopDelay.enable();
  }

  /** Queues a request's sequences; resolves with one row per sequence, in order. */
  submit(job: EmbedJob): Promise<EmbedJobResult> {
    if (!this.accepting) {
      return Promise.reject(new ServiceUnavailableError('The server is shutting down.', 'shutting_down'));
    }
    if (job.signal?.aborted) {
      return Promise.reject(new RequestAbortedError());
    }
    if (job.sequences.length === 0) {
      return Promise.resolve({ embeddings: [], queueTimeMs: 0, inferenceTimeMs: 0, batches: 0 });
    }
    let tokens = 0;
    for (const sequence of job.sequences) tokens += sequence.length;
    const now = performance.now();
    const deadline = job.deadline ?? now + this.options.requestDeadlineMs;
    const priority = tokens + this.agingPerMs * now;
    const refusal = this.admissionRefusal(tokens, priority, deadline, now);
    if (refusal) {
      return Promise.reject(refusal);
    }

    return new Promise<EmbedJobResult>((resolve, reject) => {
      const request = new PendingRequest(job, tokens, now, deadline, priority, this.order++, resolve, reject);
      this.pending.add(request);
      request.inQueue = true;
      this.queue.push(request);
      this.queuedTokens += tokens;
      this.queuedSequences += job.sequences.length;
      // Dropped if it has not started when its deadline passes (a timer is ~1 µs; no sweep needed).
      const timer = setTimeout(() => this.expire(request), Math.max(0, deadline - now));
      timer.unref();
      let onAbort: (() => void) | undefined;
      const signal = job.signal;
      if (signal) {
        onAbort = () => {
          if (!request.settled) {
            this.metrics.rejected.inc({ reason: 'client_closed' });
            this.settle(request, new RequestAbortedError());
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      request.detach = () => {
        clearTimeout(timer);
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      };
      // A packed-ahead batch with room left is re-packed so the newcomer can join it.
      if (this.prepared && !this.isFull(this.prepared)) {
        this.returnPrepared();
      }
      this.schedulePump();
    });
  }

  /**
   * The admission check alone, for a request of about `tokens` tokens (a lower bound is fine): lets
   * the caller refuse an overloaded request before paying for its tokenization. Throws the 429.
   */
  assertAdmissible(tokens: number, deadline: number): void {
    if (!this.accepting) return; // submit() answers that
    const now = performance.now();
    const refusal = this.admissionRefusal(tokens, tokens + this.agingPerMs * now, deadline, now);
    if (refusal) throw refusal;
  }

  stats(): BatchingStats {
    return {
      pendingRequests: this.pending.size,
      queuedSequences: this.queuedSequences,
      queuedTokens: this.queuedTokens,
      batchesInFlight: this.running.size,
      replicas: this.replicas(),
      maxBatchTokens: this.options.maxBatchTokens,
      maxBatchSequences: this.options.maxBatchSequences,
      maxQueueTokens: this.options.maxQueueTokens,
      maxQueuedRequests: this.options.maxQueuedRequests,
      tokensPerSecond: this.cost().tokensPerSecond(),
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
    this.loopDelay.disable();
  }

  /** Graceful shutdown: the ModelRegistry's shutdown hook calls this before the engines are disposed. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.drain(this.options.drainTimeoutMs);
  }

  /**
   * Why a new request cannot be admitted, or undefined. Beyond the size bounds, it is refused when the
   * work that will run before it (the running batches, parts of failed batches, the packed batch and
   * every queued request placed ahead of it in the heap) would keep it from finishing its first batch
   * by its deadline. Later, smaller arrivals may still overtake it; those that make it wait past its
   * deadline get it dropped before it runs (`expire`). A request into an empty service is always
   * admitted, however large.
   */
  private admissionRefusal(
    tokens: number,
    priority: number,
    deadline: number,
    now: number,
  ): QueueFullError | undefined {
    if (
      this.pending.size >= this.options.maxQueuedRequests ||
      (this.queuedTokens > 0 && this.queuedTokens + tokens > this.options.maxQueueTokens)
    ) {
      this.metrics.rejected.inc({ reason: 'queue_full' });
      const retryAfter = this.retryAfterSeconds();
      return new QueueFullError(
        `The server is at capacity (${this.pending.size} requests, ${this.queuedTokens} tokens waiting); retry after ${retryAfter} s.`,
        retryAfter,
      );
    }
    if (this.pending.size === 0) {
      return undefined;
    }
    let ahead = this.prepared?.tokens ?? 0;
    for (const batch of this.retries) ahead += batch.tokens;
    // O(queued requests), a few µs at the request cap; nothing at all when the queue is empty.
    for (const queued of this.queue.items()) {
      if (queued.priority <= priority && !queued.settled) ahead += queued.queuedTokens;
    }
    // It finishes with the batch that holds its first part, filled by whatever else waits.
    const budget = this.options.maxBatchTokens;
    const through = Math.ceil((ahead + Math.min(tokens, budget)) / budget) * budget;
    const work = Math.min(through, this.queuedTokens + tokens);
    const finish =
      now +
      this.eventLoopDelayMs(now) +
      (this.nextStart(now) - now + (this.cost().workSeconds(work) / this.replicas()) * 1000) *
        DEADLINE_MARGIN;
    if (finish <= deadline) {
      return undefined;
    }
    this.metrics.rejected.inc({ reason: 'deadline' });
    const retryAfter = this.retryAfterSeconds();
    const waitMs = Math.round(finish - now);
    return new QueueFullError(
      `The server is overloaded: this request would take about ${waitMs} ms, past its deadline of ${Math.round(deadline - now)} ms; retry after ${retryAfter} s.`,
      retryAfter,
    );
  }

  /** The event loop's mean delay over the last window, ms (0 when it keeps up). */
  private eventLoopDelayMs(now: number): number {
    if (now - this.loopDelayReadAt >= LOOP_DELAY_WINDOW_MS) {
      // The histogram counts the timer's own 20 ms period in every sample.
      const mean = this.loopDelay.count > 0 ? this.loopDelay.mean / 1e6 - 20 : 0;
      this.loopDelayMs = Math.max(0, mean);
      this.loopDelay.reset();
      this.loopDelayReadAt = now;
    }
    return this.loopDelayMs;
  }

  /** When a replica is expected to be free: now, or when the earliest running batch should end. */
  private nextStart(now: number): number {
    if (this.running.size < this.replicas()) return now;
    const cost = this.cost();
    let earliest = Infinity;
    for (const batch of this.running) {
      earliest = Math.min(earliest, batch.started + cost.batchSeconds(batch.tokens) * 1000);
    }
    return Math.max(now, earliest);
  }

  /** The batch cost model: measured batches over a prior from the model's size and device. */
  private cost(): BatchCostModel {
    if (this.costModel) return this.costModel;
    let info: EngineInfo;
    try {
      info = this.engine.info();
    } catch {
      // Not loaded yet (nothing runs before it is): a placeholder, not kept.
      return new BatchCostModel(0.005, 1000, this.options.maxBatchTokens);
    }
    const weights = Math.max(1e6, info.parameters - info.vocabSize * info.hiddenSize);
    this.costModel = new BatchCostModel(
      PRIOR_OVERHEAD_SECONDS[info.device],
      PRIOR_FLOPS[info.device] / (2 * weights),
      this.options.maxBatchTokens,
    );
    return this.costModel;
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
    while (this.running.size < replicas) {
      const batch = this.retries.shift() ?? this.dispatchPrepared() ?? this.takeBatch();
      if (!batch) break;
      this.run(batch);
    }
    if (this.running.size >= replicas && !this.prepared && this.retries.length === 0) {
      this.prepared = this.takeBatch();
    }
    this.publishGauges();
  }

  /**
   * The packed-ahead batch, now that a replica is free. It was checked against its requests'
   * deadlines when packed, on the running batch's expected end; that batch may have run long, so
   * requests that have not started and can no longer finish in time are dropped now.
   */
  private dispatchPrepared(): ForwardBatch | undefined {
    const batch = this.takePrepared();
    if (!batch) return undefined;
    const now = performance.now();
    const end =
      now + this.eventLoopDelayMs(now) + this.cost().batchSeconds(batch.tokens) * 1000 * DEADLINE_MARGIN;
    for (const item of batch.items) {
      const request = item.request;
      if (request.firstDispatchAt === undefined && end > request.deadline) this.expire(request);
    }
    return batch;
  }

  private takePrepared(): ForwardBatch | undefined {
    const batch = this.prepared;
    this.prepared = undefined;
    return batch;
  }

  /** Puts the packed-ahead batch's sequences back: each request resumes at its first one in it. */
  private returnPrepared(): void {
    const batch = this.takePrepared();
    if (!batch) return;
    for (const item of batch.items) {
      const request = item.request;
      if (request.settled) continue;
      request.next = Math.min(request.next, item.index);
      if (!request.inQueue) {
        request.inQueue = true;
        this.queue.push(request);
      }
    }
  }

  /**
   * Packs the next batch from the best requests, each contributing its next sequences in input order
   * while they fit; the first sequence always goes, so a sequence longer than the budget runs alone.
   * A request that has not started and could not finish its part of this batch by its deadline is
   * dropped here instead of being run late.
   */
  private takeBatch(): ForwardBatch | undefined {
    const { maxBatchTokens, maxBatchSequences } = this.options;
    const items: BatchItem[] = [];
    const putBack: PendingRequest[] = [];
    let skips = 0;
    let tokens = 0;
    let batchEnd = -1;
    while (items.length < maxBatchSequences && tokens < maxBatchTokens && skips < MAX_SKIPS) {
      const request = this.queue.pop();
      if (!request) break;
      request.inQueue = false;
      if (request.settled) continue; // dropped: aborted, expired or failed
      const sequences = request.job.sequences;
      if (request.next === 0 && request.firstDispatchAt === undefined) {
        if (batchEnd < 0) {
          // This batch will be as full as what waits allows.
          const filled = Math.min(maxBatchTokens, this.queuedTokens);
          const now = performance.now();
          batchEnd =
            now +
            this.eventLoopDelayMs(now) +
            (this.nextStart(now) - now + this.cost().batchSeconds(filled) * 1000) * DEADLINE_MARGIN;
        }
        if (batchEnd > request.deadline) {
          this.expire(request);
          continue;
        }
      }
      const before = items.length;
      while (request.next < sequences.length && items.length < maxBatchSequences) {
        const sequence = sequences[request.next];
        if (items.length > 0 && tokens + sequence.length > maxBatchTokens) break;
        items.push({ request, index: request.next, tokens: sequence, dispatched: false });
        tokens += sequence.length;
        request.next += 1;
      }
      if (items.length === before) skips += 1;
      if (request.next < sequences.length) putBack.push(request);
    }
    for (const request of putBack) {
      request.inQueue = true;
      this.queue.push(request);
    }
    return items.length > 0 ? { items, tokens } : undefined;
  }

  private run(batch: ForwardBatch): void {
    const items = batch.items.filter((item) => !item.request.settled);
    if (items.length === 0) {
      return;
    }
    const started = performance.now();
    let tokens = 0;
    let previous: PendingRequest | undefined;
    for (const item of items) {
      const request = item.request;
      tokens += item.tokens.length;
      if (!item.dispatched) {
        item.dispatched = true;
        request.queuedTokens -= item.tokens.length;
        request.queuedSequences -= 1;
        this.queuedTokens -= item.tokens.length;
        this.queuedSequences -= 1;
      }
      // A request's items are adjacent in a batch (and in its parts), so this counts each once.
      if (request !== previous) {
        request.firstDispatchAt ??= started;
        request.batches += 1;
        previous = request;
      }
    }
    const running: RunningBatch = { started, tokens };
    this.running.add(running);
    this.metrics.batchSequences.observe(items.length);
    this.metrics.batchTokens.observe(tokens);

    let result: Promise<Float32Array>;
    try {
      result = this.engine.embed(
        packBatch(
          items.map(({ tokens, index, request: { job } }) => ({
            tokens,
            dimensions: job.dimensions,
            promptLength: job.promptLengths?.[index],
          })),
        ),
      );
    } catch (error) {
      result = Promise.reject(error);
    }
    result.then(
      (rows) => {
        this.running.delete(running);
        this.completed(items, tokens, rows, started);
      },
      (error: unknown) => {
        this.running.delete(running);
        this.failed(items, error, started);
      },
    );
  }

  private completed(items: BatchItem[], tokens: number, rows: Float32Array, started: number): void {
    const now = performance.now();
    let expected = 0;
    for (const item of items) expected += item.request.job.dimensions;
    // Checked by tag, not instanceof: the addon's arrays may come from another realm (e.g. under jest).
    if (Object.prototype.toString.call(rows) !== '[object Float32Array]' || rows.length !== expected) {
      const error = new EngineError(
        'INTERNAL',
        `engine returned ${rows?.length} floats where ${expected} were due`,
      );
      this.failed(items, error, started, false); // the engine's fault, not an input's
      return;
    }
    const seconds = (now - started) / 1000;
    this.cost().observe(tokens, seconds);
    this.pump(); // keep the replica busy before distributing rows
    this.metrics.batchSeconds.observe(seconds);
    this.metrics.batches.inc({ outcome: 'ok' });
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

  /**
   * A failed batch of several sequences is split in halves, run before anything else, until the
   * failing sequence runs alone: only its request fails, everything else completes (k bad sequences
   * among n cost about 2k·log2(n) extra batches). A dead engine fails the batch at once.
   */
  private failed(items: BatchItem[], cause: unknown, started: number, split = true): void {
    this.metrics.batchSeconds.observe((performance.now() - started) / 1000);
    const error = asEngineError(cause);
    const live = items.filter((item) => !item.request.settled);
    const splittable = split && SPLITTABLE.has(error.code) && this.engine.health().ok;
    if (splittable && live.length > 1) {
      this.metrics.batches.inc({ outcome: 'retried' });
      this.logger.warn(
        `forward batch of ${live.length} sequences failed (${error.code}: ${error.message}); splitting it to find the sequence at fault`,
      );
      const middle = Math.ceil(live.length / 2);
      const halves = [live.slice(0, middle), live.slice(middle)].map((half) => ({
        items: half,
        tokens: half.reduce((sum, item) => sum + item.tokens.length, 0),
      }));
      this.retries.unshift(...halves);
    } else if (splittable && live.length === 1) {
      this.metrics.batches.inc({ outcome: 'failed' });
      const [item] = live;
      this.logger.warn(
        `input[${item.index}] (${item.tokens.length} tokens) fails on its own (${error.code}): ${error.message}`,
      );
      this.settle(item.request, this.inputError(item.index, error));
    } else {
      this.metrics.batches.inc({ outcome: 'failed' });
      this.logger.error(`forward batch of ${live.length} sequences failed (${error.code}): ${error.message}`);
      for (const request of new Set(live.map((item) => item.request))) {
        this.settle(request, error);
      }
    }
    this.pump();
  }

  /**
   * What the client of an input that fails alone is told. The engine refusing it (INVALID_ARGUMENT)
   * is the input's fault: 400 naming it, without the engine's message (logged). Anything else stays
   * the engine's error (500 with a generic message, 503 for out-of-memory): only this request fails,
   * but an engine fault is not blamed on the client.
   */
  private inputError(index: number, error: EngineError): Error {
    if (error.code !== 'INVALID_ARGUMENT') {
      return error;
    }
    return new InvalidRequestError(
      `input[${index}] could not be embedded: the model rejected it; check its text or token ids`,
      'input',
      'invalid_value',
    );
  }

  /**
   * Drops a request whose deadline passed (or, from takeBatch, would pass) before it started, also
   * from the packed-ahead batch: 429 with Retry-After, nothing of it having run. Started requests run
   * to the end.
   */
  private expire(request: PendingRequest): void {
    if (request.settled || request.firstDispatchAt !== undefined) return;
    this.metrics.rejected.inc({ reason: 'expired' });
    const retryAfter = this.retryAfterSeconds();
    const waited = Math.round(performance.now() - request.enqueuedAt);
    this.settle(
      request,
      new QueueFullError(
        `The server is overloaded: this request waited ${waited} ms and could not be served by its deadline; retry after ${retryAfter} s.`,
        retryAfter,
        'deadline_exceeded',
      ),
    );
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
    // Dropped requests are skipped lazily when popped; compact when they dominate the heap.
    if (this.queue.size > 2 * this.pending.size + 1024) {
      this.queue.retain((queued) => {
        queued.inQueue = !queued.settled;
        return queued.inQueue;
      });
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

  /** How long what waits now takes to run, by the batch cost model, 1..60 s. */
  private retryAfterSeconds(): number {
    const seconds = Math.ceil(this.cost().workSeconds(this.queuedTokens) / this.replicas());
    return Math.min(60, Math.max(1, seconds));
  }

  private publishGauges(): void {
    this.metrics.queueRequests.set(this.pending.size);
    this.metrics.queueSequences.set(this.queuedSequences);
    this.metrics.queueTokens.set(this.queuedTokens);
    this.metrics.batchesInFlight.set(this.running.size);
  }
}
