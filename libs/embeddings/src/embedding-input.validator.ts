import { registerDecorator, ValidationArguments, ValidationOptions } from 'class-validator';

/** OpenAI's limit on inputs per request. */
export const MAX_INPUTS = 2048;

export type EmbeddingInput = string | string[] | number[] | number[][];

const SHAPE =
  'input must be a string, an array of strings, an array of token ids or an array of token-id arrays';

function tokenIdProblem(ids: unknown[], where: string): string | undefined {
  if (ids.length === 0) {
    return `${where} must not be an empty array`;
  }
  const bad = ids.findIndex((id) => typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0);
  return bad >= 0 ? `${where}[${bad}] must be a non-negative integer token id` : undefined;
}

/** Returns why `value` is not a valid OpenAI embeddings `input`, or undefined when it is. */
export function embeddingInputProblem(value: unknown): string | undefined {
  if (value === undefined || value === null) {
    return 'input is required';
  }
  if (typeof value === 'string') {
    return value.length === 0 ? 'input must not be an empty string' : undefined;
  }
  if (!Array.isArray(value)) {
    return SHAPE;
  }
  if (value.length === 0) {
    return 'input must not be an empty array';
  }
  if (value.every((item) => typeof item === 'number')) {
    return tokenIdProblem(value, 'input'); // one input given as token ids
  }
  if (value.length > MAX_INPUTS) {
    return `input must have at most ${MAX_INPUTS} items, got ${value.length}`;
  }
  if (value.every((item) => typeof item === 'string')) {
    const empty = value.findIndex((item) => item.length === 0);
    return empty >= 0 ? `input[${empty}] must not be an empty string` : undefined;
  }
  if (value.every((item) => Array.isArray(item))) {
    for (let index = 0; index < value.length; index += 1) {
      const problem = tokenIdProblem(value[index] as unknown[], `input[${index}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  return SHAPE;
}

/** class-validator decorator for `input` (string | string[] | int[] | int[][], 1..2048 items). */
export function IsEmbeddingInput(options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) => {
    registerDecorator({
      name: 'isEmbeddingInput',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown) => embeddingInputProblem(value) === undefined,
        defaultMessage: (args?: ValidationArguments) => embeddingInputProblem(args?.value) ?? SHAPE,
      },
    });
  };
}
