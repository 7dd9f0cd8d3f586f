import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsArray, IsInt, IsOptional, IsString, Min } from 'class-validator';
import {
  BooleanField,
  InputTypeField,
  InstructionField,
  ModelField,
  PromptNameField,
} from './request-fields';
import type { InputType } from './prompt-template';

/**
 * POST /tokenize: vLLM's request (model, prompt, add_special_tokens, return_token_strs), plus the
 * embeddings' prompt fields and truncate, and a reranker's query and document.
 */
export class TokenizeRequestDto {
  @ModelField({
    description:
      'The served model id or any name it answers to, prompt aliases included (`<id>:query` tokenizes as a query). When omitted, the served model.',
  })
  model?: string;

  @ApiPropertyOptional({
    description:
      'The text to tokenize, with the prompt POST /v1/embeddings would put in front of it. Required for an embedding model; for a reranker, either this (tokenized as its tokenizer does) or query and document.',
    example: 'What is the capital of France?',
  })
  @IsOptional()
  @IsString({ message: 'prompt must be a string' })
  prompt?: string;

  @BooleanField({
    default: true,
    description:
      "The model's special tokens, as POST /v1/embeddings adds them (Qwen3: the appended `<|endoftext|>`); false: the text's own tokens only.",
  })
  add_special_tokens?: boolean;

  @BooleanField({ default: false, description: 'Also return each token as the vocabulary spells it.' })
  return_token_strs?: boolean;

  @InputTypeField({
    description: 'Extension, as in POST /v1/embeddings: query prompts the text as a query.',
  })
  input_type?: InputType;

  @PromptNameField()
  prompt_name?: InputType;

  @InstructionField({
    description:
      "Extension, as in POST /v1/embeddings: a custom task for a query. For a reranker's query and document: the Instruct.",
  })
  instruction?: string;

  @BooleanField({
    description:
      'Extension: cut a text over the per-input token limit as POST /v1/embeddings does (default AUTO_TRUNCATE). Without it the ids are all returned; compare count with max_model_len.',
  })
  truncate?: boolean;

  @ApiPropertyOptional({ description: "Reranker only, with document: the pair in the reranker's template." })
  @IsOptional()
  @IsString({ message: 'query must be a string' })
  query?: string;

  @ApiPropertyOptional({ description: 'Reranker only, with query.' })
  @IsOptional()
  @IsString({ message: 'document must be a string' })
  document?: string;
}

export class TokenizeResponseDto {
  @ApiProperty({ description: 'Number of tokens.' })
  count!: number;

  @ApiProperty({
    description: 'The per-input token limit (MAX_INPUT_TOKENS, lowered to what the model allows).',
  })
  max_model_len!: number;

  @ApiProperty({ type: [Number], description: 'Token ids, as the engine would see them.' })
  tokens!: number[];

  @ApiPropertyOptional({
    type: [String],
    description: 'With return_token_strs: each token as the vocabulary spells it.',
  })
  token_strs?: string[];

  @ApiPropertyOptional({ enum: [true], description: 'Present when truncation cut the ids.' })
  truncated?: true;
}

/** POST /detokenize: vLLM's request. */
export class DetokenizeRequestDto {
  @ModelField({
    description: 'The served model id or any name it answers to.',
  })
  model?: string;

  @ApiProperty({ type: [Number], description: "Token ids, each below the tokenizer's vocabulary size." })
  @IsArray({ message: 'tokens must be an array of token ids' })
  @IsInt({ each: true, message: 'tokens must be an array of integer token ids' })
  @Min(0, { each: true, message: 'tokens must be an array of non-negative token ids' })
  tokens!: number[];
}

export class DetokenizeResponseDto {
  @ApiProperty({ description: 'The text, special tokens included.' })
  prompt!: string;
}
