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
import { parseCli, ParityFixture, readFixture, runParity } from './parity';

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
