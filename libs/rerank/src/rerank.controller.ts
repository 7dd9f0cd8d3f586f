import { randomUUID } from 'node:crypto';
import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { DEADLINE_HEADER, withoutNulls } from '@app/embeddings/embeddings.service';
import { ApiEngineErrors, runTimed } from '@app/embeddings/model-endpoint';
import { ModelRegistry } from '@app/embeddings/model-registry';
import {
  RerankRequestDto,
  RerankResponseDto,
  RerankResultDto,
  TeiRankDto,
  TeiRerankRequestDto,
} from './rerank.dto';
import { RerankServices } from './rerank-services';
import { byScore, RerankJob, RerankOutcome } from './rerank.service';

/** The error responses both endpoints share. */
const ApiRerankErrors = () =>
  ApiEngineErrors({
    400: 'Invalid request (`param` names the field); `model_task_mismatch` when the served model is an embedding model; `context_length_exceeded` when the query leaves no room for a document.',
    413: 'Body or token limit exceeded; with truncate=false, a document too long for its pair (`context_length_exceeded`).',
  });

/**
 * The reranker's endpoints: POST /v1/rerank (Cohere's, Jina's and vLLM's shape) and POST /rerank
 * (text-embeddings-inference's). Both score every document against the query in one request and
 * answer best first.
 */
@ApiTags('rerank')
@ApiBearerAuth()
@Controller()
export class RerankController {
  constructor(
    private readonly registry: ModelRegistry,
    private readonly services: RerankServices,
  ) {}

  @Post('v1/rerank')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Rerank documents against a query (Cohere / Jina / vLLM-compatible)',
    description:
      'Timing headers: x-tokenization-time-ms, x-queue-time-ms, x-inference-time-ms, x-total-tokens, x-forward-batches.',
  })
  @ApiOkResponse({ type: RerankResponseDto })
  @ApiRerankErrors()
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
  @ApiRerankErrors()
  async tei(
    @Body() body: TeiRerankRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<TeiRankDto[]> {
    const request = withoutNulls(body);
    // TEI's request names no model: the first served reranker answers.
    const rerank = this.services.for(this.registry.route(undefined, 'rerank'));
    const outcome = await this.run(
      {
        query: request.query,
        documents: request.texts,
        instruction: request.instruction,
        truncate: request.truncate ?? rerank.autoTruncate,
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
    return runTimed(deadlineHeader, res, (signal, deadlineMs) =>
      this.services.for(this.registry.route(job.model, 'rerank')).rerank(job, signal, deadlineMs),
    );
  }
}
