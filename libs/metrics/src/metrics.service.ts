import { Injectable, Optional } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { buildInfo } from '@app/common/build-info';
import { AppConfig } from '@app/config';
import { EngineDeviceInfo, EnginePort } from '@app/engine/engine.port';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const POWERS_OF_TWO = (from: number, to: number): number[] => {
  const buckets: number[] = [];
  for (let value = from; value <= to; value *= 2) buckets.push(value);
  return buckets;
};

/**
 * The service's Prometheus metrics, on a registry of its own (so several apps in one process, as in
 * tests, never collide). Services record into it; `/metrics` renders it. Names carry the `qwen3_embed_`
 * prefix (as TEI's `te_` and vLLM's `vllm:`), and every series the served model's id as `model` (one
 * model per process: set once as a default label, no per-observation cost).
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
    registers: [this.registry],
  });
  readonly queueSeconds = new Histogram({
    name: 'qwen3_embed_queue_seconds',
    help: 'Time a request waited before its first forward batch started',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly inferenceSeconds = new Histogram({
    name: 'qwen3_embed_inference_seconds',
    help: 'Time from the first forward batch of a request to its last row',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'qwen3_embed_request_seconds',
    help: 'Total time to serve an embeddings or rerank request (validation, tokenization, queue, inference)',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSeconds = new Histogram({
    name: 'qwen3_embed_batch_seconds',
    help: 'Engine time of one forward batch',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSequences = new Histogram({
    name: 'qwen3_embed_batch_sequences',
    help: 'Sequences per forward batch',
    buckets: POWERS_OF_TWO(1, 4096),
    registers: [this.registry],
  });
  readonly batchTokens = new Histogram({
    name: 'qwen3_embed_batch_tokens',
    help: 'Tokens per forward batch',
    buckets: POWERS_OF_TWO(16, 262144),
    registers: [this.registry],
  });
  readonly batches = new Counter({
    name: 'qwen3_embed_batches_total',
    help: 'Forward batches by outcome (ok, failed, retried)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly queueRequests = new Gauge({
    name: 'qwen3_embed_queue_requests',
    help: 'Requests admitted and not yet answered',
    registers: [this.registry],
  });
  readonly queueSequences = new Gauge({
    name: 'qwen3_embed_queue_sequences',
    help: 'Sequences waiting for a forward batch',
    registers: [this.registry],
  });
  readonly queueTokens = new Gauge({
    name: 'qwen3_embed_queue_tokens',
    help: 'Tokens waiting for a forward batch',
    registers: [this.registry],
  });
  readonly batchesInFlight = new Gauge({
    name: 'qwen3_embed_batches_in_flight',
    help: 'Forward batches running on the engine',
    registers: [this.registry],
  });
  readonly tokens = new Counter({
    name: 'qwen3_embed_tokens_total',
    help: 'Tokens embedded or scored (prompt tokens: prompts, templates and the appended end-of-text token included)',
    registers: [this.registry],
  });
  readonly inputs = new Counter({
    name: 'qwen3_embed_inputs_total',
    help: 'Inputs (sequences) embedded',
    registers: [this.registry],
  });
  readonly rerankDocuments = new Counter({
    name: 'qwen3_embed_rerank_documents_total',
    help: 'Documents scored by a reranker (query-document pairs)',
    registers: [this.registry],
  });
  readonly rerankTruncatedDocuments = new Counter({
    name: 'qwen3_embed_rerank_truncated_documents_total',
    help: "Documents cut to fit the reranker's pair limit (8192 tokens, at most MAX_INPUT_TOKENS)",
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'qwen3_embed_requests_rejected_total',
    help: 'Embeddings and rerank requests refused before inference, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  /** 1 while the model serves (what /health/ready answers 200 for), else 0. */
  private ready: () => boolean = () => false;

  constructor(
    @Optional() private readonly engine?: EnginePort,
    @Optional() config?: AppConfig,
  ) {
    if (config) this.registry.setDefaultLabels({ model: config.model.servedNames[0] });
    collectDefaultMetrics({ register: this.registry });
    const { version, commit } = buildInfo();
    new Gauge({
      name: 'qwen3_embed_build_info',
      help: 'Always 1: the version, commit and device of this process',
      labelNames: ['version', 'commit', 'device'] as const,
      registers: [this.registry],
    }).set({ version, commit, device: config?.model.device ?? 'unknown' }, 1);
    const ready = () => this.ready();
    new Gauge({
      name: 'qwen3_embed_ready',
      help: '1 when the model is loaded and serves (/health/ready is 200), else 0',
      registers: [this.registry],
      collect() {
        this.set(ready() ? 1 : 0);
      },
    });
    const devices = () => {
      try {
        return this.engine?.info().devices ?? [];
      } catch {
        return []; // not loaded yet
      }
    };
    const deviceMemoryGauge = (name: string, help: string, bytes: (device: EngineDeviceInfo) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['device', 'name', 'replica', 'rank'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const device of devices()) {
            const labels = {
              device: String(device.index),
              name: device.name,
              replica: device.replica,
              rank: device.rank,
            };
            this.set(labels, bytes(device));
          }
        },
      });
    deviceMemoryGauge(
      'qwen3_embed_device_memory_used_bytes',
      'Device memory held by the engine (weights and caches), per device',
      (device) => device.usedMemoryBytes,
    );
    deviceMemoryGauge(
      'qwen3_embed_device_memory_total_bytes',
      'Total memory of each device the engine uses',
      (device) => device.totalMemoryBytes,
    );
  }

  /** Where qwen3_embed_ready reads readiness from (the model's lifecycle, wired by the app). */
  reportReadiness(probe: () => boolean): void {
    this.ready = probe;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
