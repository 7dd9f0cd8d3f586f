import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { OpenAIErrorDto } from '@app/common';
import { EmbeddingsRequestDto, EmbeddingsResponseDto } from './embeddings.dto';
import {
  DEADLINE_HEADER,
  EmbeddingsService,
  EmbeddingTimings,
  parseDeadlineHeader,
} from './embeddings.service';

const ms = (value: number) => value.toFixed(1);

/** The embeddings answer's own headers: the service's timings, tokens and forward batches. */
export function timingHeaders(timings: EmbeddingTimings): Record<string, string> {
  return {
    'x-tokenization-time-ms': ms(timings.tokenizationMs),
    'x-queue-time-ms': ms(timings.queueMs),
    'x-inference-time-ms': ms(timings.inferenceMs),
    'x-total-tokens': String(timings.totalTokens),
    'x-forward-batches': String(timings.batches),
  };
}

/** Runs one embeddings request; a client that disconnects has its queued work dropped. */
export function embedFor(
  embeddings: EmbeddingsService,
  body: EmbeddingsRequestDto,
  deadlineHeader: string | undefined,
  res: Response,
): ReturnType<EmbeddingsService['embed']> {
  const deadlineMs = parseDeadlineHeader(deadlineHeader);
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  return embeddings.embed(body, abort.signal, deadlineMs);
}

@ApiTags('embeddings')
@ApiBearerAuth()
@Controller('v1')
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post('embeddings')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Create embeddings (OpenAI-compatible)',
    description:
      'Timing headers: x-tokenization-time-ms, x-queue-time-ms, x-inference-time-ms, x-total-tokens, x-forward-batches.',
  })
  @ApiHeader({
    name: 'X-Request-Deadline-Ms',
    required: false,
    description:
      'How long the client will wait, 1..3600000 ms (default REQUEST_DEADLINE_MS). Work that cannot be done in time is refused with 429 and Retry-After instead of run late.',
  })
  @ApiOkResponse({ type: EmbeddingsResponseDto })
  @ApiResponse({
    status: 400,
    type: OpenAIErrorDto,
    description: 'Invalid request; `param` names the field.',
  })
  @ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' })
  @ApiResponse({ status: 404, type: OpenAIErrorDto, description: 'Unknown model.' })
  @ApiResponse({ status: 413, type: OpenAIErrorDto, description: 'Body or token limit exceeded.' })
  @ApiResponse({
    status: 429,
    type: OpenAIErrorDto,
    description: 'Overloaded: queue full or deadline out of reach; see Retry-After.',
  })
  @ApiResponse({
    status: 503,
    type: OpenAIErrorDto,
    description: 'Loading, engine failure or shutting down.',
  })
  async create(
    @Body() body: EmbeddingsRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res() res: Response,
  ): Promise<void> {
    const { body: json, timings } = await embedFor(this.embeddings, body, deadlineHeader, res);
    // The service writes the JSON itself (embedding-encoding.ts), and it goes out as is, with the
    // headers Express's res.send would set (type with charset, length; no ETag, as the app turns it
    // off) but without its header parsing (bench/server-overhead.ts). Encoded once: the length is
    // the buffer's, and the socket takes it without another copy (a string would be joined to the
    // header text first). Errors thrown above reach the filter.
    const payload = Buffer.from(json, 'utf8');
    res
      .writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': payload.length,
        ...timingHeaders(timings),
      })
      .end(payload);
  }
}
