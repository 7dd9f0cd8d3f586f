import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  readTokenizerJson,
  resolveTokenizerSource,
  sentenceTransformersConfigJson,
  withEmbeddingPostProcessor,
} from '@app/checkpoint';
import { fromBase64 } from '@app/embeddings/embedding-encoding';
import { FakeEngine } from '@app/engine/testing';
import type { EngineInfo, PackedBatch } from '@app/engine/engine.port';
import { familyLoadOptions, parseCli, ParityFixture, readFixture, runParity } from './parity';

const FIXTURE = join(__dirname, '..', 'test', 'fixtures', 'parity-tiny.json');

/** Answers every sequence with the fixture's reference row (optionally bent for one text). */
function referenceEngine(fixture: ParityFixture, bend?: { id: string; packedOnly: boolean }): FakeEngine {
  return new FakeEngine({
    info: { hiddenSize: fixture.model.hiddenSize },
    row: (tokenIds, dimensions, batch) => {
      const ids = Array.from(tokenIds).join(',');
      const item = fixture.items.find((candidate) => candidate.tokenIds.join(',') === ids);
      if (!item) throw new Error('unknown sequence');
      const row = Array.from(fromBase64(item.embeddings[String(dimensions)]));
      const packed = batch.cuSeqlens.length > 2;
      if (bend?.id === item.id && (packed || !bend.packedOnly)) row[0] += 0.5;
      return row;
    },
  });
}

describe(runParity.name, () => {
  let modelPath: string;
  const fixture = readFixture(FIXTURE);

  beforeAll(async () => {
    modelPath = await mkdtemp(join(tmpdir(), 'parity-'));
    const tokenizer = withEmbeddingPostProcessor(await readTokenizerJson(resolveTokenizerSource()));
    await writeFile(join(modelPath, 'tokenizer.json'), JSON.stringify(tokenizer));
    await writeFile(
      join(modelPath, 'config_sentence_transformers.json'),
      JSON.stringify(sentenceTransformersConfigJson()),
    );
  });

  afterAll(async () => {
    await rm(modelPath, { recursive: true, force: true });
  });

  it('passes an engine that reproduces the reference, alone and packed among 63 others', async () => {
    const engine = referenceEngine(fixture);

    const sut = await runParity({ engine, fixture, modelPath });

    expect(sut.problems).toEqual([]);
    expect(sut.passed).toBe(true);
    expect(sut.tokenization.mismatches).toEqual([]);
    expect(sut.minCosine.alone).toBeGreaterThan(0.9999999);
    expect(Object.keys(sut.perDimension)).toEqual(fixture.dimensions.map(String));
    const packed = engine.batches.filter((batch) => batch.cuSeqlens.length > 2);
    expect(packed.length).toBeGreaterThan(0);
    expect(packed.every((batch) => batch.cuSeqlens.length === 65)).toBe(true);
  });

  it('names the text whose packed embedding drifts from its single one', async () => {
    const engine = referenceEngine(fixture, { id: 'zh-short', packedOnly: true });

    const sut = await runParity({ engine, fixture, modelPath });

    expect(sut.passed).toBe(false);
    expect(sut.worst[0].id).toBe('zh-short');
    expect(sut.worst[0].alone).toBeGreaterThan(0.9999999);
    expect(sut.worst[0].aloneVsPacked).toBeLessThan(0.999);
  });

  it('reports token ids that differ from the fixture', async () => {
    const bent = JSON.parse(await readFile(FIXTURE, 'utf8')) as ParityFixture;
    bent.items[0].tokenIds = [1, 2, 3];

    const sut = await runParity({ engine: referenceEngine(fixture), fixture: bent, modelPath });

    expect(sut.passed).toBe(false);
    expect(sut.tokenization.mismatches.map((m) => m.id)).toEqual([bent.items[0].id]);
  });

  describe('a family fixture (st_reference.py)', () => {
    // Four texts of a model with a Dense layer to 48 and no Normalize, mean pooling without the prompt.
    const DIMS = [32, 48];
    const full = (ids: number[]): number[] =>
      Array.from({ length: 48 }, (_, k) => (2 + ids.length) * Math.sin(ids[0] * (k + 1) + ids.length));
    const items = [
      [101, 7, 8, 9, 102],
      [101, 11, 12, 102],
      [101, 13, 102],
      [101, 14, 15, 16, 17, 102],
    ].map((tokenIds, index) => ({
      id: `t${index}`,
      kind: (index % 2 === 0 ? 'query' : 'document') as 'query' | 'document',
      instruction: null,
      text: `text ${index}`,
      input: `text ${index}`,
      tokenIds,
      promptLength: index % 2 === 0 ? 2 : 0,
      embeddings: Object.fromEntries(
        DIMS.map((d) => [
          String(d),
          Buffer.from(Float32Array.from(full(tokenIds).slice(0, d)).buffer).toString('base64'),
        ]),
      ),
    }));
    const familyFixture: ParityFixture = {
      format: 1,
      model: { name: 'bert-tiny-test', hiddenSize: 64 },
      eosTokenId: null,
      dimensions: DIMS,
      items,
      pooling: 'mean',
      includePrompt: false,
      normalize: false,
      dense: [{ path: '2_Dense', inFeatures: 64, outFeatures: 48, bias: true, activation: 'identity' }],
      outputDimension: 48,
    };
    const engineFor = (scale = (_id: number[]) => 1): FakeEngine =>
      new FakeEngine({
        info: { hiddenSize: 64, outputDimension: 48 } as Partial<EngineInfo>,
        row: (tokenIds, dimensions) => {
          const ids = Array.from(tokenIds);
          return full(ids)
            .slice(0, dimensions)
            .map((value) => value * scale(ids));
        },
      });

    it('embeds its own token ids with the prompt lengths and compares lengths too', async () => {
      const engine = engineFor();

      const sut = await runParity({
        engine,
        fixture: familyFixture,
        modelPath: '/nowhere',
        packedBatchSize: 8,
      });

      expect(sut.problems).toEqual([]);
      expect(sut.passed).toBe(true);
      expect(sut.maxNormError).toBeLessThan(1e-6);
      expect(Object.keys(sut.perDimension)).toEqual(['32', '48']);
      const alone = engine.batches.find((batch) => batch.cuSeqlens.length === 2)! as PackedBatch & {
        promptLengths?: Int32Array;
      };
      expect(Array.from(alone.tokenIds)).toEqual(items[0].tokenIds);
      expect(Array.from(alone.promptLengths ?? [])).toEqual([2]);
      expect(familyLoadOptions(familyFixture, '/models/b')).toEqual({
        pooling: 'mean',
        normalize: false,
        denseLayers: ['/models/b/2_Dense'],
      });
    });

    it('fails a model whose vectors point the right way at the wrong length', async () => {
      const engine = engineFor((ids) => (ids[1] === 13 ? 1.01 : 1));

      const sut = await runParity({
        engine,
        fixture: familyFixture,
        modelPath: '/nowhere',
        packedBatchSize: 8,
      });

      expect(sut.minCosine.alone).toBeGreaterThan(0.9999999);
      expect(sut.passed).toBe(false);
      expect(sut.problems.join('\n')).toContain('vector lengths differ');
    });
  });

  it("reads scripts/device/run.sh's flags", () => {
    expect(
      parseCli([
        '--model',
        'tiny',
        '--fixture',
        'f.json',
        '--device',
        'cuda',
        '--dtype',
        'bfloat16',
        '--tp',
        '2',
        '--alone-every-dimension',
        '--skip-hash',
        '--json',
        'o.json',
      ]),
    ).toEqual({
      model: 'tiny',
      fixture: 'f.json',
      device: 'cuda',
      dtype: 'bfloat16',
      tp: 2,
      deviceIds: undefined,
      threshold: undefined,
      json: 'o.json',
      addon: undefined,
      skipHash: true,
      aloneEveryDimension: true,
    });
    expect(parseCli(['--model=m', '--fixture=f', '--device-ids', '0,1'])).toMatchObject({
      device: 'cpu',
      tp: 1,
      deviceIds: [0, 1],
      skipHash: false,
    });
    expect(() => parseCli(['--model', 'm', '--fixture', 'f', '--device', 'tpu'])).toThrow('--device');
  });
});
