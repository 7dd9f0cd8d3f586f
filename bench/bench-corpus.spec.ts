import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  builtinRerankWorkload,
  documentTokenStats,
  loadRerankWorkload,
  parseRerankWorkload,
  qwen3TokenCounter,
  RERANK_BENCH_QUERY,
  rerankPassages,
  writeRerankWorkload,
} from './bench-corpus';

const words = (text: string): number => text.split(' ').length;

describe(rerankPassages.name, () => {
  const countTokens = qwen3TokenCounter();

  it('makes 100 distinct passages of about 300 Qwen3 tokens, the same every time', async () => {
    const sut = await rerankPassages(100, 300, countTokens);

    expect(await rerankPassages(100, 300, countTokens)).toEqual(sut);
    expect(sut).toHaveLength(100);
    // Each opens with its own sentence, so no two share more than the template's prefix.
    expect(new Set(sut.map((passage) => passage.split('. ')[0])).size).toBe(100);
    const counts = await Promise.all(sut.map((passage) => countTokens(passage)));
    for (const tokens of counts) {
      expect(tokens).toBeGreaterThanOrEqual(280);
      expect(tokens).toBeLessThanOrEqual(320);
    }
    const mean = counts.reduce((sum, n) => sum + n, 0) / counts.length;
    expect(Math.abs(mean - 300)).toBeLessThan(6);
    expect(sut[0]).toMatch(/^[A-Z].*\.$/);
  });

  it('follows --doc-tokens, short and past the sentence bank', async () => {
    const short = await rerankPassages(5, 40, countTokens);
    const long = await rerankPassages(2, 4000, countTokens);

    for (const passage of short) expect(Math.abs((await countTokens(passage)) - 40)).toBeLessThanOrEqual(20);
    for (const passage of long) expect(Math.abs((await countTokens(passage)) - 4000)).toBeLessThanOrEqual(25);
  });

  it('takes any token counter, and refuses sizes that are not positive integers', async () => {
    const sut = await rerankPassages(3, 120, words);

    for (const passage of sut) expect(Math.abs(words(passage) - 120)).toBeLessThanOrEqual(20);
    await expect(rerankPassages(0, 300, words)).rejects.toThrow(/documents/);
    await expect(rerankPassages(1, 1.5, words)).rejects.toThrow(/docTokens/);
  });
});

describe(loadRerankWorkload.name, () => {
  let dir: string;
  const options = { documents: 4, docTokens: 60 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rerank-workload-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('builds the builtin one: the bench query against --documents passages', async () => {
    const sut = await loadRerankWorkload('builtin', options, words);

    expect(sut.groups).toHaveLength(1);
    expect(sut.groups[0].query).toBe(RERANK_BENCH_QUERY);
    expect(sut.groups[0].instruction).toBeUndefined();
    expect(sut.groups[0].documents).toHaveLength(4);
    expect(await builtinRerankWorkload({ ...options, instruction: 'Find code' }, words)).toMatchObject({
      groups: [{ instruction: 'Find code', documents: sut.groups[0].documents }],
    });
  });

  it('reads back what writeRerankWorkload wrote, and a rerank-pairs.json-shaped file', async () => {
    const workload = await builtinRerankWorkload({ ...options, query: 'q?', instruction: 'i' }, words);
    const path = join(dir, 'workload.json');
    await writeRerankWorkload(path, workload);
    const pairs = join(dir, 'pairs.json');
    await writeFile(
      pairs,
      JSON.stringify({
        groups: [
          { query: 'a', instruction: null, documents: ['x', ''] },
          { query: 'b', documents: ['y'] },
        ],
      }),
    );

    expect(await loadRerankWorkload(path, options, words)).toEqual(workload);
    expect(await loadRerankWorkload(pairs, options, words)).toEqual({
      groups: [
        { query: 'a', documents: ['x', ''] },
        { query: 'b', documents: ['y'] },
      ],
    });
  });

  it('takes the first --documents texts of a plain corpus file, and says when it has too few', async () => {
    const path = join(dir, 'texts.txt');
    await writeFile(path, 'one\ntwo\n\nthree\nfour\nfive\n');

    expect(await loadRerankWorkload(path, { ...options, query: 'q' }, words)).toEqual({
      groups: [{ query: 'q', documents: ['one', 'two', 'three', 'four'] }],
    });
    await expect(loadRerankWorkload(path, { ...options, documents: 6 }, words)).rejects.toThrow(
      /5 texts, fewer than --documents 6/,
    );
  });
});

describe(parseRerankWorkload.name, () => {
  it('names what is wrong', () => {
    expect(() => parseRerankWorkload({}, 'f.json')).toThrow('f.json: expected a non-empty "groups" array');
    expect(() => parseRerankWorkload({ groups: [{ documents: ['d'] }] })).toThrow('groups[0].query');
    expect(() => parseRerankWorkload({ groups: [{ query: 'q', documents: [] }] })).toThrow(
      'groups[0].documents',
    );
    expect(() => parseRerankWorkload({ groups: [{ query: 'q', documents: [1] }] })).toThrow(
      'groups[0].documents',
    );
    expect(() => parseRerankWorkload({ groups: [{ query: 'q', instruction: 3, documents: ['d'] }] })).toThrow(
      'groups[0].instruction',
    );
  });
});

describe(documentTokenStats.name, () => {
  it('counts every document of every group', async () => {
    const sut = await documentTokenStats(
      {
        groups: [
          { query: 'q', documents: ['a b', 'a b c d'] },
          { query: 'r', documents: ['a b c'] },
        ],
      },
      words,
    );

    expect(sut).toEqual({ mean: 3, min: 2, max: 4 });
  });
});
