import { Injectable } from '@nestjs/common';
import { RerankWorkload } from './bench-corpus';
import {
  closedLoopFigures,
  ClosedLoopFigures,
  ClosedLoopOptions,
  formatClosedLoopRun,
  formatFigure,
  listedModels,
  LoadOutcome,
  requestHeaders,
  runClosedLoop,
  sendTimed,
  tallyOutcomes,
} from './closed-loop';
import { FetchLike } from './http-client';

export interface RerankRunOptions extends ClosedLoopOptions {
  /** Each request is one group (query against its documents), round robin. */
  workload: RerankWorkload;
  /**
   * Ask for the documents back (`return_documents`). Off by default: echoing 100 passages per answer
   * measures JSON, not scoring.
   */
  returnDocuments?: boolean;
}

export interface RerankThroughput {
  requestsPerSecond: number;
  /** (query, document) pairs scored per second: the reranking figure. */
  pairsPerSecond: number;
  /** Templated prompt tokens per second, from the responses' usage. */
  tokensPerSecond: number;
}

/** Its failures may also be 'bad-response'. */
export interface RerankRunResult extends ClosedLoopFigures {
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
  pairs: number;
  tokens: number;
  throughput: RerankThroughput;
}

/** One measured request; its status may also be 'bad-response'. */
export interface RerankOutcome extends LoadOutcome {
  pairs: number;
  tokens: number;
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
  const tally = tallyOutcomes(outcomes, ['pairs', 'tokens'] as const);
  const { pairs, tokens } = tally.totals;
  const groups = run.workload.groups;
  return {
    tool: 'qwen3-embed-server admin bench --task rerank',
    task: 'rerank',
    url: run.url,
    model: run.model,
    concurrency: run.concurrency,
    groups: groups.length,
    documentsPerRequest: groups.reduce((sum, g) => sum + g.documents.length, 0) / groups.length,
    ...closedLoopFigures(tally, outcomes.length, durationSeconds, {
      pairs,
      tokens,
      throughput: rerankThroughput(durationSeconds, { requests: tally.ok, pairs, tokens }),
    }),
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
    const headers = requestHeaders(options.apiKey);
    const model =
      options.model ??
      this.servedReranker(await listedModels(fetchImpl, options.url, headers, options.timeoutMs));
    const bodies = rerankRequestBodies(options.workload, model, options.returnDocuments);
    let cursor = 0;
    const send = (): Promise<RerankOutcome> => {
      const group = cursor % groups.length;
      cursor += 1;
      return sendTimed(
        fetchImpl,
        { endpoint, headers, body: bodies[group], timeoutMs: options.timeoutMs },
        { pairs: 0, tokens: 0 },
        (text) => readRerankResponse(text, groups[group].documents.length),
      );
    };

    const { outcomes, durationSeconds } = await runClosedLoop(options, send);
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
  private servedReranker(entries: Array<{ id?: unknown; task?: unknown }> | undefined): string | undefined {
    const id = (entries?.find((entry) => entry.task === 'rerank') ?? entries?.[0])?.id;
    return typeof id === 'string' ? id : undefined;
  }
}

export function formatRerankRun(result: RerankRunResult): string {
  const f = formatFigure;
  const d = result.documentTokens;
  return formatClosedLoopRun(
    result,
    `rerank     ${result.url}  concurrency ${result.concurrency}  ${f(result.documentsPerRequest, 0)} documents a request${d ? ` of ~${f(d.mean, 0)} tokens (${d.min}-${d.max})` : ''}  ${result.groups} quer${result.groups === 1 ? 'y' : 'ies'}`,
    `throughput ${f(result.throughput.requestsPerSecond, 2)} req/s  ${f(result.throughput.pairsPerSecond)} pairs/s  ${f(result.throughput.tokensPerSecond, 0)} tokens/s`,
  );
}
