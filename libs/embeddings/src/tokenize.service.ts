import { InvalidRequestError, RequestTooLargeError } from '@app/common';
import { AppConfig } from '@app/config';
import { withoutNulls } from './embeddings.service';
import { ModelBinding, ModelService } from './model.service';
import { requestedPrompt } from './prompt-template';
import { RerankTemplate } from './rerank-template';
import { TokenizerService } from './tokenizer.service';
import {
  DetokenizeRequestDto,
  DetokenizeResponseDto,
  TokenizeRequestDto,
  TokenizeResponseDto,
} from './tokenize.dto';

const TASK_MISMATCH = 'model_task_mismatch';

/**
 * POST /tokenize and /detokenize (vLLM's shape): the ids the engine would see for a text, built by
 * the same steps as POST /v1/embeddings (model name and its prompt alias, prompt, special tokens,
 * truncation) or, for a reranker, by its template.
 */
export class TokenizeService {
  constructor(
    private readonly config: AppConfig,
    private readonly model: ModelService,
    private readonly tokenizer: TokenizerService,
    /** The served reranker's template (libs/rerank's), asked for only for a query-document pair. */
    private readonly rerankTemplate: () => RerankTemplate,
  ) {}

  async tokenize(sent: TokenizeRequestDto): Promise<TokenizeResponseDto> {
    const request = withoutNulls(sent);
    const binding = this.model.binding(request.model);
    this.model.assertReady();
    const { tokens, truncated } =
      this.model.task === 'rerank'
        ? await this.rerankIds(request, binding)
        : await this.embeddingIds(request, binding);
    this.assertWithinRequestLimit(tokens.length);
    return {
      count: tokens.length,
      max_model_len: this.model.maxInputTokens,
      tokens,
      ...(request.return_token_strs
        ? { token_strs: tokens.map((id) => this.tokenizer.tokenText(id) ?? '') }
        : {}),
      ...(truncated ? { truncated: true as const } : {}),
    };
  }

  async detokenize(sent: DetokenizeRequestDto): Promise<DetokenizeResponseDto> {
    const request = withoutNulls(sent);
    this.model.binding(request.model);
    this.model.assertReady();
    const { tokens } = request;
    this.assertWithinRequestLimit(tokens.length);
    const size = this.tokenizer.vocabularySize;
    const bad = tokens.findIndex((id) => id >= size);
    if (bad >= 0) {
      throw new InvalidRequestError(
        `tokens[${bad}] is token id ${tokens[bad]}, outside the tokenizer's vocabulary (0..${size - 1})`,
        'tokens',
      );
    }
    return { prompt: await this.tokenizer.decode(tokens) };
  }

  /** As POST /v1/embeddings builds a text input's ids (EmbeddingsService.tokenize and its length policy). */
  private async embeddingIds(
    request: TokenizeRequestDto,
    binding: ModelBinding,
  ): Promise<{ tokens: number[]; truncated: boolean }> {
    if (request.query !== undefined || request.document !== undefined) {
      throw new InvalidRequestError(
        `query and document tokenize a reranker's pair, and '${binding.modelId}' is an embedding model; send prompt`,
        request.query !== undefined ? 'query' : 'document',
        TASK_MISMATCH,
      );
    }
    if (request.prompt === undefined) {
      throw new InvalidRequestError('prompt is required: the text to tokenize', 'prompt');
    }
    const prefix = this.model.prompts.prefix(requestedPrompt(request, binding));
    const text = prefix + request.prompt;
    const addSpecialTokens = request.add_special_tokens ?? true;
    const limit = this.model.maxInputTokens;
    const truncate = request.truncate ?? this.config.limits.autoTruncate;
    if (addSpecialTokens) {
      const [ids] = await this.tokenizer.encode([text]);
      const cut = truncate ? this.tokenizer.truncate(ids, limit) : ids;
      return { tokens: Array.from(cut), truncated: cut.length < ids.length };
    }
    const ids = await this.tokenizer.encodeText(text, false);
    return truncate && ids.length > limit
      ? { tokens: ids.slice(0, limit), truncated: true }
      : { tokens: ids, truncated: false };
  }

  /**
   * A reranker: query and document in its template, as POST /v1/rerank builds the pair (the
   * instruction, else the prompt alias's, is the Instruct); or a plain prompt as its tokenizer
   * encodes it.
   */
  private async rerankIds(
    request: TokenizeRequestDto,
    binding: ModelBinding,
  ): Promise<{ tokens: number[]; truncated: boolean }> {
    if (request.input_type !== undefined || request.prompt_name !== undefined) {
      throw new InvalidRequestError(
        `input_type and prompt_name apply to embedding models, and '${binding.modelId}' is a reranker; send query and document`,
        request.input_type !== undefined ? 'input_type' : 'prompt_name',
        TASK_MISMATCH,
      );
    }
    const { query, document, prompt } = request;
    if (query === undefined && document === undefined) {
      if (prompt === undefined) {
        throw new InvalidRequestError(
          'send prompt, or query and document for the reranker template',
          'prompt',
        );
      }
      if (request.instruction !== undefined) {
        throw new InvalidRequestError(
          "instruction is the reranker template's Instruct: send it with query and document",
          'instruction',
        );
      }
      return {
        tokens: await this.tokenizer.encodeText(prompt, request.add_special_tokens ?? true),
        truncated: false,
      };
    }
    if (prompt !== undefined) {
      throw new InvalidRequestError('send either prompt, or query and document, not both', 'prompt');
    }
    if (query === undefined || document === undefined) {
      throw new InvalidRequestError(
        'query and document go together: the pair in the reranker template',
        query === undefined ? 'query' : 'document',
      );
    }
    const template = this.rerankTemplate();
    const pair = await template.build(query, document, request.instruction ?? binding.instruction);
    return { tokens: pair.tokenIds, truncated: pair.truncated };
  }

  private assertWithinRequestLimit(tokens: number): void {
    const limit = this.config.limits.maxRequestTokens;
    if (tokens > limit) {
      throw new RequestTooLargeError(
        `This request has ${tokens} tokens, more than the maximum of ${limit} per request; split it.`,
      );
    }
  }
}
