import type { EngineLoadOptions, PackedBatch } from '../engine.port';
import { FakeEngine, fakeScore } from './fake-engine';

function batchOf(sequences: number[][], dims: number[]): PackedBatch {
  const cu = [0];
  for (const s of sequences) cu.push(cu[cu.length - 1] + s.length);
  return {
    tokenIds: Int32Array.from(sequences.flat()),
    cuSeqlens: Int32Array.from(cu),
    dimensions: Int32Array.from(dims),
  };
}

const LOAD: EngineLoadOptions = {
  modelPath: '/fake',
  device: 'cpu',
  dtype: 'float32',
  deviceIds: [],
  tensorParallelSize: 1,
};

describe(FakeEngine.name, () => {
  it('embeds by default: unit rows of the requested sizes, head embedding', async () => {
    const sut = new FakeEngine();
    expect(await sut.load(LOAD)).toMatchObject({ head: 'embedding', outputDimension: 64 });
    const rows = await sut.embed(batchOf([[1, 2], [3]], [64, 32]));
    expect(rows.length).toBe(96);
  });

  it('with a score head loaded, describes rows of one float and returns one score per sequence', async () => {
    const sut = new FakeEngine();
    const info = await sut.load({ ...LOAD, head: 'yes-no', yesNoTokenIds: [9693, 2152] });
    expect(info).toMatchObject({ head: 'yes-no', outputDimension: 1, hiddenSize: 64 });
    expect(sut.info().head).toBe('yes-no');
    const sequences = [[1, 2, 3], [3, 2, 1], [7], [1, 2, 3]];
    const scores = Array.from(await sut.embed(batchOf(sequences, [1, 1, 1, 1])));
    expect(scores).toEqual(sequences.map((ids) => Math.fround(fakeScore(ids))));
    expect(scores[0]).toBe(scores[3]);
    expect(scores[0]).not.toBe(scores[1]);
  });

  it('takes the head from its description too', async () => {
    const sut = new FakeEngine({ info: { head: 'classifier' } });
    expect(sut.info()).toMatchObject({ head: 'classifier', outputDimension: 1 });
    expect(Array.from(await sut.embed(batchOf([[5, 6]], [1])))).toEqual([Math.fround(fakeScore([5, 6]))]);
  });

  it('spreads scores over [-4, 4]', () => {
    const scores = Array.from({ length: 500 }, (_, i) => fakeScore([i, i * 7 + 1]));
    expect(Math.min(...scores)).toBeGreaterThanOrEqual(-4);
    expect(Math.max(...scores)).toBeLessThanOrEqual(4);
    expect(Math.min(...scores)).toBeLessThan(-3);
    expect(Math.max(...scores)).toBeGreaterThan(3);
  });
});
