import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { OpenAIErrorDto } from '@app/common';
import {
  DetokenizeRequestDto,
  DetokenizeResponseDto,
  TokenizeRequestDto,
  TokenizeResponseDto,
} from './tokenize.dto';
import { TokenizeService } from './tokenize.service';

/** vLLM's paths: at the root, as vLLM serves them. */
@ApiTags('tokenize')
@ApiBearerAuth()
@Controller()
export class TokenizeController {
  constructor(private readonly tokenize: TokenizeService) {}

  @Post('tokenize')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Token ids of a text, as the engine would see them (vLLM-compatible)',
    description:
      "The ids POST /v1/embeddings would embed for `prompt`: the model name's prompt alias or input_type / instruction, the special tokens, and truncation when asked. A reranker tokenizes query and document in its template.",
  })
  @ApiOkResponse({ type: TokenizeResponseDto })
  @ApiResponse({
    status: 400,
    type: OpenAIErrorDto,
    description: 'Invalid request; `param` names the field.',
  })
  @ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' })
  @ApiResponse({ status: 404, type: OpenAIErrorDto, description: 'Unknown model.' })
  @ApiResponse({ status: 413, type: OpenAIErrorDto, description: 'Body or token limit exceeded.' })
  @ApiResponse({ status: 503, type: OpenAIErrorDto, description: 'Loading or shutting down.' })
  create(@Body() body: TokenizeRequestDto): Promise<TokenizeResponseDto> {
    return this.tokenize.tokenize(body);
  }

  @Post('detokenize')
  @HttpCode(200)
  @ApiOperation({ summary: 'The text of token ids, special tokens included (vLLM-compatible)' })
  @ApiOkResponse({ type: DetokenizeResponseDto })
  @ApiResponse({
    status: 400,
    type: OpenAIErrorDto,
    description:
      "Invalid request, or an id outside the tokenizer's vocabulary (the message names tokens[i]).",
  })
  @ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' })
  @ApiResponse({ status: 404, type: OpenAIErrorDto, description: 'Unknown model.' })
  @ApiResponse({ status: 413, type: OpenAIErrorDto, description: 'Body or token limit exceeded.' })
  @ApiResponse({ status: 503, type: OpenAIErrorDto, description: 'Loading or shutting down.' })
  detokenize(@Body() body: DetokenizeRequestDto): Promise<DetokenizeResponseDto> {
    return this.tokenize.detokenize(body);
  }
}
