import { Controller, Get, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ModelDto, ModelListDto } from './embeddings.dto';
import { ModelService, PromptBinding } from './model.service';
import { OpenAIErrorDto } from '@app/common';

@ApiTags('models')
@ApiBearerAuth()
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly model: ModelService) {}

  @Get()
  @ApiOperation({ summary: 'List the served model, then its prompt aliases' })
  @ApiOkResponse({ type: ModelListDto })
  list(): ModelListDto {
    return {
      object: 'list',
      data: [this.describe(), ...this.model.promptAliases.map((prompt) => this.describe(prompt))],
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
    const binding = this.model.binding(name);
    if (binding.inputType === undefined) return this.describe();
    const listed = this.model.promptAliases.find(
      (prompt) => prompt.name.toLowerCase() === name.toLowerCase(),
    );
    return this.describe({ name, inputType: binding.inputType, instruction: binding.instruction, ...listed });
  }

  /** The served model, or a prompt alias of it. */
  private describe(prompt?: PromptBinding): ModelDto {
    const entry: ModelDto = {
      id: prompt?.name ?? this.model.id,
      object: 'model',
      created: this.model.created,
      owned_by: 'system',
      task: this.model.task,
    };
    if (prompt) {
      entry.parent = this.model.id;
      entry.prompt = {
        input_type: prompt.inputType,
        ...(prompt.instruction !== undefined ? { instruction: prompt.instruction } : {}),
      };
    }
    return entry;
  }
}
