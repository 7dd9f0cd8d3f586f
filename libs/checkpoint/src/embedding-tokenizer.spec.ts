import { Tokenizer } from '@anush008/tokenizers';
import { readFileSync } from 'node:fs';
import { EOS_TOKEN_ID, resolveTokenizerSource, withEmbeddingPostProcessor } from './embedding-tokenizer';

describe(withEmbeddingPostProcessor.name, () => {
  const original = JSON.parse(readFileSync(resolveTokenizerSource(), 'utf8'));
  const prepared = withEmbeddingPostProcessor(original);
  const sut = Tokenizer.fromString(JSON.stringify(prepared));
  const ids = async (text: string, addSpecialTokens: boolean): Promise<number[]> =>
    (await sut.encode(text, null, { addSpecialTokens })).getIds();

  it('appends <|endoftext|> exactly once when special tokens are requested', async () => {
    const withSpecial = await ids('hello', true);
    const plain = await ids('hello', false);

    expect(withSpecial).toEqual([...plain, EOS_TOKEN_ID]);
    expect(plain).not.toContain(EOS_TOKEN_ID);
  });

  it('leaves a literal <|endoftext|> in the text as one token, then appends its own', async () => {
    const plain = await ids('end<|endoftext|>', false);

    expect(plain.filter((id) => id === EOS_TOKEN_ID)).toHaveLength(1);
    expect(await ids('end<|endoftext|>', true)).toEqual([...plain, EOS_TOKEN_ID]);
  });

  it('keeps byte-level offsets and decoding', async () => {
    const encoding = await sut.encode('héllo wörld', null, { addSpecialTokens: true });

    expect(encoding.getOffsets()[0][0]).toBe(0);
    expect(await sut.decode(encoding.getIds(), true)).toBe('héllo wörld');
  });

  it('is idempotent and keeps the original byte-level processor in front', () => {
    expect(withEmbeddingPostProcessor(prepared)).toEqual(prepared);
    expect(prepared.post_processor).toMatchObject({
      type: 'Sequence',
      processors: [original.post_processor, { type: 'TemplateProcessing' }],
    });
  });

  it('appends after each sequence of a pair', async () => {
    const encoding = await sut.encode('a', 'b', { addSpecialTokens: true });
    const eos = encoding.getIds().filter((id) => id === EOS_TOKEN_ID);

    expect(eos).toHaveLength(2);
    expect(encoding.getIds()[encoding.getIds().length - 1]).toBe(EOS_TOKEN_ID);
  });
});
