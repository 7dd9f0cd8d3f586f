import { Tokenizer } from '@anush008/tokenizers';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QWEN3_TOKENIZER_MODULE } from '@app/checkpoint';
import type { PackedBatch } from '@app/engine/engine.port';
import { FakeEngine, fakeScore } from '@app/engine/testing';
import {
  kendallTau,
  pairsMismatches,
  parseCli,
  ranking,
  RerankFixture,
  rerankLoadOptions,
  RerankPairs,
  runRerankParity,
  sigmoid,
} from './rerank-parity';

const PAIRS_FILE = join(__dirname, '..', 'test', 'fixtures', 'rerank-pairs.json');

/** A fixture whose reference is the fake engine's own score head, three groups of four documents. */
function fakeReference(): RerankFixture {
  const groups = [0, 1, 2].map((g) => ({
    query: `query ${g}`,
    instruction: g === 2 ? 'custom' : null,
    items: [0, 1, 2, 3].map((d) => {
      const tokenIds = Array.from({ length: 5 + d }, (_, k) => 1000 * (g + 1) + 17 * d + k);
      const raw = fakeScore(Int32Array.from(tokenIds));
      return {
        document: `document ${g}.${d}`,
        tokenIds,
        truncated: false,
        logitYes: raw,
        logitNo: 0,
        raw,
        score: sigmoid(raw),
      };
    }),
  }));
  return {
    name: 'fake-reranker',
    generatorArgs: null,
    reference: 'the fake engine',
    maxLength: 8192,
    head: 'yes-no',
    yesTokenId: 9693,
    noTokenId: 2152,
    groups,
  };
}

async function loadedFake(fixture: RerankFixture, engine = new FakeEngine()): Promise<FakeEngine> {
  await engine.load({
    modelPath: '/fake',
    device: 'cpu',
    dtype: 'float32',
    deviceIds: [],
    tensorParallelSize: 1,
    ...rerankLoadOptions(fixture),
  });
  return engine;
}

/** Scores a little differently when a batch holds more than one sequence. */
class PackingSensitiveEngine extends FakeEngine {
  override async embed(batch: PackedBatch): Promise<Float32Array> {
    const raws = await super.embed(batch);
    if (batch.cuSeqlens.length > 2) raws[0] += 0.5;
    return raws;
  }
}

describe(runRerankParity.name, () => {
  it('passes an engine that reproduces the reference, alone and with each group packed in one batch', async () => {
    const fixture = fakeReference();
    const engine = await loadedFake(fixture);

    const sut = await runRerankParity({ engine, fixture });

    expect(sut.problems).toEqual([]);
    expect(sut.passed).toBe(true);
    expect(sut.threshold).toBe(1e-5);
    expect(sut.maxScoreError).toBeLessThan(1e-6);
    expect(sut.groupsInOrder).toBe(3);
    expect(sut.minKendallTau).toBe(1);
    expect(engine.batches.map((batch) => batch.cuSeqlens.length - 1)).toEqual([
      ...[1, 1, 1, 1, 4],
      ...[1, 1, 1, 1, 4],
      ...[1, 1, 1, 1, 4],
    ]);
    expect(engine.batches.every((batch) => batch.dimensions.every((d) => d === 1))).toBe(true);
  });

  it('names the document whose score is off, and reports the group out of order', async () => {
    const fixture = fakeReference();
    const group = fixture.groups[1];
    const top = ranking(group.items.map((item) => item.score))[0];
    // The reference's best document becomes its worst: every other document now ranks above it.
    group.items[top].score = Math.min(...group.items.map((item) => item.score)) - 0.05;

    const sut = await runRerankParity({ engine: await loadedFake(fixture), fixture, threshold: 0.01 });

    expect(sut.passed).toBe(false);
    expect(sut.worst[0]).toMatchObject({ group: 1, document: top });
    expect(sut.problems[0]).toMatch(/^scores differ from the reference by up to .*worst group 1 document/);
    expect(sut.groups.map((g) => g.sameOrder)).toEqual([true, false, true]);
    expect(sut.groups[1].kendallTau).toBeCloseTo(0, 5);
  });

  it('fails an engine whose packed batches score differently from its single pairs', async () => {
    const fixture = fakeReference();
    const engine = await loadedFake(fixture, new PackingSensitiveEngine());

    const sut = await runRerankParity({ engine, fixture, threshold: 0.01 });

    expect(sut.maxScoreError).toBeLessThan(1e-6);
    expect(sut.maxAloneVsPacked).toBeGreaterThan(0.01);
    expect(sut.passed).toBe(false);
    expect(sut.problems).toEqual([expect.stringMatching(/^packed scores differ/)]);
  });

  it('checks the head and that the fixture was made from the same pairs', async () => {
    const fixture = fakeReference();
    const engine = await loadedFake({ ...fixture, head: 'classifier' });
    const pairs: RerankPairs = {
      groups: fixture.groups.map((group) => ({
        query: group.query,
        ...(group.instruction !== null ? { instruction: group.instruction } : {}),
        documents: group.items.map((item) => item.document),
      })),
    };

    expect(pairsMismatches(fixture, pairs)).toEqual([]);
    pairs.groups[2].documents[3] = 'edited';
    const sut = await runRerankParity({ engine, fixture, pairs });

    expect(sut.problems).toEqual([
      "the engine's head is classifier, the fixture's yes-no",
      'group 2 differs from the pairs file (query, instruction or documents)',
    ]);
  });
});

describe(rerankLoadOptions.name, () => {
  it("asks for the fixture's head, last-token pooling and raw values", () => {
    const fixture = fakeReference();

    expect(rerankLoadOptions(fixture)).toEqual({
      head: 'yes-no',
      yesNoTokenIds: [9693, 2152],
      pooling: 'lasttoken',
      normalize: false,
      denseLayers: [],
    });
    expect(rerankLoadOptions({ ...fixture, head: 'classifier', yesTokenId: null, noTokenId: null })).toEqual({
      head: 'classifier',
      pooling: 'lasttoken',
      normalize: false,
      denseLayers: [],
    });
    expect(() => rerankLoadOptions({ ...fixture, yesTokenId: null })).toThrow(/no yes\/no token ids/);
  });
});

describe('rank statistics', () => {
  it('sorts by score with ties in index order, and measures agreement with Kendall tau', () => {
    expect(ranking([0.2, 0.9, 0.2, 0.5])).toEqual([1, 3, 0, 2]);
    expect(kendallTau([1, 2, 3, 4], [10, 20, 30, 40])).toBe(1);
    expect(kendallTau([1, 2, 3, 4], [4, 3, 2, 1])).toBe(-1);
    expect(kendallTau([1, 2, 3], [1, 3, 2])).toBeCloseTo(1 / 3, 10);
    expect(sigmoid(0)).toBe(0.5);
    expect(sigmoid(-800)).toBe(0);
    expect(sigmoid(2)).toBeCloseTo(1 / (1 + Math.exp(-2)), 15);
  });
});

describe(parseCli.name, () => {
  it('needs a model and a fixture, and checks the device and threshold', () => {
    expect(parseCli(['--model', 'm', '--fixture', 'f.json'])).toMatchObject({
      device: 'cpu',
      tp: 1,
      skipHash: false,
    });
    expect(() => parseCli(['--fixture', 'f.json'])).toThrow('--model and --fixture are required');
    expect(() => parseCli(['--model', 'm', '--fixture', 'f', '--device', 'tpu'])).toThrow(/--device/);
    expect(() => parseCli(['--model', 'm', '--fixture', 'f', '--threshold', '-1'])).toThrow(/--threshold/);
  });
});

describe('test/fixtures/rerank-pairs.json', () => {
  const pairs = JSON.parse(readFileSync(PAIRS_FILE, 'utf8')) as RerankPairs;

  it('has the pairs the contract asks for: 40 or more, five groups of four or more, empty-ish documents', () => {
    const documents = pairs.groups.flatMap((group) => group.documents);

    expect(documents.length).toBeGreaterThanOrEqual(40);
    expect(pairs.groups.filter((group) => group.documents.length >= 4).length).toBeGreaterThanOrEqual(5);
    expect(documents).toEqual(expect.arrayContaining(['', ' ', '.']));
    expect(pairs.groups.filter((group) => group.instruction !== undefined).length).toBeGreaterThanOrEqual(2);
  });

  it('holds a document longer than 8192 tokens once templated, so the reference cuts it', async () => {
    const tokenizer = Tokenizer.fromFile(require.resolve(QWEN3_TOKENIZER_MODULE));
    const longest = pairs.groups
      .flatMap((group) => group.documents.map((document) => ({ group, document })))
      .sort((a, b) => b.document.length - a.document.length)[0];
    const instruction =
      longest.group.instruction ??
      'Given a web search query, retrieve relevant passages that answer the query';
    const middle = `<Instruct>: ${instruction}\n<Query>: ${longest.group.query}\n<Document>: ${longest.document}`;

    const encoding = await tokenizer.encode(middle, null, { addSpecialTokens: false });

    expect(encoding.getIds().length).toBeGreaterThan(8192);
  });
});
