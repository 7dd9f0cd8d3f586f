import { embeddingsResponseJson, fromBase64, toBase64 } from './embedding-encoding';

describe(toBase64.name, () => {
  it('writes little-endian float32 bytes', () => {
    expect(toBase64(Float32Array.from([1, -2]))).toBe(
      Buffer.from([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]).toString('base64'),
    );
  });

  it('encodes only the row, not the whole buffer it views', () => {
    const rows = Float32Array.from([1, 2, 3, 4]);
    const row = rows.subarray(2, 4);
    expect(Array.from(fromBase64(toBase64(row)))).toEqual([3, 4]);
  });

  it('round-trips exactly', () => {
    const row = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) / 7);
    expect(fromBase64(toBase64(row))).toEqual(row);
  });
});

describe(embeddingsResponseJson.name, () => {
  const rows = [Float32Array.from([0.5, -0.25]), Float32Array.from([Math.fround(0.1), 3])];
  const parts = { rows, encoding: 'float' as const, model: 'qwen3 "embedding"', promptTokens: 7 };

  it('writes the OpenAI response shape, with JSON.stringify when there is no native formatter', () => {
    expect(JSON.parse(embeddingsResponseJson(parts, () => undefined))).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [0.5, -0.25] },
        { object: 'embedding', index: 1, embedding: [Math.fround(0.1), 3] },
      ],
      model: 'qwen3 "embedding"',
      usage: { prompt_tokens: 7, total_tokens: 7 },
    });
  });

  it('puts the formatter text in place of each float row', () => {
    const body = embeddingsResponseJson(parts, (row) => `[${row.length}]`);
    expect(JSON.parse(body).data.map((d: { embedding: number[] }) => d.embedding)).toEqual([[2], [2]]);
  });

  it('writes base64 rows as strings and never calls the float formatter for them', () => {
    const floatJson = jest.fn(() => '[]');
    const parsed = JSON.parse(embeddingsResponseJson({ ...parts, encoding: 'base64' }, floatJson));
    expect(floatJson).not.toHaveBeenCalled();
    expect(parsed.data.map((d: { embedding: string }) => Array.from(fromBase64(d.embedding)))).toEqual(
      rows.map((row) => Array.from(row)),
    );
  });

  it('writes base64 rows with the text JSON.stringify would give them', () => {
    const row = Float32Array.from({ length: 2560 }, (_, index) => Math.sin(index * 0.37) / 40);
    const body = embeddingsResponseJson({ ...parts, rows: [row], encoding: 'base64' }, () => undefined);
    expect(toBase64(row)).toMatch(/[+/]/);
    expect(body).toContain(`"embedding":${JSON.stringify(toBase64(row))}}`);
  });

  it('writes an empty data list', () => {
    expect(JSON.parse(embeddingsResponseJson({ ...parts, rows: [] }, () => undefined)).data).toEqual([]);
  });
});
