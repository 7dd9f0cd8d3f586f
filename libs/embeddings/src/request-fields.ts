import { ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { IsBoolean, IsIn, IsNotEmpty, IsOptional, IsString, MaxLength } from 'class-validator';
import type { InputType } from './prompt-template';

/** The model id in the OpenAPI examples; the app puts the served model's id in its place (app.factory). */
export const MODEL_EXAMPLE = 'Qwen3-Embedding-4B';

const INPUT_TYPES: InputType[] = ['query', 'document'];
const MAX_INSTRUCTION_LENGTH = 4096;

type Description = Pick<ApiPropertyOptions, 'description'>;

/**
 * The decorators as they would stand above a property, top first. They are applied bottom-up, as
 * stacked ones are: the validation pipe answers with the first failed rule, so the order is kept.
 */
function stacked(...decorators: ((key: string) => PropertyDecorator)[]): PropertyDecorator {
  return (target, key) => {
    for (const decorator of [...decorators].reverse()) decorator(String(key))(target, key);
  };
}

/** An optional `model`: the served model's id or one of its names; when omitted, the served model. */
export function ModelField(options: Description): PropertyDecorator {
  return stacked(
    () => ApiPropertyOptional({ ...options, example: MODEL_EXAMPLE }),
    () => IsOptional(),
    (key) => IsString({ message: `${key} must be a string` }),
  );
}

/** An optional flag; a non-boolean is refused naming the field. */
export function BooleanField(options: ApiPropertyOptions): PropertyDecorator {
  return stacked(
    () => ApiPropertyOptional(options),
    () => IsOptional(),
    (key) => IsBoolean({ message: `${key} must be a boolean` }),
  );
}

/** input_type or its sentence-transformers name prompt_name: 'query' or 'document'. */
export function InputTypeField(options: Description): PropertyDecorator {
  return stacked(
    () => ApiPropertyOptional({ enum: ['query', 'document'], ...options }),
    () => IsOptional(),
    (key) => IsIn(INPUT_TYPES, { message: `${key} must be 'query' or 'document'` }),
  );
}

/** prompt_name: sentence-transformers' name for input_type. */
export function PromptNameField(): PropertyDecorator {
  return InputTypeField({ description: "Extension: sentence-transformers' name for input_type." });
}

/** An optional task instruction: a non-empty string of at most 4096 characters. */
export function InstructionField(options: Description): PropertyDecorator {
  return stacked(
    () => ApiPropertyOptional({ ...options, maxLength: MAX_INSTRUCTION_LENGTH }),
    () => IsOptional(),
    (key) => IsString({ message: `${key} must be a string` }),
    (key) => IsNotEmpty({ message: `${key} must not be empty` }),
    (key) => MaxLength(MAX_INSTRUCTION_LENGTH, { message: `${key} must be at most 4096 characters` }),
  );
}
