import { BatchCostModel } from './batch-cost';

describe(BatchCostModel.name, () => {
  it('answers from its prior before any batch ran', () => {
    const sut = new BatchCostModel(0.005, 1000, 1000);
    expect(sut.batchSeconds(1000)).toBeCloseTo(1.005, 6);
    expect(sut.workSeconds(2500)).toBeCloseTo(3 * 0.005 + 2.5, 6);
    expect(sut.workSeconds(0)).toBe(0);
  });

  it('learns the fixed cost and the cost per token, so small batches do not read as a slow engine', () => {
    // Truth: 20 ms per batch plus 0.1 ms per token; the prior was far off (1000 tokens/s).
    const sut = new BatchCostModel(0.005, 1000, 8192);
    for (let i = 0; i < 200; i += 1) {
      const tokens = i % 4 === 0 ? 8192 : 4 + (i % 7);
      sut.observe(tokens, 0.02 + tokens * 1e-4);
    }
    expect(sut.batchSeconds(0)).toBeCloseTo(0.02, 3);
    expect(sut.batchSeconds(8192)).toBeCloseTo(0.02 + 0.8192, 1);
    expect(sut.tokensPerSecond()).toBeGreaterThan(9000);
  });

  it('follows a change of speed and stays positive on noisy or same-sized batches', () => {
    const sut = new BatchCostModel(0.005, 1000, 1000);
    for (let i = 0; i < 300; i += 1) sut.observe(1000, 0.1);
    expect(sut.batchSeconds(1000)).toBeCloseTo(0.1, 2);
    for (let i = 0; i < 300; i += 1) sut.observe(i % 2 ? 10 : 20, i % 2 ? 0.05 : 0.01); // slope < 0
    expect(sut.batchSeconds(10)).toBeGreaterThan(0);
    expect(sut.batchSeconds(1000)).toBeGreaterThan(sut.batchSeconds(10));
  });
});
