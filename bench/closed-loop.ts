/**
 * The closed-loop load core that `admin bench` runs for both tasks (bench/load-generator.ts for
 * POST /v1/embeddings, bench/rerank-load-generator.ts for POST /v1/rerank): `concurrency` workers each
 * send one request, wait for its answer, send the next; warm-up requests first, left out of the
 * numbers; latency per successful request, failures counted by status, the server's timing headers
 * summarised. Each generator keeps only what differs: its request body, how it reads an answer, and
 * what it counts (embeddings or pairs, tokens).
 */
import { performance } from 'node:perf_hooks';
import { FetchLike, ResponseLike } from './http-client';
import { LatencySummary, summariseLatencies } from './latency-summary';

/** What a run of either generator is given besides its workload. */
export interface ClosedLoopOptions {
  /** Base URL of the server, e.g. http://localhost:6008 */
  url: string;
  apiKey?: string;
  model?: string;
  concurrency: number;
  requests: number;
  /** Requests sent first and left out of the numbers. */
  warmupRequests: number;
  timeoutMs: number;
  onProgress?: (done: number, total: number) => void;
}

/** The figures of a run that both generators report (scripts/device/run.sh reads them). */
export interface ClosedLoopFigures {
  requests: number;
  ok: number;
  failed: number;
  /** Failures by HTTP status (or 'network' / 'timeout', or the generator's own). */
  failures: Record<string, number>;
  firstError?: string;
  durationSeconds: number;
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

/** One measured request; a generator adds its counts (embeddings, pairs, tokens). */
export interface LoadOutcome {
  ok: boolean;
  ms: number;
  /** HTTP status, or 'network' / 'timeout' (or the generator's own, e.g. 'bad-response'). */
  status: string;
  stages?: StageTimes;
  error?: string;
}

/** Request headers: JSON, and the API key as a bearer token when there is one. */
export function requestHeaders(apiKey: string | undefined): Record<string, string> {
  return {
    'content-type': 'application/json',
    ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
  };
}

/**
 * POSTs `body` and times it to the end of the answer. A non-2xx answer fails with its status and the
 * start of its text, and `zero` counts; a 2xx answer is `read`, with the server's timing headers; a
 * thrown error (`read`'s included) fails as 'timeout' or 'network'.
 */
export async function sendTimed<C extends object>(
  fetchImpl: FetchLike,
  request: { endpoint: string; headers: Record<string, string>; body: string; timeoutMs: number },
  zero: C,
  read: (text: string) => Omit<LoadOutcome, 'ms' | 'stages'> & C,
): Promise<LoadOutcome & C> {
  const started = performance.now();
  try {
    const response = await fetchImpl(request.endpoint, {
      method: 'POST',
      headers: request.headers,
      body: request.body,
      signal: AbortSignal.timeout(request.timeoutMs),
    });
    const text = await response.text();
    const ms = performance.now() - started;
    if (!response.ok) {
      return { ok: false, ms, status: String(response.status), ...zero, error: text.slice(0, 300) };
    }
    return { ...read(text), ms, stages: readStageTimes(response.headers) };
  } catch (error) {
    const name = (error as Error).name;
    return {
      ok: false,
      ms: performance.now() - started,
      status: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network',
      ...zero,
      error: (error as Error).message,
    };
  }
}

/** GET /v1/models's entries; undefined if the server does not say. */
export async function listedModels(
  fetchImpl: FetchLike,
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<Array<{ id?: unknown; task?: unknown }> | undefined> {
  try {
    const response = await fetchImpl(new URL('/v1/models', url).toString(), {
      headers,
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) return undefined;
    const listing = (await response.json()) as { data?: Array<{ id?: unknown; task?: unknown }> };
    return listing.data;
  } catch {
    return undefined;
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

/**
 * Sends the warm-up requests (connections, the server's first batches, CUDA graphs), then `requests`
 * measured ones at `concurrency`; the outcomes in the order they ended, and the measured wall time.
 */
export async function runClosedLoop<O>(
  options: Pick<ClosedLoopOptions, 'concurrency' | 'requests' | 'warmupRequests' | 'onProgress'>,
  send: () => Promise<O>,
): Promise<{ outcomes: O[]; durationSeconds: number }> {
  const warmups = Math.max(0, options.warmupRequests);
  await closedLoop(Math.min(options.concurrency, Math.max(warmups, 1)), warmups, () => send());

  const outcomes: O[] = [];
  const started = performance.now();
  await closedLoop(options.concurrency, options.requests, async () => {
    outcomes.push(await send());
    options.onProgress?.(outcomes.length, options.requests);
  });
  return { outcomes, durationSeconds: (performance.now() - started) / 1000 };
}

export interface OutcomeTally<K extends string> {
  ok: number;
  /** Failures by status. */
  failures: Record<string, number>;
  firstError?: string;
  /** The counts summed over the successful requests. */
  totals: Record<K, number>;
  latencyMs: LatencySummary;
  /** Absent when no successful answer had the server's inference time. */
  serverMs?: ServerTimings;
}

/** Sums the successful requests' counts and latencies and the failures by status. */
export function tallyOutcomes<K extends string>(
  outcomes: readonly (LoadOutcome & Record<K, number>)[],
  counts: readonly K[],
): OutcomeTally<K> {
  const latencies: number[] = [];
  const stageTimes: Record<keyof ServerTimings, number[]> = { tokenization: [], queue: [], inference: [] };
  const failures: Record<string, number> = {};
  let firstError: string | undefined;
  const totals = Object.fromEntries(counts.map((count) => [count, 0])) as Record<K, number>;
  for (const outcome of outcomes) {
    if (outcome.ok) {
      latencies.push(outcome.ms);
      for (const [stage, ms] of Object.entries(outcome.stages ?? {}) as [keyof ServerTimings, number][]) {
        stageTimes[stage].push(ms);
      }
      for (const count of counts) totals[count] += outcome[count];
    } else {
      failures[outcome.status] = (failures[outcome.status] ?? 0) + 1;
      firstError ??= `${outcome.status}: ${outcome.error ?? ''}`;
    }
  }
  return {
    ok: latencies.length,
    failures,
    firstError,
    totals,
    latencyMs: summariseLatencies(latencies),
    serverMs:
      stageTimes.inference.length > 0
        ? {
            tokenization: summariseLatencies(stageTimes.tokenization),
            queue: summariseLatencies(stageTimes.queue),
            inference: summariseLatencies(stageTimes.inference),
          }
        : undefined,
  };
}

/**
 * A run's figures from its tally, in the order its JSON has always had them: the generator's counts and
 * throughput (`counts`) stand between the wall time and the latency.
 */
export function closedLoopFigures<M extends object>(
  tally: OutcomeTally<string>,
  requests: number,
  durationSeconds: number,
  counts: M,
): ClosedLoopFigures & M {
  return {
    requests,
    ok: tally.ok,
    failed: requests - tally.ok,
    failures: tally.failures,
    firstError: tally.firstError,
    durationSeconds,
    ...counts,
    latencyMs: tally.latencyMs,
    ...(tally.serverMs ? { serverMs: tally.serverMs } : {}),
  };
}

/** A figure with `digits` decimals and thousands separators; '-' when not finite. */
export function formatFigure(value: number, digits = 1): string {
  return Number.isFinite(value)
    ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '-';
}

/** A run's text summary: its own head and throughput lines around the shared requests/latency ones. */
export function formatClosedLoopRun(result: ClosedLoopFigures, head: string, throughputLine: string): string {
  const f = formatFigure;
  const l = result.latencyMs;
  const failures = Object.entries(result.failures)
    .map(([status, count]) => `${count} x ${status}`)
    .join(', ');
  return [
    head,
    `requests   ${result.ok} ok, ${result.failed} failed${failures ? ` (${failures})` : ''} in ${f(result.durationSeconds, 2)} s`,
    throughputLine,
    `latency    p50 ${f(l.p50)} ms  p90 ${f(l.p90)} ms  p99 ${f(l.p99)} ms  mean ${f(l.mean)} ms  max ${f(l.max)} ms`,
    ...(result.serverMs
      ? [
          `server p50 tokenization ${f(result.serverMs.tokenization.p50, 2)} ms  queue ${f(result.serverMs.queue.p50, 2)} ms  inference ${f(result.serverMs.inference.p50, 2)} ms`,
        ]
      : []),
    ...(result.firstError ? [`first error ${result.firstError}`] : []),
  ].join('\n');
}
