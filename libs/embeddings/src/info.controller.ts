import { Controller, Get } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { buildInfo, OpenAIErrorDto } from '@app/common';
import type { EnginePooling } from '@app/engine/engine.port';
import { MAX_INPUTS } from './embedding-input.validator';
import { InfoDto, InfoModelTypeDto } from './info.dto';
import { ModelRegistry, type ServedModel } from './model-registry';

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
  constructor(private readonly registry: ModelRegistry) {}

  @Get()
  @ApiOperation({ summary: "The served model, its limits and layout (text-embeddings-inference's shape)" })
  @ApiOkResponse({ type: InfoDto })
  @ApiResponse({ status: 401, type: OpenAIErrorDto, description: 'Missing or wrong API key.' })
  @ApiResponse({ status: 503, type: OpenAIErrorDto, description: 'The model is loading.' })
  info(): InfoDto {
    // The top level describes the first model, as TEI (one model) does; models[] every one.
    const [first] = this.registry.models;
    const { model, config } = first;
    const info = model.info;
    const task = model.task;
    const modelType: InfoModelTypeDto =
      task === 'rerank'
        ? { reranker: { head: info.head } }
        : { embedding: { pooling: TEI_POOLING[model.pooling ?? 'lasttoken'] } };
    const { version, commit } = buildInfo();
    return {
      model_id: model.id,
      model_sha: null,
      model_dtype: info.dtype,
      model_type: modelType,
      max_input_length: model.maxInputTokens,
      max_batch_tokens: config.limits.maxBatchTokens,
      max_batch_requests: config.limits.batchSize,
      max_client_batch_size: task === 'rerank' ? config.limits.maxRerankDocuments : MAX_INPUTS,
      auto_truncate: config.limits.autoTruncate,
      version,
      sha: commit,
      models: this.registry.models.map(describe),
    };
  }
}

/** One served model in /info's models[] (503 while it loads). */
function describe({ model }: ServedModel): InfoDto['models'][number] {
  const info = model.info;
  return {
    id: model.id,
    task: model.task,
    dtype: info.dtype,
    device: info.device,
    tensor_parallel_size: info.tensorParallelSize,
    replicas: info.replicas,
    max_input_length: model.maxInputTokens,
    aliases: [
      ...model.aliases.filter((name) => name !== model.id),
      ...model.promptAliases.map((prompt) => prompt.name),
    ],
  };
}
