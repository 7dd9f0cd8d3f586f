import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsOptional, IsString, MaxLength, Min } from 'class-validator';
import { EmbeddingInput, IsEmbeddingInput, MAX_INPUTS } from './embedding-input.validator';
import type { InputType } from './prompt-template';
import {
  BooleanField,
  InputTypeField,
  InstructionField,
  MODEL_EXAMPLE,
  ModelField,
  PromptNameField,
} from './request-fields';

export { MODEL_EXAMPLE };

export type EncodingFormat = 'float' | 'base64';

const ENCODING_FORMATS: EncodingFormat[] = ['float', 'base64'];
const MIN_DIMENSIONS = 32;
const MAX_USER_LENGTH = 256;

/** POST /v1/embeddings: OpenAI's request, plus input_type / prompt_name, instruction and truncate. */
export class EmbeddingsRequestDto {
  @ApiProperty({
    description: `Text or token ids to embed: a string, an array of up to ${MAX_INPUTS} strings, an array of token ids, or an array of up to ${MAX_INPUTS} token-id arrays. Empty strings and arrays are rejected.`,
    oneOf: [
      { type: 'string', example: 'The food was delicious and the waiter...' },
      { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: MAX_INPUTS },
      { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
      {
        type: 'array',
        items: { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
        minItems: 1,
        maxItems: MAX_INPUTS,
      },
    ],
  })
  @IsEmbeddingInput()
  input!: EmbeddingInput;

  @ModelField({
    description:
      'The served model id (see GET /v1/models) or one of its aliases, such as the Hugging Face name. When omitted, the served model is used.',
  })
  model?: string;

  @ApiPropertyOptional({
    enum: ['float', 'base64'],
    default: 'float',
    description: 'float: arrays of numbers; base64: little-endian float32 bytes, base64-encoded.',
  })
  @IsOptional()
  @IsIn(ENCODING_FORMATS, { message: "encoding_format must be 'float' or 'base64'" })
  encoding_format?: EncodingFormat;

  @ApiPropertyOptional({
    minimum: 32,
    description:
      'Output size (Matryoshka): the first `dimensions` values, re-normalised. 32 up to the model hidden size; default EMBEDDING_DIMENSION.',
  })
  @IsOptional()
  @IsInt({ message: 'dimensions must be an integer' })
  @Min(MIN_DIMENSIONS, { message: 'dimensions must be at least 32' })
  dimensions?: number;

  @ApiPropertyOptional({ description: 'An end-user id; accepted for compatibility, not stored.' })
  @IsOptional()
  @IsString({ message: 'user must be a string' })
  @MaxLength(MAX_USER_LENGTH, { message: 'user must be at most 256 characters' })
  user?: string;

  @InputTypeField({
    description:
      'Extension. query: prefixed with the instruction prompt (`Instruct: {task}\\nQuery:`); document: embedded as is (default).',
  })
  input_type?: InputType;

  @PromptNameField()
  prompt_name?: InputType;

  @InstructionField({
    description:
      'Extension: a custom task for queries, e.g. "Given a question, retrieve passages that answer it". Implies input_type=query.',
  })
  instruction?: string;

  @BooleanField({
    description:
      'Extension: cut inputs longer than the per-input token limit (keeping the final end-of-text token) instead of answering 400. Default AUTO_TRUNCATE.',
  })
  truncate?: boolean;
}

export class EmbeddingDto {
  @ApiProperty({ enum: ['embedding'] })
  object!: 'embedding';

  @ApiProperty({ description: 'Position of the input in the request.' })
  index!: number;

  @ApiProperty({
    oneOf: [
      { type: 'array', items: { type: 'number' } },
      { type: 'string', format: 'byte' },
    ],
    description: 'Numbers (float) or base64 of little-endian float32 (base64).',
  })
  embedding!: number[] | string;
}

export class UsageDto {
  @ApiProperty({ description: 'Tokens embedded, including prompts and the appended end-of-text token.' })
  prompt_tokens!: number;

  @ApiProperty()
  total_tokens!: number;
}

export class EmbeddingsResponseDto {
  @ApiProperty({ enum: ['list'] })
  object!: 'list';

  @ApiProperty({ type: [EmbeddingDto] })
  data!: EmbeddingDto[];

  @ApiProperty()
  model!: string;

  @ApiProperty({ type: UsageDto })
  usage!: UsageDto;
}

/** What a prompt alias binds: embedding with it is embedding with these fields. */
export class ModelPromptDto {
  @ApiProperty({ enum: ['query', 'document'] })
  input_type!: InputType;

  @ApiPropertyOptional({
    description: "The alias's instruction (PROMPT_ALIASES); absent: the model's own prompt.",
  })
  instruction?: string;
}

export class ModelDto {
  @ApiProperty({ example: MODEL_EXAMPLE })
  id!: string;

  @ApiProperty({ enum: ['model'] })
  object!: 'model';

  @ApiProperty({ description: 'Unix seconds.' })
  created!: number;

  @ApiProperty()
  owned_by!: string;

  @ApiProperty({
    enum: ['embed', 'rerank'],
    description:
      'Extension: what the model serves. embed: POST /v1/embeddings; rerank: POST /v1/rerank and POST /rerank.',
  })
  task!: 'embed' | 'rerank';

  @ApiPropertyOptional({
    description: 'Prompt aliases only: the served model they embed with.',
    example: MODEL_EXAMPLE,
  })
  parent?: string;

  @ApiPropertyOptional({
    type: ModelPromptDto,
    description:
      'Prompt aliases only (`<id>:query`, `<id>:document`, PROMPT_ALIASES): the prompt the name binds when a request sends no input_type, prompt_name nor instruction.',
  })
  prompt?: ModelPromptDto;
}

export class ModelListDto {
  @ApiProperty({ enum: ['list'] })
  object!: 'list';

  @ApiProperty({ type: [ModelDto] })
  data!: ModelDto[];
}
