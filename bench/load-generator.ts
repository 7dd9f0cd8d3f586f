import { Injectable } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { FetchLike, ResponseLike } from './http-client';
import { LatencySummary, summariseLatencies, Throughput, throughput } from './latency-summary';

export interface LoadRunOptions {
  /** Base URL of the server, e.g. http://localhost:6008 */
  url: string;
  apiKey?: string;
  model?: string;
  texts: readonly string[];
  concurrency: number;
  requests: number;
  /** Inputs per request. */
  batch: number;
  dimensions?: number;
  inputType?: 'query' | 'document';
  encodingFormat: 'float' | 'base64';
  /** Requests sent first and left out of the numbers. */
  warmupRequests: number;
  timeoutMs: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LoadRunResult {
  tool: 'qwen3-embed-server admin bench';
  url: string;
  model?: string;
  concurrency: number;
  batch: number;
  dimensions?: number;
  requests: number;
  ok: number;
  failed: number;
  /** Failures by HTTP status (or 'network' / 'timeout'). */
  failures: Record<string, number>;
  firstError?: string;
  durationSeconds: number;
  embeddings: number;
  tokens: number;
  throughput: Throughput;
  latencyMs: LatencySummary;
  /**
   * Where the time went, from the server's timing headers of the successful requests (absent when the
   * server sends none): tokenization, waiting for a forward batch, and the forward batches themselves.
   * What the client latency has beyond their sum is HTTP, JSON and batching overhead.
   */
  serverMs?: ServerTimings;
}

/** Percentiles of each server-reported stage, in milliseconds. */
export interface ServerTimings {
  tokenization: LatencySummary;
  queue: LatencySummary;
  inference: LatencySummary;
}

const SERVER_TIMING_HEADERS = {
  tokenization: 'x-tokenization-time-ms',
  queue: 'x-queue-time-ms',
  inference: 'x-inference-time-ms',
} as const;

export type StageTimes = Partial<Record<keyof ServerTimings, number>>;

/** The server's timing headers of one response (those it sent). */
export function readStageTimes(headers: ResponseLike['headers']): StageTimes {
  const stages: StageTimes = {};
  for (const [stage, header] of Object.entries(SERVER_TIMING_HEADERS) as [keyof ServerTimings, string][]) {
    const value = Number(headers.get(header));
    if (headers.has(header) && Number.isFinite(value)) stages[stage] = value;
  }
  return stages;
}

interface EmbeddingsResponse {
  data?: unknown[];
  usage?: { prompt_tokens?: number; total_tokens?: number };
}

/**
 * A closed-loop load generator for POST /v1/embeddings: `concurrency` workers each send one request,
 * wait for its answer, send the next. Latency is per request; throughput counts only successful ones
 * over the wall time of the measured part.
 */
@Injectable()
export class LoadGenerator {
  /** fetchImpl: the HTTP client (global fetch unless given; `admin bench` passes keepAliveFetch). */
  async run(options: LoadRunOptions, fetchImpl: FetchLike = fetch): Promise<LoadRunResult> {
    if (options.texts.length === 0) throw new Error('the corpus is empty');
    const endpoint = new URL('/v1/embeddings', options.url).toString();
    const headers = {
      'content-type': 'application/json',
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
    };
    const model = options.model ?? (await this.servedModel(options, headers, fetchImpl));
    let cursor = 0;
    const nextInputs = (): string[] => {
      const inputs: string[] = [];
      for (let i = 0; i < options.batch; i++) {
        inputs.push(options.texts[cursor % options.texts.length]);
        cursor += 1;
      }
      return inputs;
    };
    const send = async (): Promise<{
      ok: boolean;
      ms: number;
      status: string;
      embeddings: number;
      tokens: number;
      stages?: StageTimes;
      error?: string;
    }> => {
      const body: Record<string, unknown> = { input: nextInputs(), encoding_format: options.encodingFormat };
      if (model !== undefined) body.model = model;
      if (options.dimensions !== undefined) body.dimensions = options.dimensions;
      if (options.inputType !== undefined) body.input_type = options.inputType;
      const started = performance.now();
      try {
        const response = await fetchImpl(endpoint, {
          method: 'POST',
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(options.timeoutMs),
        });
        const text = await response.text();
        const ms = performance.now() - started;
        if (!response.ok) {
          return {
            ok: false,
            ms,
            status: String(response.status),
            embeddings: 0,
            tokens: 0,
            error: text.slice(0, 300),
          };
        }
        const parsed = JSON.parse(text) as EmbeddingsResponse;
        return {
          ok: true,
          ms,
          status: String(response.status),
          embeddings: parsed.data?.length ?? 0,
          tokens: parsed.usage?.prompt_tokens ?? parsed.usage?.total_tokens ?? 0,
          stages: readStageTimes(response.headers),
        };
      } catch (error) {
        const name = (error as Error).name;
        return {
          ok: false,
          ms: performance.now() - started,
          status: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network',
          embeddings: 0,
          tokens: 0,
          error: (error as Error).message,
        };
      }
    };

    // Warm-up: connections, the server's first batches, CUDA graphs.
    const warmups = Math.max(0, options.warmupRequests);
    await closedLoop(Math.min(options.concurrency, Math.max(warmups, 1)), warmups, () => send());

    const latencies: number[] = [];
    const stageTimes: Record<keyof ServerTimings, number[]> = { tokenization: [], queue: [], inference: [] };
    const failures: Record<string, number> = {};
    let firstError: string | undefined;
    let embeddings = 0;
    let tokens = 0;
    let done = 0;
    const started = performance.now();
    await closedLoop(options.concurrency, options.requests, async () => {
      const outcome = await send();
      done += 1;
      if (outcome.ok) {
        latencies.push(outcome.ms);
        for (const [stage, ms] of Object.entries(outcome.stages ?? {}) as [keyof ServerTimings, number][]) {
          stageTimes[stage].push(ms);
        }
        embeddings += outcome.embeddings;
        tokens += outcome.tokens;
      } else {
        failures[outcome.status] = (failures[outcome.status] ?? 0) + 1;
        firstError ??= `${outcome.status}: ${outcome.error ?? ''}`;
      }
      options.onProgress?.(done, options.requests);
    });
    const durationSeconds = (performance.now() - started) / 1000;
    const ok = latencies.length;
    return {
      tool: 'qwen3-embed-server admin bench',
      url: endpoint,
      model,
      concurrency: options.concurrency,
      batch: options.batch,
      dimensions: options.dimensions,
      requests: options.requests,
      ok,
      failed: options.requests - ok,
      failures,
      firstError,
      durationSeconds,
      embeddings,
      tokens,
      throughput: throughput(durationSeconds, { requests: ok, embeddings, tokens }),
      latencyMs: summariseLatencies(latencies),
      ...(stageTimes.inference.length > 0
        ? {
            serverMs: {
              tokenization: summariseLatencies(stageTimes.tokenization),
              queue: summariseLatencies(stageTimes.queue),
              inference: summariseLatencies(stageTimes.inference),
            },
          }
        : {}),
    };
  }

  /** The first model GET /v1/models lists; undefined (the server's default) if it cannot tell. */
  private async servedModel(
    options: LoadRunOptions,
    headers: Record<string, string>,
    fetchImpl: FetchLike,
  ): Promise<string | undefined> {
    try {
      const response = await fetchImpl(new URL('/v1/models', options.url).toString(), {
        headers,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      if (!response.ok) return undefined;
      const listing = (await response.json()) as { data?: Array<{ id?: unknown }> };
      const id = listing.data?.[0]?.id;
      return typeof id === 'string' ? id : undefined;
    } catch {
      return undefined;
    }
  }
}

/** Runs `total` tasks with at most `width` in flight: each worker starts the next when its last ends. */
export async function closedLoop(
  width: number,
  total: number,
  task: () => Promise<void | unknown>,
): Promise<void> {
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < total) {
      started += 1;
      await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, total) }, worker));
}

export function formatLoadRun(result: LoadRunResult): string {
  const f = (value: number, digits = 1): string =>
    Number.isFinite(value)
      ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
      : '-';
  const l = result.latencyMs;
  const failures = Object.entries(result.failures)
    .map(([status, count]) => `${count} x ${status}`)
    .join(', ');
  return [
    `bench      ${result.url}  concurrency ${result.concurrency}  batch ${result.batch}  dimensions ${result.dimensions ?? 'default'}`,
    `requests   ${result.ok} ok, ${result.failed} failed${failures ? ` (${failures})` : ''} in ${f(result.durationSeconds, 2)} s`,
    `throughput ${f(result.throughput.requestsPerSecond)} req/s  ${f(result.throughput.embeddingsPerSecond)} embeddings/s  ${f(result.throughput.tokensPerSecond, 0)} tokens/s`,
    `latency    p50 ${f(l.p50)} ms  p90 ${f(l.p90)} ms  p99 ${f(l.p99)} ms  mean ${f(l.mean)} ms  max ${f(l.max)} ms`,
    ...(result.serverMs
      ? [
          `server p50 tokenization ${f(result.serverMs.tokenization.p50, 2)} ms  queue ${f(result.serverMs.queue.p50, 2)} ms  inference ${f(result.serverMs.inference.p50, 2)} ms`,
        ]
      : []),
    ...(result.firstError ? [`first error ${result.firstError}`] : []),
  ].join('\n');
}
