import { Tokenizer } from '@anush008/tokenizers';
import {
  unigramTokenizerJson,
  unigramVocabulary,
  wordPieceTokenizerJson,
  wordPieceVocabulary,
} from './generated-tokenizers';

const load = (json: Record<string, unknown>): Tokenizer => Tokenizer.fromString(JSON.stringify(json));

const tokens = async (tokenizer: Tokenizer, text: string): Promise<string[]> =>
  (await tokenizer.encode(text, null, { addSpecialTokens: true })).getTokens();

describe('generated WordPiece tokenizer (bert)', () => {
  const sut = load(wordPieceTokenizerJson(4096));

  it('has exactly the requested, distinct entries with the specials first', () => {
    const vocab = wordPieceVocabulary(4096);

    expect(vocab).toHaveLength(4096);
    expect(new Set(vocab).size).toBe(4096);
    expect(vocab.slice(0, 5)).toEqual(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    expect(sut.getVocabSize(true)).toBe(4096);
  });

  it('lowercases, keeps known words whole, splits others into ## pieces and wraps in [CLS] … [SEP]', async () => {
    expect(await tokens(sut, 'Hello World, THE quick fox!')).toEqual([
      '[CLS]',
      'hello',
      'world',
      ',',
      'the',
      'quick',
      'fox',
      '!',
      '[SEP]',
    ]);
    const split = await tokens(sut, 'zebras');
    expect(split[0]).toBe('[CLS]');
    expect(split.slice(2, -1).every((piece) => piece.startsWith('##'))).toBe(true);
    expect(split.join('').replace(/##|\[CLS\]|\[SEP\]/g, '')).toBe('zebras');
  });

  it('maps characters it does not know to [UNK]', async () => {
    expect(await tokens(sut, 'a ☃ b')).toEqual(['[CLS]', 'a', '[UNK]', 'b', '[SEP]']);
  });
});

describe('generated Unigram tokenizer (xlm-roberta)', () => {
  const sut = load(unigramTokenizerJson(4096));

  it("puts XLM-R's specials at its ids and <mask> last", () => {
    const vocab = unigramVocabulary(4096).map(([piece]) => piece);

    expect(vocab.slice(0, 4)).toEqual(['<s>', '<pad>', '</s>', '<unk>']);
    expect(vocab.at(-1)).toBe('<mask>');
    expect(new Set(vocab).size).toBe(4096);
    expect(sut.getVocabSize(true)).toBe(4096);
  });

  it('keeps known words whole, is case-sensitive and wraps in <s> … </s>', async () => {
    expect(await tokens(sut, 'the quick brown fox')).toEqual([
      '<s>',
      '\u2581the',
      '\u2581quick',
      '\u2581brown',
      '\u2581fox',
      '</s>',
    ]);
    const cased = await tokens(sut, 'The zebra');
    expect(cased.slice(1, 2)).toEqual(['\u2581The']);
    expect(cased.slice(2, -1).join('')).toBe('\u2581zebra');
  });

  it('reads Greek and Cyrillic letters and marks the rest <unk>', async () => {
    const encoding = await sut.encode('αβ где ☃', null, { addSpecialTokens: false });

    expect(encoding.getIds().filter((id) => id === 3)).toHaveLength(1);
    expect(encoding.getTokens()).toContain('\u2581');
  });
});
