import { bfloat16BitsToNumber } from './dtype';
import { SeededWeightSampler, WEIGHT_CHUNK_ELEMENTS } from './seeded-weights';

describe(SeededWeightSampler.name, () => {
  const draw = (seed: number, name: string, chunk = 0, length = 4096): Uint16Array => {
    const sut = new SeededWeightSampler(seed, 'bf16');
    const out = new Uint16Array(length);
    sut.fillChunk(name, 'linear', chunk, out);
    return out;
  };

  it('draws the same values for the same seed, tensor and chunk', () => {
    expect(draw(7, 'layers.0.mlp.up_proj.weight')).toEqual(draw(7, 'layers.0.mlp.up_proj.weight'));
  });

  it('draws different values for another seed, tensor or chunk', () => {
    const base = draw(7, 'a');
    expect(draw(8, 'a')).not.toEqual(base);
    expect(draw(7, 'b')).not.toEqual(base);
    expect(draw(7, 'a', 1)).not.toEqual(base);
  });

  it('gives a prefix of a chunk when asked for fewer elements', () => {
    expect(draw(3, 'x', 2, 100)).toEqual(draw(3, 'x', 2, 1000).subarray(0, 100));
  });

  it('matches the pinned values, so every machine writes the same bytes', () => {
    expect(Array.from(draw(0, 'embed_tokens.weight', 0, 8))).toEqual(PINNED_FIRST_VALUES);
  });

  it('draws linear weights around 0 with std 0.02 and norm weights around 1', () => {
    const sut = new SeededWeightSampler(1, 'f32');
    const stats = (role: 'linear' | 'norm'): { mean: number; std: number } => {
      const out = new Float32Array(WEIGHT_CHUNK_ELEMENTS);
      sut.fillChunk('t', role, 0, out);
      const mean = out.reduce((sum, value) => sum + value, 0) / out.length;
      const variance = out.reduce((sum, value) => sum + (value - mean) ** 2, 0) / out.length;
      return { mean, std: Math.sqrt(variance) };
    };
    const linear = stats('linear');
    expect(Math.abs(linear.mean)).toBeLessThan(1e-3);
    expect(linear.std).toBeCloseTo(0.02, 3);
    const norm = stats('norm');
    expect(norm.mean).toBeCloseTo(1, 2);
    expect(norm.std).toBeCloseTo(0.1, 2);
  });

  it('rounds bf16 values from the same distribution', () => {
    const values = Array.from(draw(5, 'w', 0, 10000), bfloat16BitsToNumber);
    expect(Math.max(...values.map(Math.abs))).toBeLessThan(0.02 * 3.5);
    expect(new Set(values).size).toBeGreaterThan(100);
  });
});

const PINNED_FIRST_VALUES = [15429, 48166, 14862, 15551, 48270, 48228, 48180, 15591];
