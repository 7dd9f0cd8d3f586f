import { Injectable } from '@nestjs/common';
import {
  closedLoopFigures,
  ClosedLoopFigures,
  ClosedLoopOptions,
  formatClosedLoopRun,
  formatFigure,
  listedModels,
  requestHeaders,
  runClosedLoop,
  sendTimed,
  tallyOutcomes,
} from './closed-loop';
import { FetchLike } from './http-client';
import { Throughput, throughput } from './latency-summary';

export interface LoadRunOptions extends ClosedLoopOptions {
  texts: readonly string[];
  /** Inputs per request. */
  batch: number;
  dimensions?: number;
  inputType?: 'query' | 'document';
  encodingFormat: 'float' | 'base64';
}

export interface LoadRunResult extends ClosedLoopFigures {
  tool: 'qwen3-embed-server admin bench';
  url: string;
  model?: string;
  concurrency: number;
  batch: number;
  dimensions?: number;
  embeddings: number;
  tokens: number;
  throughput: Throughput;
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
    const headers = requestHeaders(options.apiKey);
    const model =
      options.model ?? this.firstId(await listedModels(fetchImpl, options.url, headers, options.timeoutMs));
    let cursor = 0;
    const nextInputs = (): string[] => {
      const inputs: string[] = [];
      for (let i = 0; i < options.batch; i++) {
        inputs.push(options.texts[cursor % options.texts.length]);
        cursor += 1;
      }
      return inputs;
    };
    const send = () => {
      const body: Record<string, unknown> = { input: nextInputs(), encoding_format: options.encodingFormat };
      if (model !== undefined) body.model = model;
      if (options.dimensions !== undefined) body.dimensions = options.dimensions;
      if (options.inputType !== undefined) body.input_type = options.inputType;
      return sendTimed(
        fetchImpl,
        { endpoint, headers, body: JSON.stringify(body), timeoutMs: options.timeoutMs },
        { embeddings: 0, tokens: 0 },
        (text) => {
          const parsed = JSON.parse(text) as EmbeddingsResponse;
          return {
            ok: true,
            status: '200',
            embeddings: parsed.data?.length ?? 0,
            tokens: parsed.usage?.prompt_tokens ?? parsed.usage?.total_tokens ?? 0,
          };
        },
      );
    };

    const { outcomes, durationSeconds } = await runClosedLoop(options, send);
    const tally = tallyOutcomes(outcomes, ['embeddings', 'tokens'] as const);
    const { embeddings, tokens } = tally.totals;
    return {
      tool: 'qwen3-embed-server admin bench',
      url: endpoint,
      model,
      concurrency: options.concurrency,
      batch: options.batch,
      dimensions: options.dimensions,
      ...closedLoopFigures(tally, options.requests, durationSeconds, {
        embeddings,
        tokens,
        throughput: throughput(durationSeconds, { requests: tally.ok, embeddings, tokens }),
      }),
    };
  }

  /** The first model GET /v1/models lists; undefined (the server's default) if it cannot tell. */
  private firstId(entries: Array<{ id?: unknown }> | undefined): string | undefined {
    const id = entries?.[0]?.id;
    return typeof id === 'string' ? id : undefined;
  }
}

export function formatLoadRun(result: LoadRunResult): string {
  const f = formatFigure;
  return formatClosedLoopRun(
    result,
    `bench      ${result.url}  concurrency ${result.concurrency}  batch ${result.batch}  dimensions ${result.dimensions ?? 'default'}`,
    `throughput ${f(result.throughput.requestsPerSecond)} req/s  ${f(result.throughput.embeddingsPerSecond)} embeddings/s  ${f(result.throughput.tokensPerSecond, 0)} tokens/s`,
  );
}
