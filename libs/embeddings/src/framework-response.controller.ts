import { Body, Controller, Header, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { embedFor, timingHeaders } from './embeddings.controller';
import { EmbeddingsRequestDto } from './embeddings.dto';
import { DEADLINE_HEADER, EmbeddingsService } from './embeddings.service';

/**
 * The embeddings route answered the framework's way: the handler returns the service's JSON and Nest
 * sends it with Express's res.send (type and charset from @Header, length and the rest by Express),
 * the timing headers set on the passthrough response. EmbeddingsController writes the same answer
 * with writeHead/end; bench/bypass-overhead.ts measures the two against each other.
 */
@ApiTags('embeddings')
@ApiBearerAuth()
@Controller('v1')
export class FrameworkResponseEmbeddingsController {
  constructor(private readonly embeddings: EmbeddingsService) {}

  @Post('embeddings')
  @HttpCode(200)
  @Header('content-type', 'application/json; charset=utf-8')
  async create(
    @Body() body: EmbeddingsRequestDto,
    @Headers(DEADLINE_HEADER) deadlineHeader: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ): Promise<string> {
    const { body: json, timings } = await embedFor(this.embeddings, body, deadlineHeader, res);
    res.set(timingHeaders(timings));
    return json;
  }
}
