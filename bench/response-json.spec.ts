import { measureResponseJson, sampleRows } from './response-json';

describe('response-json bench', () => {
  it('makes the same unit rows every time', () => {
    const [a] = sampleRows(1, 64);
    const [b] = sampleRows(1, 64);
    expect(a).toEqual(b);
    expect(Math.hypot(...a)).toBeCloseTo(1, 5);
  });

  it('reports the body it wrote', () => {
    const row = measureResponseJson(2, 'JSON.stringify', () => undefined, 3);
    expect(row).toMatchObject({ rows: 2, formatter: 'JSON.stringify' });
    expect(row.bytes).toBeGreaterThan(2 * 2560 * 5);
    expect(row.writeMs).toBeGreaterThanOrEqual(0);
    const tiny = measureResponseJson(1, 'native', () => '[]', 3);
    expect(tiny.bytes).toBe(
      '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}'
        .length,
    );
  });
});
