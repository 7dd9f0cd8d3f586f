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
    const tiny = measureResponseJson(1, 'native', () => '[]', 3);
    expect(tiny.bytes).toBe(
      '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}'
        .length,
    );
  });

  it('times the write of one body, as a median over the runs', () => {
    // A formatter that spins 2 ms per row: writing a one-row body takes at least that, and the
    // median of 9 bodies is nowhere near their sum (18 ms) nor the parse of the same body.
    const slowJson = (): string => {
      const until = performance.now() + 2;
      while (performance.now() < until);
      return '[]';
    };
    const row = measureResponseJson(1, 'native', slowJson, 9);
    expect(row.writeMs).toBeGreaterThanOrEqual(2);
    expect(row.writeMs).toBeLessThan(15);
    expect(row.parseMs).toBeLessThan(row.writeMs);
  });
});
