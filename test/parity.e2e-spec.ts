/**
 * The CPU engine against the Hugging Face reference (test/fixtures/parity-tiny.json, written by
 * scripts/reference/reference.py with transformers + sentence-transformers in fp32): the server's own
 * prompt and tokenization path, each text alone and packed among others, every Matryoshka size, and
 * tensor parallel 2 and 4 on in-process ranks.
 */
import { NativeEngine } from '@app/engine';
import { readFixture, runParity, formatParity, FLOAT32_THRESHOLD } from '../bench/parity';
import { assertPrerequisites, DEMO_MODEL, NATIVE_ADDON } from './support/test-app';
import { join } from 'node:path';

const fixture = readFixture(join(__dirname, 'fixtures', 'parity-tiny.json'));

describe('CPU engine parity with the Hugging Face reference', () => {
  beforeAll(() => assertPrerequisites());

  it.each([1, 2, 4])(
    'tensor parallel %i matches within cosine 0.99999',
    async (tp) => {
      const engine = new NativeEngine(NATIVE_ADDON);
      await engine.load({
        modelPath: DEMO_MODEL,
        device: 'cpu',
        dtype: 'float32',
        deviceIds: [],
        tensorParallelSize: tp,
      });
      try {
        const result = await runParity({
          engine,
          fixture,
          modelPath: DEMO_MODEL,
          packedBatchSize: 64,
          aloneEveryDimension: tp === 1,
        });
        if (!result.passed) console.log(formatParity(result));
        expect(result.problems).toEqual([]);
        expect(result.threshold).toBe(FLOAT32_THRESHOLD);
        expect(result.passed).toBe(true);
      } finally {
        await engine.dispose();
      }
    },
    600_000,
  );
});
