import { Controller, Get } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { buildInfo, OpenAIErrorDto } from '@app/common';
import { AppConfig } from '@app/config';
import type { EnginePooling } from '@app/engine/engine.port';
import { MAX_INPUTS } from './embedding-input.validator';
import { InfoDto, InfoModelTypeDto } from './info.dto';
import { ModelService } from './model.service';

/** Our pooling names in text-embeddings-inference's words. */
const TEI_POOLING: Record<EnginePooling, string> = { lasttoken: 'last_token', cls: 'cls', mean: 'mean' };

/**
 * GET /info, as text-embeddings-inference answers it, so its clients and dashboards can read the
 * served model. TEI serves it without a key; here it names the model and its GPU layout, as
 * GET /v1/models does, so it takes the key as that does (none with AUTH_DISABLED).
 */
@ApiTags('models')
@ApiBearerAuth()
@Controller('info')
export class InfoController {
  constructor(
    private readonly config: AppConfig,
    private readonly model: ModelService,
  ) {}

  @Get()
  @ApiOperation({ summary: "The served model, its limits and layout (text-embeddings-inference's shape)" })
  @ApiOkResponse({ type: InfoDto })
  @ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' })
  @ApiResponse({ status: 503, type: OpenAIErrorDto, description: 'The model is loading.' })
  info(): InfoDto {
    const info = this.model.info;
    const task = this.model.task;
    const modelType: InfoModelTypeDto =
      task === 'rerank'
        ? { reranker: { head: info.head } }
        : { embedding: { pooling: TEI_POOLING[this.model.pooling ?? 'lasttoken'] } };
    const { version, commit } = buildInfo();
    const maxInputLength = this.model.maxInputTokens;
    return {
      model_id: this.model.id,
      model_sha: null,
      model_dtype: info.dtype,
      model_type: modelType,
      max_input_length: maxInputLength,
      max_batch_tokens: this.config.limits.maxBatchTokens,
      max_batch_requests: this.config.limits.batchSize,
      max_client_batch_size: task === 'rerank' ? this.config.limits.maxRerankDocuments : MAX_INPUTS,
      auto_truncate: this.config.limits.autoTruncate,
      version,
      sha: commit,
      models: [
        {
          id: this.model.id,
          task,
          dtype: info.dtype,
          device: info.device,
          tensor_parallel_size: info.tensorParallelSize,
          replicas: info.replicas,
          max_input_length: maxInputLength,
          aliases: [
            ...this.model.aliases.filter((name) => name !== this.model.id),
            ...this.model.promptAliases.map((prompt) => prompt.name),
          ],
        },
      ],
    };
  }
}
