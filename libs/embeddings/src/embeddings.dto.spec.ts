import { isDeepStrictEqual } from 'node:util';
import { ArgumentMetadata } from '@nestjs/common';
import { createValidationPipe, InvalidRequestError } from '@app/common';
import { acceptEmbeddingsRequest, EmbeddingsRequestDto } from './embeddings.dto';

const BODY: ArgumentMetadata = { type: 'body', metatype: EmbeddingsRequestDto, data: '' };
const fullPipe = createValidationPipe();
const astral = '\u{1F600}';

/** Bodies a client may send: the common ones, and every field broken or at its limit. */
const BODIES: unknown[] = [
  { input: 'hello' },
  { input: 'hello', model: 'Qwen3-Embedding-4B', encoding_format: 'base64' },
  { input: ['a', 'b'], model: '', encoding_format: 'float', dimensions: 32, user: 'u' },
  { input: [1, 2, 3], dimensions: 2560, truncate: true },
  { input: [[1], [2, 3]], truncate: false },
  { input: 'q', input_type: 'query', prompt_name: 'query', instruction: 'find it' },
  { input: 'q', input_type: 'document' },
  { input: 'q', prompt_name: 'document' },
  { input: 'q', user: 'x'.repeat(256) },
  { input: 'q', user: 'x'.repeat(257) },
  { input: 'q', user: astral.repeat(256) },
  { input: 'q', user: astral.repeat(257) },
  { input: 'q', instruction: 'i'.repeat(4096) },
  { input: 'q', instruction: 'i'.repeat(4097) },
  { input: 'q', instruction: '' },
  { input: 'q', instruction: 7 },
  { input: 'q', dimensions: 31 },
  { input: 'q', dimensions: 64.5 },
  { input: 'q', dimensions: '64' },
  { input: 'q', encoding_format: 'hex' },
  { input: 'q', encoding_format: 'FLOAT' },
  { input: 'q', input_type: 'passage' },
  { input: 'q', prompt_name: 'Query' },
  { input: 'q', truncate: 'true' },
  { input: 'q', model: 4 },
  { input: 'q', model: null },
  { input: 'q', dimensions: null },
  { input: 'q', extra: 1 },
  { input: 'q', access_token: 'sk' },
  JSON.parse('{"input":"q","__proto__":{"model":"m"}}'),
  { input: '' },
  { input: [] },
  { input: ['a', ''] },
  { input: ['a', 1] },
  { input: [-1] },
  { input: [[1], []] },
  { input: Array(2049).fill('a') },
  { input: null },
  {},
  { model: 'm' },
  'input',
  ['input'],
  null,
  Object.assign(Object.create({ inherited: true }), { input: 'q' }),
];

async function throughFullPipe(body: unknown): Promise<{ dto?: object; error?: unknown }> {
  try {
    return { dto: await fullPipe.transform(structuredClone(body), BODY) };
  } catch (error) {
    return { error };
  }
}

describe(acceptEmbeddingsRequest.name, () => {
  it.each(BODIES.map((body, index) => [index, body]))(
    'body %i: accepted only as the validation pipe would take it, to the same DTO',
    async (_index, body) => {
      const full = await throughFullPipe(body);
      const sut = acceptEmbeddingsRequest(body);
      if (sut === undefined) {
        // Left to the pipe: what it rejects, or must strip, or a null field, or an odd object.
        if (full.error !== undefined) return;
        const dto = full.dto as Record<string, unknown>;
        const plain =
          typeof body === 'object' && body !== null && Object.getPrototypeOf(body) === Object.prototype;
        const keptAsSent =
          plain &&
          Object.entries(body).every(([key, item]) => item !== null && isDeepStrictEqual(dto[key], item));
        expect(keptAsSent).toBe(false);
        return;
      }
      expect(full.error).toBeUndefined();
      expect(sut).toBeInstanceOf(EmbeddingsRequestDto);
      expect(sut).toEqual(full.dto);
      expect(Object.keys(sut).sort()).toEqual(Object.keys(full.dto as object).sort());
    },
  );

  it('takes the common requests, and leaves null and unknown fields to the pipe', () => {
    expect(acceptEmbeddingsRequest({ input: 'hello', model: 'm', encoding_format: 'base64' })).toMatchObject({
      input: 'hello',
      model: 'm',
      encoding_format: 'base64',
    });
    expect(acceptEmbeddingsRequest({ input: ['a', 'b'], dimensions: 64, user: 'u' })).toBeDefined();
    expect(acceptEmbeddingsRequest({ input: [[1, 2]], truncate: true })).toBeDefined();
    expect(acceptEmbeddingsRequest({ input: 'q', model: null })).toBeUndefined();
    expect(acceptEmbeddingsRequest({ input: 'q', extra: 1 })).toBeUndefined();
  });
});

describe(createValidationPipe.name, () => {
  const sut = createValidationPipe([{ type: EmbeddingsRequestDto, accept: acceptEmbeddingsRequest }]);

  it('answers a body the shortcut takes with its DTO, as the full pipe would', async () => {
    const body = { input: ['a', 'b'], encoding_format: 'base64' };
    const dto = await sut.transform(body, BODY);
    expect(dto).toBeInstanceOf(EmbeddingsRequestDto);
    expect(dto).toEqual(await fullPipe.transform(structuredClone(body), BODY));
  });

  it('validates in full what the shortcut leaves, naming the field', async () => {
    await expect(sut.transform({ input: 'q', dimensions: 16 }, BODY)).rejects.toThrow(
      new InvalidRequestError('dimensions must be at least 32', 'dimensions'),
    );
    await expect(sut.transform({ input: 'q', extra: 1 }, BODY)).resolves.not.toHaveProperty('extra');
  });
});
