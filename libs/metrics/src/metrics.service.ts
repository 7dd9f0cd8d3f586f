import { Injectable, Optional } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { buildInfo } from '@app/common/build-info';
import { AppConfig } from '@app/config';
import { EngineDeviceInfo } from '@app/engine/engine.port';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const POWERS_OF_TWO = (from: number, to: number): number[] => {
  const buckets: number[] = [];
  for (let value = from; value <= to; value *= 2) buckets.push(value);
  return buckets;
};

interface Observer {
  observe(value: number): void;
}
interface Incrementer {
  inc(value?: number): void;
}
interface LabelledIncrementer<Label extends string> {
  inc(labels: Partial<Record<Label, string>>, value?: number): void;
}
interface Setter {
  set(value: number): void;
}

/**
 * What one served model's services record: the model-scoped series (MetricsService.forModel binds
 * their `model` label). A MetricsService is one too, unlabelled (unit tests pass one).
 */
export interface ModelMetrics {
  tokenizationSeconds: Observer;
  queueSeconds: Observer;
  inferenceSeconds: Observer;
  requestSeconds: Observer;
  batchSeconds: Observer;
  batchSequences: Observer;
  batchTokens: Observer;
  batches: LabelledIncrementer<'outcome'>;
  rejected: LabelledIncrementer<'reason'>;
  queueRequests: Setter;
  queueSequences: Setter;
  queueTokens: Setter;
  batchesInFlight: Setter;
  tokens: Incrementer;
  inputs: Incrementer;
  rerankDocuments: Incrementer;
  rerankTruncatedDocuments: Incrementer;
}

/** One served model as the process-wide gauges read it. */
export interface ModelReport {
  /** The served id (the `model` label). */
  model: string;
  ready: () => boolean;
  /** The engine's devices; [] while it is not loaded. */
  devices: () => EngineDeviceInfo[];
}

/**
 * The service's Prometheus metrics, on a registry of its own (so several apps in one process, as in
 * tests, never collide). Services record into it; `/metrics` renders it. Names carry the `qwen3_embed_`
 * prefix (as TEI's `te_` and vLLM's `vllm:`). The series of one model's work (tokenization, queue,
 * batches, tokens, rejections) carry its served id as `model`, bound once per model (forModel); the
 * HTTP and process series carry none.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'qwen3_embed_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'qwen3_embed_http_request_duration_seconds',
    help: 'HTTP request latency by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly tokenizationSeconds = new Histogram({
    name: 'qwen3_embed_tokenization_seconds',
    help: 'Time to tokenize the inputs (or template the query-document pairs) of one request',
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly queueSeconds = new Histogram({
    name: 'qwen3_embed_queue_seconds',
    help: 'Time a request waited before its first forward batch started',
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly inferenceSeconds = new Histogram({
    name: 'qwen3_embed_inference_seconds',
    help: 'Time from the first forward batch of a request to its last row',
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'qwen3_embed_request_seconds',
    help: 'Total time to serve an embeddings or rerank request (validation, tokenization, queue, inference)',
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly batchSeconds = new Histogram({
    name: 'qwen3_embed_batch_seconds',
    help: 'Engine time of one forward batch',
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly batchSequences = new Histogram({
    name: 'qwen3_embed_batch_sequences',
    help: 'Sequences per forward batch',
    buckets: POWERS_OF_TWO(1, 4096),
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly batchTokens = new Histogram({
    name: 'qwen3_embed_batch_tokens',
    help: 'Tokens per forward batch',
    buckets: POWERS_OF_TWO(16, 262144),
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly batches = new Counter({
    name: 'qwen3_embed_batches_total',
    help: 'Forward batches by outcome (ok, failed, retried)',
    labelNames: ['model', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly queueRequests = new Gauge({
    name: 'qwen3_embed_queue_requests',
    help: 'Requests admitted and not yet answered',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly queueSequences = new Gauge({
    name: 'qwen3_embed_queue_sequences',
    help: 'Sequences waiting for a forward batch',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly queueTokens = new Gauge({
    name: 'qwen3_embed_queue_tokens',
    help: 'Tokens waiting for a forward batch',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly batchesInFlight = new Gauge({
    name: 'qwen3_embed_batches_in_flight',
    help: 'Forward batches running on the engine',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'qwen3_embed_tokens_total',
    help: 'Tokens embedded or scored (prompt tokens: prompts, templates and the appended end-of-text token included)',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly inputs = new Counter({
    name: 'qwen3_embed_inputs_total',
    help: 'Inputs (sequences) embedded',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly rerankDocuments = new Counter({
    name: 'qwen3_embed_rerank_documents_total',
    help: 'Documents scored by a reranker (query-document pairs)',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly rerankTruncatedDocuments = new Counter({
    name: 'qwen3_embed_rerank_truncated_documents_total',
    help: "Documents cut to fit the reranker's pair limit (8192 tokens, at most MAX_INPUT_TOKENS)",
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'qwen3_embed_requests_rejected_total',
    help: 'Embeddings and rerank requests refused before inference, by reason',
    labelNames: ['model', 'reason'] as const,
    registers: [this.registry],
  });

  /** The served models' readiness and devices (wired by the app; none until then). */
  private models: () => ModelReport[] = () => [];

  constructor(@Optional() config?: AppConfig) {
    collectDefaultMetrics({ register: this.registry });
    const { version, commit } = buildInfo();
    new Gauge({
      name: 'qwen3_embed_build_info',
      help: 'Always 1: the version, commit and device of this process',
      labelNames: ['version', 'commit', 'device'] as const,
      registers: [this.registry],
    }).set({ version, commit, device: config?.model.device ?? 'unknown' }, 1);
    const models = () => this.models();
    new Gauge({
      name: 'qwen3_embed_ready',
      help: 'Per model: 1 when it is loaded and serves, else 0 (/health/ready is 200 when all are 1)',
      labelNames: ['model'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { model, ready } of models()) this.set({ model }, ready() ? 1 : 0);
      },
    });
    const deviceMemoryGauge = (name: string, help: string, bytes: (device: EngineDeviceInfo) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['model', 'device', 'name', 'replica', 'rank'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const { model, devices } of models()) {
            for (const device of devices()) {
              const labels = {
                model,
                device: String(device.index),
                name: device.name,
                replica: device.replica,
                rank: device.rank,
              };
              this.set(labels, bytes(device));
            }
          }
        },
      });
    deviceMemoryGauge(
      'qwen3_embed_device_memory_used_bytes',
      'Device memory held by the engine (weights and caches), per model and device',
      (device) => device.usedMemoryBytes,
    );
    deviceMemoryGauge(
      'qwen3_embed_device_memory_total_bytes',
      'Total memory of each device the engine uses',
      (device) => device.totalMemoryBytes,
    );
  }

  /** Where qwen3_embed_ready and the device gauges read each served model from (wired by the app). */
  reportModels(models: () => ModelReport[]): void {
    this.models = models;
  }

  /** The model-scoped series with `model` bound to one served model's id: what its services record into. */
  forModel(model: string): ModelMetrics {
    const fixed = { model };
    const observer = (metric: Histogram<'model'>): Observer => ({
      observe: (value) => metric.observe(fixed, value),
    });
    const counter = (metric: Counter<'model'>): Incrementer => ({
      inc: (value) => metric.inc(fixed, value ?? 1),
    });
    const gauge = (metric: Gauge<'model'>): Setter => ({ set: (value) => metric.set(fixed, value) });
    return {
      tokenizationSeconds: observer(this.tokenizationSeconds),
      queueSeconds: observer(this.queueSeconds),
      inferenceSeconds: observer(this.inferenceSeconds),
      requestSeconds: observer(this.requestSeconds),
      batchSeconds: observer(this.batchSeconds),
      batchSequences: observer(this.batchSequences),
      batchTokens: observer(this.batchTokens),
      batches: { inc: (labels, value) => this.batches.inc({ ...fixed, ...labels }, value ?? 1) },
      rejected: { inc: (labels, value) => this.rejected.inc({ ...fixed, ...labels }, value ?? 1) },
      queueRequests: gauge(this.queueRequests),
      queueSequences: gauge(this.queueSequences),
      queueTokens: gauge(this.queueTokens),
      batchesInFlight: gauge(this.batchesInFlight),
      tokens: counter(this.tokens),
      inputs: counter(this.inputs),
      rerankDocuments: counter(this.rerankDocuments),
      rerankTruncatedDocuments: counter(this.rerankTruncatedDocuments),
    };
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
