import { Body, Controller, Header, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { EmbeddingsRequestDto, EmbeddingsResponseDto } from './embeddings.dto';
import { DEADLINE_HEADER } from './embeddings.service';
import { ModelRegistry } from './model-registry';
import { ApiEngineErrors, runTimed } from './model-endpoint';

@ApiTags('embeddings')
@ApiBearerAuth()
@Controller('v1')
export class EmbeddingsController {
  constructor(private readonly registry: ModelRegistry) {}

  @Post('embeddings')
  @HttpCode(200)
  @Header('content-type', 'application/json; charset=utf-8')
  @ApiOperation({
    summary: 'Create embeddings (OpenAI-compatible)',
    description:
      'Timing headers: x-tokenization-time-ms, x-queue-time-ms, x-inference-time-ms, x-total-tokens, x-forward-batches.',
  })
  @ApiOkResponse({ type: EmbeddingsResponseDto })
  @ApiEngineErrors()
  async create(
    @Body() body: EmbeddingsRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<string> {
    const { body: json } = await runTimed(deadlineHeader, res, (signal, deadlineMs) =>
      this.registry.route(body.model, 'embed').embeddings.embed(body, signal, deadlineMs),
    );
    // The service writes the JSON itself (embedding-encoding.ts); Nest sends the string with
    // Express's res.send (the type from @Header, with its charset; the length).
    return json;
  }
}
