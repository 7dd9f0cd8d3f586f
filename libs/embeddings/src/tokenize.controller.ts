import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiModelErrors } from './model-endpoint';
import { ModelRegistry } from './model-registry';
import {
  DetokenizeRequestDto,
  DetokenizeResponseDto,
  TokenizeRequestDto,
  TokenizeResponseDto,
} from './tokenize.dto';

/** vLLM's paths: at the root, as vLLM serves them. */
@ApiTags('tokenize')
@ApiBearerAuth()
@Controller()
export class TokenizeController {
  constructor(private readonly registry: ModelRegistry) {}

  @Post('tokenize')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Token ids of a text, as the engine would see them (vLLM-compatible)',
    description:
      "The ids POST /v1/embeddings would embed for `prompt`: the model name's prompt alias or input_type / instruction, the special tokens, and truncation when asked. A reranker tokenizes query and document in its template.",
  })
  @ApiOkResponse({ type: TokenizeResponseDto })
  @ApiModelErrors({ 503: 'Loading or shutting down.' })
  create(@Body() body: TokenizeRequestDto): Promise<TokenizeResponseDto> {
    // A query-document pair is a reranker's; a prompt, an embedding model's (when `model` names none).
    const task = body.query !== undefined || body.document !== undefined ? 'rerank' : 'embed';
    return this.registry.route(body.model, task).tokenize.tokenize(body);
  }

  @Post('detokenize')
  @HttpCode(200)
  @ApiOperation({ summary: 'The text of token ids, special tokens included (vLLM-compatible)' })
  @ApiOkResponse({ type: DetokenizeResponseDto })
  @ApiModelErrors({
    400: "Invalid request, or an id outside the tokenizer's vocabulary (the message names tokens[i]).",
    503: 'Loading or shutting down.',
  })
  detokenize(@Body() body: DetokenizeRequestDto): Promise<DetokenizeResponseDto> {
    return this.registry.route(body.model, 'embed').tokenize.detokenize(body);
  }
}
