import { Controller, Get, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ModelDto, ModelListDto } from './embeddings.dto';
import { ModelRegistry } from './model-registry';
import { ModelService, PromptBinding } from './model.service';
import { OpenAIErrorDto } from '@app/common';

@ApiTags('models')
@ApiBearerAuth()
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly registry: ModelRegistry) {}

  @Get()
  @ApiOperation({ summary: 'List each served model, then its prompt aliases' })
  @ApiOkResponse({ type: ModelListDto })
  list(): ModelListDto {
    return {
      object: 'list',
      data: this.registry.models.flatMap(({ model }) => [
        describe(model),
        ...model.promptAliases.map((prompt) => describe(model, prompt)),
      ]),
    };
  }

  // Model names may contain a slash (Qwen/Qwen3-Embedding-4B): match the rest of the path.
  @Get('*id')
  @ApiOperation({ summary: 'Describe a model by id or alias' })
  @ApiParam({ name: 'id', type: String })
  @ApiOkResponse({ type: ModelDto })
  @ApiResponse({ status: 404, type: OpenAIErrorDto })
  get(@Param('id') id: string | string[]): ModelDto {
    const name = Array.isArray(id) ? id.join('/') : id;
    const { model } = this.registry.route(name, 'embed');
    const binding = model.binding(name);
    if (binding.inputType === undefined) return describe(model);
    const listed = model.promptAliases.find((prompt) => prompt.name.toLowerCase() === name.toLowerCase());
    return describe(model, {
      name,
      inputType: binding.inputType,
      instruction: binding.instruction,
      ...listed,
    });
  }
}

/** A served model, or a prompt alias of it. */
function describe(model: ModelService, prompt?: PromptBinding): ModelDto {
  const entry: ModelDto = {
    id: prompt?.name ?? model.id,
    object: 'model',
    created: model.created,
    owned_by: 'system',
    task: model.task,
  };
  if (prompt) {
    entry.parent = model.id;
    entry.prompt = {
      input_type: prompt.inputType,
      ...(prompt.instruction !== undefined ? { instruction: prompt.instruction } : {}),
    };
  }
  return entry;
}
