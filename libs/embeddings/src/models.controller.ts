import { Controller, Get, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { ModelDto, ModelListDto } from './embeddings.dto';
import { ModelService } from './model.service';
import { OpenAIErrorDto } from '@app/common';

@ApiTags('models')
@ApiBearerAuth()
@Controller('v1/models')
export class ModelsController {
  constructor(private readonly model: ModelService) {}

  @Get()
  @ApiOperation({ summary: 'List the served model' })
  @ApiOkResponse({ type: ModelListDto })
  list(): ModelListDto {
    return { object: 'list', data: [this.describe()] };
  }

  // Model names may contain a slash (Qwen/Qwen3-Embedding-4B): match the rest of the path.
  @Get('*id')
  @ApiOperation({ summary: 'Describe a model by id or alias' })
  @ApiParam({ name: 'id', type: String })
  @ApiOkResponse({ type: ModelDto })
  @ApiResponse({ status: 404, type: OpenAIErrorDto })
  get(@Param('id') id: string | string[]): ModelDto {
    this.model.resolve(Array.isArray(id) ? id.join('/') : id);
    return this.describe();
  }

  private describe(): ModelDto {
    return {
      id: this.model.id,
      object: 'model',
      created: this.model.created,
      owned_by: 'system',
      task: this.model.task,
    };
  }
}
