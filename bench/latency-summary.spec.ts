import { percentile, summariseLatencies, throughput } from './latency-summary';

describe(summariseLatencies.name, () => {
  it('computes percentiles by linear interpolation, as numpy does', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted

    const sut = summariseLatencies(samples);

    expect(sut).toMatchObject({ count: 100, min: 1, max: 100, mean: 50.5 });
    expect(sut.p50).toBeCloseTo(50.5, 10);
    expect(sut.p90).toBeCloseTo(90.1, 10);
    expect(sut.p99).toBeCloseTo(99.01, 10);
  });

  it('handles one sample and none', () => {
    expect(summariseLatencies([7])).toMatchObject({ p50: 7, p90: 7, p99: 7, mean: 7 });
    expect(Number.isNaN(summariseLatencies([]).p50)).toBe(true);
  });

  it('clamps the quantile', () => {
    expect(percentile([1, 2, 3], 0)).toBe(1);
    expect(percentile([1, 2, 3], 1)).toBe(3);
    expect(percentile([1, 2, 3], 0.25)).toBe(1.5);
  });
});

describe(throughput.name, () => {
  it('divides totals by wall time', () => {
    expect(throughput(2, { requests: 10, embeddings: 80, tokens: 1000 })).toEqual({
      requestsPerSecond: 5,
      embeddingsPerSecond: 40,
      tokensPerSecond: 500,
    });
    expect(throughput(0, { requests: 1, embeddings: 1, tokens: 1 }).requestsPerSecond).toBe(0);
  });
});
