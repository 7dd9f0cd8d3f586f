import { randomUUID } from 'node:crypto';
import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { OpenAIErrorDto } from '@app/common';
import { DEADLINE_HEADER, parseDeadlineHeader } from '@app/embeddings/embeddings.service';
import {
  RerankRequestDto,
  RerankResponseDto,
  RerankResultDto,
  TeiRankDto,
  TeiRerankRequestDto,
} from './rerank.dto';
import { byScore, RerankJob, RerankOutcome, RerankService } from './rerank.service';

const ms = (value: number) => value.toFixed(1);

/** The error responses both endpoints share. */
function ApiRerankResponses(): MethodDecorator {
  const decorators = [
    ApiHeader({
      name: 'X-Request-Deadline-Ms',
      required: false,
      description:
        'How long the client will wait, 1..3600000 ms (default REQUEST_DEADLINE_MS). Work that cannot be done in time is refused with 429 and Retry-After instead of run late.',
    }),
    ApiResponse({
      status: 400,
      type: OpenAIErrorDto,
      description:
        'Invalid request (`param` names the field); `model_task_mismatch` when the served model is an embedding model; `context_length_exceeded` when the query leaves no room for a document.',
    }),
    ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' }),
    ApiResponse({ status: 404, type: OpenAIErrorDto, description: 'Unknown model.' }),
    ApiResponse({
      status: 413,
      type: OpenAIErrorDto,
      description:
        'Body or token limit exceeded; with truncate=false, a document too long for its pair (`context_length_exceeded`).',
    }),
    ApiResponse({
      status: 429,
      type: OpenAIErrorDto,
      description: 'Overloaded: queue full or deadline out of reach; see Retry-After.',
    }),
    ApiResponse({
      status: 503,
      type: OpenAIErrorDto,
      description: 'Loading, engine failure or shutting down.',
    }),
  ];
  return (target, key, descriptor) => {
    for (const decorator of decorators) decorator(target, key, descriptor);
  };
}

/**
 * The reranker's endpoints: POST /v1/rerank (Cohere's, Jina's and vLLM's shape) and POST /rerank
 * (text-embeddings-inference's). Both score every document against the query in one request and
 * answer best first.
 */
@ApiTags('rerank')
@ApiBearerAuth()
@Controller()
export class RerankController {
  constructor(private readonly rerank: RerankService) {}

  @Post('v1/rerank')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Rerank documents against a query (Cohere / Jina / vLLM-compatible)',
    description:
      'Timing headers: x-tokenization-time-ms, x-queue-time-ms, x-inference-time-ms, x-total-tokens, x-forward-batches.',
  })
  @ApiOkResponse({ type: RerankResponseDto })
  @ApiRerankResponses()
  async create(
    @Body() body: RerankRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<RerankResponseDto> {
    const request = withoutNulls(body);
    const texts = request.documents.map((document) =>
      typeof document === 'string' ? document : document.text,
    );
    const outcome = await this.run(
      {
        model: request.model,
        query: request.query,
        documents: texts,
        instruction: request.instruction,
        truncate: request.truncate ?? true,
        field: 'documents',
      },
      deadlineHeader,
      res,
    );
    const withDocuments = request.return_documents ?? true;
    const ranked = byScore(outcome.scores).slice(0, request.top_n ?? texts.length);
    return {
      id: `rerank-${randomUUID().replace(/-/g, '')}`,
      model: outcome.model,
      results: ranked.map((score): RerankResultDto => {
        const result: RerankResultDto = { index: score.index, relevance_score: score.relevance };
        if (withDocuments) result.document = { text: texts[score.index] };
        if (score.truncated) result.truncated = true;
        return result;
      }),
      usage: { prompt_tokens: outcome.promptTokens, total_tokens: outcome.promptTokens },
    };
  }

  @Post('rerank')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Rerank texts against a query (text-embeddings-inference-compatible)',
    description: 'Answers [{index, score, text?}], best first. The same timing headers as /v1/rerank.',
  })
  @ApiOkResponse({ type: [TeiRankDto] })
  @ApiRerankResponses()
  async tei(
    @Body() body: TeiRerankRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<TeiRankDto[]> {
    const request = withoutNulls(body);
    const outcome = await this.run(
      {
        query: request.query,
        documents: request.texts,
        instruction: request.instruction,
        truncate: request.truncate ?? this.rerank.autoTruncate,
        field: 'texts',
      },
      deadlineHeader,
      res,
    );
    const raw = request.raw_scores ?? false;
    return byScore(outcome.scores, raw ? 'raw' : 'relevance').map((score) => {
      const rank: TeiRankDto = { index: score.index, score: raw ? score.raw : score.relevance };
      if (request.return_text) rank.text = request.texts[score.index];
      return rank;
    });
  }

  private async run(
    job: RerankJob,
    deadlineHeader: string | undefined,
    res: Response,
  ): Promise<RerankOutcome> {
    // A client that disconnects has its queued work dropped.
    const deadlineMs = parseDeadlineHeader(deadlineHeader);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const outcome = await this.rerank.rerank(job, abort.signal, deadlineMs);
    const { timings } = outcome;
    res.set({
      'x-tokenization-time-ms': ms(timings.tokenizationMs),
      'x-queue-time-ms': ms(timings.queueMs),
      'x-inference-time-ms': ms(timings.inferenceMs),
      'x-total-tokens': String(timings.totalTokens),
      'x-forward-batches': String(timings.batches),
    });
    return outcome;
  }
}

/** Options sent as null mean their default, as in the embeddings request (withoutNulls there). */
function withoutNulls<T extends object>(request: T): T {
  const entries = Object.entries(request);
  if (entries.every(([, value]) => value !== null)) return request;
  return Object.fromEntries(entries.filter(([, value]) => value !== null)) as T;
}
