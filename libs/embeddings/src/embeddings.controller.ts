import { Body, Controller, Header, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { OpenAIErrorDto } from '@app/common';
import { EmbeddingsRequestDto, EmbeddingsResponseDto } from './embeddings.dto';
import { DEADLINE_HEADER, EmbeddingsService, parseDeadlineHeader } from './embeddings.service';

const ms = (value: number) => value.toFixed(1);

@ApiTags('embeddings')
@ApiBearerAuth()
@Controller('v1')
export class EmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post('embeddings')
  @HttpCode(200)
  @Header('content-type', 'application/json; charset=utf-8')
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
    @Res({ passthrough: true }) res: Response,
  ): Promise<string> {
    // A client that disconnects has its queued work dropped.
    const deadlineMs = parseDeadlineHeader(deadlineHeader);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const { body: json, timings } = await this.embeddings.embed(body, abort.signal, deadlineMs);
    // The service writes the JSON itself (embedding-encoding.ts); Nest sends the string with
    // Express's res.send (the type from @Header, with its charset; the length).
    res.set({
      'x-tokenization-time-ms': ms(timings.tokenizationMs),
      'x-queue-time-ms': ms(timings.queueMs),
      'x-inference-time-ms': ms(timings.inferenceMs),
      'x-total-tokens': String(timings.totalTokens),
      'x-forward-batches': String(timings.batches),
    });
    return json;
  }
}
