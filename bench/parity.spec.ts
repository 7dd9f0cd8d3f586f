import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  readTokenizerJson,
  resolveTokenizerSource,
  sentenceTransformersConfigJson,
  withEmbeddingPostProcessor,
} from '@app/checkpoint';
import type { EngineInfo, EnginePort, PackedBatch } from '@app/engine/engine.port';
import { decodeEmbedding, ParityFixture, readFixture, runParity } from './parity';

const FIXTURE = join(__dirname, '..', 'test', 'fixtures', 'parity-tiny.json');

/** Answers every sequence with the fixture's reference row (optionally bent for one text). */
class ReferenceEngine implements EnginePort {
  readonly batches: PackedBatch[] = [];

  constructor(
    private readonly fixture: ParityFixture,
    private readonly bend?: { id: string; packedOnly: boolean },
  ) {}

  async load(): Promise<EngineInfo> {
    return this.info();
  }

  async embed(batch: PackedBatch): Promise<Float32Array> {
    this.batches.push(batch);
    const rows: number[] = [];
    for (let s = 0; s + 1 < batch.cuSeqlens.length; s++) {
      const ids = Array.from(batch.tokenIds.subarray(batch.cuSeqlens[s], batch.cuSeqlens[s + 1])).join(',');
      const item = this.fixture.items.find((candidate) => candidate.tokenIds.join(',') === ids);
      if (!item) throw new Error('unknown sequence');
      const row = Array.from(decodeEmbedding(item.embeddings[String(batch.dimensions[s])]));
      const packed = batch.cuSeqlens.length > 2;
      if (this.bend?.id === item.id && (packed || !this.bend.packedOnly)) row[0] += 0.5;
      rows.push(...row);
    }
    return Float32Array.from(rows);
  }

  info(): EngineInfo {
    return {
      modelPath: '',
      modelType: 'qwen3',
      hiddenSize: this.fixture.model.hiddenSize,
      numLayers: 3,
      numAttentionHeads: 16,
      numKeyValueHeads: 8,
      headDim: 64,
      intermediateSize: 2048,
      vocabSize: 151665,
      maxPositionEmbeddings: 32768,
      parameters: 0,
      device: 'cpu',
      dtype: 'float32',
      tensorParallelSize: 1,
      replicas: 1,
      devices: [],
    };
  }

  health(): { ok: boolean } {
    return { ok: true };
  }

  async dispose(): Promise<void> {}
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
    const engine = new ReferenceEngine(fixture);

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
    const engine = new ReferenceEngine(fixture, { id: 'zh-short', packedOnly: true });

    const sut = await runParity({ engine, fixture, modelPath });

    expect(sut.passed).toBe(false);
    expect(sut.worst[0].id).toBe('zh-short');
    expect(sut.worst[0].alone).toBeGreaterThan(0.9999999);
    expect(sut.worst[0].aloneVsPacked).toBeLessThan(0.999);
  });

  it('reports token ids that differ from the fixture', async () => {
    const bent = JSON.parse(await readFile(FIXTURE, 'utf8')) as ParityFixture;
    bent.items[0].tokenIds = [1, 2, 3];

    const sut = await runParity({ engine: new ReferenceEngine(fixture), fixture: bent, modelPath });

    expect(sut.passed).toBe(false);
    expect(sut.tokenization.mismatches.map((m) => m.id)).toEqual([bent.items[0].id]);
  });
});
