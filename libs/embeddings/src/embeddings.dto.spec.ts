import { ArgumentMetadata } from '@nestjs/common';
import { createValidationPipe, InvalidRequestError } from '@app/common';
import { EmbeddingsRequestDto } from './embeddings.dto';

const BODY: ArgumentMetadata = { type: 'body', metatype: EmbeddingsRequestDto, data: '' };
const sut = createValidationPipe();
const astral = '\u{1F600}';

/** Bodies the DTO takes, with the fields it keeps. */
const VALID: [unknown, object][] = [
  [{ input: 'hello' }, { input: 'hello' }],
  [
    { input: 'hello', model: 'Qwen3-Embedding-4B', encoding_format: 'base64' },
    { input: 'hello', model: 'Qwen3-Embedding-4B', encoding_format: 'base64' },
  ],
  [
    { input: ['a', 'b'], model: '', encoding_format: 'float', dimensions: 32, user: 'u' },
    { input: ['a', 'b'], model: '', encoding_format: 'float', dimensions: 32, user: 'u' },
  ],
  [
    { input: [1, 2, 3], dimensions: 2560, truncate: true },
    { input: [1, 2, 3], dimensions: 2560, truncate: true },
  ],
  [
    { input: [[1], [2, 3]], truncate: false },
    { input: [[1], [2, 3]], truncate: false },
  ],
  [
    { input: 'q', input_type: 'query', prompt_name: 'query', instruction: 'find it' },
    { input: 'q', input_type: 'query', prompt_name: 'query', instruction: 'find it' },
  ],
  [
    { input: 'q', user: 'x'.repeat(256) },
    { input: 'q', user: 'x'.repeat(256) },
  ],
  [
    { input: 'q', user: astral.repeat(256) },
    { input: 'q', user: astral.repeat(256) },
  ],
  [
    { input: 'q', instruction: 'i'.repeat(4096) },
    { input: 'q', instruction: 'i'.repeat(4096) },
  ],
  [
    { input: 'q', model: null },
    { input: 'q', model: null },
  ],
  [{ input: 'q', extra: 1, access_token: 'sk' }, { input: 'q' }],
  [JSON.parse('{"input":"q","__proto__":{"model":"m"}}'), { input: 'q' }],
];

/** Bodies it refuses, and the field the error names. */
const INVALID: [unknown, string | null][] = [
  [{ input: 'q', user: 'x'.repeat(257) }, 'user'],
  [{ input: 'q', user: astral.repeat(257) }, 'user'],
  [{ input: 'q', instruction: 'i'.repeat(4097) }, 'instruction'],
  [{ input: 'q', instruction: '' }, 'instruction'],
  [{ input: 'q', instruction: 7 }, 'instruction'],
  [{ input: 'q', dimensions: 31 }, 'dimensions'],
  [{ input: 'q', dimensions: 64.5 }, 'dimensions'],
  [{ input: 'q', dimensions: '64' }, 'dimensions'],
  [{ input: 'q', encoding_format: 'hex' }, 'encoding_format'],
  [{ input: 'q', encoding_format: 'FLOAT' }, 'encoding_format'],
  [{ input: 'q', input_type: 'passage' }, 'input_type'],
  [{ input: 'q', prompt_name: 'Query' }, 'prompt_name'],
  [{ input: 'q', truncate: 'true' }, 'truncate'],
  [{ input: 'q', model: 4 }, 'model'],
  [{ input: '' }, 'input'],
  [{ input: [] }, 'input'],
  [{ input: ['a', ''] }, 'input'],
  [{ input: ['a', 1] }, 'input'],
  [{ input: [-1] }, 'input'],
  [{ input: [[1], []] }, 'input'],
  [{ input: Array(2049).fill('a') }, 'input'],
  [{ input: null }, 'input'],
  [{}, 'input'],
  ['input', null],
  [['input'], null],
];

describe(EmbeddingsRequestDto.name, () => {
  it.each(VALID.map(([body, kept], index) => [index, body, kept] as const))(
    'body %i: taken, as a DTO of the fields it knows',
    async (_index, body, kept) => {
      const dto = (await sut.transform(structuredClone(body), BODY)) as object;
      expect(dto).toBeInstanceOf(EmbeddingsRequestDto);
      expect({ ...dto }).toEqual(kept);
    },
  );

  it.each(INVALID.map(([body, param], index) => [index, body, param] as const))(
    'body %i: refused, naming %s',
    async (_index, body, param) => {
      const error = await sut.transform(structuredClone(body), BODY).then(
        () => undefined,
        (problem: unknown) => problem,
      );
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect(error).toMatchObject({ param });
    },
  );

  it('says what is wrong with a field', async () => {
    await expect(sut.transform({ input: 'q', dimensions: 16 }, BODY)).rejects.toThrow(
      new InvalidRequestError('dimensions must be at least 32', 'dimensions'),
    );
  });
});
