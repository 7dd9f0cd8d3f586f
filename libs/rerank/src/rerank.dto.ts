import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsOptional, IsString, Min, registerDecorator, ValidationArguments } from 'class-validator';
import { MODEL_EXAMPLE } from '@app/embeddings/embeddings.dto';
import { BooleanField, InstructionField, ModelField } from '@app/embeddings/request-fields';
import { RERANK_DEFAULT_INSTRUCTION } from './rerank-prompt';

/** A document: its text, or an object with a `text` (Cohere's older shape). */
export type RerankDocument = string | { text: string };

/** Why `value` is not a list of documents (strings or {text}), or undefined. The count limit is the service's. */
export function rerankDocumentsProblem(value: unknown, field: string, objects: boolean): string | undefined {
  const shape = objects
    ? `${field} must be an array of strings or of objects with a string text`
    : `${field} must be an array of strings`;
  if (value === undefined || value === null) return `${field} is required`;
  if (!Array.isArray(value)) return shape;
  if (value.length === 0) return `${field} must not be an empty array`;
  for (let index = 0; index < value.length; index += 1) {
    const item: unknown = value[index];
    if (typeof item === 'string') continue;
    if (
      objects &&
      typeof item === 'object' &&
      item !== null &&
      !Array.isArray(item) &&
      typeof (item as { text?: unknown }).text === 'string'
    )
      continue;
    return objects
      ? `${field}[${index}] must be a string or an object with a string text`
      : `${field}[${index}] must be a string`;
  }
  return undefined;
}

/** class-validator decorator for a document list; `objects`: {text} items allowed too. */
function IsRerankDocuments(objects: boolean): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    const field = propertyName as string;
    registerDecorator({
      name: 'isRerankDocuments',
      target: target.constructor,
      propertyName: field,
      validator: {
        validate: (value: unknown) => rerankDocumentsProblem(value, field, objects) === undefined,
        defaultMessage: (args?: ValidationArguments) =>
          rerankDocumentsProblem(args?.value, field, objects) ?? `${field} is invalid`,
      },
    });
  };
}

/** The query: any string, the empty one included (the model card's template takes it as it is). */
const QUERY_PROPERTY = {
  description:
    'The search query. Templated with the instruction and each document as the model card does; an empty query is scored as such.',
  example: 'What is the capital of China?',
};

const INSTRUCTION_PROPERTY = {
  description: `Extension: the task in the template's <Instruct> line; default "${RERANK_DEFAULT_INSTRUCTION}".`,
};

/** POST /v1/rerank: the Cohere / Jina / vLLM request. */
export class RerankRequestDto {
  @ModelField({
    description:
      'The served model id (see GET /v1/models) or one of its aliases; when omitted, the served model.',
  })
  model?: string;

  @ApiProperty(QUERY_PROPERTY)
  @IsString({ message: 'query must be a string' })
  query!: string;

  @ApiProperty({
    description:
      'The documents to score against the query: strings, or objects with a `text`; 1 up to MAX_RERANK_DOCUMENTS (1000). Empty strings are scored too.',
    oneOf: [
      { type: 'array', items: { type: 'string' }, minItems: 1 },
      {
        type: 'array',
        items: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
        minItems: 1,
      },
    ],
    example: ['The capital of China is Beijing.', 'Gravity is a force that attracts two bodies.'],
  })
  @IsRerankDocuments(true)
  documents!: RerankDocument[];

  @ApiPropertyOptional({
    minimum: 1,
    description: 'Return only the best top_n results (default all; more than the documents means all).',
  })
  @IsOptional()
  @IsInt({ message: 'top_n must be an integer' })
  @Min(1, { message: 'top_n must be at least 1' })
  top_n?: number;

  @BooleanField({ default: true, description: "Include each result's document as {text}." })
  return_documents?: boolean;

  @InstructionField(INSTRUCTION_PROPERTY)
  instruction?: string;

  @BooleanField({
    default: true,
    description:
      "Cut a pair longer than the model's limit (8192 tokens, at most MAX_INPUT_TOKENS) at the document's end and mark its result truncated; false: answer 413 naming the document instead.",
  })
  truncate?: boolean;
}

export class RerankResultDocumentDto {
  @ApiProperty()
  text!: string;
}

export class RerankResultDto {
  @ApiProperty({ description: "The document's position in the request." })
  index!: number;

  @ApiProperty({
    description: 'sigmoid of the model\'s logit: P("yes") against "no" for Qwen3-Reranker; 0..1.',
  })
  relevance_score!: number;

  @ApiPropertyOptional({ type: RerankResultDocumentDto, description: 'With return_documents (default).' })
  document?: RerankResultDocumentDto;

  @ApiPropertyOptional({ enum: [true], description: "Present when the pair was cut to the model's limit." })
  truncated?: true;
}

export class RerankUsageDto {
  @ApiProperty({ description: 'Tokens scored: every templated pair, query and template included.' })
  prompt_tokens!: number;

  @ApiProperty()
  total_tokens!: number;
}

export class RerankResponseDto {
  @ApiProperty({ example: 'rerank-6f1c2a9d0b8e4c3f9a7d5e1b2c4f6a8d' })
  id!: string;

  @ApiProperty({ example: MODEL_EXAMPLE })
  model!: string;

  @ApiProperty({
    type: [RerankResultDto],
    description: 'Sorted by relevance_score, highest first (ties: lower index first); top_n of them.',
  })
  results!: RerankResultDto[];

  @ApiProperty({ type: RerankUsageDto })
  usage!: RerankUsageDto;
}

/** POST /rerank: text-embeddings-inference's request. */
export class TeiRerankRequestDto {
  @ApiProperty(QUERY_PROPERTY)
  @IsString({ message: 'query must be a string' })
  query!: string;

  @ApiProperty({
    type: [String],
    minItems: 1,
    description: 'The texts to score; 1 up to MAX_RERANK_DOCUMENTS (1000).',
    example: ['The capital of China is Beijing.', 'Gravity is a force that attracts two bodies.'],
  })
  @IsRerankDocuments(false)
  texts!: string[];

  @BooleanField({ default: false, description: "The model's logit instead of its sigmoid." })
  raw_scores?: boolean;

  @BooleanField({ default: false, description: 'Include each text.' })
  return_text?: boolean;

  @BooleanField({
    description:
      "Cut a pair longer than the model's limit at the text's end instead of answering 413. Default AUTO_TRUNCATE.",
  })
  truncate?: boolean;

  @InstructionField(INSTRUCTION_PROPERTY)
  instruction?: string;
}

export class TeiRankDto {
  @ApiProperty()
  index!: number;

  @ApiProperty({ description: 'sigmoid of the logit, or the logit itself with raw_scores.' })
  score!: number;

  @ApiPropertyOptional({ description: 'With return_text.' })
  text?: string;
}
