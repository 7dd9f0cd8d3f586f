import { Injectable } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { RerankWorkload } from './bench-corpus';
import { FetchLike } from './http-client';
import { LatencySummary, summariseLatencies } from './latency-summary';
import { closedLoop, readStageTimes, ServerTimings, StageTimes } from './load-generator';

export interface RerankRunOptions {
  /** Base URL of the server, e.g. http://localhost:6008 */
  url: string;
  apiKey?: string;
  model?: string;
  /** Each request is one group (query against its documents), round robin. */
  workload: RerankWorkload;
  concurrency: number;
  requests: number;
  /** Requests sent first and left out of the numbers. */
  warmupRequests: number;
  timeoutMs: number;
  /**
   * Ask for the documents back (`return_documents`). Off by default: echoing 100 passages per answer
   * measures JSON, not scoring.
   */
  returnDocuments?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface RerankThroughput {
  requestsPerSecond: number;
  /** (query, document) pairs scored per second: the reranking figure. */
  pairsPerSecond: number;
  /** Templated prompt tokens per second, from the responses' usage. */
  tokensPerSecond: number;
}

export interface RerankRunResult {
  tool: 'qwen3-embed-server admin bench --task rerank';
  task: 'rerank';
  url: string;
  model?: string;
  concurrency: number;
  groups: number;
  /** Documents per request (the mean over the groups when they differ). */
  documentsPerRequest: number;
  /** Tokens per document, before the template (set by `admin bench` when it counted them). */
  documentTokens?: { mean: number; min: number; max: number };
  requests: number;
  ok: number;
  failed: number;
  /** Failures by HTTP status (or 'network' / 'timeout' / 'bad-response'). */
  failures: Record<string, number>;
  firstError?: string;
  durationSeconds: number;
  pairs: number;
  tokens: number;
  throughput: RerankThroughput;
  latencyMs: LatencySummary;
  /** The server's timing headers of the successful requests, when it sends them. */
  serverMs?: ServerTimings;
}

/** One measured request. */
export interface RerankOutcome {
  ok: boolean;
  ms: number;
  /** HTTP status, or 'network' / 'timeout' / 'bad-response'. */
  status: string;
  pairs: number;
  tokens: number;
  stages?: StageTimes;
  error?: string;
}

interface RerankResponse {
  results?: Array<{ index?: unknown; relevance_score?: unknown }>;
  usage?: { prompt_tokens?: number; total_tokens?: number };
}

/**
 * The POST /v1/rerank body of each group, serialised once (a request of 100 passages is ~150 KB of
 * JSON; building it per request would be the client's time). No top_n: every pair comes back.
 */
export function rerankRequestBodies(
  workload: RerankWorkload,
  model: string | undefined,
  returnDocuments = false,
): string[] {
  return workload.groups.map((group) =>
    JSON.stringify({
      ...(model !== undefined ? { model } : {}),
      query: group.query,
      documents: group.documents,
      ...(group.instruction !== undefined ? { instruction: group.instruction } : {}),
      return_documents: returnDocuments,
    }),
  );
}

/**
 * Reads a 2xx answer: one finite relevance_score per document sent, each index once. Anything else is a
 * 'bad-response' failure, so a server that drops or mangles pairs cannot pass for a fast one.
 */
export function readRerankResponse(text: string, documents: number): Omit<RerankOutcome, 'ms' | 'stages'> {
  let parsed: RerankResponse;
  try {
    parsed = JSON.parse(text) as RerankResponse;
  } catch {
    return {
      ok: false,
      status: 'bad-response',
      pairs: 0,
      tokens: 0,
      error: `not JSON: ${text.slice(0, 200)}`,
    };
  }
  const results = Array.isArray(parsed.results) ? parsed.results : undefined;
  const indices = new Set(results?.map((r) => r.index));
  const problem = !results
    ? 'no results array'
    : results.length !== documents
      ? `${results.length} results for ${documents} documents`
      : results.some((r) => typeof r.relevance_score !== 'number' || !Number.isFinite(r.relevance_score))
        ? 'a relevance_score is not a finite number'
        : indices.size !== documents ||
            [...indices].some((i) => !Number.isInteger(i) || (i as number) < 0 || (i as number) >= documents)
          ? 'the result indices are not 0..documents-1, each once'
          : undefined;
  if (problem) return { ok: false, status: 'bad-response', pairs: 0, tokens: 0, error: problem };
  return {
    ok: true,
    status: '200',
    pairs: documents,
    tokens: parsed.usage?.prompt_tokens ?? parsed.usage?.total_tokens ?? 0,
  };
}

export function rerankThroughput(
  seconds: number,
  totals: { requests: number; pairs: number; tokens: number },
): RerankThroughput {
  const per = (value: number): number => (seconds > 0 ? value / seconds : 0);
  return {
    requestsPerSecond: per(totals.requests),
    pairsPerSecond: per(totals.pairs),
    tokensPerSecond: per(totals.tokens),
  };
}

/** The run's figures from its measured requests' outcomes and its wall time. */
export function summariseRerankRun(
  run: { url: string; model?: string; concurrency: number; workload: RerankWorkload },
  outcomes: readonly RerankOutcome[],
  durationSeconds: number,
): RerankRunResult {
  const latencies: number[] = [];
  const stageTimes: Record<keyof ServerTimings, number[]> = { tokenization: [], queue: [], inference: [] };
  const failures: Record<string, number> = {};
  let firstError: string | undefined;
  let pairs = 0;
  let tokens = 0;
  for (const outcome of outcomes) {
    if (outcome.ok) {
      latencies.push(outcome.ms);
      for (const [stage, ms] of Object.entries(outcome.stages ?? {}) as [keyof ServerTimings, number][]) {
        stageTimes[stage].push(ms);
      }
      pairs += outcome.pairs;
      tokens += outcome.tokens;
    } else {
      failures[outcome.status] = (failures[outcome.status] ?? 0) + 1;
      firstError ??= `${outcome.status}: ${outcome.error ?? ''}`;
    }
  }
  const groups = run.workload.groups;
  const ok = latencies.length;
  return {
    tool: 'qwen3-embed-server admin bench --task rerank',
    task: 'rerank',
    url: run.url,
    model: run.model,
    concurrency: run.concurrency,
    groups: groups.length,
    documentsPerRequest: groups.reduce((sum, g) => sum + g.documents.length, 0) / groups.length,
    requests: outcomes.length,
    ok,
    failed: outcomes.length - ok,
    failures,
    firstError,
    durationSeconds,
    pairs,
    tokens,
    throughput: rerankThroughput(durationSeconds, { requests: ok, pairs, tokens }),
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

/**
 * A closed-loop load generator for POST /v1/rerank: `concurrency` workers each send one request (one
 * query against its documents), wait for the answer, send the next. Latency is per request; pairs/s and
 * tokens/s count only successful requests over the wall time of the measured part.
 */
@Injectable()
export class RerankLoadGenerator {
  async run(options: RerankRunOptions, fetchImpl: FetchLike = fetch): Promise<RerankRunResult> {
    const groups = options.workload.groups;
    if (groups.length === 0 || groups.some((g) => g.documents.length === 0)) {
      throw new Error('the reranking workload has no documents');
    }
    const endpoint = new URL('/v1/rerank', options.url).toString();
    const headers = {
      'content-type': 'application/json',
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
    };
    const model = options.model ?? (await this.servedReranker(options, headers, fetchImpl));
    const bodies = rerankRequestBodies(options.workload, model, options.returnDocuments);
    let cursor = 0;
    const send = async (): Promise<RerankOutcome> => {
      const group = cursor % groups.length;
      cursor += 1;
      const started = performance.now();
      try {
        const response = await fetchImpl(endpoint, {
          method: 'POST',
          headers,
          body: bodies[group],
          signal: AbortSignal.timeout(options.timeoutMs),
        });
        const text = await response.text();
        const ms = performance.now() - started;
        if (!response.ok) {
          return {
            ok: false,
            ms,
            status: String(response.status),
            pairs: 0,
            tokens: 0,
            error: text.slice(0, 300),
          };
        }
        return {
          ...readRerankResponse(text, groups[group].documents.length),
          ms,
          stages: readStageTimes(response.headers),
        };
      } catch (error) {
        const name = (error as Error).name;
        return {
          ok: false,
          ms: performance.now() - started,
          status: name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'network',
          pairs: 0,
          tokens: 0,
          error: (error as Error).message,
        };
      }
    };

    // Warm-up: connections, the server's first batches and graphs.
    const warmups = Math.max(0, options.warmupRequests);
    await closedLoop(Math.min(options.concurrency, Math.max(warmups, 1)), warmups, () => send());

    const outcomes: RerankOutcome[] = [];
    const started = performance.now();
    await closedLoop(options.concurrency, options.requests, async () => {
      outcomes.push(await send());
      options.onProgress?.(outcomes.length, options.requests);
    });
    const durationSeconds = (performance.now() - started) / 1000;
    return summariseRerankRun(
      { url: endpoint, model, concurrency: options.concurrency, workload: options.workload },
      outcomes,
      durationSeconds,
    );
  }

  /**
   * The first model GET /v1/models lists with task 'rerank' (else the first listed); undefined (the
   * server's default) if it cannot tell.
   */
  private async servedReranker(
    options: RerankRunOptions,
    headers: Record<string, string>,
    fetchImpl: FetchLike,
  ): Promise<string | undefined> {
    try {
      const response = await fetchImpl(new URL('/v1/models', options.url).toString(), {
        headers,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      if (!response.ok) return undefined;
      const listing = (await response.json()) as { data?: Array<{ id?: unknown; task?: unknown }> };
      const entries = listing.data ?? [];
      const id = (entries.find((entry) => entry.task === 'rerank') ?? entries[0])?.id;
      return typeof id === 'string' ? id : undefined;
    } catch {
      return undefined;
    }
  }
}

export function formatRerankRun(result: RerankRunResult): string {
  const f = (value: number, digits = 1): string =>
    Number.isFinite(value)
      ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
      : '-';
  const l = result.latencyMs;
  const d = result.documentTokens;
  const failures = Object.entries(result.failures)
    .map(([status, count]) => `${count} x ${status}`)
    .join(', ');
  return [
    `rerank     ${result.url}  concurrency ${result.concurrency}  ${f(result.documentsPerRequest, 0)} documents a request${d ? ` of ~${f(d.mean, 0)} tokens (${d.min}-${d.max})` : ''}  ${result.groups} quer${result.groups === 1 ? 'y' : 'ies'}`,
    `requests   ${result.ok} ok, ${result.failed} failed${failures ? ` (${failures})` : ''} in ${f(result.durationSeconds, 2)} s`,
    `throughput ${f(result.throughput.requestsPerSecond, 2)} req/s  ${f(result.throughput.pairsPerSecond)} pairs/s  ${f(result.throughput.tokensPerSecond, 0)} tokens/s`,
    `latency    p50 ${f(l.p50)} ms  p90 ${f(l.p90)} ms  p99 ${f(l.p99)} ms  mean ${f(l.mean)} ms  max ${f(l.max)} ms`,
    ...(result.serverMs
      ? [
          `server p50 tokenization ${f(result.serverMs.tokenization.p50, 2)} ms  queue ${f(result.serverMs.queue.p50, 2)} ms  inference ${f(result.serverMs.inference.p50, 2)} ms`,
        ]
      : []),
    ...(result.firstError ? [`first error ${result.firstError}`] : []),
  ].join('\n');
}
